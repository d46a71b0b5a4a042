package mesh

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	discoveryfake "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdrift/meshdrift/reconcile/checks"
)

func obj(apiVersion, kind, ns, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": ns}}}
	for k, v := range fields {
		u.Object[k] = v
	}
	return u
}

func podMeta(ns, name string, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
}

// The live source on fake clients of an API server that serves Istio networking but not
// Gateway API (the test bed always installs Gateway API's CRDs, so this is where a kind
// that is not served can be shown): the route checks are skipped and say why, the
// others run on the watcher's objects, the trimmed Services and the pods' labels. Until
// every cache has synced, the source says what it waits for.
func TestLiveSourceSkipsUnservedKinds(t *testing.T) {
	vsGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	drGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}
	seGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{vsGVR: "VirtualServiceList", drGVR: "DestinationRuleList", seGVR: "ServiceEntryList", servicesGVR: "ServiceList"},
		obj("networking.istio.io/v1", "VirtualService", "shop", "web", map[string]any{"spec": map[string]any{
			"hosts": []any{"web"},
			"http":  []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "backend"}}, map[string]any{"destination": map[string]any{"host": "ghost"}}}}},
		}}),
		obj("networking.istio.io/v1", "DestinationRule", "shop", "backend", map[string]any{"spec": map[string]any{
			"host":    "backend",
			"subsets": []any{map[string]any{"name": "v1", "labels": map[string]any{"version": "v1"}}, map[string]any{"name": "v2", "labels": map[string]any{"version": "v2"}}},
		}}),
		obj("v1", "Service", "shop", "backend", map[string]any{
			"metadata": map[string]any{"name": "backend", "namespace": "shop",
				"annotations":   map[string]any{"networking.istio.io/exportTo": "*", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
				"managedFields": []any{map[string]any{"manager": "kubectl"}}},
			"spec":   map[string]any{"selector": map[string]any{"app": "backend"}, "ports": []any{map[string]any{"port": int64(80)}}, "clusterIP": "10.0.0.1"},
			"status": map[string]any{"loadBalancer": map[string]any{}},
		}),
	)
	dc := fakeNetworkingDiscovery()
	sch := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(sch); err != nil {
		t.Fatal(err)
	}
	md := metadatafake.NewSimpleMetadataClient(sch,
		podMeta("shop", "backend-v1-abc", map[string]string{"app": "backend", "version": "v1"}),
		&metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
	)
	w, err := New(Config{}, dyn, dc, nopSink{}, &statusRecorder{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &LiveSource{Watcher: w, Services: NewServices(dyn, 0), Pods: NewPods(md, 0), Namespaces: NewNamespaces(md, 0)}
	if s, why := src.Snapshot(); s != nil || why != "not synced: mesh objects, services, namespaces, pods" {
		t.Errorf("before any list: snapshot %v, waiting %q", s, why)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, run := range []func(context.Context) error{w.Run, src.Services.Run, src.Pods.Run, src.Namespaces.Run} {
		go func() { _ = run(ctx) }()
	}
	var snap *checks.Snapshot
	deadline := time.Now().Add(10 * time.Second)
	for {
		var why string
		if snap, why = src.Snapshot(); snap != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never synced: %s", why)
		}
		time.Sleep(10 * time.Millisecond)
	}

	svc := snap.Get(schema.GroupKind{Kind: "Service"}, "shop", "backend")
	if svc == nil {
		t.Fatal("the Service is not in the snapshot")
	}
	if _, ok := svc.Object["status"]; ok || svc.GetManagedFields() != nil || len(svc.GetAnnotations()) != 1 {
		t.Errorf("Service not trimmed to what the checks read: %v", svc.Object)
	}
	if sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector"); sel["app"] != "backend" {
		t.Errorf("Service selector lost: %v", svc.Object)
	}

	results, skipped := checks.Run(ctx, snap, checks.All())
	var got []string
	for _, r := range results {
		got = append(got, string(r.Code)+" "+r.Object.Name+" "+r.Path)
	}
	want := []string{
		"MD0505 backend spec.subsets[1].labels",
		"MD0501 web spec.http[0].route[1].destination.host",
	}
	if !slices.Equal(got, want) {
		t.Errorf("results %q, want %q", got, want)
	}
	reasons := map[string]string{}
	for _, s := range skipped {
		reasons[s.Name] = s.Reason
	}
	for _, name := range []string{"gatewayapi.routeaccepted", "gatewayapi.routeresolvedrefs"} {
		if !strings.Contains(reasons[name], "kinds not served: HTTPRoute.gateway.networking.k8s.io") {
			t.Errorf("%s skipped %q, want the unserved HTTPRoute named", name, reasons[name])
		}
	}
}

