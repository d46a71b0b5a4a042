package findings

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// benchSnapshot: istiods × proxies each, every proxy NACKing RDS, and changes each NACKed
// by every proxy (the worst case: each change lists all of them).
func benchSnapshot(istiods, proxies, changes int) reconcile.Snapshot {
	var snap reconcile.Snapshot
	var outcomes []reconcile.ProxyOutcome
	for i := range istiods {
		v := reconcile.IstiodView{Istiod: fmt.Sprintf("istiod-%d", i), ObservedAt: t0}
		for p := range proxies {
			id := fmt.Sprintf("app-%d-%d.shop", i, p)
			v.Proxies = append(v.Proxies, errProxy(id, t0, `route "reviews": invalid weight`))
			outcomes = append(outcomes, reconcile.ProxyOutcome{Proxy: id, Istiod: v.Istiod, State: reconcile.PropagationNACKed, Error: "invalid weight"})
		}
		snap.Istiods = append(snap.Istiods, v)
	}
	app := reconcile.App{Key: fluxKey("apps"), State: reconcile.AppSynced, AppliedRevision: "main@sha1:abc"}
	for c := range changes {
		ref := vs("shop", fmt.Sprintf("vs-%d", c))
		app.Objects = append(app.Objects, reconcile.OwnedObject{Ref: ref})
		snap.Changes = append(snap.Changes, reconcile.Propagation{
			Change: reconcile.MeshChange{Ref: ref, ObservedAt: t0.Add(-time.Minute)}, State: reconcile.PropagationNACKed,
			Targeted: len(outcomes), NACKed: len(outcomes), Proxies: outcomes,
		})
	}
	snap.Apps = []reconcile.App{app}
	return snap
}

// One evaluation pass (Derive and the lifecycle) over 2×1,000 proxies and 200 NACKed
// changes, as the evaluator runs it on every store change.
func BenchmarkEvaluate(b *testing.B) {
	snap := benchSnapshot(2, 1000, 200)
	e := NewEngine(Config{}, func() time.Time { return t0 })
	if tr := e.Evaluate(snap); len(tr) != 200 {
		b.Fatalf("%d transitions, want 200 (one per change; no proxy finding)", len(tr))
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(snap)
	}
}
