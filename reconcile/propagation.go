package reconcile

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PropagationState is where one change (or a roll-up of changes) stands.
type PropagationState string

const (
	PropagationPending    PropagationState = "Pending"
	PropagationPropagated PropagationState = "Propagated"
	PropagationNACKed     PropagationState = "NACKed"
	PropagationStale      PropagationState = "Stale"
	// PropagationNotPushed: istiod pushed nothing after the change within the grace period.
	PropagationNotPushed PropagationState = "NotPushed"
	// PropagationUnknown: an istiod that may serve affected proxies is unreachable, or
	// shows meshdrift only part of its proxies (IstiodView.Restriction).
	PropagationUnknown PropagationState = "Unknown"
)

// severity orders states from best to worst for roll-ups.
func (s PropagationState) severity() int {
	switch s {
	case PropagationPropagated:
		return 0
	case PropagationPending:
		return 1
	case PropagationUnknown:
		return 2
	case PropagationNotPushed:
		return 3
	case PropagationStale:
		return 4
	case PropagationNACKed:
		return 5
	}
	return 2
}

// PropagationConfig tunes the inference.
type PropagationConfig struct {
	// Grace is how long proxies may take before pending becomes stale (default 30 s).
	Grace time.Duration
	// Slack widens the window before the change in which a push still counts as carrying
	// it, for a watch that lags istiod's. Default 0: both watch the same API server and
	// istiod debounces 100 ms before it pushes, so a push carrying the change comes after
	// meshdrift saw it; a wider window would take a proxy's unrelated push just before the
	// change (its connect, another change) for this one. Clocks that disagree need no
	// slack: each istiod's offset is measured and applied (clock.go).
	Slack time.Duration
	// Retention is how long a propagated change stays listed, and a deletion in any state
	// (default 10 min).
	Retention time.Duration
	// Recheck is how often a change in a final state (NACKed, Stale, NotPushed) is
	// evaluated again when istiod reports something new, so that a fixed NACK resolves
	// without every read re-evaluating every old change (default 10 s, istiod's poll).
	Recheck time.Duration
	// MaxChanges caps the changes held; beyond it the oldest propagated go first, then the
	// oldest in other states (default 10,000).
	MaxChanges int
}

func (c PropagationConfig) withDefaults() PropagationConfig {
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.Slack < 0 {
		c.Slack = 0
	}
	if c.Retention <= 0 {
		c.Retention = 10 * time.Minute
	}
	if c.Recheck <= 0 {
		c.Recheck = 10 * time.Second
	}
	if c.MaxChanges <= 0 {
		c.MaxChanges = 10000
	}
	return c
}

// ProxyOutcome is one targeted proxy that has not (yet) ACKed a change.
type ProxyOutcome struct {
	Proxy  string           `json:"proxy"`
	Istiod string           `json:"istiod"`
	State  PropagationState `json:"state"`
	Error  string           `json:"error,omitempty"`
	// Named is set when the proxy's error text names a resource the object produces (a
	// cluster or virtual host of its hosts, a route configuration or listener of its
	// ports).
	Named bool `json:"named,omitempty"`
}

// Propagation is the outcome of one mesh object change.
type Propagation struct {
	Change MeshChange       `json:"change"`
	State  PropagationState `json:"state"`
	// Latency is set once propagated.
	Latency  time.Duration `json:"latency,omitempty"`
	Targeted int           `json:"targeted"`
	ACKed    int           `json:"acked"`
	NACKed   int           `json:"nacked"`
	Pending  int           `json:"pending"`
	// Proxies lists the targeted proxies that have not ACKed.
	Proxies []ProxyOutcome `json:"proxies,omitempty"`
	// Concurrent lists proxy NACKs seen since the change that it cannot have caused (a
	// type its kind does not write, a proxy out of its reach, a text naming only other
	// objects), and for an object that had settled before meshdrift started the proxies'
	// own errors and silence: shown, never counted against the change.
	Concurrent []ProxyOutcome `json:"concurrent,omitempty"`
	// Unreachable lists istiods that could not be read.
	Unreachable []string `json:"unreachable,omitempty"`
	// Restricted lists istiods whose view is partial (see IstiodView.Restriction): what
	// they hide may be a proxy that has not ACKed, so the change is Unknown.
	Restricted []string `json:"restricted,omitempty"`
	// Since is when the change entered State.
	Since time.Time `json:"since"`
}