// fakeLive is a LiveSource on fake clients serving VirtualServices, DestinationRules and
// ServiceEntries, holding objs (mesh objects and Services) and one namespace, its caches
// replaying themselves every resync; it runs until the test ends and is returned synced.
func fakeLive(tb testing.TB, resync time.Duration, objs ...runtime.Object) (*LiveSource, *dynamicfake.FakeDynamicClient) {
	tb.Helper()
	vsGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	drGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}
	seGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{vsGVR: "VirtualServiceList", drGVR: "DestinationRuleList", seGVR: "ServiceEntryList", servicesGVR: "ServiceList"},
		objs...)
	dc := fakeNetworkingDiscovery()
	sch := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(sch); err != nil {
		tb.Fatal(err)
	}
	md := metadatafake.NewSimpleMetadataClient(sch,
		&metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	w, err := New(Config{Resync: resync}, dyn, dc, nopSink{}, &statusRecorder{}, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	src := &LiveSource{Watcher: w, Services: NewServices(dyn, resync), Pods: NewPods(md, resync), Namespaces: NewNamespaces(md, resync),
		Kinds: checks.InputKinds(checks.All())}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	for _, run := range []func(context.Context) error{w.Run, src.Services.Run, src.Pods.Run, src.Namespaces.Run} {
		go func() { _ = run(ctx) }()
	}
	deadline := time.Now().Add(time.Minute)
	for src.waiting() != "" {
		if time.Now().After(deadline) {
			tb.Fatalf("never synced: %s", src.waiting())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return src, dyn
}

// Version counts adds and deletes of every cache the snapshot reads, and not the
// informers' resyncs, which deliver every cached object again as an update.
func TestLiveSourceVersionCountsChangesNotResyncs(t *testing.T) {
	src, dyn := fakeLive(t, time.Second, // client-go's least resync period
		obj("networking.istio.io/v1", "VirtualService", "shop", "web", map[string]any{"spec": map[string]any{"hosts": []any{"web"}}}),
		obj("v1", "Service", "shop", "web", map[string]any{"spec": map[string]any{"ports": []any{map[string]any{"port": int64(80)}}}}))
	waitVersion := func(what string, cond func(uint64) bool) uint64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(src.Version()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: version %d", what, src.Version())
			}
			time.Sleep(5 * time.Millisecond)
		}
		return src.Version()
	}
	// The initial lists: two objects and a namespace, and the kinds started.
	v0 := waitVersion("the initial lists", func(v uint64) bool { return v >= 3 })
	var resyncs atomic.Int64
	if _, err := src.Services.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, cur any) {
			if old == cur {
				resyncs.Add(1)
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for resyncs.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d resyncs of the Services cache in 10 s", resyncs.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := src.Version(); v != v0 {
		t.Errorf("version %d -> %d over resyncs alone", v0, v)
	}

	ctx := context.Background()
	if _, err := dyn.Resource(servicesGVR).Namespace("shop").Create(ctx,
		obj("v1", "Service", "shop", "backend", map[string]any{"spec": map[string]any{}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v1 := waitVersion("a Service created", func(v uint64) bool { return v > v0 })
	vsGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	if err := dyn.Resource(vsGVR).Namespace("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitVersion("a VirtualService deleted", func(v uint64) bool { return v > v1 })
}

// fakeNetworkingDiscovery serves VirtualServices, DestinationRules and ServiceEntries.
func fakeNetworkingDiscovery() *discoveryfake.FakeDiscovery {
	return &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{Resources: []*metav1.APIResourceList{{
		GroupVersion: "networking.istio.io/v1",
		APIResources: []metav1.APIResource{
			{Name: "virtualservices", Kind: "VirtualService", Namespaced: true, Verbs: listWatch},
			{Name: "destinationrules", Kind: "DestinationRule", Namespaced: true, Verbs: listWatch},
			{Name: "serviceentries", Kind: "ServiceEntry", Namespaced: true, Verbs: listWatch},
		},
	}}}}
}
