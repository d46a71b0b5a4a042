package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/meshdrift/meshdrift/adapters/mesh"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// One API server for the package; each test has its own namespace and its own Watcher.
var bed struct {
	started bool
	kube    *testbed.Kube
}

func TestMain(m *testing.M) {
	os.Exit(testbed.MainBed(m, testbed.BedOptions{LogPrefix: "meshdrift-mesh-"}, func(b *testbed.Bed) error {
		bed.kube, bed.started = b.Kube, true
		return nil
	}))
}

// maxDelay is how long a change may take from the API server's answer to the write until
// it reaches the sink: a watch event on a local API server takes milliseconds.
const maxDelay = time.Second

var (
	vsGVR  = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

type received struct {
	change reconcile.MeshChange
	at     time.Time
}

// recorder is the MeshSink and SourceReporter of a test.
type recorder struct {
	mu       sync.Mutex
	changes  []received
	statuses []reconcile.SourceStatus
}

func (r *recorder) ObserveMeshChange(c reconcile.MeshChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, received{c, time.Now()})
}

func (r *recorder) ReportSource(s reconcile.SourceStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = append(r.statuses, s)
}

// of returns the changes of one object, in the order they arrived.
func (r *recorder) of(kind, ns, name string) []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, c := range r.changes {
		if c.change.Ref.Kind == kind && c.change.Ref.Namespace == ns && c.change.Ref.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func (r *recorder) lastStatus() (reconcile.SourceStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.statuses) == 0 {
		return reconcile.SourceStatus{}, false
	}
	return r.statuses[len(r.statuses)-1], true
}

// waitChange waits for the n-th change (counting from 1) of an object and checks that it
// arrived within maxDelay of written, the time the write returned.
func (r *recorder) waitChange(t *testing.T, kind, ns, name string, n int, written time.Time) reconcile.MeshChange {
	t.Helper()
	var got []received
	testbed.Eventually(t, 5*time.Second, fmt.Sprintf("change %d of %s %s/%s", n, kind, ns, name), func() (bool, string) {
		got = r.of(kind, ns, name)
		return len(got) >= n, fmt.Sprintf("%d changes: %+v", len(got), got)
	})
	c := got[n-1]
	d := c.at.Sub(written)
	if d > maxDelay {
		t.Errorf("change %d of %s/%s arrived %s after the write, want within %s", n, ns, name, d, maxDelay)
	}
	t.Logf("change %d of %s %s/%s arrived %s after the write returned", n, kind, ns, name, d)
	return c.change
}

var nsCounter atomic.Int32

func namespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("mesh-%d-%s", nsCounter.Add(1), strings.ToLower(strings.TrimPrefix(t.Name(), "Test")))
	if len(ns) > 63 {
		ns = ns[:63]
	}
	ns = strings.TrimRight(ns, "-")
	if err := bed.kube.CreateNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

type running struct {
	w   *mesh.Watcher
	rec *recorder
	reg *prometheus.Registry
}

// start runs a Watcher with the bed's admin credentials until the test ends, and waits
// for its initial sync.
func start(t *testing.T, cfg mesh.Config) running {
	t.Helper()
	testbed.Need(t, bed.started)
	r := run(t, cfg, bed.kube.Config)
	testbed.Eventually(t, 10*time.Second, "initial sync", func() (bool, string) {
		return r.w.HasSynced(), fmt.Sprintf("watching %v", r.w.Watched())
	})
	return r
}

