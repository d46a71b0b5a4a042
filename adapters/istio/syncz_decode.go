package istio

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/meshdrift/meshdrift/reconcile"
)

// synczDecoder decodes the syncz answers of one istiod, read after read. Between two
// reads most proxies' ClientConfigs are byte for byte the same (istiod marshals them
// deterministically, protoconv.MessageToAny), so it keeps each proxy's bytes and status
// from the last read and decodes only what changed. While a change is in flight
// meshdrift reads every 250 ms, and decoding every proxy each time was a quarter of its
// CPU at fleet scale.
//
// It holds the last read only: proxies that vanish are dropped, and what decoded
// proxies are carved from is compacted once it holds much more than they use. It keeps
// the resources' Value bytes (not a copy): the response must not be changed after
// Decode. One decoder serves one stream and is not safe for concurrent use.
type synczDecoder struct {
	// cached is the last read's proxies, one per id, sorted by id; index finds them.
	cached    []synczCached
	index     map[string]int
	indexPeak int // the most entries index has held since it was made
	gen       uint64

	// Scratch, reused from read to read.
	spare []synczCached
	added []synczCached // proxies new in this read, in istiod's order
	order []synczOrder  // added's positions, sorted by id
	kept  int           // cached proxies seen in this read
	dups  []synczCached // second and later entries of one id in one read
	wire  wireClientConfig
	in    synczInterner

	arena *synczArena // this read's, made when the first proxy is decoded

	// The control plane identifier last parsed, which rarely changes.
	cpIdentifier string
	cp           controlPlaneIdentifier

	// compactSlack is how much arenas may hold beyond twice what is used; zero means
	// synczCompactSlack. Tests set it small.
	compactSlack int
}

// synczOrder is a position in added with its id, to sort without touching the proxies.
type synczOrder struct {
	id  string
	pos int
}

// synczCached is one proxy as last read.
type synczCached struct {
	raw    []byte                // the ClientConfig it was decoded from
	status reconcile.ProxyStatus // without Istiod and ControlPlaneVersion, which belong to the read
	arena  *synczArena
	seen   uint64 // the read that last saw it
}

// Decode parses istiod's answer to an xDS request for SynczTypeURL, as ParseSynczXDS
// does. On an error it forgets the last read, and the next read decodes every proxy.
func (d *synczDecoder) Decode(resp *discoveryv3.DiscoveryResponse, istiod string) ([]reconcile.ProxyStatus, error) {
	proxies, err := d.decode(resp, istiod)
	if err != nil {
		d.reset()
		return nil, err
	}
	return proxies, nil
}

func (d *synczDecoder) reset() {
	*d = synczDecoder{compactSlack: d.compactSlack}
}

func (d *synczDecoder) decode(resp *discoveryv3.DiscoveryResponse, istiod string) ([]reconcile.ProxyStatus, error) {
	if resp == nil {
		return nil, errors.New("syncz response is nil")
	}
	if got := resp.GetTypeUrl(); got != SynczTypeURL {
		return nil, fmt.Errorf("response type url %q, want %q", got, SynczTypeURL)
	}
	if id := resp.GetControlPlane().GetIdentifier(); id != d.cpIdentifier || d.index == nil {
		cp, err := parseControlPlane(id)
		if err != nil {
			return nil, err
		}
		d.cpIdentifier, d.cp = id, cp
	}
	if d.cp.ID != "" {
		istiod = d.cp.ID
	}
	if d.index == nil {
		d.index = map[string]int{}
	}
	if d.in.m == nil {
		d.in.m = map[string]string{}
	}
	// The interner is emptied every read, so that it holds no string beyond the proxies
	// that use it.
	clear(d.in.m)
	d.in.recent = [len(d.in.recent)]string{}
	d.gen++
	d.arena = nil
	d.added, d.dups = d.added[:0], d.dups[:0]
	d.kept = 0
	if len(d.cached) == 0 {
		d.added = slices.Grow(d.added, len(resp.GetResources()))
	}

	for i, res := range resp.GetResources() {
		if got := res.GetTypeUrl(); got != clientConfigTypeURL {
			return nil, fmt.Errorf("syncz resource %d: type url %q, want %q", i, got, clientConfigTypeURL)
		}
		raw := res.GetValue()
		if d.reuse(raw) {
			continue
		}
		status, err := d.decodeProxy(i, raw)
		if err != nil {
			return nil, err
		}
		d.store(raw, status)
	}

	out := d.collect(istiod)
	d.sweepArenas()
	return out, nil
}

// reuse marks the proxy of raw seen in this read if the last read had the same bytes.
func (d *synczDecoder) reuse(raw []byte) bool {
	if len(d.cached) == 0 {
		return false // the first read, or the first after an error
	}
	id := likelyNodeID(raw)
	if len(id) == 0 {
		return false
	}
	pos, found := d.index[string(id)]
	if !found {
		return false
	}
	c := &d.cached[pos]
	if c.seen == d.gen || !bytes.Equal(c.raw, raw) {
		return false
	}
	c.seen = d.gen
	d.kept++
	return true
}

// decodeProxy decodes resource i; its errors name the proxy when its id is readable.
func (d *synczDecoder) decodeProxy(i int, raw []byte) (reconcile.ProxyStatus, error) {
	if err := d.wire.read(raw); err != nil {
		if id, _ := synczNodeID(raw); len(id) > 0 {
			return reconcile.ProxyStatus{}, fmt.Errorf("syncz resource %d: proxy %q: decode client config: %w", i, id, err)
		}
		return reconcile.ProxyStatus{}, fmt.Errorf("syncz resource %d: decode client config: %w", i, err)
	}
	if d.arena == nil {
		d.arena = &synczArena{}
	}
	p, err := d.wire.proxyStatus(&d.in, d.arena)
	if err != nil {
		return reconcile.ProxyStatus{}, fmt.Errorf("syncz resource %d: %w", i, err)
	}
	return p, nil
}

