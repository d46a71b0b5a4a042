package argocd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// Integration tests: the Watcher against the bed's real kube-apiserver with Argo CD's own
// CRDs, Applications written as Argo CD's controller writes them.

// reportWithin is how soon a status write must reach the sink.
const reportWithin = time.Second

// controllerManager is the field manager Argo CD's application controller writes with.
const controllerManager = "argocd-application-controller"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// latencies collects write-to-sink latencies of the run for the summary TestMain cannot log.
var latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

// write is when a write to the API server was sent and when its answer came back.
type write struct{ sent, returned time.Time }

func timed(f func()) write {
	w := write{sent: time.Now()}
	f()
	w.returned = time.Now()
	return w
}

// recordLatency records how long after the write returned the sink saw its effect. The
// watch event can beat the write's own response: that counts as no delay.
func recordLatency(t *testing.T, what string, w write, seen time.Time) {
	t.Helper()
	d := max(seen.Sub(w.returned), 0)
	t.Logf("%s: reported %s after the write returned (%s after it was sent)", what, d, seen.Sub(w.sent))
	latencies.mu.Lock()
	latencies.all = append(latencies.all, d)
	latencies.mu.Unlock()
	if d > reportWithin {
		t.Errorf("%s: reported %s after the write returned, want within %s", what, d, reportWithin)
	}
}

func startBedWatcher(t *testing.T, cfg WatcherConfig) (*Watcher, *recordingSink, *recordingSources, *prometheus.Registry) {
	t.Helper()
	disco, err := discovery.NewDiscoveryClientForConfig(bed.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	sink, sources := newRecordingSink(), newRecordingSources()
	reg := prometheus.NewPedanticRegistry()
	log, _ := testLogger(t)
	w, err := New(cfg, bed.kube.Dynamic, disco, sink, sources, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	return w, sink, sources, reg
}

func bedNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e6)
	if err := bed.kube.CreateNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

// createApp creates an Application with the spec of an appview fixture and no status, as
// `kubectl apply --server-side` would.
func createApp(t *testing.T, file, namespace, name string) (*unstructured.Unstructured, write) {
	t.Helper()
	src := fixture(t, file, namespace, name)
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": appview.APIVersion,
		"kind":       appview.Kind,
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec":       src.Object["spec"],
	}}
	var applied *unstructured.Unstructured
	var err error
	w := timed(func() { applied, err = bed.kube.ApplyObject(context.Background(), "kubectl", obj) })
	if err != nil {
		t.Fatal(err)
	}
	return applied, w
}

