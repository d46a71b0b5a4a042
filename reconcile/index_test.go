package reconcile

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

// refChange evaluates a change the way meshdrift did before evaluation was indexed
// (index.go): every proxy of every view, for every change. The indexed evaluation must
// reach the same outcomes.
type refChange struct {
	change    MeshChange
	settled   bool
	evals     uint64
	firstPush map[proxyKey]refFirstPush
}

type refFirstPush struct {
	at   time.Time
	eval uint64
}

func (tc *refChange) evaluate(cfg PropagationConfig, views map[string]IstiodView, nacks map[proxyKey]NACKEvent, down []string, now time.Time) Propagation {
	c := tc.change
	tc.evals++
	// NACK events carry meshdrift's time; istiod's times are placed per istiod (clock.go).
	from := c.ObservedAt.Add(-cfg.Slack)
	p := Propagation{Change: c}
	pushedSince := false
	var latest time.Time
	// Which outcomes the change can explain: blame.go.
	b := newBlame(c, tc.settled)
	names := make([]string, 0, len(views))
	for n := range views {
		names = append(names, n)
	}
	slices.Sort(names)
	// Each istiod watches the API server itself, so one replica may have pushed while
	// another has not yet: the change has propagated only once every istiod settled.
	allSettled := true
	unsure := false
	for _, name := range names {
		v := views[name]
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
		targetedHere := false
		for _, px := range v.Proxies {
			key := proxyKey{name, px.ID}
			var events []NACKEvent
			if n, ok := nacks[key]; ok && !n.At.Before(from) && !nackSuperseded(n, v, px) {
				events = []NACKEvent{n}
			}
			att := b.attribute(name, px, events, win.from)
			p.Concurrent = append(p.Concurrent, att.concurrent...)
			pushedSince = pushedSince || att.pushed
			own := att.own // the types the change can explain
			state, errText, first, targeted := proxyOutcome(own, win.from)
			if att.streamed != "" {
				state, errText, targeted = PropagationNACKed, att.streamed, true
			}
			if !targeted {
				continue
			}
			pushedSince, targetedHere = true, true
			p.Targeted++
			if !first.IsZero() {
				unsure = unsure || win.ambiguous(lastPushSince(own, win.from))
				first = latencyPush(own, win, first).Add(-win.offset) // meshdrift's clock
				if tc.firstPush == nil {
					tc.firstPush = map[proxyKey]refFirstPush{}
				}
				// An earlier first push is kept unless it came before the change as the
				// clock estimate now places it (an unrelated push, or a guess).
				if prev, ok := tc.firstPush[key]; ok && prev.at.Before(first) && !prev.at.Before(win.at.Add(-win.offset)) {
					first = prev.at
				}
				tc.firstPush[key] = refFirstPush{at: first, eval: tc.evals}
			}
			switch state {
			case PropagationPropagated:
				p.ACKed++
				if f := tc.firstPush[key].at; f.After(latest) {
					latest = f
				}
			case PropagationNACKed:
				p.NACKed++
				p.Proxies = append(p.Proxies, b.outcome(name, px.ID, state, errText))
			default:
				p.Pending++
				p.Proxies = append(p.Proxies, ProxyOutcome{Proxy: px.ID, Istiod: name, State: PropagationPending})
			}
		}
		if !settled && !targetedHere {
			allSettled = false
		}
	}
	// Proxies that disconnected (pods come and go): forget them. The one intended
	// difference: this was done only when more proxies had first pushes than were
	// targeted (to bound the map), so a proxy absent from one evaluation (gone, or its
	// istiod not in the views) sometimes kept its first push; now it never does.
	for k, f := range tc.firstPush {
		if f.eval != tc.evals {
			delete(tc.firstPush, k)
		}
	}
	p.Unreachable = down
	p.Restricted = restrictedIstiods(views)
	age := now.Sub(c.ObservedAt)
	switch {
	case p.NACKed > 0:
		p.State = PropagationNACKed
	case len(down) > 0 || len(p.Restricted) > 0:
		p.State = PropagationUnknown
	case len(views) == 0 && age >= cfg.Grace:
		// No istiod has been read yet (meshdrift just started, or check has not read it):
		// nothing says the change was not pushed.
		p.State = PropagationUnknown
	case p.Targeted > 0 && p.Pending == 0 && allSettled && !(unsure && age < min(cfg.Grace, ambiguousHold)):
		p.State = PropagationPropagated
		if lat := latest.Sub(c.ObservedAt); lat > 0 {
			p.Latency = lat
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
	return p
}

// testSeed is a new seed each run, logged; RECONCILE_TEST_SEED replays one.
func testSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RECONCILE_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (RECONCILE_TEST_SEED replays it)", seed)
	return seed
}

// randomChanges are changes of every scope and reach the rules know, and one they do not.
func randomChange(r *rand.Rand, at time.Time) MeshChange {
	nss := []string{"payments", "shop", "istio-system", "gw"}
	ns := nss[r.IntN(len(nss))]
	c := MeshChange{Generation: 1, ObservedAt: at, Baseline: r.IntN(5) == 0}
	reach := Reach{Known: r.IntN(4) != 0, Hosts: []string{"reviews", "*.example.com", "shop.shop.svc.cluster.local"}[r.IntN(3):], Ports: []uint32{80, 9080}[r.IntN(2):]}
	pick := func(xs ...[]string) []string { return xs[r.IntN(len(xs))] }
	switch r.IntN(11) {
	case 0:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "VirtualService"}
		reach.Gateways = pick(nil, []string{"mesh"}, []string{"gw/public"}, []string{"mesh", "public"})
		reach.ExportTo = pick(nil, []string{"."}, []string{"*"}, []string{"shop"}, []string{".", "gw"})
	case 1:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "DestinationRule"}
		reach.ExportTo = pick(nil, []string{"."}, []string{"~"}, []string{ns})
		reach.Selector = r.IntN(3) == 0
		reach.RouteHashing = r.IntN(2) == 0
	case 2:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "ServiceEntry"}
		reach.ExportTo = pick(nil, []string{"."})
	case 3:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "Gateway"}
		reach.AutoPassthrough = r.IntN(2) == 0
	case 4:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "Sidecar"}
	case 5:
		c.Ref = ObjectRef{Group: "security.istio.io", Kind: "AuthorizationPolicy"}
		reach.RootNamespace = ns == "istio-system"
	case 6:
		c.Ref = ObjectRef{Group: "extensions.istio.io", Kind: "WasmPlugin"}
	case 7:
		c.Ref = ObjectRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"}
		reach.Gateways = pick(nil, []string{"mesh"}, []string{"gw/public"}, []string{"mesh", "gw/public"})
		reach.ServiceParentNamespaces = pick(nil, []string{ns}, []string{"shop"})
	case 8:
		c.Ref = ObjectRef{Group: "gateway.networking.k8s.io", Kind: "Gateway"}
	case 9:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "EnvoyFilter"}
	default:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "WorkloadGroup"}
	}
	if r.IntN(8) == 0 {
		ns = ""
	}
	c.Ref.Namespace, c.Ref.Name = ns, "api"
	c.Reach = reach
	return c
}