// store records a proxy decoded in this read. istiod lists a proxy twice while it
// reconnects: the first entry is the one kept for the next read, the others (dups) are
// output after it.
func (d *synczDecoder) store(raw []byte, p reconcile.ProxyStatus) {
	c := synczCached{raw: raw, status: p, arena: d.arena, seen: d.gen}
	pos, found := d.index[p.ID]
	switch {
	case !found:
		// A new id twice in one read is found once added is sorted.
		d.added = append(d.added, c)
	case d.cached[pos].seen == d.gen:
		d.dups = append(d.dups, c)
	default:
		d.cached[pos] = c
		d.kept++
	}
}

// collect makes the read's output, sorted by id (each id's entries in istiod's order, as
// the stable sort of ParseSynczXDS leaves them), and the cache for the next read.
func (d *synczDecoder) collect(istiod string) []reconcile.ProxyStatus {
	if len(d.added) == 0 && len(d.dups) == 0 && d.kept == len(d.cached) {
		// The same proxies as last time (the usual read): the cache stays as it is.
		out := make([]reconcile.ProxyStatus, len(d.cached))
		for i := range d.cached {
			out[i] = d.cached[i].status
			out[i].Istiod, out[i].ControlPlaneVersion = istiod, d.cp.Info.Version
		}
		return out
	}
	// Sort positions rather than the proxies themselves, which are large; ties go by
	// position, which is istiod's order.
	d.order = d.order[:0]
	for i := range d.added {
		d.order = append(d.order, synczOrder{d.added[i].status.ID, i})
	}
	slices.SortFunc(d.order, func(a, b synczOrder) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return cmp.Compare(a.pos, b.pos)
	})
	added := d.order[:0]
	for _, o := range d.order {
		if len(added) > 0 && o.id == added[len(added)-1].id {
			d.dups = append(d.dups, d.added[o.pos])
			continue
		}
		added = append(added, o)
	}
	slices.SortStableFunc(d.dups, func(a, b synczCached) int { return strings.Compare(a.status.ID, b.status.ID) })
	next := slices.Grow(d.spare[:0], len(d.cached)+len(added))
	out := make([]reconcile.ProxyStatus, 0, len(d.cached)+len(d.added)+len(d.dups))
	dups := d.dups
	emit := func(c *synczCached) {
		next = append(next, *c)
		p := c.status
		p.Istiod, p.ControlPlaneVersion = istiod, d.cp.Info.Version
		out = append(out, p)
		for len(dups) > 0 && dups[0].status.ID == c.status.ID {
			p := dups[0].status
			p.Istiod, p.ControlPlaneVersion = istiod, d.cp.Info.Version
			out = append(out, p)
			dups = dups[1:]
		}
	}
	changed := len(added) > 0
	for i := range d.cached {
		c := &d.cached[i]
		if c.seen != d.gen {
			changed = true
			continue
		}
		for len(added) > 0 && added[0].id < c.status.ID {
			emit(&d.added[added[0].pos])
			added = added[1:]
		}
		emit(c)
	}
	for _, o := range added {
		emit(&d.added[o.pos])
	}
	// Drop the references the old cache and the scratch hold, for the collector.
	clear(d.cached)
	clear(d.added)
	clear(d.dups)
	d.spare, d.cached = d.cached[:0], next
	clear(d.order)
	// Scratch sized for a fleet that has since shrunk goes too.
	if cap(d.spare) > 4*len(next)+64 {
		d.spare, d.added, d.order = nil, nil, nil
	}
	if changed {
		d.reindex()
	}
	return out
}

// reindex rebuilds index for the new cache, with a new map once the fleet has shrunk
// to a quarter of what the map was sized for (a map never gives back its buckets).
func (d *synczDecoder) reindex() {
	if len(d.cached)*4 < d.indexPeak {
		d.index, d.indexPeak = make(map[string]int, len(d.cached)), 0
	} else {
		clear(d.index)
	}
	for i := range d.cached {
		d.index[d.cached[i].status.ID] = i
	}
	d.indexPeak = max(d.indexPeak, len(d.cached))
}

// sweepArenas bounds what the cache holds on to. A proxy decoded in a read points into
// that read's arena, which stays whole while any of its proxies is unchanged; when the
// arenas the cache points into hold more than twice what its proxies use, those
// proxies' ids and types move into one new arena and the old ones can go.
func (d *synczDecoder) sweepArenas() {
	pinned, live := 0, 0
	for i := range d.cached {
		c := &d.cached[i]
		live += len(c.status.ID) + cap(c.status.Types)*xdsStatusSize
		if c.arena.swept != d.gen {
			c.arena.swept = d.gen
			pinned += c.arena.size
		}
	}
	slack := d.compactSlack
	if slack == 0 {
		slack = synczCompactSlack
	}
	if pinned <= 2*live+slack {
		return
	}
	a := &synczArena{swept: d.gen}
	var idBytes, types int
	for i := range d.cached {
		idBytes += len(d.cached[i].status.ID)
		types += len(d.cached[i].status.Types)
	}
	a.ids.Grow(idBytes)
	a.types = make([]reconcile.XDSStatus, 0, types)
	a.size = idBytes + types*xdsStatusSize
	for i := range d.cached {
		c := &d.cached[i]
		c.status.ID = a.idString(c.status.ID)
		c.status.Types = append(a.typeSlice(len(c.status.Types)), c.status.Types...)
		c.arena = a
	}
	d.reindex()
}

// synczCompactSlack keeps small fleets from compacting at all.
const synczCompactSlack = 4 << 20