// patchApp sends a JSON merge patch the way Argo CD's application controller writes an
// Application: its CRD has no status subresource, so persistAppStatus and
// setOperationState (controller/appcontroller.go) patch .status on the object itself.
func patchApp(t *testing.T, namespace, name string, patch map[string]any) (*unstructured.Unstructured, write) {
	t.Helper()
	data, err := (&unstructured.Unstructured{Object: patch}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var out *unstructured.Unstructured
	w := timed(func() {
		out, err = bed.kube.Dynamic.Resource(applicationsGVR).Namespace(namespace).Patch(context.Background(),
			name, types.MergePatchType, data, metav1.PatchOptions{FieldManager: controllerManager})
	})
	if err != nil {
		t.Fatalf("patching application %s/%s: %v", namespace, name, err)
	}
	return out, w
}

// controllerWrites splits a fixture's status into the controller's two writes: the
// comparison result (persistAppStatus), then the operation state (setOperationState),
// which clears .operation once the operation completed.
func controllerWrites(t *testing.T, file string) []map[string]any {
	t.Helper()
	status, ok := fixture(t, file, "x", "x").Object["status"].(map[string]any)
	if !ok {
		t.Fatalf("%s has no status", file)
	}
	status = (&unstructured.Unstructured{Object: status}).DeepCopy().Object
	op, hasOp := status["operationState"].(map[string]any)
	delete(status, "operationState")
	writes := []map[string]any{{"status": status}}
	if hasOp {
		w := map[string]any{"status": map[string]any{"operationState": op}}
		if phase := op["phase"]; phase != appview.PhaseRunning && phase != appview.PhaseTerminating {
			w["operation"] = nil
		}
		writes = append(writes, w)
	}
	return writes
}

// expectReported waits until the sink reports exactly what obj, the API server's answer to
// the write w, says, and records how long that took.
func expectReported(t *testing.T, sink *recordingSink, from int, obj *unstructured.Unstructured, w write, what string) reconcile.App {
	t.Helper()
	want := wantApp(t, obj)
	e := sink.wait(t, 10*time.Second, from, what, func(e sinkEvent) bool {
		return !e.forget && e.key == want.Key && sameApp(e.app, want)
	})
	recordLatency(t, what, w, e.at)
	return e.app
}

func TestBedWatcherReportsControllerStatusWrites(t *testing.T) {
	testbed.Need(t, bed.started)
	w, sink, sources, reg := startBedWatcher(t, WatcherConfig{})
	waitSynced(t, w, 30*time.Second)
	sources.waitUp(t, 5*time.Second, 0)
	before := int(testutil.ToFloat64(w.objects)) // apps earlier tests left
	teamNS := bedNamespace(t, "team-bookinfo")

	cases := []struct {
		name, file, namespace string
		state                 reconcile.AppState
		reason, message       string
	}{
		{"synced-healthy", "synced-healthy.json", testbed.ArgoCDNamespace, reconcile.AppSynced, "Synced", ""},
		{"out-of-sync", "out-of-sync.json", testbed.ArgoCDNamespace, reconcile.AppOutOfSync, "OutOfSync", ""},
		{"operation-failed", "operation-failed.json", testbed.ArgoCDNamespace, reconcile.AppFailed, "Failed",
			`one or more objects failed to apply, reason: admission webhook "validation.istio.io" denied the request: configuration is invalid: http match uri prefix cannot be empty (retried 5 times).`},
		{"degraded", "degraded.json", testbed.ArgoCDNamespace, reconcile.AppFailed, "Degraded",
			`Deployment bookinfo/details-v1: Deployment "details-v1" exceeded its progress deadline`},
		{"operation-running", "operation-running.json", testbed.ArgoCDNamespace, reconcile.AppProgressing, "Running",
			"waiting for completion of hook /Pod/istio-config-check and 1 more resources"},
		{"other-namespace", "other-namespace.json", teamNS, reconcile.AppSynced, "Synced", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mark := sink.mark()
			created, at := createApp(t, tc.file, tc.namespace, tc.name)
			app := expectReported(t, sink, mark, created, at, "created without status")
			if app.State != reconcile.AppUnknown {
				t.Errorf("before any status: %s", app.State)
			}
			for i, patch := range controllerWrites(t, tc.file) {
				mark := sink.mark()
				obj, at := patchApp(t, tc.namespace, tc.name, patch)
				app = expectReported(t, sink, mark, obj, at, fmt.Sprintf("controller write %d", i+1))
			}
			if app.State != tc.state || app.Reason != tc.reason || app.Message != tc.message {
				t.Errorf("final report (%s, %q, %q), want (%s, %q, %q)", app.State, app.Reason, app.Message, tc.state, tc.reason, tc.message)
			}
			if app.Key.Namespace != tc.namespace {
				t.Errorf("key %s", app.Key)
			}
		})
	}

	t.Run("no-status", func(t *testing.T) {
		mark := sink.mark()
		created, at := createApp(t, "no-status.json", testbed.ArgoCDNamespace, "no-status")
		app := expectReported(t, sink, mark, created, at, "created without status")
		if app.State != reconcile.AppUnknown || app.Reason != "" || app.Suspended {
			t.Errorf("app without status reported as %+v", app)
		}
	})

	t.Run("delete", func(t *testing.T) {
		mark := sink.mark()
		var err error
		w := timed(func() {
			err = bed.kube.Dynamic.Resource(applicationsGVR).Namespace(testbed.ArgoCDNamespace).Delete(context.Background(), "out-of-sync", metav1.DeleteOptions{})
		})
		if err != nil {
			t.Fatal(err)
		}
		e := sink.waitForget(t, 10*time.Second, mark, appKey(testbed.ArgoCDNamespace, "out-of-sync"))
		recordLatency(t, "delete", w, e.at)
		if n := len(sink.forgotten(mark)); n != 1 {
			t.Errorf("%d apps forgotten, want 1", n)
		}
	})

	want := fmt.Sprintf(`
# HELP meshdrift_adapter_objects Objects an adapter currently reports, by adapter and kind.
# TYPE meshdrift_adapter_objects gauge
meshdrift_adapter_objects{adapter="argocd",kind="Application"} %d
`, before+len(cases))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshdrift_adapter_objects"); err != nil {
		t.Error(err)
	}
	if n := len(sources.all()); n != 1 {
		t.Errorf("source reports %+v, want only the first up", sources.all())
	}

	latencies.mu.Lock()
	all := slices.Sorted(slices.Values(latencies.all))
	latencies.mu.Unlock()
	if len(all) > 0 {
		t.Logf("write-to-sink latency over %d writes: min %s, median %s, p90 %s, max %s",
			len(all), all[0], all[len(all)/2], all[len(all)*9/10], all[len(all)-1])
	}
}

