package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
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
		testbed.Eventually(t, 60*time.Second, "flux applies "+revision, func() (bool, string) {
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
	testbed.Eventually(t, 15*time.Second, "MD0801 for the kubectl-edit", func() (bool, string) {
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

// Two real istiods with different REVISION values and a proxy on each: a namespace
// labelled for one revision has its proxy on the other reported (MD0701), in both
// directions as the label moves; a proxy whose Istio version differs from its istiod's
// build is MD0702.
func TestRevisionDriftOnTwoIstiods(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	canaryOpts := istiodOptions("istiod-canary")
	canaryOpts.Revision = "canary"
	canary, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, canaryOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = canary.Stop() })
	a := startMeshdriftWith(t, 30*time.Second, func(c *config.Config) {
		c.Istio.Revisions = []string{bed.istiod.Revision, canary.Revision}
		c.Findings.For = map[string]config.Duration{"MD0701": 0, "MD0702": 0}
	}, bed.istiod, canary)
	ns := newNamespace(t)
	label := func(rev string) {
		t.Helper()
		obj := &unstructured.Unstructured{}
		obj.SetAPIVersion("v1")
		obj.SetKind("Namespace")
		obj.SetName(ns)
		if _, err := bed.kube.MergePatch(ctx, "kubectl-label", obj, []byte(`{"metadata":{"labels":{"istio.io/rev":"`+rev+`"}}}`)); err != nil {
			t.Fatal(err)
		}
	}
	label("canary")
	onDefault := startProxy(t, bed.istiod, "web-default", ns, xdsproxy.ModeACK)
	onCanary := startProxy(t, canary, "web-canary", ns, xdsproxy.ModeACK)
	nsRef := reconcile.ObjectRef{Kind: "Namespace", Name: ns}

	drift := func(wantDetail, wantProxy, otherProxy string) {
		t.Helper()
		var last findings.Finding
		testbed.Eventually(t, 20*time.Second, "MD0701 "+wantDetail, func() (bool, string) {
			fs := findingsAbout(a, findings.CodeNamespaceRevisionDrift, nsRef)
			if len(fs) != 1 {
				return false, fmt.Sprintf("%d findings", len(fs))
			}
			last = fs[0]
			return last.State == findings.StateFiring && strings.Contains(last.Summary, wantDetail), last.Summary
		})
		if !strings.Contains(last.Evidence, wantProxy) || strings.Contains(last.Evidence, otherProxy) {
			t.Errorf("evidence %q: want %s, not %s", last.Evidence, wantProxy, otherProxy)
		}
		t.Logf("%s: %s", last.Summary, last.Evidence)
	}
	drift("selects canary, 1 proxy on "+bed.istiod.Revision, onDefault.Name(), onCanary.Name())
	label(bed.istiod.Revision)
	drift("selects "+bed.istiod.Revision+", 1 proxy on canary", onCanary.Name(), onDefault.Name())

	// A proxy left on an older Istio than its istiod's build.
	old := xdsproxy.New(xdsproxy.Config{Addr: canary.GRPCAddr, PodName: "legacy-1", Namespace: ns, IP: "10.1.0.99",
		Labels: map[string]string{"app": "legacy"}, Mode: xdsproxy.ModeACK, IstioVersion: "1.20.1"})
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := old.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Close() })
	testbed.Eventually(t, 20*time.Second, "MD0702 for the old proxy", func() (bool, string) {
		var states []string
		for _, f := range a.engine.Findings() {
			if f.Code == findings.CodeProxyVersionDrift {
				states = append(states, f.Subject.Proxy+" "+string(f.State)+": "+f.Summary)
				if f.Subject.Proxy == onDefault.Name() || f.Subject.Proxy == onCanary.Name() {
					t.Fatalf("proxy on its istiod's version reported: %s", f.Summary)
				}
				if f.Subject.Proxy == old.Name() && f.State == findings.StateFiring && strings.Contains(f.Summary, "runs Istio 1.20.1") {
					t.Log(f.Summary)
					return true, ""
				}
			}
		}
		return false, strings.Join(states, "; ")
	})
}