var randomErrors = []string{
	"cluster outbound|80||reviews.payments.svc.cluster.local: bad",
	"route 9080 rejected",
	"listener 0.0.0.0_8080: duplicate",
	"envoy.filters.http.router oops",
	"payments.api: wasm failed",
	"duplicate virtual host shop.shop.svc.cluster.local:80",
	"something failed",
}

// randomMesh is a fleet of a few istiods, proxies moving between them, connecting and
// going, with every state, some errors and streamed NACKs, read at readAt.
type randomMesh struct {
	r       *rand.Rand
	at      time.Time // the change's time
	proxies map[string]*ProxyStatus
	home    map[string]string // proxy → istiod
}

func (m *randomMesh) step(readAt time.Time) (map[string]IstiodView, []NACKEvent, []string) {
	r := m.r
	istiods := []string{"istiod-a", "istiod-b", "istiod-c"}
	nss := []string{"payments", "shop", "istio-system", "gw"}
	types := []string{cds, lds, rds, eds, typeExtension, "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig"}
	// Some proxies connect, some go, some move istiod, some are pushed again.
	for range r.IntN(6) {
		id := fmt.Sprintf("pod-%d.%s", r.IntN(40), nss[r.IntN(len(nss))])
		px := &ProxyStatus{ID: id, ProxyType: []string{"sidecar", "router", "", "waypoint"}[r.IntN(4)]}
		for _, t := range types[:3+r.IntN(4)] {
			px.Types = append(px.Types, XDSStatus{TypeURL: t})
		}
		m.proxies[id], m.home[id] = px, istiods[r.IntN(len(istiods))]
	}
	for _, id := range slices.Sorted(maps.Keys(m.proxies)) {
		switch r.IntN(10) {
		case 0:
			delete(m.proxies, id)
			continue
		case 1:
			m.home[id] = istiods[r.IntN(len(istiods))]
		}
		px := m.proxies[id]
		for i := range px.Types {
			if r.IntN(3) != 0 {
				continue
			}
			t := &px.Types[i]
			// Around the change, exactly at it, before it, or never.
			switch r.IntN(6) {
			case 0:
				t.SentAt = time.Time{}
			case 1:
				t.SentAt = m.at
			default:
				t.SentAt = m.at.Add(time.Duration(r.IntN(8000)-2000) * time.Millisecond)
			}
			t.State, t.Error = []SyncState{StateSynced, StateSynced, StateStale, StateNotSent, StateError}[r.IntN(5)], ""
			if t.State == StateError {
				t.Error = randomErrors[r.IntN(len(randomErrors))]
			}
		}
	}
	views := map[string]IstiodView{}
	for _, name := range istiods[:1+r.IntN(3)] {
		v := IstiodView{Istiod: name, ObservedAt: readAt, ReadStartedAt: readAt.Add(-10 * time.Millisecond)}
		switch r.IntN(4) {
		case 0:
			v.ClockOffset = ClockOffset{Min: -200 * time.Millisecond, Max: 100 * time.Millisecond, HasMin: true, HasMax: true}
		case 1:
			v.ClockOffset = ClockOffset{Min: -2 * time.Second, Max: time.Second, HasMin: true, HasMax: true}
		case 2:
			v.ClockOffset = ClockOffset{Min: 300 * time.Millisecond, HasMin: true}
		}
		if r.IntN(3) == 0 {
			v.PushVersion = m.at.Add(time.Duration(r.IntN(4000)-2000)*time.Millisecond).UTC().Format(time.RFC3339) + "/7"
		}
		if r.IntN(10) == 0 {
			v.Restriction = &ViewRestriction{Reason: "partial", Visible: 1, Connected: 2}
		}
		views[name] = v
	}
	ids := make([]string, 0, len(m.proxies))
	for id := range m.proxies {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		v, ok := views[m.home[id]]
		if !ok {
			continue
		}
		px := *m.proxies[id]
		px.Types = slices.Clone(px.Types)
		v.Proxies = append(v.Proxies, px)
		views[m.home[id]] = v
	}
	var nacks []NACKEvent
	for range r.IntN(4) {
		id := ids[r.IntN(max(len(ids), 1))%max(len(ids), 1):]
		if len(id) == 0 {
			break
		}
		nacks = append(nacks, NACKEvent{Istiod: m.home[id[0]], Proxy: id[0], TypeURL: []string{"", rds, eds, cds}[r.IntN(4)],
			Error: randomErrors[r.IntN(len(randomErrors))], At: m.at.Add(time.Duration(r.IntN(6000)-2000) * time.Millisecond)})
	}
	var down []string
	if r.IntN(12) == 0 {
		down = []string{"istiod-b"}
	}
	return views, nacks, down
}

