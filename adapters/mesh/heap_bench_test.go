package mesh

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/internal/heapbench"
)

// benchMeshObjects is the fleet size the scale targets name (issue 10).
const benchMeshObjects = 20_000

// BenchmarkMeshObjectsHeap fills an informer's store (the same cache.Store the informers
// keep) with benchMeshObjects mesh objects, decoded from JSON as the dynamic client does,
// and reports the heap the store holds: untrimmed (no transform), trimmed (trimObject
// alone, still unstructured) and compacted (compactObject, what the informers use). The
// objects are
// generated: VirtualServices and DestinationRules applied with client-side kubectl (the
// last-applied annotation), edited with kubectl edit, with istiod's status, i.e.
// managedFields of three managers.
//
//	go test -run '^$' -bench BenchmarkMeshObjectsHeap -benchtime 1x ./adapters/mesh/
func BenchmarkMeshObjectsHeap(b *testing.B) {
	docs := make([][]byte, benchMeshObjects)
	for i := range docs {
		docs[i] = benchMeshObject(b, i)
	}
	heapbench.Run(b, docs,
		heapbench.Case{Name: "untrimmed", Transform: nil},
		heapbench.Case{Name: "trimmed", Transform: trimObject},
		heapbench.Case{Name: "compacted", Transform: compactObject},
	)
}

// benchMeshObject is the JSON of the i-th generated object, as the API server serves it.
func benchMeshObject(b *testing.B, i int) []byte {
	b.Helper()
	ns := fmt.Sprintf("team-%03d", i%200)
	name := fmt.Sprintf("svc-%05d", i)
	host := name + "." + ns + ".svc.cluster.local"
	applied := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	var kind string
	var spec map[string]any
	var specFields string
	if i%2 == 0 {
		kind = "VirtualService"
		var routes []any
		for r := range 3 {
			routes = append(routes, map[string]any{
				"name":    fmt.Sprintf("route-%d", r),
				"match":   []any{map[string]any{"uri": map[string]any{"prefix": fmt.Sprintf("/api/v%d", r+1)}, "headers": map[string]any{"x-canary": map[string]any{"exact": "true"}}}},
				"route":   []any{map[string]any{"destination": map[string]any{"host": host, "subset": "v1", "port": map[string]any{"number": 8080}}, "weight": 90}, map[string]any{"destination": map[string]any{"host": host, "subset": "v2", "port": map[string]any{"number": 8080}}, "weight": 10}},
				"timeout": "10s",
				"retries": map[string]any{"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset,connect-failure"},
			})
		}
		spec = map[string]any{"hosts": []any{host, name + ".example.com"}, "gateways": []any{"mesh", "istio-system/public"}, "http": routes}
		specFields = `"f:gateways":{},"f:hosts":{},"f:http":{}`
	} else {
		kind = "DestinationRule"
		spec = map[string]any{
			"host": host,
			"trafficPolicy": map[string]any{
				"tls":              map[string]any{"mode": "ISTIO_MUTUAL"},
				"connectionPool":   map[string]any{"tcp": map[string]any{"maxConnections": 100}, "http": map[string]any{"http2MaxRequests": 1000, "maxRequestsPerConnection": 10}},
				"outlierDetection": map[string]any{"consecutive5xxErrors": 5, "interval": "30s", "baseEjectionTime": "30s"},
			},
			"subsets": []any{map[string]any{"name": "v1", "labels": map[string]any{"version": "v1"}}, map[string]any{"name": "v2", "labels": map[string]any{"version": "v2"}}},
		}
		specFields = `"f:host":{},"f:subsets":{},"f:trafficPolicy":{".":{},"f:connectionPool":{},"f:outlierDetection":{},"f:tls":{".":{},"f:mode":{}}}`
	}
	labels := map[string]any{"app": name, "app.kubernetes.io/instance": ns, "app.kubernetes.io/part-of": "shop"}
	tracking := ns + ":networking.istio.io/" + kind + ":" + ns + "/" + name
	lastApplied, err := json.Marshal(map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": labels, "annotations": map[string]any{"argocd.argoproj.io/tracking-id": tracking}},
		"spec":     spec,
	})
	if err != nil {
		b.Fatal(err)
	}
	ts := func(sec int) string { return applied.Add(time.Duration(sec) * time.Second).Format(time.RFC3339) }
	managed := []any{
		map[string]any{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "networking.istio.io/v1", "time": ts(0), "fieldsType": "FieldsV1",
			"fieldsV1": json.RawMessage(`{"f:metadata":{"f:annotations":{".":{},"f:argocd.argoproj.io/tracking-id":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app":{},"f:app.kubernetes.io/instance":{},"f:app.kubernetes.io/part-of":{}}},"f:spec":{".":{},` + specFields + `}}`)},
		map[string]any{"manager": "kubectl-edit", "operation": "Update", "apiVersion": "networking.istio.io/v1", "time": ts(3600), "fieldsType": "FieldsV1",
			"fieldsV1": json.RawMessage(`{"f:spec":{` + specFields + `}}`)},
		map[string]any{"manager": "pilot-discovery", "operation": "Update", "apiVersion": "networking.istio.io/v1", "time": ts(3601), "fieldsType": "FieldsV1", "subresource": "status",
			"fieldsV1": json.RawMessage(`{"f:status":{".":{},"f:conditions":{},"f:observedGeneration":{},"f:validationMessages":{}}}`)},
	}
	obj := map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       kind,
		"metadata": map[string]any{
			"name": name, "namespace": ns, "uid": fmt.Sprintf("6b1f3a2e-0000-4000-8000-%012d", i),
			"resourceVersion": fmt.Sprint(100000 + i), "generation": 2, "creationTimestamp": ts(0),
			"labels":        labels,
			"annotations":   map[string]any{"argocd.argoproj.io/tracking-id": tracking, AnnotationLastApplied: string(lastApplied) + "\n"},
			"managedFields": managed,
		},
		"spec": spec,
		"status": map[string]any{
			"observedGeneration": 2,
			"conditions":         []any{map[string]any{"type": "Reconciled", "status": "True", "lastProbeTime": ts(3601), "lastTransitionTime": ts(3601), "message": "Reconciled by istiod"}},
			"validationMessages": []any{map[string]any{"level": "INFO", "type": map[string]any{"code": "IST0118"}, "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0118/"}},
		},
	}
	data, err := json.Marshal(obj)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkCompactObject is the CPU the transform adds to each watch event, on top of