// trackedChange is a change with its frozen outcome once propagated.
type trackedChange struct {
	change MeshChange
	// firstAt is the earliest push after the change seen per proxy (meshdrift's clock, Unix
	// nanoseconds), for latency, indexed by the proxy's number (proxyIDs); firstEval is the
	// evaluation that last saw the proxy targeted, and an entry of an earlier one than the
	// previous evaluation is void: only proxies still connected count. Both are dropped
	// once the change resolved.
	firstAt    []int64
	firstEval  []uint32
	firstCount int
	result     Propagation
	resolved   bool
	// settled is set for a baseline change written at least the grace period before
	// meshdrift started (settledAtStart).
	settled bool
	// blame is the change's blame (it depends on the change alone), made once.
	blame *blame
	// parts are the last visit of each istiod's proxies.
	parts map[string]*istiodPart
	// ids numbers proxies for a change evaluated on its own (tests); the store's are
	// shared by every change.
	ids *proxyIDs
	// evals counts evaluations; evaluatedAt and evaluatedSeq are the last one's time and
	// the store's evidence sequence then.
	evals        uint64
	evaluatedAt  time.Time
	evaluatedSeq uint64
}

// proxyKey names a proxy on one istiod.
type proxyKey struct{ istiod, proxy string }

// evaluate computes a change's propagation from the latest istiod views, on its own.
//
// nacks holds each proxy's latest streamed NACK (see latestNACKs): one since the change
// counts, unless a later read shows the proxy has ACKed since.
func (tc *trackedChange) evaluate(cfg PropagationConfig, views map[string]IstiodView, nacks map[proxyKey]NACKEvent, down []string, now time.Time) Propagation {
	if tc.ids == nil {
		tc.ids = &proxyIDs{}
	}
	return tc.evaluateIn(cfg, newEvalInput(views, nacks, down, tc.ids, nil), now)
}

// firstPushes counts the proxies whose first push the change holds from its last
// evaluation.
func (tc *trackedChange) firstPushes() int { return tc.firstCount }

// istiodPart is what one istiod's proxies said about a change at its last visit. A
// later evaluation takes it as it is while the istiod has not been read again and no
// NACK of its was streamed since: only what changed is visited again.
type istiodPart struct {
	ix      *viewIndex
	nackSeq uint64
	// eval is the evaluation that visited the istiod; first pushes it recorded are
	// valid until the next visit.
	eval                             uint32
	targeted, acked, nacked, pending int
	proxies, concurrent              []ProxyOutcome
	pushed, targetedHere, unsure     bool
	latest                           int64
	firstCount                       int
}

