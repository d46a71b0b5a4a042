package findings

import (
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// The engine on what the real store makes of observations: a change NACKed by one proxy
// is one MD0201 about the change and its app, not also a proxy finding; the proxy's NACK
// after a fix resolves once the change propagates; an istiod going dark holds the finding.
func TestEngineOnStore(t *testing.T) {
	s := reconcile.NewStore(reconcile.PropagationConfig{Grace: 30 * time.Second}, nil)
	clk := &clock{t: t0}
	e := NewEngine(Config{ResolveAfter: time.Minute}, clk.now)
	ref := vs("shop", "reviews")
	s.ObserveApp(synced(fluxKey("apps"), "main@sha1:abc", ref))
	s.ReportSource(reconcile.SourceStatus{Name: "istiod/istiod-0", Up: true, Since: t0})
	s.ObserveMeshChange(reconcile.MeshChange{Ref: ref, Generation: 2, ObservedAt: t0, Manager: "kustomize-controller"})
	view := func(at time.Time, state reconcile.SyncState, errText string) reconcile.IstiodView {
		return reconcile.IstiodView{Istiod: "istiod-0", ObservedAt: at, Proxies: []reconcile.ProxyStatus{
			{ID: "reviews-v1.shop", Istiod: "istiod-0", Types: []reconcile.XDSStatus{{TypeURL: typeRDS, State: state, SentAt: at.Add(-time.Second), Error: errText}}},
			{ID: "ratings-v1.shop", Istiod: "istiod-0", Types: []reconcile.XDSStatus{{TypeURL: typeRDS, State: reconcile.StateSynced, SentAt: at.Add(-time.Second)}}},
		}}
	}
	pass := func(d time.Duration) []Transition {
		clk.advance(d)
		s.Evaluate(clk.t)
		return e.Evaluate(s.Snapshot())
	}

	s.ObserveIstiod(view(t0.Add(2*time.Second), reconcile.StateError, "invalid weight"))
	tr := pass(2 * time.Second)
	wantTransitions(t, tr, "MD0201 ->firing")
	if f := tr[0].Finding; f.Subject != (Subject{Object: ref, App: fluxKey("apps")}) || !f.StartsAt.Equal(t0) {
		t.Fatalf("finding %+v", f)
	}

	// istiod-0 goes dark: the store keeps the NACK it saw; nothing resolves.
	s.ReportSource(reconcile.SourceStatus{Name: "istiod/istiod-0", Up: false, Error: "refused", Since: clk.t})
	wantTransitions(t, pass(time.Minute), "MD0301 ->firing")
	for range 5 {
		wantTransitions(t, pass(time.Minute))
	}
	if got := codes(e.Active()); got != "[MD0201 MD0301]" {
		t.Fatalf("active while istiod is dark: %s", got)
	}

	// Back, and the fix (a new generation) propagates: the NACK resolves after resolveAfter.
	s.ReportSource(reconcile.SourceStatus{Name: "istiod/istiod-0", Up: true, Since: clk.t})
	fix := clk.t.Add(time.Second)
	s.ObserveMeshChange(reconcile.MeshChange{Ref: ref, Generation: 3, ObservedAt: fix, Manager: "kustomize-controller"})
	s.ObserveIstiod(view(fix.Add(2*time.Second), reconcile.StateSynced, ""))
	wantTransitions(t, pass(3*time.Second))
	wantTransitions(t, pass(time.Minute), "MD0201 firing->resolved", "MD0301 firing->resolved")
}
