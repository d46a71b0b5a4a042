package flux

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// updateGolden makes the integration tests capture the Kustomizations the real
// kustomize-controller left into view_golden_test.go, the fixtures of
// TestKustomizationAppGolden.
var updateGolden = flag.Bool("update-golden", false, "rewrite "+goldenDir+" from the real controller's objects")

// eventuallyTimeout bounds every wait on the real controllers: kustomize-controller applies
// a new revision in well under a second; the rest is slack for a loaded 2-core machine.
const eventuallyTimeout = 10 * time.Second

var (
	kustomizationGVR = watchedKinds[0].gvr
	helmReleaseGVR   = watchedKinds[1].gvr
	crdGVR           = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

func revision(c string) string { return "main@sha1:" + strings.Repeat(c, 40) }

var namespaceSeq atomic.Int64

// newNamespace creates a namespace for one test. envtest runs no namespace controller, so
// namespaces are left behind and go with the bed.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	name = fmt.Sprintf("%.40s-%d", name, namespaceSeq.Add(1))
	if err := bed.kube.CreateNamespace(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return name
}

// testLogWriter sends the watcher's log to the test's log until the test ends.
type testLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

type runningWatcher struct {
	*Watcher
	sink    *watchTestSink
	sources *watchTestSources
	reg     *prometheus.Registry
	done    <-chan struct{}
}

// startWatcher runs a Watcher against kube until the test ends and waits for its sync.
func startWatcher(t *testing.T, kube *testbed.Kube, cfg WatcherConfig) *runningWatcher {
	t.Helper()
	logs := &testLogWriter{t: t}
	t.Cleanup(func() {
		logs.mu.Lock()
		logs.done = true
		logs.mu.Unlock()
	})
	disc, err := discovery.NewDiscoveryClientForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	rw := &runningWatcher{sink: &watchTestSink{}, sources: &watchTestSources{}, reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rw.Watcher, err = New(cfg, kube.Dynamic, disc, rw.sink, rw.sources, rw.reg, log)
	if err != nil {
		t.Fatal(err)
	}
	rw.done = testbed.RunInBackground(t, rw.Run)
	NewWithT(t).Eventually(rw.HasSynced).WithTimeout(eventuallyTimeout).Should(BeTrue(), "watcher never synced")
	return rw
}

// app returns the sink's latest observation of key; it fails g when the latest call was
// a ForgetApp or there was none.
func (rw *runningWatcher) app(g Gomega, key reconcile.AppKey) reconcile.App {
	e, ok := rw.sink.latest(key)
	g.Expect(ok).To(BeTrue(), "no observation of %s", key)
	g.Expect(e.forget).To(BeFalse(), "%s was forgotten", key)
	return e.app
}

// restarts is meshdrift_adapter_watch_restarts_total of kind.
func (rw *runningWatcher) restartCount(kind string) float64 {
	return testutil.ToFloat64(rw.kindWatch(kind).restarts)
}

// objectCount is meshdrift_adapter_objects of kind, as the registry exposes it.
func (rw *runningWatcher) objectCount(t *testing.T, kind string) float64 {
	t.Helper()
	want := fmt.Sprintf(`meshdrift_adapter_objects{adapter="flux",kind=%q} `, kind)
	var buf strings.Builder
	mfs, err := rw.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	for line := range strings.Lines(buf.String()) {
		if v, ok := strings.CutPrefix(line, want); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in\n%s", want, buf.String())
	return 0
}

// captureGolden writes the Kustomization ns/name to goldenDir/key.yaml under
// -update-golden, without managedFields (noise) and its uid.
func captureGolden(t *testing.T, ns, name, key string) {
	t.Helper()
	if !*updateGolden {
		return
	}
	u, err := bed.kube.Dynamic.Resource(kustomizationGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.SetManagedFields(nil)
	u.SetUID("")
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goldenDir, key+".yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fluxLogs describes the controllers' recent log lines for a failed wait.
func fluxLogs() string { return bed.flux.LogTail(20) }

// goodFiles is an artifact with a ConfigMap and an Istio VirtualService.
func goodFiles(ns, mode string) map[string]string {
	return map[string]string{
		"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: %s}\ndata: {mode: %s}\n", ns, mode),
		"vs.yaml": fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: %s}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: %s}
`, ns, mode),
	}
}

func goodObjects(ns string) []reconcile.OwnedObject {
	return []reconcile.OwnedObject{
		owned("", "ConfigMap", ns, "settings"),
		owned("networking.istio.io", "VirtualService", ns, "reviews"),
	}
}

// deployGood publishes a good artifact at revision rev, points the namespace's
// GitRepository "repo" at it, creates the Kustomization "app" and waits until the
// watcher reports it Synced at rev.
func deployGood(t *testing.T, rw *runningWatcher, ns, rev string) reconcile.App {
	t.Helper()
	ctx := context.Background()
	art, err := bed.flux.Artifacts.Publish(ns+"-good", rev, goodFiles(ns, "blue"))
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.SetGitRepository(ctx, ns, "repo", art); err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.ApplyKustomization(ctx, ns, "app", "repo", "./", false); err != nil {
		t.Fatal(err)
	}
	key := appKey(KindKustomization, ns, "app")
	var app reconcile.App
	NewWithT(t).Eventually(func(g Gomega) {
		app = rw.app(g, key)
		g.Expect(app.State).To(Equal(reconcile.AppSynced), rw.sink.calls(key))
		g.Expect(app.AppliedRevision).To(Equal(rev))
	}).WithTimeout(eventuallyTimeout).WithPolling(50*time.Millisecond).Should(Succeed(), fluxLogs)
	return app
}

// A good artifact: Synced at the artifact's revision, with its objects and when they
// were applied.
func TestWatchKustomizationSynced(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	start := time.Now().Truncate(time.Second) // status times have second precision
	rev := revision("a")

	app := deployGood(t, rw, ns, rev)

	g := NewWithT(t)
	g.Expect(app.Key).To(Equal(reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: ns, Name: "app"}))
	g.Expect(app.DesiredRevision).To(Equal(rev))
	g.Expect(app.Reason).To(Equal("ReconciliationSucceeded"))
	g.Expect(app.Message).To(Equal("Applied revision: " + rev))
	g.Expect(app.Objects).To(ConsistOf(goodObjects(ns)))
	g.Expect(app.AppliedAt).To(BeTemporally(">=", start))
	g.Expect(app.AppliedAt).To(BeTemporally("<=", time.Now()))
	g.Expect(app.Stale).To(BeFalse())
	g.Expect(app.Suspended).To(BeFalse())
	g.Expect(app.ObservedAt).To(BeTemporally("~", time.Now(), eventuallyTimeout))

	for _, kind := range []string{KindKustomization, KindHelmRelease} {
		st, ok := rw.sources.latest(SourceName(kind))
		g.Expect(ok).To(BeTrue(), "no status for %s", kind)
		g.Expect(st.Up).To(BeTrue(), "%s: %+v", kind, st)
		g.Expect(st.NotInstalled).To(BeFalse(), "%s: %+v", kind, st) // the bed serves both CRDs
	}
	g.Expect(rw.objectCount(t, KindKustomization)).To(BeNumerically(">=", 1))
	captureGolden(t, ns, "app", "synced")
}

// A broken artifact: Failed with BuildFailed, DesiredRevision the broken revision, while
// AppliedRevision, AppliedAt and the objects stay those of the last good one.
func TestWatchKustomizationBuildFailed(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	good, bad := revision("a"), revision("b")
	synced := deployGood(t, rw, ns, good)

	broken, err := bed.flux.Artifacts.Publish(ns+"-broken", bad, map[string]string{
		"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [broken\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.SetGitRepository(context.Background(), ns, "repo", broken); err != nil {
		t.Fatal(err)
	}
	key := appKey(KindKustomization, ns, "app")
	NewWithT(t).Eventually(func(g Gomega) {
		app := rw.app(g, key)
		g.Expect(app.State).To(Equal(reconcile.AppFailed), rw.sink.calls(key))
		g.Expect(app.Reason).To(Equal("BuildFailed"))
		g.Expect(app.Message).NotTo(BeEmpty())
		g.Expect(app.DesiredRevision).To(Equal(bad))
		g.Expect(app.AppliedRevision).To(Equal(good))
		g.Expect(app.AppliedAt).To(Equal(synced.AppliedAt))
		g.Expect(app.Objects).To(ConsistOf(goodObjects(ns)))
	}).WithTimeout(eventuallyTimeout).WithPolling(50*time.Millisecond).Should(Succeed(), fluxLogs)
	captureGolden(t, ns, "app", "build-failed")
}

// An artifact whose digest does not match: Failed with ArtifactFailed, and
// DesiredRevision still the last attempted one, as kustomize-controller only records an
// attempt once the artifact verified.
func TestWatchKustomizationDigestMismatch(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	good := revision("a")
	deployGood(t, rw, ns, good)

	art, err := bed.flux.Artifacts.Publish(ns+"-next", revision("c"), goodFiles(ns, "green"))
	if err != nil {
		t.Fatal(err)
	}
	art.Digest = "sha256:" + strings.Repeat("0", 64)
	if err := bed.flux.SetGitRepository(context.Background(), ns, "repo", art); err != nil {
		t.Fatal(err)
	}
	key := appKey(KindKustomization, ns, "app")
	NewWithT(t).Eventually(func(g Gomega) {
		app := rw.app(g, key)
		g.Expect(app.State).To(Equal(reconcile.AppFailed), rw.sink.calls(key))
		g.Expect(app.Reason).To(Equal("ArtifactFailed"))
		g.Expect(app.DesiredRevision).To(Equal(good))
		g.Expect(app.AppliedRevision).To(Equal(good))
	}).WithTimeout(eventuallyTimeout).WithPolling(50*time.Millisecond).Should(Succeed(), fluxLogs)
	captureGolden(t, ns, "app", "artifact-failed")
}

// suspend: true is Suspended, whether the Kustomization ran before or never did.
func TestWatchKustomizationSuspended(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	ctx := context.Background()
	rev := revision("a")
	deployGood(t, rw, ns, rev)

	if err := bed.flux.ApplyKustomization(ctx, ns, "app", "repo", "./", true); err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.ApplyKustomization(ctx, ns, "frozen", "repo", "./", true); err != nil {
		t.Fatal(err)
	}
	g := NewWithT(t)
	key := appKey(KindKustomization, ns, "app")
	g.Eventually(func(g Gomega) {
		app := rw.app(g, key)
		g.Expect(app.State).To(Equal(reconcile.AppSuspended), rw.sink.calls(key))
		g.Expect(app.Suspended).To(BeTrue())
		g.Expect(app.Reason).To(Equal("Suspended"))
		g.Expect(app.AppliedRevision).To(Equal(rev))
		g.Expect(app.Objects).To(ConsistOf(goodObjects(ns)))
	}).WithTimeout(eventuallyTimeout).WithPolling(50*time.Millisecond).Should(Succeed(), fluxLogs)
	captureGolden(t, ns, "app", "suspended")
	frozen := appKey(KindKustomization, ns, "frozen")
	g.Eventually(func(g Gomega) {
		app := rw.app(g, frozen)
		g.Expect(app.State).To(Equal(reconcile.AppSuspended), rw.sink.calls(frozen))
		g.Expect(app.Suspended).To(BeTrue())
		g.Expect(app.DesiredRevision).To(BeEmpty())
		g.Expect(app.AppliedRevision).To(BeEmpty())
	}).WithTimeout(eventuallyTimeout).WithPolling(50*time.Millisecond).Should(Succeed(), fluxLogs)
	captureGolden(t, ns, "frozen", "suspended-new")
}

// Requeue reads the app from the API server and emits it at once, although nothing
// changed: the informer alone would say nothing (no resync here). Keys it does not watch,
// and apps that do not exist, emit nothing.
func TestWatchRequeueEmitsAtOnce(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	rev := revision("a")
	deployGood(t, rw, ns, rev)
	key := appKey(KindKustomization, ns, "app")

	// Let kustomize-controller's last status writes arrive first.
	g := NewWithT(t)
	quiet := func() int {
		n := len(rw.sink.observations(key))
		time.Sleep(time.Second)
		return len(rw.sink.observations(key)) - n
	}
	g.Eventually(quiet).WithTimeout(eventuallyTimeout).Should(BeZero())

	before := rw.sink.observations(key)
	last := before[len(before)-1]
	asked := time.Now()
	missing := appKey(KindKustomization, ns, "absent")
	foreign := reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: ns, Name: "app"}
	for _, k := range []reconcile.AppKey{key, missing, foreign} {
		rw.Requeue(context.Background(), k, Notification{App: k, Revision: rev, Reason: "ReconciliationSucceeded"})
	}
	g.Eventually(func(g Gomega) {
		obs := rw.sink.observations(key)
		g.Expect(len(obs)).To(BeNumerically(">", len(before)))
		got := obs[len(obs)-1]
		g.Expect(got.ObservedAt).To(BeTemporally(">=", asked))
		// The same object, read again.
		got.ObservedAt = last.ObservedAt
		g.Expect(got).To(Equal(last))
	}).WithTimeout(2*time.Second).WithPolling(20*time.Millisecond).Should(Succeed(), "requeue did not emit within 2 s")
	g.Consistently(func() bool {
		_, a := rw.sink.latest(missing)
		_, b := rw.sink.latest(foreign)
		return a || b
	}).WithTimeout(500 * time.Millisecond).Should(BeFalse())
}

// Deleting the Kustomization makes the watcher forget the app, once kustomize-controller
// has pruned its objects and removed its finalizer.
func TestWatchKustomizationDeleted(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	deployGood(t, rw, ns, revision("a"))
	key := appKey(KindKustomization, ns, "app")

	if err := bed.kube.Dynamic.Resource(kustomizationGVR).Namespace(ns).Delete(context.Background(), "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Eventually(func(g Gomega) {
		e, ok := rw.sink.latest(key)
		g.Expect(ok).To(BeTrue())
		g.Expect(e.forget).To(BeTrue(), rw.sink.calls(key))
	}).WithTimeout(eventuallyTimeout).WithPolling(50*time.Millisecond).Should(Succeed(), fluxLogs)
}

// A HelmRelease as helm-controller writes it (there is no helm-controller in the bed, so
// the test writes the status): the live release gives AppliedRevision and AppliedAt, the
// inventory the objects.
func TestWatchHelmRelease(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	ctx := context.Background()
	key := appKey(KindHelmRelease, ns, "podinfo")

	hr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2",
		"kind":       "HelmRelease",
		"metadata":   map[string]any{"namespace": ns, "name": "podinfo"},
		"spec": map[string]any{
			"interval": "10m",
			"chart": map[string]any{"spec": map[string]any{
				"chart": "podinfo", "version": "6.7.1",
				"sourceRef": map[string]any{"kind": "HelmRepository", "name": "podinfo"},
			}},
		},
	}}
	applied, err := bed.kube.ApplyObject(ctx, "meshdrift-test", hr)
	if err != nil {
		t.Fatal(err)
	}
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		app := rw.app(g, key)
		g.Expect(app.State).To(Equal(reconcile.AppUnknown))
		g.Expect(app.Stale).To(BeTrue())
	}).WithTimeout(eventuallyTimeout).WithPolling(50 * time.Millisecond).Should(Succeed())

	deployed := time.Now().UTC().Truncate(time.Second)
	ts := deployed.Format(time.RFC3339)
	applied.Object["status"] = map[string]any{
		"observedGeneration":    applied.GetGeneration(),
		"lastAttemptedRevision": "6.7.1",
		"conditions": []any{
			map[string]any{"type": "Ready", "status": "True", "reason": "UpgradeSucceeded",
				"message": "Helm upgrade succeeded for release " + ns + "/podinfo.v2 with chart podinfo@6.7.1", "lastTransitionTime": ts},
			map[string]any{"type": "Released", "status": "True", "reason": "UpgradeSucceeded",
				"message": "Helm upgrade succeeded", "lastTransitionTime": ts},
		},
		"history": []any{
			map[string]any{"name": "podinfo", "namespace": ns, "version": int64(2), "status": "deployed",
				"chartName": "podinfo", "chartVersion": "6.7.1", "configDigest": "sha256:" + strings.Repeat("1", 64),
				"digest": "sha256:" + strings.Repeat("2", 64), "firstDeployed": ts, "lastDeployed": ts},
			map[string]any{"name": "podinfo", "namespace": ns, "version": int64(1), "status": "superseded",
				"chartName": "podinfo", "chartVersion": "6.7.0", "configDigest": "sha256:" + strings.Repeat("1", 64),
				"digest": "sha256:" + strings.Repeat("3", 64), "firstDeployed": ts, "lastDeployed": ts},
		},
		"inventory": map[string]any{"entries": []any{
			map[string]any{"id": ns + "_podinfo_apps_Deployment", "v": "v1"},
			map[string]any{"id": ns + "_podinfo_networking.istio.io_VirtualService", "v": "v1"},
		}},
	}
	if _, err := bed.kube.UpdateStatus(ctx, applied); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func(g Gomega) {
		app := rw.app(g, key)
		g.Expect(app.State).To(Equal(reconcile.AppSynced), rw.sink.calls(key))
		g.Expect(app.Reason).To(Equal("UpgradeSucceeded"))
		g.Expect(app.DesiredRevision).To(Equal("6.7.1"))
		g.Expect(app.AppliedRevision).To(Equal("6.7.1"))
		g.Expect(app.AppliedAt).To(BeTemporally("==", deployed))
		g.Expect(app.Stale).To(BeFalse())
		g.Expect(app.Objects).To(ConsistOf(
			owned("apps", "Deployment", ns, "podinfo"),
			owned("networking.istio.io", "VirtualService", ns, "podinfo"),
		))
	}).WithTimeout(eventuallyTimeout).WithPolling(50 * time.Millisecond).Should(Succeed())
	g.Expect(rw.objectCount(t, KindHelmRelease)).To(BeNumerically(">=", 1))
}

// On an API server of its own: without the HelmRelease CRD the Kustomization watch works
// and HelmRelease is reported up with nothing to watch; installing the CRD starts its
// watch; stopping the API server is reported as the source going down, and counted as
// watch restarts, while Run keeps going.
func TestWatchMissingCRDAndAPIServerDown(t *testing.T) {
	testbed.Need(t, bed.started)
	kube, err := testbed.StartKube(bed.assets, filepath.Join(t.TempDir(), "kube"))
	if err != nil {
		t.Fatal(err)
	}
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { _ = kube.Stop() }) }
	t.Cleanup(stop)
	ctx := context.Background()
	g := NewWithT(t)

	const helmCRD = "helmreleases.helm.toolkit.fluxcd.io"
	if err := kube.Dynamic.Resource(crdGVR).Delete(ctx, helmCRD, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	g.Eventually(func() bool {
		_, err := kube.Dynamic.Resource(crdGVR).Get(ctx, helmCRD, metav1.GetOptions{})
		_, derr := disc.ServerResourcesForGroupVersion(helmReleaseGVR.GroupVersion().String())
		return apierrors.IsNotFound(err) && apierrors.IsNotFound(derr)
	}).WithTimeout(30*time.Second).Should(BeTrue(), "HelmRelease CRD still served")

	rw := startWatcher(t, kube, WatcherConfig{DiscoveryInterval: 300 * time.Millisecond})
	for _, kind := range []string{KindKustomization, KindHelmRelease} {
		st, ok := rw.sources.latest(SourceName(kind))
		g.Expect(ok).To(BeTrue(), "no status for %s", kind)
		g.Expect(st.Up).To(BeTrue(), "%s: %+v", kind, st)
	}

	// No kustomize-controller here: the Kustomization never gets a status.
	if err := kube.CreateNamespace(ctx, "apps"); err != nil {
		t.Fatal(err)
	}
	ks := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1",
		"kind":       "Kustomization",
		"metadata":   map[string]any{"namespace": "apps", "name": "mesh"},
		"spec": map[string]any{"interval": "10m", "path": "./", "prune": true,
			"sourceRef": map[string]any{"kind": "GitRepository", "name": "repo"}},
	}}
	if _, err := kube.ApplyObject(ctx, "meshdrift-test", ks); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func(g Gomega) {
		app := rw.app(g, appKey(KindKustomization, "apps", "mesh"))
		g.Expect(app.State).To(Equal(reconcile.AppUnknown))
		g.Expect(app.Stale).To(BeTrue())
	}).WithTimeout(eventuallyTimeout).WithPolling(50 * time.Millisecond).Should(Succeed())

	// The CRD comes (back): the next discovery starts the HelmRelease watch.
	crds, err := filepath.Glob(filepath.Join(bed.assets.CRDDir("flux"), "*helmreleases*.yaml"))
	if err != nil || len(crds) != 1 {
		t.Fatalf("HelmRelease CRD file: %v %v", crds, err)
	}
	crd, err := os.ReadFile(crds[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.Apply(ctx, "meshdrift-test", string(crd)); err != nil {
		t.Fatal(err)
	}
	hr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2",
		"kind":       "HelmRelease",
		"metadata":   map[string]any{"namespace": "apps", "name": "podinfo"},
		"spec": map[string]any{"interval": "10m", "chart": map[string]any{"spec": map[string]any{
			"chart": "podinfo", "sourceRef": map[string]any{"kind": "HelmRepository", "name": "podinfo"}}}},
	}}
	g.Eventually(func() error {
		_, err := kube.ApplyObject(ctx, "meshdrift-test", hr)
		return err
	}).WithTimeout(30*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "HelmRelease CRD not established")
	g.Eventually(func(g Gomega) {
		app := rw.app(g, appKey(KindHelmRelease, "apps", "podinfo"))
		g.Expect(app.State).To(Equal(reconcile.AppUnknown))
	}).WithTimeout(eventuallyTimeout).WithPolling(50 * time.Millisecond).Should(Succeed())
	g.Eventually(rw.HasSynced).WithTimeout(eventuallyTimeout).Should(BeTrue())

	stop()
	for _, kind := range []string{KindKustomization, KindHelmRelease} {
		g.Eventually(func(g Gomega) {
			st, ok := rw.sources.latest(SourceName(kind))
			g.Expect(ok).To(BeTrue())
			g.Expect(st.Up).To(BeFalse(), "%s: %+v", kind, st)
			g.Expect(st.Error).To(ContainSubstring("connection refused"))
			g.Expect(st.Error).NotTo(ContainSubstring("timeoutSeconds"), "the request URL changes with every retry")
		}).WithTimeout(eventuallyTimeout).WithPolling(50*time.Millisecond).Should(Succeed(), "API server stopped, source still up")
		g.Eventually(func() float64 { return rw.restartCount(kind) }).WithTimeout(eventuallyTimeout).Should(BeNumerically(">", 0))
	}
	// The apps are kept as last seen: no ForgetApp for a source that went down.
	e, ok := rw.sink.latest(appKey(KindKustomization, "apps", "mesh"))
	g.Expect(ok && !e.forget).To(BeTrue())
	select {
	case <-rw.done:
		t.Fatal("Run returned while its context was live")
	default:
	}
}