// evaluateIn computes a change's propagation from the views prepared in in.
func (tc *trackedChange) evaluateIn(cfg PropagationConfig, in *evalInput, now time.Time) Propagation {
	c := tc.change
	tc.evals++
	eval := uint32(tc.evals)
	p := Propagation{Change: c}
	pushedSince := false
	latest := int64(math.MinInt64)
	// Which outcomes the change can explain: blame.go.
	if tc.blame == nil {
		tc.blame = newBlame(c, tc.settled)
	}
	// Each istiod watches the API server itself, so one replica may have pushed while
	// another has not yet: the change has propagated only once every istiod settled.
	allSettled := true
	unsure := false
	parts := make(map[string]*istiodPart, len(in.names))
	tc.firstCount = 0
	for vi, name := range in.names {
		v := in.views[name]
		ix := in.index[vi]
		win := windowFor(c, v.ClockOffset, cfg.Slack)
		// Push versions have second resolution: a push in the second that contains
		// from may be the one.
		vt, hasVersion := pushVersionTime(v.PushVersion)
		if hasVersion && vt.Add(time.Second).After(win.from) {
			pushedSince = true
		}
		// A view read before the change says nothing about it. In a later one, a version
		// from a later second than the change proves this istiod has pushed since (its
		// version is global, even when no proxy of its was affected).
		fresh := v.ObservedAt.After(c.ObservedAt)
		settled := (fresh && (len(v.Proxies) == 0 || (hasVersion && vt.After(win.after)))) || now.Sub(c.ObservedAt) >= cfg.Grace
		part := tc.parts[name]
		reused := part != nil && part.ix == ix && part.nackSeq == in.nackSeq[name]
		if !reused {
			var lastEval uint32
			if part != nil {
				lastEval = part.eval
			}
			part = tc.visit(cfg, in, name, v, ix, win, eval, lastEval)
		}
		parts[name] = part
		p.Targeted += part.targeted
		p.ACKed += part.acked
		p.NACKed += part.nacked
		p.Pending += part.pending
		for _, o := range part.proxies {
			if o.State == PropagationStale {
				// Marked stale by the verdict that last listed it.
				o.State = PropagationPending
			}
			p.Proxies = append(p.Proxies, o)
		}
		p.Concurrent = append(p.Concurrent, part.concurrent...)
		pushedSince = pushedSince || part.pushed
		unsure = unsure || part.unsure
		latest = max(latest, part.latest)
		tc.firstCount += part.firstCount
		if !settled && !part.targetedHere {
			allSettled = false
		}
	}
	tc.parts = parts
	p.Unreachable = in.down
	p.Restricted = slices.Clone(in.restricted)
	age := now.Sub(c.ObservedAt)
	switch {
	case p.NACKed > 0:
		p.State = PropagationNACKed
	case len(in.down) > 0 || len(p.Restricted) > 0:
		p.State = PropagationUnknown
	case len(in.views) == 0 && age >= cfg.Grace:
		// No istiod has been read yet (meshdrift just started, or check has not read it):
		// nothing says the change was not pushed.
		p.State = PropagationUnknown
	case p.Targeted > 0 && p.Pending == 0 && allSettled && !(unsure && age < min(cfg.Grace, ambiguousHold)):
		p.State = PropagationPropagated
		if latest != math.MinInt64 {
			if lat := time.Duration(latest - nanos(c.ObservedAt)); lat > 0 {
				p.Latency = lat
			}
		}
	case age < cfg.Grace:
		p.State = PropagationPending
	case p.Pending > 0:
		p.State = PropagationStale
		for i := range p.Proxies {
			if p.Proxies[i].State == PropagationPending {
				p.Proxies[i].State = PropagationStale
			}
		}
	case pushedSince:
		// istiod pushed after the change but sent it to no proxy: no proxy receives this
		// config (scoping), which is nothing to wait for.
		p.State = PropagationPropagated
	default:
		p.State = PropagationNotPushed
	}
	// The parts keep their outcomes as slices of the result's (never appended to).
	np, nc := 0, 0
	for _, name := range in.names {
		part := parts[name]
		n, m := len(part.proxies), len(part.concurrent)
		part.proxies, part.concurrent = p.Proxies[np:np+n:np+n], p.Concurrent[nc:nc+m:nc+m]
		np, nc = np+n, nc+m
	}
	return p
}

