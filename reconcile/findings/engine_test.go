package findings

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// clock is a fake clock the tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestEngine(cfg Config) (*Engine, *clock) {
	c := &clock{t: t0}
	return NewEngine(cfg, c.now), c
}

// wantTransitions checks a pass's transitions as "code from->to".
func wantTransitions(t *testing.T, got []Transition, want ...string) {
	t.Helper()
	var g []string
	for _, tr := range got {
		g = append(g, fmt.Sprintf("%s %s->%s", tr.Finding.Code, tr.From, tr.Finding.State))
	}
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("transitions %v, want %v", g, want)
	}
}

func outOfSync(name string) reconcile.Snapshot {
	return reconcile.Snapshot{Apps: []reconcile.App{{Key: argoKey(name), State: reconcile.AppOutOfSync, Reason: "OutOfSync"}}}
}

func nackSnap(at time.Time) reconcile.Snapshot {
	return reconcile.Snapshot{
		Apps:    []reconcile.App{synced(fluxKey("apps"), "main@sha1:abc", vs("shop", "reviews"))},
		Changes: []reconcile.Propagation{nacked(vs("shop", "reviews"), at, 10, "reviews-v1-a.shop")},
	}
}

func TestForDurationWithoutEvidenceTime(t *testing.T) {
	e, c := newTestEngine(Config{})
	wantTransitions(t, e.Evaluate(outOfSync("shop")), "MD0103 ->pending")
	c.advance(9 * time.Minute)
	wantTransitions(t, e.Evaluate(outOfSync("shop")))
	if f := e.Active()[0]; f.State != StatePending || !f.StartsAt.Equal(t0) || !f.LastSeen.Equal(c.t) {
		t.Fatalf("after 9m: %+v", f)
	}
	c.advance(time.Minute)
	wantTransitions(t, e.Evaluate(outOfSync("shop")), "MD0103 pending->firing")
}

func TestForMeasuredFromEvidence(t *testing.T) {
	// MD0204 waits 2m from the change's observation, not from when meshdrift first saw it.
	snap := func() reconcile.Snapshot {
		return reconcile.Snapshot{
			Sources: []reconcile.SourceStatus{{Name: "istiod/istiod-1", Error: "refused", Since: t0}},
			Changes: []reconcile.Propagation{{Change: reconcile.MeshChange{Ref: vs("shop", "reviews"), ObservedAt: t0.Add(-90 * time.Second)},
				State: reconcile.PropagationUnknown, Unreachable: []string{"istiod-1"}}},
		}
	}
	e, c := newTestEngine(Config{For: map[Code]time.Duration{CodeIstiodUnreachable: 0}})
	wantTransitions(t, e.Evaluate(snap()), "MD0204 ->pending", "MD0301 ->firing")
	c.advance(30 * time.Second)
	wantTransitions(t, e.Evaluate(snap()), "MD0204 pending->firing")
	// A NACK (for 0) fires in the pass that first sees it.
	wantTransitions(t, e.Evaluate(nackSnap(c.t)), "MD0201 ->firing")
}

func TestFlapping(t *testing.T) {
	e, c := newTestEngine(Config{ResolveAfter: 5 * time.Minute})
	wantTransitions(t, e.Evaluate(nackSnap(t0)), "MD0201 ->firing")
	first := e.Active()[0]
	// Gone for less than resolveAfter, then back: the same finding, nothing to tell sinks.
	for range 4 {
		c.advance(time.Minute)
		wantTransitions(t, e.Evaluate(reconcile.Snapshot{}))
	}
	c.advance(time.Minute)
	wantTransitions(t, e.Evaluate(nackSnap(t0)))
	if f := e.Active()[0]; f.ID != first.ID || !f.StartsAt.Equal(first.StartsAt) || !f.FirstSeen.Equal(t0) || f.State != StateFiring {
		t.Fatalf("after the flap: %+v, want the first finding %+v", f, first)
	}
	// Gone for resolveAfter: resolved, and kept in Findings.
	c.advance(time.Minute)
	wantTransitions(t, e.Evaluate(reconcile.Snapshot{}))
	c.advance(5 * time.Minute)
	tr := e.Evaluate(reconcile.Snapshot{})
	wantTransitions(t, tr, "MD0201 firing->resolved")
	if !tr[0].Finding.ResolvedAt.Equal(c.t) || len(e.Active()) != 0 || len(e.Findings()) != 1 {
		t.Fatalf("resolved %+v; active %d, all %d", tr[0].Finding, len(e.Active()), len(e.Findings()))
	}
	// A later return is a new finding under the same ID; the resolved one is replaced.
	c.advance(time.Minute)
	later := c.t
	wantTransitions(t, e.Evaluate(nackSnap(later)), "MD0201 ->firing")
	all := e.Findings()
	if len(all) != 1 || all[0].ID != first.ID || !all[0].StartsAt.Equal(later) {
		t.Fatalf("findings after the return: %+v", all)
	}
}

