package reconcile

import (
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Evaluation visits only what can have changed for a change. Most of a fleet's proxies
// were sent nothing since a given change (it is older than their latest push), are out of
// its reach (another namespace), or ACKed what they were sent: the index of one istiod
// view, built once per read instead of once per change, finds the proxies pushed since a
// time by binary search, those of one namespace by lookup, and holds each proxy's sends
// as plain numbers so that the common proxy (in reach, no error, no streamed NACK) costs
// a few comparisons. Proxies with an ERROR type or a streamed NACK take the full path of
// blame.go, which decides what a NACK's text names.

// typeBit numbers the xDS types a kind rule can name; every other type shares one bit,
// which only a rule with no list of types (an unknown kind) covers.
func typeBit(typeURL string) uint8 {
	switch typeURL {
	case typeCluster:
		return 0
	case typeEndpoint:
		return 1
	case typeListener:
		return 2
	case typeRoute:
		return 3
	case typeExtension:
		return 4
	}
	return 5
}

// typeMask is the set of type bits a kind rule covers.
func typeMask(types []string) uint8 {
	if types == nil {
		return math.MaxUint8
	}
	var m uint8
	for _, t := range types {
		if b := typeBit(t); b < 5 {
			m |= 1 << b
		}
	}
	return m
}

// nanos is t as Unix nanoseconds, clamped to what int64 holds; the zero time (never sent)
// is the smallest value, before any window.
func nanos(t time.Time) int64 {
	switch {
	case t.IsZero() || t.Before(minNanosTime):
		return math.MinInt64
	case t.After(maxNanosTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minNanosTime = time.Unix(0, math.MinInt64+1)
	maxNanosTime = time.Unix(0, math.MaxInt64)
)

// sendState is a type's state as evaluation needs it.
type sendState uint8

const (
	sendSynced sendState = iota
	sendError
	sendWaiting // sent, not answered (STALE), or anything else istiod may report
)

// typedSend is one xDS type of one proxy.
type typedSend struct {
	sent  int64
	bit   uint8
	state sendState
}

// proxyGroup is what reach depends on: the proxy's namespace and class.
type proxyGroup struct {
	ns    string
	class proxyClass
}

// proxyIDs numbers proxies (an istiod and a proxy id) densely, so that what a change keeps
// per proxy is a slice rather than a map.
type proxyIDs struct{ m map[proxyKey]int32 }

func (p *proxyIDs) id(k proxyKey) int32 {
	if p.m == nil {
		p.m = map[proxyKey]int32{}
	}
	id, ok := p.m[k]
	if !ok {
		id = int32(len(p.m))
		p.m[k] = id
	}
	return id
}

func (p *proxyIDs) len() int { return len(p.m) }

// viewIndex is one istiod view prepared for evaluation.
type viewIndex struct {
	// last is each proxy's latest send of any type; bySent the positions, latest first.
	last   []int64
	bySent []int32
	// sends[start[i]:start[i+1]] are proxy i's types.
	start []int32
	sends []typedSend
	// group is each proxy's index in groups; nsPos the positions of each namespace's
	// proxies, in view order.
	group  []int32
	groups []proxyGroup
	nsPos  map[string][]int32
	// errored marks proxies with an ERROR type; event those with a streamed NACK (set per
	// Evaluate); extra lists both, in view order.
	errored   []bool
	event     []bool
	hadEvents bool
	extra     []int32
	errPos    []int32
	// ids are the proxies' numbers (proxyIDs).
	ids []int32
	// masked holds, per set of types a kind rule covers, each proxy's sends of those
	// types summed up (made when a change of such a kind first needs it).
	masked map[uint8]*maskedSends
}

// maskedSends sums up each proxy's sends of one set of types: the earliest and latest
// (MaxInt64 and MinInt64 when none was sent) and whether one is not SYNCED. A proxy
// whose earliest send comes after a change's window opens was sent all of them since:
// its outcome follows from these three without looking at its types.
type maskedSends struct {
	first, last []int64
	waiting     []bool
}

// sendsOf is the summary of the types in mask.
func (ix *viewIndex) sendsOf(mask uint8) *maskedSends {
	if m := ix.masked[mask]; m != nil {
		return m
	}
	n := len(ix.last)
	m := &maskedSends{first: make([]int64, n), last: make([]int64, n), waiting: make([]bool, n)}
	for i := range n {
		first, last := int64(math.MaxInt64), int64(math.MinInt64)
		for _, s := range ix.sends[ix.start[i]:ix.start[i+1]] {
			if mask&(1<<s.bit) == 0 || s.sent == math.MinInt64 {
				continue
			}
			first, last = min(first, s.sent), max(last, s.sent)
			m.waiting[i] = m.waiting[i] || s.state != sendSynced
		}
		m.first[i], m.last[i] = first, last
	}
	if ix.masked == nil {
		ix.masked = map[uint8]*maskedSends{}
	}
	ix.masked[mask] = m
	return m
}

func newViewIndex(v IstiodView, ids *proxyIDs) *viewIndex {
	n := len(v.Proxies)
	ix := &viewIndex{
		last:    make([]int64, n),
		bySent:  make([]int32, n),
		start:   make([]int32, n+1),
		group:   make([]int32, n),
		nsPos:   map[string][]int32{},
		errored: make([]bool, n),
		event:   make([]bool, n),
		ids:     make([]int32, n),
	}
	total := 0
	for i := range v.Proxies {
		total += len(v.Proxies[i].Types)
	}
	ix.sends = make([]typedSend, 0, total)
	groups := map[proxyGroup]int32{}
	for i := range v.Proxies {
		px := &v.Proxies[i]
		g := proxyGroup{ns: px.ID[strings.LastIndexByte(px.ID, '.')+1:], class: classOf(px.ProxyType)}
		gi, ok := groups[g]
		if !ok {
			gi = int32(len(ix.groups))
			groups[g] = gi
			ix.groups = append(ix.groups, g)
		}
		ix.group[i] = gi
		ix.nsPos[g.ns] = append(ix.nsPos[g.ns], int32(i))
		ix.ids[i] = ids.id(proxyKey{v.Istiod, px.ID})
		ix.start[i] = int32(len(ix.sends))
		last := int64(math.MinInt64)
		for _, t := range px.Types {
			s := typedSend{sent: nanos(t.SentAt), bit: typeBit(t.TypeURL), state: sendWaiting}
			switch t.State {
			case StateSynced:
				s.state = sendSynced
			case StateError:
				s.state = sendError
				ix.errored[i] = true
			}
			last = max(last, s.sent)
			ix.sends = append(ix.sends, s)
		}
		if ix.errored[i] {
			ix.errPos = append(ix.errPos, int32(i))
		}
		ix.last[i] = last
		ix.bySent[i] = int32(i)
	}
	ix.start[n] = int32(len(ix.sends))
	slices.SortFunc(ix.bySent, func(a, b int32) int {
		la, lb := ix.last[a], ix.last[b]
		switch {
		case la > lb:
			return -1
		case la < lb:
			return 1
		}
		return int(a - b)
	})
	ix.extra = ix.errPos
	return ix
}

// markEvents flags the proxies that have a streamed NACK, of the view named istiod.
func (ix *viewIndex) markEvents(istiod string, v IstiodView, nacks map[proxyKey]NACKEvent, any bool) {
	if ix.hadEvents {
		clear(ix.event)
		ix.extra, ix.hadEvents = ix.errPos, false
	}
	if !any {
		return
	}
	found := false
	for i := range v.Proxies {
		if _, ok := nacks[proxyKey{istiod, v.Proxies[i].ID}]; ok {
			ix.event[i], found = true, true
		}
	}
	if !found {
		return
	}
	ix.hadEvents = true
	ix.extra = nil
	for i := range v.Proxies {
		if ix.errored[i] || ix.event[i] {
			ix.extra = append(ix.extra, int32(i))
		}
	}
}

// sentSince is how many proxies were sent anything at or after from.
func (ix *viewIndex) sentSince(from int64) int {
	return sort.Search(len(ix.bySent), func(j int) bool { return ix.last[ix.bySent[j]] < from })
}

// evalInput is what every change's evaluation in one Evaluate shares.
type evalInput struct {
	views map[string]IstiodView
	// names are the views' names, sorted; index their indexes, in the same order.
	names []string
	index []*viewIndex
	nacks map[proxyKey]NACKEvent
	// nackSeq versions each istiod's streamed NACKs: a change's visit of an istiod holds
	// until the istiod is read again or its NACKs change.
	nackSeq    map[string]uint64
	down       []string
	restricted []string
	ids        *proxyIDs
	// scratch buffers, reused from change to change.
	cand []int32
	memo []int8
}

// newEvalInput prepares views for evaluation, reusing the indexes in cache (by istiod)
// that are still current; cache may be nil.
func newEvalInput(views map[string]IstiodView, nacks map[proxyKey]NACKEvent, down []string, ids *proxyIDs, cache map[string]*viewIndex) *evalInput {
	in := &evalInput{views: views, nacks: nacks, down: down, ids: ids, restricted: restrictedIstiods(views)}
	in.names = make([]string, 0, len(views))
	for n := range views {
		in.names = append(in.names, n)
	}
	slices.Sort(in.names)
	nackFrom := map[string]bool{}
	for k := range nacks {
		nackFrom[k.istiod] = true
	}
	for _, n := range in.names {
		ix := cache[n]
		if ix == nil {
			ix = newViewIndex(views[n], ids)
			if cache != nil {
				cache[n] = ix
			}
		}
		ix.markEvents(n, views[n], nacks, nackFrom[n])
		in.index = append(in.index, ix)
	}
	return in
}

// onlyNamespace names the one namespace whose proxies the change can reach, when its
// rule and spec confine it to one.
func (b *blame) onlyNamespace() (string, bool) {
	if b.ns == "" {
		return "", false
	}
	r := b.change.Reach
	switch b.rule.scope {
	case namespaced:
		return b.ns, !r.RootNamespace
	case ownNamespace:
		return b.ns, true
	case exported:
		if !r.Known {
			return "", false
		}
		if r.Selector {
			return b.ns, true
		}
		if len(r.ExportTo) == 0 {
			return "", false
		}
		for _, e := range r.ExportTo {
			if e != "." && e != "~" && e != b.ns {
				return "", false
			}
		}
		return b.ns, true
	}
	return "", false
}

// reachesGroup is reaches for a group of proxies.
func (b *blame) reachesGroup(g proxyGroup) bool {
	return b.reachesNS(g.ns, g.class)
}

// candidates are the positions of ix that can matter to a change whose window opens at
// from: sent something since, or with an error or a streamed NACK, in view order (the
// order outcomes are listed in). Positions may include others; the visit filters.
func (in *evalInput) candidates(ix *viewIndex, b *blame, from int64) (all bool, pos []int32) {
	n := len(ix.last)
	k := ix.sentSince(from)
	if k == 0 {
		return false, ix.extra
	}
	if ns, ok := b.onlyNamespace(); ok && len(ix.nsPos[ns]) <= k {
		in.cand = mergeSorted(in.cand[:0], ix.nsPos[ns], ix.extra)
		return false, in.cand
	}
	if k*4 < n {
		in.cand = append(in.cand[:0], ix.bySent[:k]...)
		in.cand = append(in.cand, ix.extra...)
		slices.Sort(in.cand)
		return false, slices.Compact(in.cand)
	}
	return true, nil
}

// mergeSorted appends the union of two ascending lists to dst, ascending.
func mergeSorted(dst, a, b []int32) []int32 {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			dst = append(dst, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			dst = append(dst, b[j])
			j++
		default:
			dst = append(dst, a[i])
			i++
			j++
		}
	}
	return dst
}