// visit evaluates the change against the proxies of one istiod view. lastEval is the
// evaluation that visited the istiod before (0 if none): first pushes it recorded are
// the ones still valid.
func (tc *trackedChange) visit(cfg PropagationConfig, in *evalInput, name string, v IstiodView, ix *viewIndex, win pushWindow, eval, lastEval uint32) *istiodPart {
	c := tc.change
	b := tc.blame
	mask := typeMask(b.rule.types)
	// NACK events carry meshdrift's time; istiod's times are placed per istiod (clock.go).
	from := c.ObservedAt.Add(-cfg.Slack)
	part := &istiodPart{ix: ix, nackSeq: in.nackSeq[name], eval: eval, latest: math.MinInt64}
	fromN, atN, afterN, offN := nanos(win.from), nanos(win.at), nanos(win.after), int64(win.offset)
	if n := in.ids.len(); len(tc.firstAt) < n {
		tc.firstAt = append(tc.firstAt, make([]int64, n-len(tc.firstAt))...)
		tc.firstEval = append(tc.firstEval, make([]uint32, n-len(tc.firstEval))...)
	}
	// record counts a targeted proxy; first, last and lat are its own types' earliest
	// and latest sends since the window opened and earliest since the change as the
	// estimate places it (MaxInt64, MinInt64 and MaxInt64 when none).
	record := func(pos int, state PropagationState, errText string, first, last, lat int64) {
		px := &v.Proxies[pos]
		part.pushed, part.targetedHere = true, true
		part.targeted++
		id := ix.ids[pos]
		if first != math.MaxInt64 {
			part.unsure = part.unsure || last < atN || (win.unsure && win.hasMax && last < afterN)
			f := first
			if lat != math.MaxInt64 {
				f = lat
			}
			f -= offN // meshdrift's clock
			// An earlier first push is kept unless it came before the change as the
			// clock estimate now places it (an unrelated push, or a guess).
			if e := tc.firstEval[id]; e != 0 && (e == lastEval || e == eval) {
				if prev := tc.firstAt[id]; prev < f && prev >= atN-offN {
					f = prev
				}
			}
			if tc.firstEval[id] != eval {
				part.firstCount++
			}
			tc.firstAt[id], tc.firstEval[id] = f, eval
		}
		switch state {
		case PropagationPropagated:
			part.acked++
			if tc.firstEval[id] == eval && tc.firstAt[id] > part.latest {
				part.latest = tc.firstAt[id]
			}
		case PropagationNACKed:
			part.nacked++
			part.proxies = append(part.proxies, b.outcome(name, px.ID, state, errText))
		default:
			part.pending++
			part.proxies = append(part.proxies, ProxyOutcome{Proxy: px.ID, Istiod: name, State: PropagationPending})
		}
	}
	// full is the path of blame.go, for a proxy with an error or a streamed NACK.
	full := func(pos int) {
		px := v.Proxies[pos]
		var events []NACKEvent
		if n, ok := in.nacks[proxyKey{name, px.ID}]; ok && !n.At.Before(from) && !nackSuperseded(n, v, px) {
			events = []NACKEvent{n}
		}
		att := b.attribute(name, px, events, win.from)
		part.concurrent = append(part.concurrent, att.concurrent...)
		part.pushed = part.pushed || att.pushed
		own := att.own // the types the change can explain
		state, errText, first, targeted := proxyOutcome(own, win.from)
		if att.streamed != "" {
			state, errText, targeted = PropagationNACKed, att.streamed, true
		}
		if !targeted {
			return
		}
		firstN, lastN, latN := int64(math.MaxInt64), int64(math.MinInt64), int64(math.MaxInt64)
		if !first.IsZero() {
			firstN = nanos(first)
			lastN = nanos(lastPushSince(own, win.from))
			latN = nanos(latencyPush(own, win, first))
		}
		record(pos, state, errText, firstN, lastN, latN)
	}
	// The window normally opens no later than the change as estimated (see windowFor):
	// then no send between the two counts outside the kind's types.
	uniform := atN >= fromN
	var ms *maskedSends
	if uniform {
		ms = ix.sendsOf(mask)
	}
	// Reach depends on the proxy's namespace and class only: decided once per group.
	in.memo = slices.Grow(in.memo[:0], len(ix.groups))[:len(ix.groups)]
	clear(in.memo)
	visit := func(pos int) {
		if ix.errored[pos] || ix.event[pos] {
			full(pos)
			return
		}
		if ix.last[pos] < fromN {
			return
		}
		g := ix.group[pos]
		if in.memo[g] == 0 {
			in.memo[g] = 2
			if b.reachesGroup(ix.groups[g]) {
				in.memo[g] = 1
			}
		}
		if in.memo[g] != 1 {
			return
		}
		first, last, lat := int64(math.MaxInt64), int64(math.MinInt64), int64(math.MaxInt64)
		state := PropagationPropagated
		if uniform {
			// Usually every type of the kind was sent after the window opened, which
			// opens no later than the change as estimated: the summary says it all.
			if ms.last[pos] < fromN {
				return
			}
			if f := ms.first[pos]; f >= fromN && f >= atN {
				first, last, lat = f, ms.last[pos], f
				if ms.waiting[pos] {
					state = PropagationPending
				}
				goto counted
			}
		}
		for _, s := range ix.sends[ix.start[pos]:ix.start[pos+1]] {
			if s.sent < fromN {
				if s.sent >= atN {
					// The change as the estimate places it can come before the window
					// when the clock bounds disagree: such a send is kept, as
					// blame.attribute keeps every send before the window.
					lat = min(lat, s.sent)
				}
				continue
			}
			if mask&(1<<s.bit) == 0 {
				continue
			}
			first, last = min(first, s.sent), max(last, s.sent)
			if s.sent >= atN {
				lat = min(lat, s.sent)
			}
			if s.state != sendSynced {
				state = PropagationPending
			}
		}
	counted:
		if first == math.MaxInt64 {
			return
		}
		if b.settled && state == PropagationPending {
			// A baseline object settled long before meshdrift started: a proxy that has
			// not answered is stuck, which is its own problem (blame.attribute).
			part.concurrent = append(part.concurrent, b.outcome(name, v.Proxies[pos].ID, PropagationStale, ""))
			return
		}
		record(pos, state, "", first, last, lat)
	}
	if ix.sentSince(fromN) > 0 {
		// istiod sent some proxy something since: it had processed config after the
		// change, which is all "not pushed" asks.
		part.pushed = true
	}
	all, cand := in.candidates(ix, b, fromN)
	if all {
		for pos := range v.Proxies {
			visit(pos)
		}
	} else {
		for _, pos := range cand {
			visit(int(pos))
		}
	}
	return part
}