func TestPendingProblemThatGoesAwayNeverFires(t *testing.T) {
	e, c := newTestEngine(Config{ResolveAfter: time.Minute})
	wantTransitions(t, e.Evaluate(outOfSync("shop")), "MD0103 ->pending")
	c.advance(2 * time.Minute)
	wantTransitions(t, e.Evaluate(reconcile.Snapshot{}), "MD0103 pending->resolved")
}

func TestSuppressionByAnnotationResolvesAtOnce(t *testing.T) {
	e, c := newTestEngine(Config{})
	wantTransitions(t, e.Evaluate(nackSnap(t0)), "MD0201 ->firing")
	c.advance(10 * time.Second)
	snap := nackSnap(t0)
	snap.Changes[0].Change.Ignore = "MD0201"
	wantTransitions(t, e.Evaluate(snap), "MD0201 firing->resolved")
	c.advance(10 * time.Minute)
	wantTransitions(t, e.Evaluate(snap))
	// Annotating the owning app has the same effect on its objects' findings.
	e2, _ := newTestEngine(Config{})
	snap = nackSnap(t0)
	snap.Apps[0].Ignore = "MD0201"
	wantTransitions(t, e2.Evaluate(snap))
}

func TestSuppressionByConfig(t *testing.T) {
	e, c := newTestEngine(Config{Ignore: []IgnoreRule{{Code: CodeAppOutOfSync, App: "argocd/shop"}, {Namespace: "shop", Code: CodeChangeNACKed}}})
	snap := nackSnap(t0)
	snap.Apps = append(snap.Apps, outOfSync("shop").Apps[0], outOfSync("cart").Apps[0])
	wantTransitions(t, e.Evaluate(snap), "MD0103 ->pending")
	if f := e.Active(); len(f) != 1 || f[0].Subject.App != argoKey("cart") {
		t.Fatalf("active %+v", f)
	}
	c.advance(time.Hour)
	wantTransitions(t, e.Evaluate(snap), "MD0103 pending->firing")
}

func TestDedupeAcrossSources(t *testing.T) {
	// The same proxy NACKs in the views of two istiods (it reconnected), and istiod's
	// metrics count its rejects too: one finding.
	views := func(n int) []reconcile.IstiodView {
		v := []reconcile.IstiodView{
			{Istiod: "istiod-0", Proxies: []reconcile.ProxyStatus{errProxy("old-envoy.legacy", t0.Add(-time.Minute), "unknown field")}},
			{Istiod: "istiod-1", Proxies: []reconcile.ProxyStatus{errProxy("old-envoy.legacy", t0.Add(-2*time.Minute), "unknown field")}},
		}
		return v[:n]
	}
	e, c := newTestEngine(Config{})
	wantTransitions(t, e.Evaluate(reconcile.Snapshot{Istiods: views(2)}), "MD0305 ->firing")
	f := e.Active()[0]
	if f.Subject != (Subject{Proxy: "old-envoy.legacy"}) || !f.StartsAt.Equal(t0.Add(-2*time.Minute)) {
		t.Fatalf("finding %+v", f)
	}
	c.advance(time.Minute)
	wantTransitions(t, e.Evaluate(reconcile.Snapshot{Istiods: views(1)}))
	if g := e.Active(); len(g) != 1 || g[0].ID != f.ID || !g[0].StartsAt.Equal(f.StartsAt) {
		t.Fatalf("after one istiod stopped reporting: %+v", g)
	}
}