// A VirtualService applied by hand is an orphan (MD0802) once the GitOps sources are
// read; one applied by the real kustomize-controller from a Flux Kustomization is not.
func TestOrphanMeshObject(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	a := startMeshdriftWith(t, 30*time.Second, func(c *config.Config) {
		c.Findings.For = map[string]config.Duration{"MD0802": 0}
	}, bed.istiod)
	ns := newNamespace(t)
	art, err := bed.flux.Artifacts.Publish(ns, "main@sha1:"+strings.Repeat("3", 40), map[string]string{"vs.yaml": fmt.Sprintf(vsTemplate, ns, "owned", "5s")})
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.SetGitRepository(ctx, ns, "repo", art); err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.ApplyKustomization(ctx, ns, "apps", "repo", "./", false); err != nil {
		t.Fatal(err)
	}
	applyVS(t, ns, "handmade", "5s")
	owned := reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: "owned"}
	handmade := reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: "handmade"}
	testbed.Eventually(t, 60*time.Second, "flux applies the owned VirtualService", func() (bool, string) {
		for _, o := range a.snapshot().Objects {
			if o.Ref == owned {
				return o.Manager == "kustomize-controller", o.Manager
			}
		}
		return false, "not seen\n" + bed.flux.LogTail(5)
	})
	testbed.Eventually(t, 20*time.Second, "MD0802 for the handmade VirtualService", func() (bool, string) {
		fs := findingsAbout(a, findings.CodeOrphanObject, handmade)
		if len(fs) != 1 {
			var srcs []string
			for _, s := range a.store.Snapshot().Sources {
				srcs = append(srcs, fmt.Sprintf("%s up=%v notInstalled=%v", s.Name, s.Up, s.NotInstalled))
			}
			return false, fmt.Sprintf("%d findings; sources %v", len(fs), srcs)
		}
		return fs[0].State == findings.StateFiring, string(fs[0].State)
	})
	for range 3 {
		time.Sleep(time.Second)
		if got := findingsAbout(a, findings.CodeOrphanObject, owned); len(got) > 0 {
			t.Fatalf("the Flux-owned VirtualService is reported orphaned: %+v", got)
		}
	}
}

// While a GitOps source cannot be read, every mesh object looks unowned: meshdrift holds
// MD0802 instead of reporting each one, and reports the object once the source answers
// and still owns nothing of it. The source here is an Argo CD API server (argocd.apiServer)
// that is down at first; what answers later is a stand-in that lists no Application, since
// the bed runs Argo CD's CRDs but not its API server.
func TestOrphansHeldWhileASourceIsDown(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	applyVS(t, ns, "handmade", "5s")
	handmade := reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: "handmade"}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // down: connections are refused until the stand-in listens here
	tokenFile := filepath.Join(t.TempDir(), "argocd.token")
	if err := os.WriteFile(tokenFile, []byte("argocd-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := launchMeshdrift(t, 30*time.Second, func(c *config.Config) {
		c.Findings.For = map[string]config.Duration{"MD0802": 0}
		c.ArgoCD.APIServer = &config.ArgoCDAPIServerConfig{URL: "http://" + addr, TokenFile: tokenFile, Interval: config.Duration(time.Second)}
	}, bed.istiod)

	testbed.Eventually(t, 20*time.Second, "the mesh listed and the Argo CD source reported down", func() (bool, string) {
		seen, down := false, false
		for _, o := range a.snapshot().Objects {
			seen = seen || o.Ref == handmade
		}
		var srcs []string
		for _, s := range a.store.Snapshot().Sources {
			down = down || (strings.HasPrefix(s.Name, "argocd") && !s.Up)
			srcs = append(srcs, fmt.Sprintf("%s up=%v", s.Name, s.Up))
		}
		return seen && down, fmt.Sprintf("object seen %v; sources %v", seen, srcs)
	})
	for range 4 {
		time.Sleep(time.Second)
		if fs := findingsAbout(a, findings.CodeOrphanObject, handmade); len(fs) > 0 {
			t.Fatalf("MD0802 reported while the Argo CD source is down: %+v", fs)
		}
	}

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/applications" || r.Header.Get("Authorization") != "Bearer argocd-token" {
			http.Error(w, "unexpected request", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"metadata":{},"items":[]}`))
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	testbed.Eventually(t, 20*time.Second, "MD0802 once the source answers", func() (bool, string) {
		fs := findingsAbout(a, findings.CodeOrphanObject, handmade)
		if len(fs) != 1 {
			return false, fmt.Sprintf("%d findings", len(fs))
		}
		return fs[0].State == findings.StateFiring, string(fs[0].State)
	})
}