// run runs a Watcher with the given credentials until the test ends.
func run(t *testing.T, cfg mesh.Config, rc *rest.Config) running {
	t.Helper()
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := mesh.New(cfg, dyn, dc, rec, rec, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	testbed.RunInBackground(t, w.Run)
	return running{w, rec, reg}
}

func apply(t *testing.T, manager, manifest string) (*unstructured.Unstructured, time.Time) {
	t.Helper()
	objs, err := bed.kube.Apply(context.Background(), manager, manifest)
	if err != nil {
		t.Fatal(err)
	}
	return objs[0], time.Now()
}

// edit changes a VirtualService the way kubectl edit does: an Update of the whole object.
func edit(t *testing.T, ns, name, manager string, change func(u *unstructured.Unstructured)) (*unstructured.Unstructured, time.Time) {
	t.Helper()
	ctx := context.Background()
	res := bed.kube.Dynamic.Resource(vsGVR).Namespace(ns)
	u, err := res.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	change(u)
	out, err := res.Update(ctx, u, metav1.UpdateOptions{FieldManager: manager})
	if err != nil {
		t.Fatalf("update as %s: %v", manager, err)
	}
	return out, time.Now()
}

func setHosts(t *testing.T, hosts ...any) func(u *unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) {
		if err := unstructured.SetNestedSlice(u.Object, hosts, "spec", "hosts"); err != nil {
			t.Fatal(err)
		}
	}
}

