package flux

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/heapbench"
)

// benchKustomizations is the fleet size the scale targets name (issue 10).
const benchKustomizations = 5_000

// BenchmarkFluxKustomizationsHeap fills an informer's store with benchKustomizations
// Kustomizations, decoded from JSON as the dynamic client does, each with an inventory of
// 50 objects and a history of 5 snapshots, and reports the heap the store holds:
// untrimmed (no transform), trimmed (trimFluxObject alone) and cached
// (compactFluxObject, what the informers use).
//
//	go test -run '^$' -bench BenchmarkFluxKustomizationsHeap -benchtime 1x ./adapters/flux/
func BenchmarkFluxKustomizationsHeap(b *testing.B) {
	docs := make([][]byte, benchKustomizations)
	for i := range docs {
		docs[i] = benchKustomization(b, i)
	}
	heapbench.Run(b, docs,
		heapbench.Case{Name: "untrimmed", Transform: nil},
		heapbench.Case{Name: "trimmed", Transform: trimFluxObject},
		heapbench.Case{Name: "cached", Transform: func(obj any) (any, error) { return compactFluxObject(KindKustomization, obj) }},
	)
}

// benchKustomization is the JSON of the i-th generated Kustomization as the API server
// serves it after kustomize-controller reconciled it.
func benchKustomization(b *testing.B, i int) []byte {
	b.Helper()
	name := fmt.Sprintf("app-%04d", i)
	ns := fmt.Sprintf("team-%03d", i%200)
	at := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	ts := func(min int) string { return at.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	rev := func(n int) string { return fmt.Sprintf("main@sha1:%040x", i*10+n) }
	var entries []any
	kinds := []string{"apps_Deployment", "_Service", "_ServiceAccount", "networking.istio.io_VirtualService", "networking.istio.io_DestinationRule"}
	for e := range 50 {
		entries = append(entries, map[string]any{"id": fmt.Sprintf("%s_%s-%02d_%s", ns, name, e, kinds[e%len(kinds)]), "v": "v1"})
	}
	var history []any
	for h := range 5 {
		history = append(history, map[string]any{"digest": fmt.Sprintf("sha256:%064x", i*10+h), "firstReconciled": ts(h * 60), "lastReconciled": ts(h*60 + 50),
			"lastReconciledDuration": "1.2s", "lastReconciledStatus": "ReconciliationSucceeded", "totalReconciliations": 6, "metadata": map[string]any{"revision": rev(h)}})
	}
	cond := func(typ, reason, msg string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "reason": reason, "message": msg, "lastTransitionTime": ts(290), "observedGeneration": 3}
	}
	obj := map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1",
		"kind":       "Kustomization",
		"metadata": map[string]any{
			"name": name, "namespace": ns, "uid": fmt.Sprintf("3d1c0b2a-0000-4000-8000-%012d", i), "resourceVersion": fmt.Sprint(300000 + i),
			"generation": 3, "creationTimestamp": ts(0), "finalizers": []any{"finalizers.fluxcd.io"},
			"labels": map[string]any{"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
			"managedFields": []any{
				map[string]any{"manager": "kustomize-controller", "operation": "Apply", "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "time": ts(0), "fieldsType": "FieldsV1",
					"fieldsV1": json.RawMessage(`{"f:metadata":{"f:labels":{"f:kustomize.toolkit.fluxcd.io/name":{},"f:kustomize.toolkit.fluxcd.io/namespace":{}}},"f:spec":{"f:interval":{},"f:path":{},"f:prune":{},"f:sourceRef":{"f:kind":{},"f:name":{}},"f:patches":{}}}`)},
				map[string]any{"manager": "gotk-kustomize-controller", "operation": "Update", "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "time": ts(290), "fieldsType": "FieldsV1", "subresource": "status",
					"fieldsV1": json.RawMessage(`{"f:status":{"f:conditions":{},"f:history":{},"f:inventory":{".":{},"f:entries":{}},"f:lastAppliedRevision":{},"f:lastAttemptedRevision":{},"f:observedGeneration":{}}}`)},
			},
		},
		"spec": map[string]any{
			"interval": "10m", "path": "./apps/" + name, "prune": true, "timeout": "5m", "wait": true,
			"sourceRef": map[string]any{"kind": "GitRepository", "name": "platform", "namespace": "flux-system"},
			"patches":   []any{map[string]any{"target": map[string]any{"kind": "Deployment"}, "patch": "- op: add\n  path: /spec/template/metadata/labels/sidecar.istio.io~1inject\n  value: \"true\"\n"}},
			"postBuild": map[string]any{"substitute": map[string]any{"cluster": "prod-eu-1", "team": ns}},
		},
		"status": map[string]any{
			"observedGeneration":     3,
			"lastAppliedRevision":    rev(4),
			"lastAttemptedRevision":  rev(4),
			"lastHandledReconcileAt": ts(280),
			"conditions": []any{
				cond("Ready", "ReconciliationSucceeded", "Applied revision: "+rev(4)),
				cond("Healthy", "Succeeded", "Health check passed in 1.2s"),
			},
			"inventory": map[string]any{"entries": entries},
			"history":   history,
		},
	}
	data, err := json.Marshal(obj)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