// The indexed evaluation reaches the reference's verdict, counts, proxies, concurrent
// NACKs and latency, read after read, as proxies connect after the change, move istiod,
// go, NACK types the kind does not write and views are restricted.
func TestIndexedEvaluationMatchesReference(t *testing.T) {
	seed := testSeed(t)
	cfg := PropagationConfig{}.withDefaults()
	r := rand.New(rand.NewPCG(seed, 2))
	for n := range 3000 {
		at := t0.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
		if r.IntN(3) == 0 {
			at = t0 // the API server's one-second time
		}
		c := randomChange(r, at)
		settled := r.IntN(4) == 0
		ref := &refChange{change: c, settled: settled}
		got := &trackedChange{change: c, settled: settled}
		m := &randomMesh{r: r, at: at, proxies: map[string]*ProxyStatus{}, home: map[string]string{}}
		now := at
		for step := range 5 {
			now = now.Add(time.Duration(r.IntN(12000)) * time.Millisecond)
			views, events, down := m.step(now.Add(-time.Duration(r.IntN(300)) * time.Millisecond))
			nacks := latestNACKs(events)
			want := ref.evaluate(cfg, views, nacks, down, now)
			have := got.evaluate(cfg, views, nacks, down, now)
			if !reflect.DeepEqual(have, want) {
				t.Fatalf("scenario %d step %d: change %+v\nindexed:   %+v\nreference: %+v", n, step, c, have, want)
			}
		}
	}
}

