package mesh_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/meshdrift/meshdrift/adapters/mesh"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/checks"
)

// countingSource is the live source with a count of the snapshots taken: each one
// decodes every mesh object.
type countingSource struct {
	*mesh.LiveSource
	snapshots atomic.Int64
}

func (c *countingSource) Snapshot() (*checks.Snapshot, string) {
	c.snapshots.Add(1)
	return c.LiveSource.Snapshot()
}

// The live checks on the real API server with nothing poking them (the watcher's sink is
// the test's recorder, the caches' OnChange is not wired): the runner wakes every
// 100 ms, and runs only when something the checks read changed. A Service created for a
// VirtualService's host and a route's status written by its implementation, neither of
// them a mesh spec change, each bring a run and a changed result; a pod's status write,
// which the checks do not read, and an idle cluster bring none.
func TestLiveChecksRunOnChangeOnly(t *testing.T) {
	r := start(t, mesh.Config{})
	ns := namespace(t)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(bed.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	md, err := metadata.NewForConfig(bed.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{LiveSource: &mesh.LiveSource{Watcher: r.w, Services: mesh.NewServices(dyn, 0),
		Pods: mesh.NewPods(md, 0), Namespaces: mesh.NewNamespaces(md, 0), Kinds: checks.InputKinds(checks.All())}}
	for _, run := range []func(context.Context) error{src.Services.Run, src.Pods.Run, src.Namespaces.Run} {
		testbed.RunInBackground(t, run)
	}
	if _, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: %[1]s}
spec:
  hosts: [web]
  http:
  - route:
    - destination: {host: backend}
---
apiVersion: v1
kind: Pod
metadata: {name: backend-abc, namespace: %[1]s, labels: {app: backend}}
spec:
  containers: [{name: app, image: example.invalid/backend:1}]
`, ns)); err != nil {
		t.Fatal(err)
	}

	const maxInterval = 100 * time.Millisecond
	live, err := checks.NewLive(checks.LiveConfig{MinInterval: 10 * time.Millisecond, MaxInterval: maxInterval, Settle: 10 * time.Millisecond}, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	testbed.RunInBackground(t, live.Run)

	vs := reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: "web"}
	route := reconcile.ObjectRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: ns, Name: "web"}
	has := func(code string, obj reconcile.ObjectRef) bool {
		return slices.ContainsFunc(live.Latest().Results, func(r reconcile.CheckResult) bool { return r.Code == code && r.Object == obj })
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testbed.Eventually(t, 10*time.Second, what, func() (bool, string) {
			l := live.Latest()
			return l.Waiting == "" && cond(), fmt.Sprintf("waiting %q, %d snapshots, results %v", l.Waiting, src.snapshots.Load(), l.Results)
		})
	}
	// idle asserts that no snapshot is taken over ten maximum intervals, and that the
	// runner did look and find the latest run current.
	idle := func(what string) {
		t.Helper()
		// Let the caches deliver what the last write started.
		time.Sleep(5 * maxInterval)
		before, at := src.snapshots.Load(), live.Latest().At
		time.Sleep(10 * maxInterval)
		l := live.Latest()
		if n := src.snapshots.Load() - before; n != 0 {
			t.Errorf("%s: %d snapshots over ten maximum intervals with nothing changed, want none", what, n)
		}
		if !l.At.Equal(at) || !l.ConfirmedAt.After(at) {
			t.Errorf("%s: latest run at %s confirmed at %s; want the same run, confirmed since", what, l.At, l.ConfirmedAt)
		}
	}

	waitFor("MD0501 on the VirtualService routing to a missing host", func() bool { return has("MD0501", vs) })
	idle("idle")

	// A Service is no mesh object: nothing pokes, the Services cache's count moves.
	if _, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: %s}
spec:
  selector: {app: backend}
  ports: [{port: 80}]
`, ns)); err != nil {
		t.Fatal(err)
	}
	waitFor("MD0501 gone once the Service exists", func() bool { return !has("MD0501", vs) })
	idle("idle after the Service")

	// A pod's status write moves its resourceVersion but nothing the checks read.
	pod, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "pods"}).Namespace(ns).Get(ctx, "backend-abc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(pod.Object, "probing", "status", "message"); err != nil {
		t.Fatal(err)
	}
	if _, err := bed.kube.UpdateStatus(ctx, pod); err != nil {
		t.Fatal(err)
	}
	idle("after a pod's status write")

	// A route: its creation is a spec change; its status, written as an implementation
	// does, is only a status write, and what MD0601 reads.
	before := src.snapshots.Load()
	routes, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: %s}
spec:
  parentRefs: [{name: ingress}]
  rules: [{backendRefs: [{name: backend, port: 80}]}]
`, ns))
	if err != nil {
		t.Fatal(err)
	}
	waitFor("a run after the route's creation", func() bool { return src.snapshots.Load() > before })
	idle("idle after the route")
	rt := routes[0]
	if err := unstructured.SetNestedSlice(rt.Object, []any{map[string]any{
		"parentRef": map[string]any{"name": "ingress"}, "controllerName": "istio.io/gateway-controller",
		"conditions": []any{map[string]any{"type": "Accepted", "status": "False", "reason": "NoMatchingParent",
			"message": "no Gateway ingress", "observedGeneration": rt.GetGeneration(), "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}},
	}}, "status", "parents"); err != nil {
		t.Fatal(err)
	}
	st, err := bed.kube.UpdateStatus(ctx, rt)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetGeneration() != rt.GetGeneration() {
		t.Fatalf("the status write moved the generation %d -> %d", rt.GetGeneration(), st.GetGeneration())
	}
	waitFor("MD0601 once the route's status says Accepted=False", func() bool { return has("MD0601", route) })
	for _, res := range live.Latest().Results {
		if res.Object == route && !strings.Contains(res.Message, "NoMatchingParent") {
			t.Errorf("route result %+v", res)
		}
	}
	idle("idle after the route's status")
}
