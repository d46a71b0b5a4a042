package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

var (
	gvrVS  = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	gvrDR  = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}
	gvrSE  = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}
	gvrApp = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
	gvrKS  = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
)

// appsPerNamespace spreads the apps' mesh objects over namespaces the way teams own them.
const appsPerNamespace = 50

const (
	argoRevision = "9b1c7e2f4a6d8b0c2e4f6a8b0d2f4a6c8e0b2d4f"
	fluxRevision = "main@sha1:3f2a9c41d0b7e5a8c6f1e2d3b4a5968778695a4b"
)

// fastDynamic is a dynamic client without client-go's default 5 QPS limit: the harness
// creates tens of thousands of objects.
func fastDynamic(cfg *rest.Config) (dynamic.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = 5000, 10000
	c.UserAgent = "meshdrift-scale-harness"
	return dynamic.NewForConfig(c)
}

// meshObject is one VirtualService or DestinationRule an app owns. exportTo "." keeps it
// out of every proxy's config outside its namespace, where no proxy runs: istiod holds
// it, watches it and indexes it, but does not push it to the harness's proxies.
func meshObject(kind, ns, name string) *unstructured.Unstructured {
	host := name + "." + ns + ".svc.cluster.local"
	var spec map[string]any
	apiKind := "VirtualService"
	if kind == "dr" {
		apiKind = "DestinationRule"
		spec = map[string]any{"host": host, "exportTo": []any{"."},
			"trafficPolicy": map[string]any{"connectionPool": map[string]any{"tcp": map[string]any{"maxConnections": int64(100)}}}}
	} else {
		spec = map[string]any{"hosts": []any{host}, "exportTo": []any{"."},
			"http": []any{map[string]any{"name": name + "-v1", "timeout": "5s",
				"route": []any{map[string]any{"destination": map[string]any{"host": host}}}}}}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": apiKind,
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

// namespaceHosts defines every host of a namespace with one wildcard ServiceEntry, so
// that the objects' routes go somewhere: a fleet whose 10,000 VirtualServices route to
// hosts nothing defines is not a steady state but 10,000 MD0501 findings (and their
// Events), which is not what the steady-state figures are meant to measure.
func namespaceHosts(ns string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
		"metadata": map[string]any{"name": "hosts", "namespace": ns},
		"spec": map[string]any{
			"hosts": []any{"*." + ns + ".svc.cluster.local"}, "exportTo": []any{"."},
			"location": "MESH_INTERNAL", "resolution": "NONE",
			"ports": []any{map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"}},
		},
	}}
}

type ownedRef struct{ kind, ns, name string }

// populate creates apps Argo CD Applications and Flux Kustomizations (half each) owning
// objects VirtualServices and DestinationRules, with what the tools write: Argo CD's
// tracking annotation and Application status, Flux's labels and Kustomization inventory.
func populate(ctx context.Context, kube *testbed.Kube, apps, objects, workers int) error {
	dyn, err := fastDynamic(kube.Config)
	if err != nil {
		return err
	}
	namespaces := (apps + appsPerNamespace - 1) / appsPerNamespace
	for i := range namespaces {
		ns := fmt.Sprintf("team-%03d", i)
		if err := kube.CreateNamespace(ctx, ns); err != nil {
			return err
		}
		if _, err := dyn.Resource(gvrSE).Namespace(ns).Create(ctx, namespaceHosts(ns), metav1.CreateOptions{FieldManager: "kubectl"}); err != nil {
			return fmt.Errorf("creating the hosts of %s: %w", ns, err)
		}
	}
	jobs := make(chan int)
	var firstErr error
	var once sync.Once
	var done atomic.Int64
	fail := func(err error) { once.Do(func() { firstErr = err }) }
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				if err := createApp(ctx, dyn, a, apps, objects); err != nil {
					fail(err)
				}
				done.Add(1)
			}
		}()
	}
	start := time.Now()
	lastLog := start
	for a := range apps {
		if firstErr != nil || ctx.Err() != nil {
			break
		}
		jobs <- a
		if time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			logf("created %d/%d apps in %s", done.Load(), apps, time.Since(start).Round(time.Second))
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// createApp creates app a's mesh objects and the app itself, then its status.
func createApp(ctx context.Context, dyn dynamic.Interface, a, apps, objects int) error {
	ns := fmt.Sprintf("team-%03d", a/appsPerNamespace)
	// Objects are spread evenly: app a owns those with index ≡ a (mod apps).
	argo := a%2 == 0
	var name, manager string
	if argo {
		name, manager = fmt.Sprintf("app-%05d", a), "argocd-controller"
	} else {
		name, manager = fmt.Sprintf("ks-%05d", a), "kustomize-controller"
	}
	var refs []ownedRef
	for o := a; o < objects; o += apps {
		kind := "vs"
		if o%2 == 1 {
			kind = "dr"
		}
		objName := fmt.Sprintf("%s-%s-%d", name, kind, o)
		obj := meshObject(kind, ns, objName)
		if argo {
			obj.SetAnnotations(map[string]string{"argocd.argoproj.io/tracking-id": fmt.Sprintf("%s:networking.istio.io/%s:%s/%s", name, obj.GetKind(), ns, objName)})
		} else {
			obj.SetLabels(map[string]string{"kustomize.toolkit.fluxcd.io/name": name, "kustomize.toolkit.fluxcd.io/namespace": testbed.FluxNamespace})
		}
		gvr := gvrVS
		if kind == "dr" {
			gvr = gvrDR
		}
		if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{FieldManager: manager}); err != nil {
			return fmt.Errorf("creating %s %s/%s: %w", obj.GetKind(), ns, objName, err)
		}
		refs = append(refs, ownedRef{obj.GetKind(), ns, objName})
	}
	if argo {
		return createArgoApp(ctx, dyn, name, ns, refs)
	}
	return createKustomization(ctx, dyn, name, ns, refs)
}