// An Application that passes the CRD's validation but not the view's decoding.
func TestBedWatcherDecodeError(t *testing.T) {
	testbed.Need(t, bed.started)
	w, sink, _, _ := startBedWatcher(t, WatcherConfig{})
	waitSynced(t, w, 30*time.Second)
	mark := sink.mark()
	ns := bedNamespace(t, "decode")
	createApp(t, "synced-healthy.json", ns, "odd-time")
	// RFC 3339 allows a lowercase "z", and so does the CRD's date-time format; Go's time
	// parser, which the view decodes with, does not.
	obj, at := patchApp(t, ns, "odd-time", map[string]any{"status": map[string]any{
		"sync":         map[string]any{"status": "Synced", "revision": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"},
		"health":       map[string]any{"status": "Healthy"},
		"reconciledAt": "2025-06-11T08:24:02z",
	}})
	if _, err := appview.FromUnstructured(obj); err == nil {
		t.Fatalf("the API server stored reconciledAt as %v, which decodes", obj.Object["status"])
	}
	e := sink.wait(t, 10*time.Second, mark, "reported with the decoding error", func(e sinkEvent) bool {
		return !e.forget && e.key == appKey(ns, "odd-time") && e.app.Reason == ReasonDecodeError
	})
	recordLatency(t, "undecodable write", at, e.at)
	if e.app.State != reconcile.AppUnknown || !strings.Contains(e.app.Message, "parsing time") {
		t.Errorf("reported %+v", e.app)
	}
	if v := testutil.ToFloat64(w.decodeErrors); v != 1 {
		t.Errorf("decode errors %v, want 1", v)
	}
}

func TestBedWatcherNamespaces(t *testing.T) {
	testbed.Need(t, bed.started)
	teamA, teamB := bedNamespace(t, "team-a"), bedNamespace(t, "team-b")
	w, sink, sources, _ := startBedWatcher(t, WatcherConfig{Namespaces: []string{teamA}})
	waitSynced(t, w, 30*time.Second)
	sources.waitUp(t, 5*time.Second, 0)
	mark := sink.mark()
	createApp(t, "other-namespace.json", teamB, "reviews")
	created, at := createApp(t, "other-namespace.json", teamA, "reviews")
	expectReported(t, sink, mark, created, at, "created in the watched namespace")
	time.Sleep(300 * time.Millisecond)
	for k := range sink.current() {
		if k.Namespace != teamA {
			t.Errorf("reported %s outside the watched namespace", k)
		}
	}
}

// Last of the bed tests (file order): it deletes the bed's Application CRD and installs
// it again, also in a cleanup should the test fail half-way.
func TestBedWatcherApplicationCRDRemovedAndRestored(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	crdYAML, err := os.ReadFile(filepath.Join(bed.assets.CRDDir("argocd"), "application-crd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crds := bed.kube.Dynamic.Resource(crdGVR)
	const crdName = "applications.argoproj.io"
	restore := func() {
		if _, err := bed.kube.Apply(ctx, "meshdrift-test", string(crdYAML)); err != nil {
			t.Fatalf("restoring the application crd: %v", err)
		}
		waitFor(t, 30*time.Second, "application crd established", func() bool {
			crd, err := crds.Get(ctx, crdName, metav1.GetOptions{})
			if err != nil {
				return false
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			return slices.ContainsFunc(conds, func(c any) bool {
				m, _ := c.(map[string]any)
				return m["type"] == "Established" && m["status"] == "True"
			})
		})
	}
	t.Cleanup(func() {
		if _, err := crds.Get(ctx, crdName, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			restore()
		}
	})

	running, sink, sources, _ := startBedWatcher(t, WatcherConfig{})
	waitSynced(t, running, 30*time.Second)
	sources.waitUp(t, 5*time.Second, 0)
	mark := sink.mark()
	created, at := createApp(t, "synced-healthy.json", testbed.ArgoCDNamespace, "before-crd-removal")
	expectReported(t, sink, mark, created, at, "created")

	// Removing the CRD deletes every Application first: those are real deletes.
	mark, statusMark := sink.mark(), sources.mark()
	if err := crds.Delete(ctx, crdName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "application crd gone", func() bool {
		_, err := crds.Get(ctx, crdName, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	sink.waitForget(t, 10*time.Second, mark, appKey(testbed.ArgoCDNamespace, "before-crd-removal"))
	down := sources.waitDown(t, 30*time.Second, statusMark, "")
	t.Logf("running watcher, crd removed: %s", down.Error)
	if !strings.Contains(down.Error, "watching argo cd applications in all namespaces") {
		t.Errorf("down with %q", down.Error)
	}

	// A watcher started without the CRD says why it cannot read anything.
	late, lateSink, lateSources, _ := startBedWatcher(t, WatcherConfig{DiscoveryInterval: 200 * time.Millisecond})
	lateDown := lateSources.waitDown(t, 10*time.Second, 0, "")
	const want = "argo cd application crd is not installed: the api server does not serve applications.argoproj.io/v1alpha1; checking again every 200ms"
	if lateDown.Error != want || !lateDown.NotInstalled {
		t.Errorf("watcher started without the crd: %q (NotInstalled %t)\nwant %q, NotInstalled", lateDown.Error, lateDown.NotInstalled, want)
	}
	if late.HasSynced() {
		t.Error("synced without the crd")
	}

	restore()
	restored := time.Now()
	up := lateSources.waitUp(t, 30*time.Second, 0)
	t.Logf("watcher started without the crd: up %s after the crd was established", up.Since.Sub(restored))
	up = sources.waitUp(t, 90*time.Second, statusMark)
	t.Logf("running watcher: up %s after the crd was established (informer backoff)", up.Since.Sub(restored))
	waitSynced(t, late, 10*time.Second)

	mark, lateMark := sink.mark(), lateSink.mark()
	created, at = createApp(t, "synced-healthy.json", testbed.ArgoCDNamespace, "after-crd-restore")
	expectReported(t, sink, mark, created, at, "created after restore (running watcher)")
	expectReported(t, lateSink, lateMark, created, at, "created after restore (late watcher)")
}