// Through the store, which keeps each view's index until that istiod is read again and
// skips a pending change when nothing is new: a verdict it keeps or makes is the one the
// reference makes of the same views, whichever istiods were read since.
func TestStoreEvaluationMatchesReference(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 4))
	for n := range 1500 {
		at := t0.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
		c := randomChange(r, at)
		c.Baseline = false
		s := NewStore(PropagationConfig{}, nil)
		s.ObserveMeshChange(c)
		tc := s.changes[c.Ref]
		ref := &refChange{change: c, settled: tc.settled}
		m := &randomMesh{r: r, at: at, proxies: map[string]*ProxyStatus{}, home: map[string]string{}}
		now := at
		for step := range 6 {
			now = now.Add(time.Duration(r.IntN(8000)) * time.Millisecond)
			views, events, down := m.step(now.Add(-time.Duration(r.IntN(300)) * time.Millisecond))
			// Read some istiods again, not all.
			for _, name := range slices.Sorted(maps.Keys(views)) {
				if r.IntN(3) != 0 || step == 0 {
					s.ObserveIstiod(views[name])
				}
			}
			for _, e := range events {
				s.ObserveNACK(e)
			}
			s.ReportSource(SourceStatus{Name: "istiod/istiod-b", Up: !slices.Contains(down, "istiod-b")})
			before, was := tc.evals, tc.result.State
			s.Evaluate(now)
			s.mu.RLock()
			views, nacks, downNow := maps.Clone(s.istiods), latestNACKs(s.nacks), s.downIstiodsLocked()
			s.mu.RUnlock()
			if tc.evals == before {
				// Skipped: the reference, evaluated now on a copy, agrees with what stands.
				cp := *ref
				cp.firstPush = maps.Clone(ref.firstPush)
				want := cp.evaluate(s.cfg, views, nacks, downNow, now)
				if got := tc.result; got.State == PropagationPending {
					got.Since = time.Time{}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("scenario %d step %d: kept\n%+v\nreference:\n%+v", n, step, got, want)
					}
				}
				continue
			}
			if final(was) {
				// The store keeps first pushes only while a change is in flight.
				ref.firstPush = nil
			}
			want := ref.evaluate(s.cfg, views, nacks, downNow, now)
			got := tc.result
			got.Since = time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("scenario %d step %d: change %+v\nstore:     %+v\nreference: %+v", n, step, c, got, want)
			}
		}
	}
}