func createArgoApp(ctx context.Context, dyn dynamic.Interface, name, ns string, refs []ownedRef) error {
	source := map[string]any{"repoURL": "https://git.example.invalid/mesh.git", "path": name, "targetRevision": "main"}
	dest := map[string]any{"server": "https://kubernetes.default.svc", "namespace": ns}
	app := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
		"metadata": map[string]any{"name": name, "namespace": testbed.ArgoCDNamespace},
		"spec": map[string]any{"project": "default", "source": source, "destination": dest,
			"syncPolicy": map[string]any{"automated": map[string]any{"prune": true, "selfHeal": true}}},
	}}
	created, err := dyn.Resource(gvrApp).Namespace(testbed.ArgoCDNamespace).Create(ctx, app, metav1.CreateOptions{FieldManager: "kubectl"})
	if err != nil {
		return fmt.Errorf("creating Application %s: %w", name, err)
	}
	// Argo CD's Application has no status subresource: its controller writes the whole
	// object back with .status, as here.
	now := time.Now().UTC().Format(time.RFC3339)
	var resources, results []any
	for _, r := range refs {
		resources = append(resources, map[string]any{"group": "networking.istio.io", "version": "v1", "kind": r.kind,
			"namespace": r.ns, "name": r.name, "status": "Synced"})
		results = append(results, map[string]any{"group": "networking.istio.io", "version": "v1", "kind": r.kind,
			"namespace": r.ns, "name": r.name, "status": "Synced", "message": "configured", "hookPhase": "Running", "syncPhase": "Sync"})
	}
	created.Object["status"] = map[string]any{
		"sync":         map[string]any{"status": "Synced", "revision": argoRevision, "comparedTo": map[string]any{"source": source, "destination": dest}},
		"health":       map[string]any{"status": "Healthy"},
		"reconciledAt": now,
		"resources":    resources,
		"operationState": map[string]any{
			"phase": "Succeeded", "message": "successfully synced (all tasks run)", "startedAt": now, "finishedAt": now,
			"operation":  map[string]any{"sync": map[string]any{"revision": argoRevision}},
			"syncResult": map[string]any{"revision": argoRevision, "resources": results},
		},
		"history": []any{map[string]any{"id": int64(0), "revision": argoRevision, "deployedAt": now, "deployStartedAt": now, "source": source}},
	}
	if _, err := dyn.Resource(gvrApp).Namespace(testbed.ArgoCDNamespace).Update(ctx, created, metav1.UpdateOptions{FieldManager: "argocd-application-controller"}); err != nil {
		return fmt.Errorf("writing Application %s status: %w", name, err)
	}
	return nil
}

func createKustomization(ctx context.Context, dyn dynamic.Interface, name, ns string, refs []ownedRef) error {
	ks := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"name": name, "namespace": testbed.FluxNamespace},
		"spec": map[string]any{"interval": "10m", "path": "./" + name, "prune": true, "targetNamespace": ns,
			"sourceRef": map[string]any{"kind": "GitRepository", "name": "mesh"}},
	}}
	created, err := dyn.Resource(gvrKS).Namespace(testbed.FluxNamespace).Create(ctx, ks, metav1.CreateOptions{FieldManager: "kubectl"})
	if err != nil {
		return fmt.Errorf("creating Kustomization %s: %w", name, err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	var entries []any
	for _, r := range refs {
		entries = append(entries, map[string]any{"id": fmt.Sprintf("%s_%s_networking.istio.io_%s", r.ns, r.name, r.kind), "v": "v1"})
	}
	created.Object["status"] = map[string]any{
		"observedGeneration":     created.GetGeneration(),
		"lastAppliedRevision":    fluxRevision,
		"lastAttemptedRevision":  fluxRevision,
		"lastHandledReconcileAt": now,
		"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
			"message": "Applied revision: " + fluxRevision, "lastTransitionTime": now, "observedGeneration": created.GetGeneration()}},
		"inventory": map[string]any{"entries": entries},
	}
	if _, err := dyn.Resource(gvrKS).Namespace(testbed.FluxNamespace).UpdateStatus(ctx, created, metav1.UpdateOptions{FieldManager: "kustomize-controller"}); err != nil {
		return fmt.Errorf("writing Kustomization %s status: %w", name, err)
	}
	return nil
}
