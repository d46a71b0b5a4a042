package reconcile

import (
	"fmt"
	"testing"
	"time"
)

func TestStoreKeepsLatestAndForgets(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	k := AppKey{Source: SourceFlux, Kind: "Kustomization", Namespace: "apps", Name: "payments"}
	s.ObserveApp(App{Key: k, DesiredRevision: "main@sha1:1", State: AppProgressing})
	s.ObserveApp(App{Key: k, DesiredRevision: "main@sha1:2", State: AppSynced})
	got, ok := s.App(k)
	if !ok || got.DesiredRevision != "main@sha1:2" || got.State != AppSynced {
		t.Fatalf("App = %+v, %v", got, ok)
	}
	select {
	case <-s.Changed():
	default:
		t.Fatal("no change signalled")
	}
	s.ForgetApp(k)
	if _, ok := s.App(k); ok {
		t.Fatal("forgotten app still present")
	}
}

// A snapshot is the store as it was: later writes never show in it. Parts nothing wrote
// to since are shared with the previous snapshot, and Versions tell which moved.
func TestStoreSnapshotSortedAndStable(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	b := AppKey{Source: SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: "b"}
	a := AppKey{Source: SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: "a"}
	s.ObserveApp(App{Key: b, Objects: []OwnedObject{{Ref: ObjectRef{Kind: "ConfigMap", Name: "x"}}}})
	s.ObserveApp(App{Key: a})
	snap := s.Snapshot()
	if len(snap.Apps) != 2 || snap.Apps[0].Key != a || snap.Apps[1].Key != b {
		t.Fatalf("snapshot order = %+v", snap.Apps)
	}
	s.ObserveApp(App{Key: b, Objects: []OwnedObject{{Ref: ObjectRef{Kind: "ConfigMap", Name: "y"}}}})
	s.ObserveMeshChange(MeshChange{Ref: ObjectRef{Kind: "VirtualService", Name: "v"}, Generation: 1, ObservedAt: t0})
	if snap.Apps[1].Objects[0].Ref.Name != "x" || len(snap.Changes) != 0 {
		t.Fatalf("a later write shows in an earlier snapshot: %+v, %d changes", snap.Apps[1], len(snap.Changes))
	}
	next := s.Snapshot()
	if next.Apps[1].Objects[0].Ref.Name != "y" || len(next.Changes) != 1 {
		t.Fatalf("new snapshot = %+v, %d changes", next.Apps[1], len(next.Changes))
	}
	if next.Versions.Apps == snap.Versions.Apps || next.Versions.Changes == snap.Versions.Changes || next.Versions.Sources != snap.Versions.Sources {
		t.Fatalf("versions %+v then %+v: apps and changes moved, sources did not", *snap.Versions, *next.Versions)
	}
	again := s.Snapshot()
	if *again.Versions != *next.Versions || &again.Apps[0] != &next.Apps[0] || &again.Changes[0] != &next.Changes[0] {
		t.Fatal("an unchanged store built its snapshot again")
	}
}

// Reads of an idle istiod differ only in their times: they keep the snapshot's istiod
// version, so findings are not derived again; a proxy's state moving bumps it.
func TestStoreIstiodContentVersion(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	view := func(at time.Time, st SyncState) IstiodView {
		return IstiodView{Istiod: "istiod-0", ObservedAt: at, ReadStartedAt: at.Add(-time.Millisecond), Proxies: []ProxyStatus{{
			ID: "p.ns", Types: []XDSStatus{{TypeURL: "cds", State: st, SentAt: t0}},
		}}}
	}
	s.ObserveIstiod(view(t0.Add(time.Second), StateSynced))
	v1 := *s.Snapshot().Versions
	s.ObserveIstiod(view(t0.Add(11*time.Second), StateSynced))
	snap := s.Snapshot()
	if *snap.Versions != v1 {
		t.Fatalf("an identical read moved the versions: %+v then %+v", v1, *snap.Versions)
	}
	if !snap.Istiods[0].ObservedAt.Equal(t0.Add(11 * time.Second)) {
		t.Fatalf("snapshot holds the older read: %s", snap.Istiods[0].ObservedAt)
	}
	s.ObserveIstiod(view(t0.Add(21*time.Second), StateStale))
	if v := *s.Snapshot().Versions; v.Istiods == v1.Istiods {
		t.Fatal("a proxy going STALE kept the istiod version")
	}
}