// Events the index must not miss, through the store across reads.
func TestIndexedEvaluationSeesEveryEvent(t *testing.T) {
	at := t0.Add(123 * time.Millisecond)
	vs := MeshChange{Ref: vsRef, Generation: 1, ObservedAt: at, Reach: Reach{Known: true, Hosts: []string{"api"}}}
	view := func(name string, readAt time.Duration, proxies ...ProxyStatus) IstiodView {
		return IstiodView{Istiod: name, ObservedAt: at.Add(readAt), ReadStartedAt: at.Add(readAt - 10*time.Millisecond), Proxies: proxies}
	}
	sent := at.Add(200 * time.Millisecond)
	result := func(s *Store) Propagation {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.changes[vs.Ref].result
	}
	t.Run("proxy connecting after the change", func(t *testing.T) {
		s := NewStore(PropagationConfig{}, nil)
		s.ObserveMeshChange(vs)
		s.ObserveIstiod(view("istiod-a", time.Second, proxy("a.payments", sent, StateStale, "")))
		s.Evaluate(at.Add(time.Second))
		// a ACKs; b connects and is sent everything, not yet ACKed.
		s.ObserveIstiod(view("istiod-a", 2*time.Second, proxy("a.payments", sent, StateSynced, ""), proxy("b.shop", at.Add(1500*time.Millisecond), StateStale, "")))
		s.Evaluate(at.Add(2 * time.Second))
		if p := result(s); p.State != PropagationPending || p.Targeted != 2 || p.ACKed != 1 || len(p.Proxies) != 1 || p.Proxies[0].Proxy != "b.shop" {
			t.Fatalf("after b connected: %+v", p)
		}
		s.ObserveIstiod(view("istiod-a", 3*time.Second, proxy("a.payments", sent, StateSynced, ""), proxy("b.shop", at.Add(1500*time.Millisecond), StateSynced, "")))
		s.Evaluate(at.Add(3 * time.Second))
		if p := result(s); p.State != PropagationPropagated || p.Targeted != 2 || p.ACKed != 2 {
			t.Fatalf("after b ACKed: %+v", p)
		}
	})
	t.Run("proxy moving istiod", func(t *testing.T) {
		s := NewStore(PropagationConfig{}, nil)
		s.ObserveMeshChange(vs)
		s.ObserveIstiod(view("istiod-a", time.Second, proxy("a.payments", sent, StateStale, "")))
		s.ObserveIstiod(view("istiod-b", time.Second, proxy("b.payments", sent, StateSynced, "")))
		s.Evaluate(at.Add(time.Second))
		// a reconnects to istiod-b, which pushes it everything and gets a NACK; only
		// istiod-b is read again, and istiod-a's read says it left.
		s.ObserveIstiod(view("istiod-b", 2*time.Second, proxy("a.payments", at.Add(1800*time.Millisecond), StateError, "route api rejected"), proxy("b.payments", sent, StateSynced, "")))
		s.Evaluate(at.Add(2 * time.Second))
		p := result(s)
		if p.State != PropagationNACKed || len(p.Proxies) < 1 || p.Proxies[len(p.Proxies)-1].Istiod != "istiod-b" {
			t.Fatalf("after the move: %+v", p)
		}
		// A NACKed change is evaluated again after Recheck.
		s.ObserveIstiod(view("istiod-a", 2500*time.Millisecond))
		s.Evaluate(at.Add(13 * time.Second))
		if p := result(s); p.Targeted != 2 || p.NACKed != 1 || len(p.Proxies) != 1 || p.Proxies[0].Istiod != "istiod-b" {
			t.Fatalf("once istiod-a dropped it: %+v", p)
		}
	})
	t.Run("first push kept while another istiod is read", func(t *testing.T) {
		s := NewStore(PropagationConfig{}, nil)
		s.ObserveMeshChange(vs)
		s.ObserveIstiod(view("istiod-a", time.Second, proxy("a.payments", sent, StateStale, "")))
		s.ObserveIstiod(view("istiod-b", time.Second, proxy("b.payments", sent, StateSynced, "")))
		s.Evaluate(at.Add(time.Second))
		// Only istiod-b is read again: istiod-a's visit stands.
		s.ObserveIstiod(view("istiod-b", 1500*time.Millisecond, proxy("b.payments", sent, StateSynced, "")))
		s.Evaluate(at.Add(1500 * time.Millisecond))
		// istiod-a pushes a again (another change) and a ACKs: the change reached it with
		// the first push, 200 ms after it.
		s.ObserveIstiod(view("istiod-a", 6*time.Second, proxy("a.payments", at.Add(5*time.Second), StateSynced, "")))
		s.Evaluate(at.Add(6 * time.Second))
		if p := result(s); p.State != PropagationPropagated || p.Latency != 200*time.Millisecond {
			t.Fatalf("latency %v, want 200ms: %+v", p.Latency, p)
		}
	})
	t.Run("NACK of a type the kind does not write", func(t *testing.T) {
		s := NewStore(PropagationConfig{}, nil)
		s.ObserveMeshChange(vs)
		px := proxy("a.payments", sent, StateSynced, "")
		px.Types[3] = XDSStatus{TypeURL: eds, State: StateError, SentAt: sent, Error: "endpoints rejected"}
		s.ObserveIstiod(view("istiod-a", time.Second, px))
		s.ObserveNACK(NACKEvent{Istiod: "istiod-a", Proxy: "a.payments", TypeURL: eds, Error: "endpoints rejected", At: at.Add(300 * time.Millisecond)})
		s.Evaluate(at.Add(6 * time.Second))
		p := result(s)
		if p.State != PropagationPropagated || p.NACKed != 0 || len(p.Concurrent) != 2 {
			t.Fatalf("EDS NACK against a VirtualService: %+v", p)
		}
	})
	t.Run("restricted istiod", func(t *testing.T) {
		s := NewStore(PropagationConfig{}, nil)
		s.ObserveMeshChange(vs)
		a := view("istiod-a", time.Second, proxy("a.payments", sent, StateSynced, ""))
		a.Restriction = &ViewRestriction{Reason: "partial", Visible: 1, Connected: 3}
		s.ObserveIstiod(a)
		for _, now := range []time.Duration{time.Second, 6 * time.Second, time.Minute} {
			s.Evaluate(at.Add(now))
			if p := result(s); p.State != PropagationUnknown || !slices.Equal(p.Restricted, []string{"istiod-a"}) {
				t.Fatalf("at %v: %+v", now, p)
			}
		}
	})
}