func TestIdentityStableAcrossRestart(t *testing.T) {
	snap := nackSnap(t0.Add(-time.Hour))
	snap.Apps = append(snap.Apps, reconcile.App{Key: fluxKey("broken"), DesiredRevision: "main@sha1:def", State: reconcile.AppFailed, Reason: "BuildFailed"})
	snap.Sources = []reconcile.SourceStatus{{Name: "istiod/istiod-1", Error: "refused", Since: t0.Add(-10 * time.Minute)}}
	a, _ := newTestEngine(Config{})
	a.Evaluate(snap)
	before := a.Active()

	// A new engine (a restarted meshdrift) an hour later, on the same snapshot.
	b := NewEngine(Config{}, func() time.Time { return t0.Add(time.Hour) })
	b.Evaluate(snap)
	after := b.Active()
	if len(after) != len(before) || len(before) != 3 {
		t.Fatalf("before %d findings, after %d", len(before), len(after))
	}
	for i := range before {
		if after[i].ID != before[i].ID || after[i].Code != before[i].Code {
			t.Errorf("finding %d: ID %s after restart, %s before", i, after[i].ID, before[i].ID)
		}
		if after[i].Code == CodeAppSyncFailed {
			// No evidence time in App: it starts again when first seen (documented).
			continue
		}
		if !after[i].StartsAt.Equal(before[i].StartsAt) || after[i].State != StateFiring {
			t.Errorf("%s: startsAt %s state %s after restart; before %s", after[i].Code, after[i].StartsAt, after[i].State, before[i].StartsAt)
		}
	}
}

func TestHeldWhileSourceDark(t *testing.T) {
	e, c := newTestEngine(Config{ResolveAfter: time.Minute})
	stale := reconcile.Snapshot{Changes: []reconcile.Propagation{{Change: reconcile.MeshChange{Ref: vs("shop", "reviews"), ObservedAt: t0},
		State: reconcile.PropagationStale, Targeted: 1, Proxies: []reconcile.ProxyOutcome{{Proxy: "a.shop", Istiod: "istiod-1", State: reconcile.PropagationStale}}}},
		Apps: []reconcile.App{{Key: argoKey("shop"), State: reconcile.AppFailed, Reason: "Degraded"}}}
	wantTransitions(t, e.Evaluate(stale), "MD0102 ->pending", "MD0202 ->firing")
	// istiod-1 goes dark: the change is Unknown, its stale finding is held. Argo CD goes
	// dark and its app is missing: its finding is held too.
	dark := reconcile.Snapshot{
		Sources: []reconcile.SourceStatus{{Name: "istiod/istiod-1", Error: "refused", Since: t0}, {Name: "argocd", Error: "forbidden", Since: t0}},
		Changes: []reconcile.Propagation{{Change: stale.Changes[0].Change, State: reconcile.PropagationUnknown, Unreachable: []string{"istiod-1"}}},
	}
	for range 10 {
		c.advance(time.Minute)
		e.Evaluate(dark)
	}
	if got := codes(e.Active()); got != "[MD0102 MD0202 MD0204 MD0301 MD0401]" {
		t.Fatalf("active while dark: %s", got)
	}
	// Back, and fine: what was held resolves after resolveAfter.
	fine := reconcile.Snapshot{Changes: []reconcile.Propagation{{Change: stale.Changes[0].Change, State: reconcile.PropagationPropagated}}}
	c.advance(time.Minute)
	wantTransitions(t, e.Evaluate(fine), "MD0102 pending->resolved", "MD0202 firing->resolved", "MD0204 firing->resolved",
		"MD0301 firing->resolved", "MD0401 firing->resolved")
}

