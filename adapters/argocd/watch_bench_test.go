package argocd

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/heapbench"
)

// benchApps is the fleet size the scale targets name (issue 10).
const benchApps = 5_000

// BenchmarkArgoAppsHeap fills an informer's store with benchApps Applications, decoded
// from JSON as the dynamic client does, each with a history of 10 deploys and 50 managed
// objects, and reports the heap the store holds: untrimmed (no transform) and cached
// (trimApplication, what the informers use).
//
//	go test -run '^$' -bench BenchmarkArgoAppsHeap -benchtime 1x ./adapters/argocd/
func BenchmarkArgoAppsHeap(b *testing.B) {
	docs := make([][]byte, benchApps)
	for i := range docs {
		docs[i] = benchApplication(b, i)
	}
	heapbench.Run(b, docs,
		heapbench.Case{Name: "untrimmed", Transform: nil},
		heapbench.Case{Name: "cached", Transform: trimApplication},
	)
}

// benchApplication is the JSON of the i-th generated Application as the API server serves
// it: created with kubectl apply, synced and healthy, owning a Deployment, a Service and
// Istio objects.
func benchApplication(b *testing.B, i int) []byte {
	b.Helper()
	name := fmt.Sprintf("app-%04d", i)
	dest := fmt.Sprintf("team-%03d", i%200)
	start := time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	ts := func(min int) string { return start.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }
	rev := func(n int) string { return fmt.Sprintf("%040x", i*100+n) }
	source := map[string]any{"repoURL": "https://git.example.com/platform/apps.git", "path": "apps/" + name, "targetRevision": "main"}
	spec := map[string]any{
		"project":     "default",
		"source":      source,
		"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": dest},
		"syncPolicy":  map[string]any{"automated": map[string]any{"prune": true, "selfHeal": true}, "syncOptions": []any{"CreateNamespace=true", "ServerSideApply=true"}},
	}
	var history []any
	for h := range 10 {
		history = append(history, map[string]any{"id": h, "revision": rev(h), "deployedAt": ts(h * 10), "deployStartedAt": ts(h*10 - 1),
			"source": source, "initiatedBy": map[string]any{"automated": true}})
	}
	kinds := []struct{ group, kind string }{
		{"apps", "Deployment"}, {"", "Service"}, {"", "ServiceAccount"}, {"networking.istio.io", "VirtualService"}, {"networking.istio.io", "DestinationRule"},
	}
	var resources, results []any
	for r := range 50 {
		k := kinds[r%len(kinds)]
		obj := fmt.Sprintf("%s-%02d", name, r)
		res := map[string]any{"group": k.group, "version": "v1", "kind": k.kind, "namespace": dest, "name": obj, "status": "Synced", "syncWave": 0}
		if k.group != "networking.istio.io" {
			res["health"] = map[string]any{"status": "Healthy"}
		}
		resources = append(resources, res)
		results = append(results, map[string]any{"group": k.group, "version": "v1", "kind": k.kind, "namespace": dest, "name": obj,
			"status": "Synced", "message": k.kind + "/" + obj + " serverside-applied", "hookPhase": "Running", "syncPhase": "Sync"})
	}
	lastApplied, err := json.Marshal(map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": name, "namespace": "argocd"}, "spec": spec})
	if err != nil {
		b.Fatal(err)
	}
	app := map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata": map[string]any{
			"name": name, "namespace": "argocd", "uid": fmt.Sprintf("0c1e5a2d-0000-4000-8000-%012d", i),
			"resourceVersion": fmt.Sprint(200000 + i), "generation": 42, "creationTimestamp": ts(0),
			"finalizers":  []any{"resources-finalizer.argocd.argoproj.io"},
			"labels":      map[string]any{"team": dest},
			"annotations": map[string]any{annotationLastApplied: string(lastApplied) + "\n"},
			"managedFields": []any{
				map[string]any{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "argoproj.io/v1alpha1", "time": ts(0), "fieldsType": "FieldsV1",
					"fieldsV1": json.RawMessage(`{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:finalizers":{".":{},"v:\"resources-finalizer.argocd.argoproj.io\"":{}},"f:labels":{".":{},"f:team":{}}},"f:spec":{".":{},"f:destination":{".":{},"f:namespace":{},"f:server":{}},"f:project":{},"f:source":{".":{},"f:path":{},"f:repoURL":{},"f:targetRevision":{}},"f:syncPolicy":{".":{},"f:automated":{".":{},"f:prune":{},"f:selfHeal":{}},"f:syncOptions":{}}}}`)},
				map[string]any{"manager": "argocd-application-controller", "operation": "Update", "apiVersion": "argoproj.io/v1alpha1", "time": ts(90), "fieldsType": "FieldsV1",
					"fieldsV1": json.RawMessage(`{"f:status":{".":{},"f:controllerNamespace":{},"f:health":{".":{},"f:lastTransitionTime":{},"f:status":{}},"f:history":{},"f:operationState":{".":{},"f:finishedAt":{},"f:message":{},"f:operation":{".":{},"f:initiatedBy":{".":{},"f:automated":{}},"f:retry":{".":{},"f:limit":{}},"f:sync":{".":{},"f:prune":{},"f:revision":{},"f:syncOptions":{}}},"f:phase":{},"f:startedAt":{},"f:syncResult":{".":{},"f:resources":{},"f:revision":{},"f:source":{".":{},"f:path":{},"f:repoURL":{},"f:targetRevision":{}}}},"f:reconciledAt":{},"f:resources":{},"f:sourceHydrator":{},"f:sourceType":{},"f:summary":{".":{},"f:images":{}},"f:sync":{".":{},"f:comparedTo":{".":{},"f:destination":{".":{},"f:namespace":{},"f:server":{}},"f:source":{".":{},"f:path":{},"f:repoURL":{},"f:targetRevision":{}}},"f:revision":{},"f:status":{}}}}`)},
			},
		},
		"spec": spec,
		"status": map[string]any{
			"resources":           resources,
			"sync":                map[string]any{"status": "Synced", "revision": rev(9), "comparedTo": map[string]any{"source": source, "destination": spec["destination"]}},
			"health":              map[string]any{"status": "Healthy", "lastTransitionTime": ts(90)},
			"history":             history,
			"reconciledAt":        ts(95),
			"controllerNamespace": "argocd",
			"sourceType":          "Directory",
			"summary":             map[string]any{"images": []any{"registry.example.com/" + name + ":1.4.2"}},
			"operationState": map[string]any{
				"operation":  map[string]any{"sync": map[string]any{"revision": rev(9), "prune": true, "syncOptions": []any{"CreateNamespace=true"}}, "initiatedBy": map[string]any{"automated": true}, "retry": map[string]any{"limit": 5}},
				"phase":      "Succeeded",
				"message":    "successfully synced (all tasks run)",
				"syncResult": map[string]any{"resources": results, "revision": rev(9), "source": source},
				"startedAt":  ts(89),
				"finishedAt": ts(90),
			},
		},
	}
	data, err := json.Marshal(app)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