func virtualService(ns, name, labels, annotations string) string {
	return fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %s
  namespace: %s
  labels: {%s}
  annotations: {%s}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
`, name, ns, labels, annotations)
}

func wantChange(t *testing.T, got reconcile.MeshChange, want reconcile.MeshChange) {
	t.Helper()
	got.ObservedAt, want.ObservedAt = time.Time{}, time.Time{}
	// SpecWrites are checked where they matter (TestFluxAppliedThenKubectlEdited).
	got.SpecWrites, want.SpecWrites = nil, nil
	if !want.Reach.Known {
		// The spec's reach is covered by reach_test.go; a test that sets none skips it.
		got.Reach = reconcile.Reach{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("change\n got %+v\nwant %+v", got, want)
	}
}

func vsRef(ns, name string) reconcile.ObjectRef {
	return reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: name}
}

func TestFluxAppliedThenKubectlEdited(t *testing.T) {
	r := start(t, mesh.Config{})
	ns := namespace(t)
	owner := reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: "apps"}

	before := time.Now()
	obj, written := apply(t, "kustomize-controller", virtualService(ns, "reviews",
		`kustomize.toolkit.fluxcd.io/name: apps, kustomize.toolkit.fluxcd.io/namespace: flux-system`, ``))
	c := r.rec.waitChange(t, "VirtualService", ns, "reviews", 1, written)
	wantChange(t, c, reconcile.MeshChange{Ref: vsRef(ns, "reviews"), Generation: 1, ResourceVersion: obj.GetResourceVersion(),
		Manager: "kustomize-controller", GitOpsOwner: owner})
	if c.ObservedAt.Before(before) || c.ObservedAt.After(time.Now()) {
		t.Errorf("live change observed at %s, want between the write (%s) and now", c.ObservedAt, before)
	}

	// Within the same second as the apply, most likely: managedFields times tie.
	obj, written = edit(t, ns, "reviews", "kubectl-edit", setHosts(t, "reviews", "reviews.example.com"))
	c = r.rec.waitChange(t, "VirtualService", ns, "reviews", 2, written)
	wantChange(t, c, reconcile.MeshChange{Ref: vsRef(ns, "reviews"), Generation: 2, ResourceVersion: obj.GetResourceVersion(),
		Manager: "kubectl-edit", GitOpsOwner: owner})
	// What the out-of-band check (MD0801) reads: the editor, its operation and field.
	if w, ok := specWriteBy(c, "kubectl-edit"); !ok || w.Operation != "Update" || !slices.Contains(w.Fields, "spec.hosts") || w.At.IsZero() {
		t.Errorf("spec writes %+v: want kubectl-edit (Update) owning spec.hosts, with a time", c.SpecWrites)
	}
	if w, ok := specWriteBy(c, "kustomize-controller"); !ok || w.Operation != "Apply" {
		t.Errorf("spec writes %+v: want kustomize-controller (Apply)", c.SpecWrites)
	}

	// Flux puts its version back: the change is Flux's again.
	obj, written = apply(t, "kustomize-controller", virtualService(ns, "reviews",
		`kustomize.toolkit.fluxcd.io/name: apps, kustomize.toolkit.fluxcd.io/namespace: flux-system`, ``))
	c = r.rec.waitChange(t, "VirtualService", ns, "reviews", 3, written)
	wantChange(t, c, reconcile.MeshChange{Ref: vsRef(ns, "reviews"), Generation: 3, ResourceVersion: obj.GetResourceVersion(),
		Manager: "kustomize-controller", GitOpsOwner: owner})
	// The forced apply took the edited field back: the editor owns no spec field any more,
	// so an out-of-band edit resolves once the GitOps controller reverts it.
	if w, ok := specWriteBy(c, "kubectl-edit"); ok {
		t.Errorf("kubectl-edit still owns spec fields after Flux's apply: %+v", w)
	}
}

func specWriteBy(c reconcile.MeshChange, manager string) (reconcile.SpecWrite, bool) {
	for _, w := range c.SpecWrites {
		if w.Manager == manager {
			return w, true
		}
	}
	return reconcile.SpecWrite{}, false
}

func TestStatusAndMetadataWritesAreNoChange(t *testing.T) {
	r := start(t, mesh.Config{})
	ns := namespace(t)
	obj, written := apply(t, "kustomize-controller", virtualService(ns, "ratings", ``, ``))
	r.rec.waitChange(t, "VirtualService", ns, "ratings", 1, written)

	// istiod writes status (when status writing is on) as its own manager.
	if err := unstructured.SetNestedField(obj.Object, int64(1), "status", "observedGeneration"); err != nil {
		t.Fatal(err)
	}
	st, err := bed.kube.UpdateStatus(context.Background(), obj)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetGeneration() != 1 || st.GetResourceVersion() == obj.GetResourceVersion() {
		t.Fatalf("status write: generation %d, resourceVersion %s -> %s; want generation 1 and a new resourceVersion",
			st.GetGeneration(), obj.GetResourceVersion(), st.GetResourceVersion())
	}
	labelled, _ := edit(t, ns, "ratings", "kubectl-label", func(u *unstructured.Unstructured) {
		u.SetLabels(map[string]string{"team": "reviews"})
	})
	if labelled.GetGeneration() != 1 {
		t.Fatalf("label write raised generation to %d", labelled.GetGeneration())
	}

	// Watch events of one object arrive in order: had either write above been taken for
	// a change, it would be the second change, before this one.
	obj, written = edit(t, ns, "ratings", "kubectl-edit", setHosts(t, "ratings"))
	c := r.rec.waitChange(t, "VirtualService", ns, "ratings", 2, written)
	wantChange(t, c, reconcile.MeshChange{Ref: vsRef(ns, "ratings"), Generation: 2, ResourceVersion: obj.GetResourceVersion(), Manager: "kubectl-edit"})
	if n := len(r.rec.of("VirtualService", ns, "ratings")); n != 2 {
		t.Errorf("%d changes, want 2: %+v", n, r.rec.of("VirtualService", ns, "ratings"))
	}
}

func TestArgoCDAppliedThenDeleted(t *testing.T) {
	r := start(t, mesh.Config{})
	ns := namespace(t)
	// An Application in namespace team-a (apps in any namespace) tracks by annotation.
	owner := reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: "team-a", Name: "bookinfo"}
	tracking := fmt.Sprintf(`argocd.argoproj.io/tracking-id: "team-a_bookinfo:networking.istio.io/VirtualService:%s/details"`, ns)
	obj, written := apply(t, "argocd-controller", virtualService(ns, "details", `app.kubernetes.io/instance: team-a_bookinfo`, tracking))
	c := r.rec.waitChange(t, "VirtualService", ns, "details", 1, written)
	wantChange(t, c, reconcile.MeshChange{Ref: vsRef(ns, "details"), Generation: 1, ResourceVersion: obj.GetResourceVersion(),
		Manager: "argocd-controller", GitOpsOwner: owner})

	if err := bed.kube.Dynamic.Resource(vsGVR).Namespace(ns).Delete(context.Background(), "details", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	written = time.Now()
	c = r.rec.waitChange(t, "VirtualService", ns, "details", 2, written)
	if !c.Deleted || c.Ref != vsRef(ns, "details") || c.GitOpsOwner != owner || c.Manager != "" {
		t.Errorf("deletion reported as %+v; want Deleted, the same ref and owner, no manager", c)
	}
}

func TestGatewayAPIRoute(t *testing.T) {
	r := start(t, mesh.Config{})
	ns := namespace(t)
	want := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	if !slices.Contains(r.w.Watched(), want) {
		t.Fatalf("%s not watched: %v", want, r.w.Watched())
	}
	obj, written := apply(t, "helm-controller", fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: reviews
  namespace: %s
  labels: {helm.toolkit.fluxcd.io/name: bookinfo, helm.toolkit.fluxcd.io/namespace: flux-system, app.kubernetes.io/instance: bookinfo}
spec:
  parentRefs: [{name: ingress}]
  hostnames: [reviews.example.com]
  rules:
  - backendRefs: [{name: reviews, port: 9080}]
`, ns))
	c := r.rec.waitChange(t, "HTTPRoute", ns, "reviews", 1, written)
	wantChange(t, c, reconcile.MeshChange{
		Ref:        reconcile.ObjectRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: ns, Name: "reviews"},
		Generation: 1, ResourceVersion: obj.GetResourceVersion(), Manager: "helm-controller",
		GitOpsOwner: reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "HelmRelease", Namespace: "flux-system", Name: "bookinfo"},
	})
}