// decoding it (decode alone: BenchmarkDecodeMeshObject).
func BenchmarkCompactObject(b *testing.B) {
	doc := benchMeshObject(b, 0)
	objs := make([]*unstructured.Unstructured, b.N)
	for i := range objs {
		objs[i] = &unstructured.Unstructured{}
		if err := objs[i].UnmarshalJSON(doc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := compactObject(objs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeMeshObject decodes one watch event's object as the dynamic client does.
func BenchmarkDecodeMeshObject(b *testing.B) {
	doc := benchMeshObject(b, 0)
	b.ReportAllocs()
	for range b.N {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChecksViewHeap is what the live checks hold besides the informers: every mesh
// object decoded once (checkView) and kept between runs.
//
//	go test -short -run '^$' -bench BenchmarkChecksViewHeap -benchtime 1x ./adapters/mesh/
func BenchmarkChecksViewHeap(b *testing.B) {
	var compact []*meshObject
	for i := range benchMeshObjects {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(benchMeshObject(b, i)); err != nil {
			b.Fatal(err)
		}
		o, err := compactObject(u)
		if err != nil {
			b.Fatal(err)
		}
		compact = append(compact, o.(*meshObject))
	}
	var held uint64
	for range b.N {
		held = heapbench.Held(func() any {
			views := make([]*unstructured.Unstructured, 0, len(compact))
			for _, o := range compact {
				u, err := checkView(o.GroupVersionKind().GroupKind(), o)
				if err != nil {
					b.Fatal(err)
				}
				views = append(views, u)
			}
			return views
		})
	}
	b.ReportMetric(float64(held)/(1<<20), "MiB-held")
	b.ReportMetric(float64(held)/float64(len(compact)), "B/object")
}
