package findings

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// checkRun is a live run with the destination-host and subset-pods checks, where the
// first reports the given results.
func checkRun(results ...reconcile.CheckResult) *reconcile.CheckRun {
	return &reconcile.CheckRun{At: t0, Duration: time.Millisecond, Results: results, Checks: []reconcile.CheckStatus{
		{Name: "virtualservice.destinationhost", Code: string(CodeVSDestinationNotFound)},
		{Name: "destinationrule.subsetpods", Code: string(CodeDRSubsetNoPods)},
	}}
}

func hostResult(ref reconcile.ObjectRef, path, host string) reconcile.CheckResult {
	return reconcile.CheckResult{Code: string(CodeVSDestinationNotFound), Object: ref, Path: path,
		Message: `destination host "` + host + `" matches no Service`}
}

// Results of one code on one object are one finding, with the owning app; evidence lists
// every path.
func TestDeriveChecks(t *testing.T) {
	ref := vs("shop", "reviews")
	snap := reconcile.Snapshot{
		Apps:    []reconcile.App{synced(fluxKey("apps"), "main@sha1:abc", ref)},
		Objects: []reconcile.MeshChange{{Ref: ref}},
		Checks: checkRun(
			hostResult(ref, "spec.http[0].route[0].destination.host", "a"),
			hostResult(ref, "spec.http[0].route[1].destination.host", "b"),
			hostResult(vs("shop", "ratings"), "spec.http[0].route[0].destination.host", "c"),
		),
	}
	var got []Problem
	for _, p := range Derive(snap, nil, Config{}).Problems {
		if p.Code == CodeVSDestinationNotFound {
			got = append(got, p)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d MD0501 problems, want one per object: %+v", len(got), got)
	}
	byObj := map[string]Problem{}
	for _, p := range got {
		byObj[p.Subject.Object.Name] = p
	}
	r := byObj["reviews"]
	if r.Subject.App != fluxKey("apps") {
		t.Errorf("reviews: app %v, want its Kustomization", r.Subject.App)
	}
	if r.Detail != `destination host "a" matches no Service (and 1 more)` {
		t.Errorf("reviews: detail %q", r.Detail)
	}
	if !strings.Contains(r.Evidence, "spec.http[0].route[0].destination.host: ") || !strings.Contains(r.Evidence, "route[1]") {
		t.Errorf("reviews: evidence %q, want both paths", r.Evidence)
	}
	if a := byObj["ratings"].Subject.App; a.Name != "" {
		t.Errorf("ratings: app %v, want none", a)
	}
}

// A check finding fires, is held while the checks wait for a cache or the mesh watch is
// down, and resolves only once a run that did run no longer reports it.
func TestCheckFindingsHeldWhileBlind(t *testing.T) {
	ref := vs("shop", "reviews")
	e, c := newTestEngine(Config{ResolveAfter: time.Minute})
	firing := reconcile.Snapshot{Checks: checkRun(hostResult(ref, "spec.http[0].route[0].destination.host", "a"))}
	wantTransitions(t, e.Evaluate(firing), "MD0501 ->pending")
	c.advance(time.Minute) // the catalog's For
	wantTransitions(t, e.Evaluate(firing), "MD0501 pending->firing")

	waiting := checkRun()
	waiting.Waiting = "not synced: services"
	meshDown := reconcile.Snapshot{Checks: checkRun(), Sources: []reconcile.SourceStatus{{Name: "mesh", Up: false, Error: "forbidden"}}}
	for _, step := range []struct {
		name string
		snap reconcile.Snapshot
	}{{"waiting", reconcile.Snapshot{Checks: waiting}}, {"mesh down", meshDown}} {
		name, snap := step.name, step.snap
		c.advance(time.Hour)
		for _, tr := range e.Evaluate(snap) {
			if tr.Finding.Code == CodeVSDestinationNotFound {
				t.Fatalf("%s: %s %s->%s, want the finding held", name, tr.Finding.Code, tr.From, tr.Finding.State)
			}
		}
		if a := e.Active(); !slices.ContainsFunc(a, func(f Finding) bool { return f.Code == CodeVSDestinationNotFound }) {
			t.Fatalf("%s: active %+v, want the held MD0501", name, a)
		}
	}

	// A run that ran, and the check skipped because its kinds are not served: resolved.
	ran := checkRun()
	ran.Checks[0].Skipped = "kinds not served: VirtualService.networking.istio.io"
	c.advance(time.Hour)
	wantTransitions(t, e.Evaluate(reconcile.Snapshot{Checks: ran}), "MD0401 pending->resolved", "MD0501 firing->resolved")
}

// The meshdrift.io/ignore annotation of the object suppresses its check findings.
func TestCheckFindingsIgnoredByAnnotation(t *testing.T) {
	ref := vs("shop", "reviews")
	snap := reconcile.Snapshot{
		Objects: []reconcile.MeshChange{{Ref: ref, Ignore: "MD0501"}},
		Checks:  checkRun(hostResult(ref, "spec.http[0].route[0].destination.host", "a")),
	}
	n := 0
	for _, p := range Derive(snap, nil, Config{}).Problems {
		if p.Code == CodeVSDestinationNotFound {
			n++
			if !p.Suppressed {
				t.Errorf("%+v not suppressed by the object's annotation", p)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d MD0501 problems, want 1 (suppressed)", n)
	}
}