// The objects found at start did not just change: they carry their last spec write's time,
// and they are not counted as changes.
func TestInitialListCarriesSpecWriteTime(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := namespace(t)
	obj, _ := apply(t, "kustomize-controller", virtualService(ns, "productpage", ``, ``))
	// Let the spec write age, so its time cannot be confused with the watcher's start.
	time.Sleep(1100 * time.Millisecond)
	edited, _ := edit(t, ns, "productpage", "kubectl-label", func(u *unstructured.Unstructured) {
		u.SetLabels(map[string]string{"later": "label-write"})
	})
	var specAt time.Time
	for _, e := range edited.GetManagedFields() {
		if e.Manager == "kustomize-controller" {
			specAt = e.Time.Time
		}
	}
	if specAt.IsZero() {
		t.Fatalf("no kustomize-controller entry in %+v", edited.GetManagedFields())
	}

	r := start(t, mesh.Config{})
	got := r.rec.of("VirtualService", ns, "productpage")
	if len(got) != 1 {
		t.Fatalf("%d changes at start, want 1: %+v", len(got), got)
	}
	c := got[0].change
	// Written more than a second before the watcher started: the baseline, with its reach.
	wantChange(t, c, reconcile.MeshChange{Ref: vsRef(ns, "productpage"), Generation: 1, ResourceVersion: edited.GetResourceVersion(), Manager: "kustomize-controller",
		Baseline: true, Reach: reconcile.Reach{Known: true, Hosts: []string{"reviews"}}})
	if !c.ObservedAt.Equal(specAt) {
		t.Errorf("initial change observed at %s, want the spec write's managedFields time %s (object created %s)",
			c.ObservedAt, specAt, obj.GetCreationTimestamp())
	}
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(""), "meshdrift_mesh_changes_total"); err != nil {
		t.Errorf("initial list counted as changes: %v", err)
	}

	_, written := edit(t, ns, "productpage", "kubectl-edit", setHosts(t, "productpage"))
	r.rec.waitChange(t, "VirtualService", ns, "productpage", 2, written)
	want := `
# HELP meshdrift_mesh_changes_total Spec changes and deletions of mesh objects observed while watching (objects found by the initial list are not counted), by kind and class of field manager (gitops, kubectl, other).
# TYPE meshdrift_mesh_changes_total counter
meshdrift_mesh_changes_total{kind="VirtualService.networking.istio.io",manager_class="kubectl"} 1
`
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "meshdrift_mesh_changes_total"); err != nil {
		t.Error(err)
	}
}