func TestStoreSourceStatusDedupes(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	s.ReportSource(SourceStatus{Name: "istiod/istiod-0", Up: false, Error: "connection refused", Since: time.Now()})
	<-s.Changed()
	s.ReportSource(SourceStatus{Name: "istiod/istiod-0", Up: false, Error: "connection refused", Since: time.Now()})
	select {
	case <-s.Changed():
		t.Fatal("an unchanged source status signalled a change")
	default:
	}
	if snap := s.Snapshot(); len(snap.Sources) != 1 || snap.Sources[0].Up {
		t.Fatalf("sources = %+v", snap.Sources)
	}
}

func TestShortType(t *testing.T) {
	for url, want := range map[string]string{
		"type.googleapis.com/envoy.config.route.v3.RouteConfiguration":         "RDS",
		"type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig":                  "PCDS",
		"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": "Secret",
		"": "",
	} {
		if got := ShortType(url); got != want {
			t.Errorf("ShortType(%q) = %q, want %q", url, got, want)
		}
	}
}

// 10,000 changes across 3,000 objects (new generations, deletions), proxies coming and
// going, NACKs streaming: nothing the store holds grows past its caps.
func TestStoreStaysBounded(t *testing.T) {
	const maxChanges, connected = 1000, 20
	s := NewStore(PropagationConfig{MaxChanges: maxChanges}, nil)
	gen := map[string]int64{}
	now := t0.Add(13 * time.Millisecond)
	var peak storeSize
	for i := range 10000 {
		now = now.Add(100 * time.Millisecond)
		ref := vsRef
		ref.Name = fmt.Sprintf("vs-%d", (i*7919)%3000)
		gen[ref.Name]++
		s.ObserveMeshChange(MeshChange{Ref: ref, Generation: gen[ref.Name], ObservedAt: now, Deleted: i%97 == 0})
		// Proxy churn: one pod goes and one comes every round; each is pushed 20 ms after
		// the change and a tenth never answer.
		v := IstiodView{Istiod: fmt.Sprintf("istiod-%d", i%2), ReadStartedAt: now.Add(30 * time.Millisecond), ObservedAt: now.Add(40 * time.Millisecond)}
		for j := i; j < i+connected; j++ {
			st := StateSynced
			if j%10 == 0 {
				st = StateStale
			}
			v.Proxies = append(v.Proxies, proxy(fmt.Sprintf("pod-%d.ns", j), now.Add(20*time.Millisecond), st, ""))
		}
		s.ObserveIstiod(v)
		s.ObserveNACK(NACKEvent{Istiod: v.Istiod, Proxy: fmt.Sprintf("pod-%d.ns", i), TypeURL: rds, Error: "bad", At: now.Add(25 * time.Millisecond)})
		if i%100 == 0 {
			s.Evaluate(now.Add(50 * time.Millisecond))
		}
		n := s.size()
		peak.changes = max(peak.changes, n.changes)
		peak.maxFirstPush = max(peak.maxFirstPush, n.maxFirstPush)
		peak.firstPush = max(peak.firstPush, n.firstPush)
		peak.firstPushCap = max(peak.firstPushCap, n.firstPushCap)
		peak.proxyIDs = max(peak.proxyIDs, n.proxyIDs)
		peak.nacks = max(peak.nacks, n.nacks)
		peak.istiods = max(peak.istiods, n.istiods)
	}
	t.Logf("peak: %+v", peak)
	if peak.changes > maxChanges {
		t.Errorf("held %d changes, cap %d", peak.changes, maxChanges)
	}
	// Each change keeps first pushes only of proxies connected when it was last evaluated.
	if peak.maxFirstPush > 2*connected {
		t.Errorf("a change held %d first pushes; at most %d proxies are ever connected", peak.maxFirstPush, 2*connected)
	}
	// Proxy numbers (and the slices of first pushes indexed by them) are given again once
	// pods that left outnumber those connected.
	if peak.proxyIDs > 4*connected+64+2*connected || peak.firstPushCap > 4*connected+64+2*connected {
		t.Errorf("numbered %d proxies, a change held room for %d; %d connected of 10,000 seen", peak.proxyIDs, peak.firstPushCap, 2*connected)
	}
	if peak.nacks > maxNACKEvents {
		t.Errorf("held %d NACK events, cap %d", peak.nacks, maxNACKEvents)
	}
	if peak.istiods > 4 {
		t.Errorf("held %d istiod views and clocks for 2 istiods", peak.istiods)
	}
	// Propagated changes expire after Retention and deletions whatever their state.
	s.Evaluate(now.Add(11 * time.Minute))
	for _, p := range s.Snapshot().Changes {
		if p.State == PropagationPropagated || p.Change.Deleted {
			t.Fatalf("kept past retention: %+v", p.Change)
		}
	}
}

