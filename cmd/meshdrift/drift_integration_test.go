package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// findingsAbout returns the findings of code about ref, as the engine holds them.
func findingsAbout(a *app, code findings.Code, ref reconcile.ObjectRef) []findings.Finding {
	var out []findings.Finding
	for _, f := range a.engine.Findings() {
		if f.Code == code && f.Subject.Object == ref {
			out = append(out, f)
		}
	}
	return out
}

// A VirtualService that the real kustomize-controller applies from Git, then changes
// for a new Git revision, is no out-of-band edit; the same kind of change written
// through the real API server by another field manager ("kubectl-edit", as `kubectl
// edit` names itself) is MD0801, naming the manager and the fields.
func TestOutOfBandEditByFieldManager(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	a := startMeshdrift(t, 30*time.Second, bed.istiod)
	key := reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: ns, Name: "apps"}
	ref := reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: "reviews"}

	publish := func(revision, timeout string) {
		t.Helper()
		art, err := bed.flux.Artifacts.Publish(ns, revision, map[string]string{"vs.yaml": fmt.Sprintf(vsTemplate, ns, "reviews", timeout)})
		if err != nil {
			t.Fatal(err)
		}
		if err := bed.flux.SetGitRepository(ctx, ns, "repo", art); err != nil {
			t.Fatal(err)
		}
	}
	// applied waits until Flux reports revision applied and meshdrift holds the object
	// at the generation that revision wrote, last written by kustomize-controller.
	applied := func(revision string, generation int64) {
		t.Helper()
		eventuallyCmd(t, 60*time.Second, "flux applies "+revision, func() (bool, string) {
			snap := a.snapshot()
			rev := ""
			for _, app := range snap.Apps {
				if app.Key == key {
					rev = app.AppliedRevision
				}
			}
			for _, o := range snap.Objects {
				if o.Ref == ref {
					return rev == revision && o.Generation == generation && o.Manager == "kustomize-controller",
						fmt.Sprintf("applied %q, object generation %d by %s", rev, o.Generation, o.Manager)
				}
			}
			return false, fmt.Sprintf("applied %q, object not seen\n%s", rev, bed.flux.LogTail(5))
		})
	}

	rev1 := "main@sha1:" + strings.Repeat("1", 40)
	publish(rev1, "9s")
	if err := bed.flux.ApplyKustomization(ctx, ns, "apps", "repo", "./", false); err != nil {
		t.Fatal(err)
	}
	applied(rev1, 1)
	rev2 := "main@sha1:" + strings.Repeat("2", 40)
	publish(rev2, "10s")
	applied(rev2, 2)
	// Several evaluations (one a second at least) over the state after the controller's
	// own change: none may find an out-of-band edit.
	for range 3 {
		time.Sleep(time.Second)
		if got := findingsAbout(a, findings.CodeOutOfBandEdit, ref); len(got) > 0 {
			t.Fatalf("kustomize-controller's own change reported as out of band: %+v", got)
		}
	}

	vs := &unstructured.Unstructured{}
	vs.SetAPIVersion("networking.istio.io/v1")
	vs.SetKind("VirtualService")
	vs.SetNamespace(ns)
	vs.SetName("reviews")
	patch := fmt.Sprintf(`{"spec":{"http":[{"name":"reviews-11s","timeout":"11s","route":[{"destination":{"host":"reviews.%s.svc.cluster.local"}}]}]}}`, ns)
	editedAt := time.Now().Truncate(time.Second)
	if _, err := bed.kube.MergePatch(ctx, "kubectl-edit", vs, []byte(patch)); err != nil {
		t.Fatal(err)
	}
	var got findings.Finding
	eventuallyCmd(t, 15*time.Second, "MD0801 for the kubectl-edit", func() (bool, string) {
		fs := findingsAbout(a, findings.CodeOutOfBandEdit, ref)
		if len(fs) != 1 {
			return false, fmt.Sprintf("%d findings", len(fs))
		}
		got = fs[0]
		return got.State == findings.StateFiring, string(got.State)
	})
	if got.Subject.App != key {
		t.Errorf("app %v, want %v", got.Subject.App, key)
	}
	if !strings.Contains(got.Summary, "changed outside Git by kubectl-edit") {
		t.Errorf("summary %q does not name the manager", got.Summary)
	}
	if !strings.Contains(got.Evidence, "kubectl-edit (Update) at ") || !strings.Contains(got.Evidence, "spec.http") {
		t.Errorf("evidence %q lacks the operation, time or field", got.Evidence)
	}
	if got.StartsAt.Before(editedAt) {
		t.Errorf("starts at %s, before the edit at %s", got.StartsAt, editedAt)
	}
	t.Logf("%s: %s", got.Summary, got.Evidence)
}