// The objects gauge holds, per watched kind, what the API server lists.
func TestObjectsGauge(t *testing.T) {
	r := start(t, mesh.Config{})
	ns := namespace(t)
	_, written := apply(t, "kubectl", virtualService(ns, "gauge", ``, ``))
	r.rec.waitChange(t, "VirtualService", ns, "gauge", 1, written)

	kinds := map[schema.GroupVersionResource]string{}
	dc, err := discovery.NewDiscoveryClientForConfig(bed.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lists {
		gv, _ := schema.ParseGroupVersion(l.GroupVersion)
		for _, res := range l.APIResources {
			kinds[gv.WithResource(res.Name)] = res.Kind
		}
	}
	var lines []string
	for _, gvr := range r.w.Watched() {
		list, err := bed.kube.Dynamic.Resource(gvr).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf(`meshdrift_adapter_objects{adapter="mesh",kind="%s.%s"} %d`, kinds[gvr], gvr.Group, len(list.Items)))
	}
	sort.Strings(lines)
	want := "# HELP meshdrift_adapter_objects Objects an adapter currently reports, by adapter and kind.\n" +
		"# TYPE meshdrift_adapter_objects gauge\n" + strings.Join(lines, "\n") + "\n"
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), "meshdrift_adapter_objects"); err != nil {
		t.Error(err)
	}
}

