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

// The object checks (MD0801, MD0802, MD07xx) over 5,000 mesh objects, each written by
// three managers, one of them by hand after the apply, and 2×1,000 proxies in 100
// labelled namespaces: Derive runs them on every evaluation.
func BenchmarkDeriveDrift(b *testing.B) {
	snap := reconcile.Snapshot{Sources: []reconcile.SourceStatus{{Name: "flux/Kustomization", Up: true}, {Name: "mesh", Up: true}}}
	app := reconcile.App{Key: fluxKey("apps"), State: reconcile.AppSynced, AppliedAt: t0.Add(-time.Hour)}
	for i := range 5000 {
		ref := vs(fmt.Sprintf("ns-%d", i%100), fmt.Sprintf("vs-%d", i))
		owner := fluxKey("apps")
		if i%10 == 0 {
			owner = reconcile.AppKey{} // orphans
		}
		snap.Objects = append(snap.Objects, reconcile.MeshChange{Ref: ref, GitOpsOwner: owner, SpecWrites: []reconcile.SpecWrite{
			{Manager: "kubectl-edit", Operation: "Update", At: t0, Fields: []string{"spec.http"}},
			{Manager: "kustomize-controller", Operation: "Apply", At: t0.Add(-time.Hour), Fields: []string{"spec.hosts", "spec.http"}},
			{Manager: "kubectl-patch", Operation: "Update", At: t0.Add(-2 * time.Hour), Fields: []string{"spec.tcp"}},
		}})
	}
	snap.Apps = []reconcile.App{app}
	snap.Pods, snap.RevisionTags = []reconcile.PodMeta{}, []reconcile.RevisionTag{}
	for n := range 100 {
		snap.Namespaces = append(snap.Namespaces, reconcile.Namespace{Name: fmt.Sprintf("ns-%d", n), Labels: map[string]string{"istio.io/rev": "canary"}})
	}
	for i := range 2 {
		v := reconcile.IstiodView{Istiod: fmt.Sprintf("istiod-%d", i), Revision: "default", ObservedAt: t0}
		for p := range 1000 {
			v.Proxies = append(v.Proxies, reconcile.ProxyStatus{ID: fmt.Sprintf("app-%d-%d.ns-%d", i, p, p%100), IstioVersion: "1.24.0", ControlPlaneVersion: "1.24.1"})
		}
		snap.Istiods = append(snap.Istiods, v)
	}
	want := 4500 + 500 + 100 + 2000 // out-of-band, orphans, namespaces, proxy versions
	if got := len(Derive(snap, nil, Config{}).Problems); got != want {
		b.Fatalf("%d problems, want %d", got, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		Derive(snap, nil, Config{})
	}
}

// The revision checks (MD0701, MD0703, MD0704) over 10,000 pods in 200 namespaces, half
// of them on a revision tag, 2×5,000 proxies, and a Linkerd control plane: Derive runs
// them on every evaluation.
func BenchmarkDeriveRevisions(b *testing.B) {
	snap := reconcile.Snapshot{RevisionTags: []reconcile.RevisionTag{{Tag: "prod", Revision: "1-24"}, {Tag: "default", Revision: "1-24"}}}
	for n := range 200 {
		rev := "1-24"
		if n%2 == 0 {
			rev = "prod"
		}
		snap.Namespaces = append(snap.Namespaces, reconcile.Namespace{Name: fmt.Sprintf("ns-%d", n), Labels: map[string]string{"istio.io/rev": rev}})
	}
	for i, rev := range []string{"1-24", "1-23"} {
		v := reconcile.IstiodView{Istiod: "istiod-" + rev, Revision: rev, ObservedAt: t0}
		for p := range 5000 {
			id := fmt.Sprintf("app-%d-%d", i, p)
			ns := fmt.Sprintf("ns-%d", p%200)
			v.Proxies = append(v.Proxies, reconcile.ProxyStatus{ID: id + "." + ns})
			snap.Pods = append(snap.Pods, reconcile.PodMeta{Namespace: ns, Name: id,
				Labels:      map[string]string{"app": "web", "linkerd.io/control-plane-ns": "linkerd"},
				Annotations: map[string]string{"linkerd.io/proxy-version": "stable-2.14.9"}})
		}
		snap.Istiods = append(snap.Istiods, v)
	}
	snap.Pods = append(snap.Pods, reconcile.PodMeta{Namespace: "linkerd", Name: "linkerd-destination-1",
		Labels:      map[string]string{"linkerd.io/control-plane-component": "destination"},
		Annotations: map[string]string{"linkerd.io/proxy-version": "stable-2.14.10"}})
	want := 200 + 1 + 200 // namespaces drifting, the left-behind revision, Linkerd per namespace
	if got := len(Derive(snap, nil, Config{}).Problems); got != want {
		b.Fatalf("%d problems, want %d", got, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		Derive(snap, nil, Config{})
	}
}