// Beyond the cap the oldest propagated changes go first, pending ones last.
func TestStoreEvictsOldestResolvedFirst(t *testing.T) {
	s := NewStore(PropagationConfig{MaxChanges: 10}, nil)
	ref := func(i int) ObjectRef { r := vsRef; r.Name = fmt.Sprintf("vs-%d", i); return r }
	o := t0.Add(time.Millisecond)
	for i := range 5 {
		s.ObserveMeshChange(MeshChange{Ref: ref(i), Generation: 1, ObservedAt: o.Add(time.Duration(i) * time.Second)})
	}
	s.ObserveIstiod(IstiodView{Istiod: "istiod-a", ObservedAt: o.Add(10 * time.Second),
		Proxies: []ProxyStatus{proxy("a.ns", o.Add(5*time.Second), StateSynced, "")}})
	s.Evaluate(o.Add(10 * time.Second))
	// Five pending changes after the push.
	for i := 5; i < 11; i++ {
		s.ObserveMeshChange(MeshChange{Ref: ref(i), Generation: 1, ObservedAt: o.Add(time.Duration(i+6) * time.Second)})
	}
	held := map[string]PropagationState{}
	for _, p := range s.Snapshot().Changes {
		held[p.Change.Ref.Name] = p.State
	}
	if len(held) != 9 {
		t.Fatalf("held %d changes, want 9 (nine tenths of the cap): %v", len(held), held)
	}
	if _, ok := held["vs-0"]; ok {
		t.Errorf("the oldest propagated change was kept: %v", held)
	}
	if _, ok := held["vs-1"]; ok {
		t.Errorf("the second oldest propagated change was kept: %v", held)
	}
	for i := 5; i < 11; i++ {
		if _, ok := held[fmt.Sprintf("vs-%d", i)]; !ok {
			t.Errorf("pending vs-%d evicted before propagated changes: %v", i, held)
		}
	}
}

// A newer generation supersedes the change held, an older one arriving late is ignored,
// and a deletion drops the object's change.
func TestStoreSupersedesAndDrops(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	o := t0.Add(time.Millisecond)
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 3, ObservedAt: o})
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 4, ObservedAt: o.Add(time.Second)})
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 2, ObservedAt: o.Add(2 * time.Second)})
	if c := s.Snapshot().Changes; len(c) != 1 || c[0].Change.Generation != 4 {
		t.Fatalf("changes = %+v, want generation 4 only", c)
	}
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 4, ObservedAt: o.Add(3 * time.Second), Deleted: true})
	if c := s.Snapshot().Changes; len(c) != 1 || !c[0].Change.Deleted {
		t.Fatalf("changes = %+v, want the deletion only", c)
	}
}

// Only a change pending within its grace is in flight; NACKed, Stale and NotPushed ones
// wait for istiod and are not, though they stay unresolved.
func TestStoreInFlightOnlyWhilePending(t *testing.T) {
	o := t0.Add(437 * time.Millisecond)
	s := NewStore(PropagationConfig{Grace: 30 * time.Second}, nil)
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 1, ObservedAt: o})
	s.ObserveIstiod(IstiodView{Istiod: "istiod-a", ObservedAt: o.Add(200 * time.Millisecond),
		Proxies: []ProxyStatus{proxy("a.ns", o.Add(100*time.Millisecond), StateStale, "")}})
	if inFlight, started := s.InFlight(); inFlight || started {
		t.Fatal("in flight before any evaluation")
	}
	check := func(at time.Duration, wantInFlight, wantStarted bool) {
		t.Helper()
		if !s.Evaluate(o.Add(at)) {
			t.Fatalf("at +%s: resolved", at)
		}
		if inFlight, started := s.InFlight(); inFlight != wantInFlight || started != wantStarted {
			t.Fatalf("at +%s (%s): in flight %v, started %v; want %v, %v", at, s.Snapshot().Changes[0].State, inFlight, started, wantInFlight, wantStarted)
		}
	}
	check(time.Second, true, true)      // new and pending within its grace
	check(2*time.Second, true, false)   // pending, evaluated before
	check(31*time.Second, false, false) // stale
	nacked := vsRef
	nacked.Name = "nacked"
	s.ObserveMeshChange(MeshChange{Ref: nacked, Generation: 1, ObservedAt: o.Add(40 * time.Second)})
	s.ObserveIstiod(IstiodView{Istiod: "istiod-a", ObservedAt: o.Add(41 * time.Second),
		Proxies: []ProxyStatus{proxy("a.ns", o.Add(40100*time.Millisecond), StateError, "bad")}})
	check(41*time.Second, false, false) // NACKed at once
}