// Only installed kinds are watched, and discovery is read again: a CRD installed later
// is watched, and one removed is dropped, with the source up all along but for the gap.
func TestWatchedKindsFollowDiscovery(t *testing.T) {
	r := start(t, mesh.Config{DiscoveryInterval: 200 * time.Millisecond})
	watched := r.w.Watched()
	for _, want := range []schema.GroupVersionResource{
		vsGVR,
		{Group: "networking.istio.io", Version: "v1alpha3", Resource: "envoyfilters"},
		{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"},
		{Group: "telemetry.istio.io", Version: "v1", Resource: "telemetries"},
		{Group: "extensions.istio.io", Version: "v1alpha1", Resource: "wasmplugins"},
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"},
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "referencegrants"},
	} {
		if !slices.Contains(watched, want) {
			t.Errorf("%s not watched", want)
		}
	}
	for _, gvr := range watched {
		if strings.HasSuffix(gvr.Group, "linkerd.io") {
			t.Errorf("%s watched, but Linkerd is not installed", gvr)
		}
	}
	if s, ok := r.rec.lastStatus(); !ok || !s.Up || s.Error != "" || s.Name != "mesh" {
		t.Errorf("source status %+v (reported: %v), want mesh up", s, ok)
	}
	t.Logf("watching %d kinds: %v", len(watched), watched)

	crd, err := os.ReadFile("testdata/linkerd-serviceprofile-crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	apply(t, "kubectl", string(crd))
	t.Cleanup(func() {
		_ = bed.kube.Dynamic.Resource(crdGVR).Delete(context.Background(), "serviceprofiles.linkerd.io", metav1.DeleteOptions{})
	})
	sp := schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}
	testbed.Eventually(t, 10*time.Second, "the ServiceProfile kind watched and synced", func() (bool, string) {
		return slices.Contains(r.w.Watched(), sp) && r.w.HasSynced(), fmt.Sprintf("watching %v", r.w.Watched())
	})

	ns := namespace(t)
	name := "reviews." + ns + ".svc.cluster.local"
	obj, written := apply(t, "kubectl", fmt.Sprintf(`
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: %s
  namespace: %s
spec:
  routes: [{name: GET /reviews, condition: {method: GET, pathRegex: /reviews}}]
`, name, ns))
	c := r.rec.waitChange(t, "ServiceProfile", ns, name, 1, written)
	wantChange(t, c, reconcile.MeshChange{
		Ref:        reconcile.ObjectRef{Group: "linkerd.io", Kind: "ServiceProfile", Namespace: ns, Name: name},
		Generation: 1, ResourceVersion: obj.GetResourceVersion(), Manager: "kubectl",
	})

	if err := bed.kube.Dynamic.Resource(sp).Namespace(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	written = time.Now()
	if c := r.rec.waitChange(t, "ServiceProfile", ns, name, 2, written); !c.Deleted {
		t.Errorf("deletion reported as %+v", c)
	}

	if err := bed.kube.Dynamic.Resource(crdGVR).Delete(context.Background(), "serviceprofiles.linkerd.io", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 20*time.Second, "the ServiceProfile kind dropped, source up", func() (bool, string) {
		s, _ := r.rec.lastStatus()
		return !slices.Contains(r.w.Watched(), sp) && s.Up, fmt.Sprintf("status %+v, watching %v", s, r.w.Watched())
	})
}

// A kind the watcher may not read makes the source down, naming the kind; once allowed,
// the reflector's retry brings it up, and its changes flow.
func TestForbiddenWatchReportedThenRecovered(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := namespace(t)
	user := "meshdrift-" + ns
	rbac := func(groups string) string {
		return fmt.Sprintf(`
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: %[1]s}
rules:
- apiGroups: [%[2]s]
  resources: ["*"]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: %[1]s}
subjects: [{kind: User, name: %[1]s, apiGroup: rbac.authorization.k8s.io}]
roleRef: {kind: ClusterRole, name: %[1]s, apiGroup: rbac.authorization.k8s.io}
`, user, groups)
	}
	if _, err := bed.kube.Apply(context.Background(), "kubectl", rbac(`networking.istio.io`)); err != nil {
		t.Fatal(err)
	}
	rc := rest.CopyConfig(bed.kube.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: user}
	r := run(t, mesh.Config{}, rc)

	testbed.Eventually(t, 10*time.Second, "the source down for the forbidden kinds", func() (bool, string) {
		s, ok := r.rec.lastStatus()
		return ok && !s.Up && strings.Contains(s.Error, "watching HTTPRoute.gateway.networking.k8s.io: ") &&
			strings.Contains(s.Error, "forbidden"), fmt.Sprintf("%+v", s)
	})
	if r.w.HasSynced() {
		t.Error("HasSynced with kinds that cannot be listed")
	}
	if s, _ := r.rec.lastStatus(); strings.Contains(s.Error, "VirtualService") {
		t.Errorf("an allowed kind reported failing: %s", s.Error)
	}
	if n := restarts(t, r.reg, "HTTPRoute.gateway.networking.k8s.io"); n < 1 {
		t.Errorf("meshdrift_adapter_watch_restarts_total of HTTPRoute = %v, want at least 1", n)
	}
	if n := restarts(t, r.reg, "VirtualService.networking.istio.io"); n != 0 {
		t.Errorf("meshdrift_adapter_watch_restarts_total of VirtualService = %v, want 0", n)
	}

	if _, err := bed.kube.Apply(context.Background(), "kubectl", rbac(`networking.istio.io, security.istio.io, telemetry.istio.io, extensions.istio.io, gateway.networking.k8s.io`)); err != nil {
		t.Fatal(err)
	}
	// The reflector retries with a backoff that has grown for a few seconds by now.
	testbed.Eventually(t, 45*time.Second, "the source up again and synced", func() (bool, string) {
		s, _ := r.rec.lastStatus()
		return s.Up && s.Error == "" && r.w.HasSynced(), fmt.Sprintf("%+v", s)
	})

	_, written := apply(t, "kustomize-controller", fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: recovered, namespace: %s}
spec:
  parentRefs: [{name: ingress}]
  rules: [{backendRefs: [{name: reviews, port: 9080}]}]
`, ns))
	r.rec.waitChange(t, "HTTPRoute", ns, "recovered", 1, written)
}

// capturedStep is one step of testdata/managedfields/vs-lifecycle.json: the object as the
// API server returned it after the write.
type capturedStep struct {
	Step   string         `json:"step"`
	Object map[string]any `json:"object"`
}

// A VirtualService's life as GitOps and humans write it: each write's manager must be
// the Manager of the change it causes, and status and label writes cause none. With
// MESHDRIFT_UPDATE_GOLDEN=1 the objects are saved for TestCapturedManagedFields.
func TestManagersThroughALifecycle(t *testing.T) {
	r := start(t, mesh.Config{})
	ns := namespace(t)
	ctx := context.Background()
	res := bed.kube.Dynamic.Resource(vsGVR).Namespace(ns)
	var steps []capturedStep
	record := func(step string, u *unstructured.Unstructured) {
		steps = append(steps, capturedStep{step, u.DeepCopy().Object})
	}
	manifest := virtualService(ns, "lifecycle", `kustomize.toolkit.fluxcd.io/name: apps, kustomize.toolkit.fluxcd.io/namespace: flux-system`, ``)

	obj, written := apply(t, "kustomize-controller", manifest)
	record("apply", obj)
	if c := r.rec.waitChange(t, "VirtualService", ns, "lifecycle", 1, written); c.Manager != "kustomize-controller" {
		t.Errorf("apply: manager %q", c.Manager)
	}

	obj, written = edit(t, ns, "lifecycle", "kubectl-edit", setHosts(t, "reviews", "reviews.example.com"))
	record("edit", obj)
	if c := r.rec.waitChange(t, "VirtualService", ns, "lifecycle", 2, written); c.Manager != "kubectl-edit" {
		t.Errorf("edit: manager %q", c.Manager)
	}

	if err := unstructured.SetNestedField(obj.Object, int64(2), "status", "observedGeneration"); err != nil {
		t.Fatal(err)
	}
	obj, err := res.UpdateStatus(ctx, obj, metav1.UpdateOptions{FieldManager: "pilot-discovery"})
	if err != nil {
		t.Fatal(err)
	}
	record("status", obj)

	obj, _ = edit(t, ns, "lifecycle", "kubectl-label", func(u *unstructured.Unstructured) {
		labels := u.GetLabels()
		labels["team"] = "reviews"
		u.SetLabels(labels)
	})
	record("label", obj)

	obj, written = apply(t, "kustomize-controller", manifest)
	record("reapply", obj)
	if c := r.rec.waitChange(t, "VirtualService", ns, "lifecycle", 3, written); c.Manager != "kustomize-controller" {
		t.Errorf("reapply: manager %q", c.Manager)
	}
	if n := len(r.rec.of("VirtualService", ns, "lifecycle")); n != 3 {
		t.Errorf("%d changes, want 3 (apply, edit, reapply)", n)
	}

	if os.Getenv("MESHDRIFT_UPDATE_GOLDEN") == "1" {
		data, err := json.MarshalIndent(steps, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("testdata/managedfields/vs-lifecycle.json", append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// restarts reads meshdrift_adapter_watch_restarts_total of the mesh adapter for one kind.
func restarts(t *testing.T, reg *prometheus.Registry, kind string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "meshdrift_adapter_watch_restarts_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["adapter"] == "mesh" && labels["kind"] == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// The meshdrift.io/ignore annotation travels with the change, for findings to read.
func TestIgnoreAnnotationCarried(t *testing.T) {
	r := start(t, mesh.Config{})
	ns := namespace(t)
	obj, written := apply(t, "kustomize-controller", virtualService(ns, "ignored", ``, `meshdrift.io/ignore: "MD0203,MD0301"`))
	c := r.rec.waitChange(t, "VirtualService", ns, "ignored", 1, written)
	wantChange(t, c, reconcile.MeshChange{Ref: vsRef(ns, "ignored"), Generation: 1, ResourceVersion: obj.GetResourceVersion(),
		Manager: "kustomize-controller", Ignore: "MD0203,MD0301"})
}