// proxyOutcome says whether px was sent config since from and how it answered.
func proxyOutcome(px ProxyStatus, from time.Time) (state PropagationState, errText string, firstPush time.Time, targeted bool) {
	state = PropagationPropagated
	for _, t := range px.Types {
		if t.SentAt.IsZero() || t.SentAt.Before(from) {
			continue
		}
		targeted = true
		if firstPush.IsZero() || t.SentAt.Before(firstPush) {
			firstPush = t.SentAt
		}
		switch t.State {
		case StateError:
			state, errText = PropagationNACKed, t.Error
		case StateSynced:
		default:
			if state != PropagationNACKed {
				state = PropagationPending
			}
		}
	}
	return state, errText, firstPush, targeted
}

// pushVersionTime reads the time part of an istiod push version "<RFC3339>/<counter>".
func pushVersionTime(v string) (time.Time, bool) {
	i := strings.LastIndexByte(v, '/')
	if i <= 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v[:i])
	return t, err == nil
}

// Rollup is the propagation of one GitOps app's revision: every mesh object it owns that
// changed, joined.
type Rollup struct {
	App       AppKey           `json:"app"`
	Revision  string           `json:"revision"`
	AppliedAt time.Time        `json:"appliedAt,omitzero"`
	State     PropagationState `json:"state"`
	Objects   int              `json:"objects"`
	Targeted  int              `json:"targeted"`
	ACKed     int              `json:"acked"`
	NACKed    int              `json:"nacked"`
	Stale     int              `json:"stale"`
	Pending   int              `json:"pending"`
	// Latency is the slowest propagated change's.
	Latency time.Duration  `json:"latency,omitempty"`
	Since   time.Time      `json:"since"`
	Proxies []ProxyOutcome `json:"proxies,omitempty"`
	// Concurrent are the NACKs seen while the app's changes propagated that none of them
	// can have caused, once each.
	Concurrent []ProxyOutcome `json:"concurrent,omitempty"`
}