func codes(fs []Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Code))
	}
	return fmt.Sprint(out)
}

func TestResolvedFindingsAreBounded(t *testing.T) {
	e, c := newTestEngine(Config{ResolveAfter: time.Second, KeepResolved: time.Hour, MaxResolved: 3})
	for i := range 10 {
		e.Evaluate(outOfSync(fmt.Sprintf("app-%d", i)))
		c.advance(2 * time.Second)
		e.Evaluate(reconcile.Snapshot{})
	}
	if n := len(e.Findings()); n != 3 {
		t.Fatalf("%d findings kept, want MaxResolved 3", n)
	}
	c.advance(time.Hour)
	e.Evaluate(reconcile.Snapshot{})
	if n := len(e.Findings()); n != 0 {
		t.Fatalf("%d findings kept an hour after resolution, want 0", n)
	}
}

func TestFindingContent(t *testing.T) {
	e, _ := newTestEngine(Config{})
	e.Evaluate(nackSnap(t0))
	f := e.Active()[0]
	want := Finding{
		ID: ID(CodeChangeNACKed, Subject{Object: vs("shop", "reviews"), App: fluxKey("apps")}), Code: CodeChangeNACKed,
		Name: "MeshChangeNACKed", Severity: SeverityCritical, State: StateFiring,
		Subject: Subject{Object: vs("shop", "reviews"), App: fluxKey("apps")},
		Summary: `networking.istio.io/VirtualService/shop/reviews was rejected by 1 of 10 proxies: proxy reviews-v1-a.shop (istiod istiod-0): ` +
			`route "reviews": invalid weight; app flux/Kustomization/flux-system/apps revision main@sha1:abc`,
		Description: f.Description,
		Evidence:    `proxy reviews-v1-a.shop (istiod istiod-0): route "reviews": invalid weight; app flux/Kustomization/flux-system/apps revision main@sha1:abc`,
		StartsAt:    t0, FirstSeen: t0, LastSeen: t0,
	}
	if f != want || f.Description == "" {
		t.Fatalf("finding\n got %+v\nwant %+v", f, want)
	}
}

func TestCurrent(t *testing.T) {
	snap := nackSnap(t0.Add(-time.Minute))
	snap.Apps = append(snap.Apps, outOfSync("shop").Apps[0])
	got := Current(snap, Config{}, t0)
	if codes(got) != "[MD0103 MD0201]" || got[0].State != StatePending || got[1].State != StateFiring {
		t.Fatalf("Current = %+v", got)
	}
}

// A pass over a snapshot whose Versions match the last one's reuses its derivation: the
// lifecycle still moves with the clock (pending to firing, resolution). Versions that
// moved, or unknown ones, derive again.
func TestEvaluateReusesUnchangedDerivation(t *testing.T) {
	e, c := newTestEngine(Config{})
	with := func(s reconcile.Snapshot, v reconcile.Versions) reconcile.Snapshot {
		s.Versions = &v
		return s
	}
	v1 := reconcile.Versions{Apps: 1}
	wantTransitions(t, e.Evaluate(with(outOfSync("shop"), v1)), "MD0103 ->pending")
	c.advance(10 * time.Minute)
	// The same versions with other content: the engine trusts the versions (the store's
	// contract), so only the lifecycle runs, on the earlier derivation.
	wantTransitions(t, e.Evaluate(with(reconcile.Snapshot{}, v1)), "MD0103 pending->firing")
	// Moved versions: derived again; the app is gone and its finding resolves.
	c.advance(10 * time.Minute)
	wantTransitions(t, e.Evaluate(with(reconcile.Snapshot{}, reconcile.Versions{Apps: 2})), "MD0103 firing->resolved")
	// Unknown versions always derive.
	wantTransitions(t, e.Evaluate(outOfSync("cart")), "MD0103 ->pending")
	wantTransitions(t, e.Evaluate(reconcile.Snapshot{}))
	c.advance(10 * time.Minute)
	wantTransitions(t, e.Evaluate(reconcile.Snapshot{}), "MD0103 pending->resolved")
}
