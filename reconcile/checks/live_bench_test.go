package checks

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// benchSource is a synced cluster of namespaces each holding 5 Services with their
// VirtualServices and DestinationRules (two subsets each, v1 with pods, v2 without), 3
// AuthorizationPolicies, a ServiceEntry and a Gateway (20 objects), and podsPerNS pods, and one ingress gateway pod.
// Snapshot builds the picture as the live source does, from objects already in memory.
type benchSource struct {
	objects []*unstructured.Unstructured
	pods    []PodMeta
	served  map[schema.GroupKind]bool
}

func newBenchSource(namespaces, podsPerNS int) *benchSource {
	src := &benchSource{served: map[schema.GroupKind]bool{{Kind: "Pod"}: true, {Kind: "Namespace"}: true}}
	add := func(apiVersion, kind, ns, name string, spec map[string]any) {
		gv, _ := schema.ParseGroupVersion(apiVersion)
		src.served[schema.GroupKind{Group: gv.Group, Kind: kind}] = true
		src.objects = append(src.objects, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": apiVersion, "kind": kind,
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec":     spec,
		}})
	}
	for n := range namespaces {
		ns := fmt.Sprintf("team-%d", n)
		for s := range 5 {
			svc := fmt.Sprintf("svc-%d", s)
			add("v1", "Service", ns, svc, map[string]any{"selector": map[string]any{"app": svc}, "ports": []any{map[string]any{"port": int64(80)}}})
			add("networking.istio.io/v1", "VirtualService", ns, svc, map[string]any{
				"hosts": []any{svc},
				"http": []any{map[string]any{"route": []any{
					map[string]any{"destination": map[string]any{"host": svc, "subset": "v1"}, "weight": int64(90)},
					map[string]any{"destination": map[string]any{"host": svc, "subset": "v2"}, "weight": int64(10)},
				}}},
			})
			add("networking.istio.io/v1", "DestinationRule", ns, svc, map[string]any{
				"host": svc,
				"subsets": []any{
					map[string]any{"name": "v1", "labels": map[string]any{"version": "v1"}},
					map[string]any{"name": "v2", "labels": map[string]any{"version": "v2"}},
				},
			})
		}
		for p := range 3 {
			add("security.istio.io/v1", "AuthorizationPolicy", ns, fmt.Sprintf("ap-%d", p), map[string]any{
				"selector": map[string]any{"matchLabels": map[string]any{"app": fmt.Sprintf("svc-%d", p)}},
			})
		}
		add("networking.istio.io/v1", "ServiceEntry", ns, "external", map[string]any{"hosts": []any{ns + ".example.com"}})
		add("networking.istio.io/v1", "Gateway", ns, "ingress", map[string]any{"selector": map[string]any{"istio": "ingressgateway"}})
		for p := range podsPerNS {
			src.pods = append(src.pods, PodMeta{Namespace: ns, Name: fmt.Sprintf("pod-%d", p),
				Labels: map[string]string{"app": fmt.Sprintf("svc-%d", p%5), "version": "v1", "pod-template-hash": "abc123"}})
		}
	}
	src.pods = append(src.pods, PodMeta{Namespace: "istio-system", Name: "istio-ingressgateway-0", Labels: map[string]string{"istio": "ingressgateway"}})
	for _, gk := range routeKinds {
		src.served[gk] = true
	}
	src.served[gkPeerAuthn], src.served[gkRequestAuthn], src.served[gkSidecar] = true, true, true
	return src
}

func (b *benchSource) Snapshot() (*Snapshot, string) {
	s := NewSnapshot()
	s.Live, s.Served = true, b.served
	for _, u := range b.objects {
		s.Add(u, Origin{})
	}
	s.Pods = b.pods
	return s, ""
}

// One live run (the snapshot from memory, then every check) over 2,000 mesh objects and
// Services in 100 namespaces and 5,000 pods: what the runner does at most once a second.
func BenchmarkLiveChecks(b *testing.B) {
	src := newBenchSource(100, 50)
	l, err := NewLive(LiveConfig{}, src, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	run := l.RunOnce(context.Background())
	// Every DestinationRule's v2 subset has no pod; nothing else fires.
	if run.Waiting != "" || len(run.Results) != 500 {
		b.Fatalf("waiting %q, %d results, want 500", run.Waiting, len(run.Results))
	}
	b.ReportAllocs()
	for b.Loop() {
		l.RunOnce(context.Background())
	}
}

// versionedBench is the bench source with a version that never moves: an idle cluster.
type versionedBench struct {
	*benchSource
	snapshots int
}

func (v *versionedBench) Version() uint64 { return 1 }

func (v *versionedBench) Snapshot() (*Snapshot, string) {
	v.snapshots++
	return v.benchSource.Snapshot()
}

// The maximum-interval tick of an idle runner: the source's version has not moved since
// the last run, so no snapshot is taken (snapshots/op 0) and no check runs. Compare
// BenchmarkLiveChecks, which every such tick cost before; with the live source over
// 20,000 mesh objects: BenchmarkLiveSourceIdleTick in adapters/mesh.
func BenchmarkLiveIdleTick(b *testing.B) {
	src := &versionedBench{benchSource: newBenchSource(100, 50)}
	l, err := NewLive(LiveConfig{}, src, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, ran := l.RunIfChanged(ctx); !ran {
		b.Fatal("the first tick did not run")
	}
	src.snapshots = 0
	b.ReportAllocs()
	for b.Loop() {
		if _, ran := l.RunIfChanged(ctx); ran {
			b.Fatal("an idle tick ran the checks")
		}
	}
	b.ReportMetric(float64(src.snapshots)/float64(b.N), "snapshots/op")
}