// Summary is the one-line form: "flux/Kustomization/apps/payments revision abc applied
// 12:03:04: 47/50 proxies ACKed, 3 STALE".
func (r Rollup) Summary() string {
	var b strings.Builder
	b.WriteString(r.App.String())
	if r.Revision != "" {
		b.WriteString(" revision " + r.Revision)
	}
	if !r.AppliedAt.IsZero() {
		b.WriteString(" applied " + r.AppliedAt.UTC().Format(time.RFC3339))
	}
	b.WriteString(": " + string(r.State))
	b.WriteString(", " + strconv.Itoa(r.ACKed) + "/" + strconv.Itoa(r.Targeted) + " proxies ACKed")
	if r.NACKed > 0 {
		b.WriteString(", " + strconv.Itoa(r.NACKed) + " NACKed")
	}
	if r.Stale > 0 {
		b.WriteString(", " + strconv.Itoa(r.Stale) + " STALE")
	}
	if r.Pending > 0 {
		b.WriteString(", " + strconv.Itoa(r.Pending) + " pending")
	}
	return b.String()
}

// rollup joins the propagations of an app's objects.
func rollup(app App, props []Propagation) Rollup {
	r := Rollup{App: app.Key, Revision: app.AppliedRevision, AppliedAt: app.AppliedAt, State: PropagationPropagated}
	if r.Revision == "" {
		r.Revision = app.DesiredRevision
	}
	type agg struct{ nacked, stale, pending bool }
	proxies := map[string]*agg{}
	for _, p := range props {
		r.Objects++
		if p.State.severity() > r.State.severity() {
			r.State = p.State
		}
		if p.Since.After(r.Since) {
			r.Since = p.Since
		}
		if p.Latency > r.Latency {
			r.Latency = p.Latency
		}
		// Proxies that ACKed are not listed individually; count them per change.
		acked := p.ACKed
		for _, o := range p.Proxies {
			key := o.Istiod + "/" + o.Proxy
			a := proxies[key]
			if a == nil {
				a = &agg{}
				proxies[key] = a
			}
			switch o.State {
			case PropagationNACKed:
				a.nacked = true
			case PropagationStale:
				a.stale = true
			default:
				a.pending = true
			}
			r.Proxies = append(r.Proxies, o)
		}
		for _, o := range p.Concurrent {
			if !slices.ContainsFunc(r.Concurrent, func(x ProxyOutcome) bool {
				return x.Istiod == o.Istiod && x.Proxy == o.Proxy && x.State == o.State && x.Error == o.Error
			}) {
				r.Concurrent = append(r.Concurrent, o)
			}
		}
		if acked > r.ACKed {
			r.ACKed = acked
		}
		if p.Targeted > r.Targeted {
			r.Targeted = p.Targeted
		}
	}
	for _, a := range proxies {
		switch {
		case a.nacked:
			r.NACKed++
		case a.stale:
			r.Stale++
		case a.pending:
			r.Pending++
		}
	}
	if bad := r.NACKed + r.Stale + r.Pending; r.Targeted < r.ACKed+bad {
		r.Targeted = r.ACKed + bad
	}
	if r.ACKed > r.Targeted-(r.NACKed+r.Stale+r.Pending) {
		r.ACKed = r.Targeted - (r.NACKed + r.Stale + r.Pending)
	}
	return r
}
