package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
)

const demoNamespace = "bookinfo"

// environment is the demo's running bed and sample mesh.
type environment struct {
	kube   *testbed.Kube
	istiod *testbed.Istiod
	flux   *testbed.Flux
	am     *testbed.Alertmanager
	// tokenFile is meshdrift's istio-ca token, from meshdrift-system as when deployed.
	tokenFile string
	// kubeconfig authenticates as meshdrift's ServiceAccount, bound by the shipped RBAC.
	kubeconfig string
	proxies    []*xdsproxy.Proxy
}

func (e *environment) stop(log *slog.Logger) {
	for _, p := range e.proxies {
		_ = p.Close()
	}
	// Reverse start order: Flux, then istiod, then the API server they talk to.
	for _, part := range []struct {
		name string
		stop func() error
	}{{"flux", e.fluxStop}, {"istiod", e.istiodStop}} {
		if err := part.stop(); err != nil {
			log.Warn("stopping", "part", part.name, "err", err)
		}
	}
	if e.am != nil {
		if err := e.am.Stop(); err != nil {
			log.Warn("stopping", "part", "alertmanager", "err", err)
		}
	}
	if e.kube != nil {
		if err := e.kube.Stop(); err != nil {
			log.Warn("stopping", "part", "kube-apiserver", "err", err)
		}
	}
}

func (e *environment) fluxStop() error {
	if e.flux == nil {
		return nil
	}
	return e.flux.Stop()
}

func (e *environment) istiodStop() error {
	if e.istiod == nil {
		return nil
	}
	return e.istiod.Stop()
}

// startEnvironment brings up the bed and the sample mesh. On error the returned environment
// holds what did start, so that the caller can stop it.
func startEnvironment(ctx context.Context, log *slog.Logger, assets testbed.Assets, logDir, rbacFile string) (*environment, error) {
	e := &environment{}
	var err error
	log.Info("starting kube-apiserver and etcd")
	if e.kube, err = testbed.StartKube(assets, logDir); err != nil {
		return nil, err
	}
	log.Info("starting istiod")
	// istiod as the README tells users to set it up: its debug endpoints open to
	// meshdrift's namespace, everything else at Istio's defaults.
	if e.istiod, err = testbed.StartIstiod(ctx, assets, e.kube, testbed.IstiodOptions{
		Name: "istiod-demo", AllowedDebugNamespaces: []string{testbed.MeshdriftNamespace},
	}); err != nil {
		return e, err
	}
	if e.tokenFile, err = e.kube.TokenFile(ctx, testbed.MeshdriftNamespace, "meshdrift"); err != nil {
		return e, err
	}
	rbac, err := os.ReadFile(rbacFile)
	if err != nil {
		return e, fmt.Errorf("meshdrift's RBAC: %w", err)
	}
	if _, err := e.kube.Apply(ctx, "demo", string(rbac)); err != nil {
		return e, fmt.Errorf("applying %s: %w", rbacFile, err)
	}
	if e.kubeconfig, err = e.kube.ServiceAccountKubeconfig(ctx, testbed.MeshdriftNamespace, "meshdrift"); err != nil {
		return e, err
	}
	log.Info("starting Alertmanager")
	if e.am, err = testbed.StartAlertmanager(ctx, filepath.Join(logDir, "alertmanager"), ""); err != nil {
		return e, err
	}
	log.Info("starting Flux kustomize-controller and notification-controller")
	if e.flux, err = testbed.StartFlux(ctx, assets, e.kube); err != nil {
		return e, err
	}
	if err := e.kube.CreateNamespace(ctx, demoNamespace); err != nil {
		return e, err
	}
	log.Info("creating the sample mesh", "namespace", demoNamespace)
	if err := e.sampleMesh(ctx); err != nil {
		return e, err
	}
	for i, w := range []string{"productpage-v1-7d4b", "reviews-v1-5c9f", "ratings-v1-8e2a"} {
		p := xdsproxy.New(xdsproxy.Config{
			Addr: e.istiod.GRPCAddr, PodName: w, Namespace: demoNamespace, IP: fmt.Sprintf("10.0.0.%d", 10+i),
			Labels: map[string]string{"app": strings.SplitN(w, "-", 2)[0], "version": "v1"},
		})
		if err := p.Start(ctx); err != nil {
			return e, fmt.Errorf("starting demo proxy %s: %w", w, err)
		}
		e.proxies = append(e.proxies, p)
	}
	return e, nil
}

// bookinfoRouting is one service's routing in the bookinfo repository: name, namespace,
// and extra route settings.
const bookinfoRouting = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  hosts: [%[1]s.%[2]s.svc.cluster.local]
  http:
  - name: %[1]s-v1%[3]s
    route: [{destination: {host: %[1]s.%[2]s.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  host: %[1]s.%[2]s.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}]
`

// The sample mesh: three services; reviews and ratings routing from Git through Flux,
// productpage's through Argo CD.
func (e *environment) sampleMesh(ctx context.Context) error {
	var services strings.Builder
	for _, svc := range []string{"productpage", "reviews", "ratings"} {
		fmt.Fprintf(&services, `apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s, labels: {app: %[1]s}}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: %[1]s}
---
`, svc, demoNamespace)
	}
	if _, err := e.kube.Apply(ctx, "kubectl", services.String()); err != nil {
		return err
	}

	// Flux: a Kustomization whose artifact holds reviews' and ratings' routing.
	files := map[string]string{}
	for _, svc := range []string{"reviews", "ratings"} {
		files[svc+".yaml"] = fmt.Sprintf(bookinfoRouting, svc, demoNamespace, "")
	}
	art, err := e.flux.Artifacts.Publish("bookinfo", "main@sha1:3f2a9c41d0b7e5a8c6f1e2d3b4a5968778695a4b", files)
	if err != nil {
		return err
	}
	if err := e.flux.SetGitRepository(ctx, testbed.FluxNamespace, "bookinfo", art); err != nil {
		return err
	}
	if err := e.flux.ApplyKustomization(ctx, testbed.FluxNamespace, "bookinfo-routing", "bookinfo", "./", false); err != nil {
		return err
	}

	// Argo CD: the application controller cannot run here, so the demo applies what it would
	// (tracking annotation, argocd-controller field manager) and writes the status it would.
	const app = "productpage"
	revision := "9b1c7e2f4a6d8b0c2e4f6a8b0d2f4a6c8e0b2d4f"
	vs := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productpage
  namespace: %[1]s
  annotations: {argocd.argoproj.io/tracking-id: "%[2]s:networking.istio.io/VirtualService:%[1]s/productpage"}
spec:
  hosts: [productpage.%[1]s.svc.cluster.local]
  http:
  - name: productpage-v1
    timeout: 5s
    route: [{destination: {host: productpage.%[1]s.svc.cluster.local}}]
`, demoNamespace, app)
	if _, err := e.kube.Apply(ctx, "argocd-controller", vs); err != nil {
		return err
	}
	appYAML := fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: %[2]s, namespace: %[3]s}
spec:
  project: default
  source: {repoURL: "https://git.example.invalid/bookinfo.git", path: productpage, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: %[1]s}
  syncPolicy: {automated: {prune: true, selfHeal: true}}
`, demoNamespace, app, testbed.ArgoCDNamespace)
	objs, err := e.kube.Apply(ctx, "kubectl", appYAML)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339)
	resource := map[string]any{"group": "networking.istio.io", "version": "v1", "kind": "VirtualService",
		"namespace": demoNamespace, "name": "productpage", "status": "Synced", "health": map[string]any{"status": "Healthy"}}
	status := map[string]any{
		"sync":         map[string]any{"status": "Synced", "revision": revision, "comparedTo": map[string]any{"source": map[string]any{"repoURL": "https://git.example.invalid/bookinfo.git", "path": "productpage", "targetRevision": "main"}, "destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": demoNamespace}}},
		"health":       map[string]any{"status": "Healthy"},
		"reconciledAt": now,
		"resources":    []any{resource},
		"operationState": map[string]any{
			"phase": "Succeeded", "message": "successfully synced (all tasks run)", "startedAt": now, "finishedAt": now,
			"operation":  map[string]any{"sync": map[string]any{"revision": revision}},
			"syncResult": map[string]any{"revision": revision, "resources": []any{map[string]any{"group": "networking.istio.io", "version": "v1", "kind": "VirtualService", "namespace": demoNamespace, "name": "productpage", "status": "Synced", "message": "virtualservice.networking.istio.io/productpage configured", "hookPhase": "Running", "syncPhase": "Sync"}}},
		},
		"history": []any{map[string]any{"id": int64(0), "revision": revision, "deployedAt": now, "deployStartedAt": now,
			"source": map[string]any{"repoURL": "https://git.example.invalid/bookinfo.git", "path": "productpage", "targetRevision": "main"}}},
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return fmt.Errorf("encoding the Application status: %w", err)
	}
	_, err = e.kube.MergePatch(ctx, "argocd-application-controller", objs[0], patch)
	return err
}

// rejectedRevision is the bookinfo revision the demo makes the ratings proxy reject.
const rejectedRevision = "main@sha1:7c1e5d2b9a4f6e8d0c3b5a7f9e1d3c5b7a9f0e2d"

// rejectRatingsChange plays the failure meshdrift exists for: Flux applies a new revision
// of ratings' routing, Flux and the API server accept it, and the ratings proxy's Envoy
// rejects the route configuration istiod builds from it.
func (e *environment) rejectRatingsChange(ctx context.Context) error {
	var ratings *xdsproxy.Proxy
	for _, p := range e.proxies {
		if strings.HasPrefix(p.Name(), "ratings-") {
			ratings = p
		}
	}
	if ratings == nil {
		return fmt.Errorf("no ratings proxy")
	}
	ratings.SetNACKMessage(`Error adding/updating route config "9080": route ratings-v1 timeout: value must be greater than 0s (rejected by the demo)`)
	ratings.SetTypeMode(xdsproxy.TypeRoute, xdsproxy.ModeNACK)
	files := map[string]string{}
	for _, svc := range []string{"reviews", "ratings"} {
		extra := ""
		if svc == "ratings" {
			extra = "\n    timeout: 2s"
		}
		files[svc+".yaml"] = fmt.Sprintf(bookinfoRouting, svc, demoNamespace, extra)
	}
	art, err := e.flux.Artifacts.Publish("bookinfo", rejectedRevision, files)
	if err != nil {
		return err
	}
	return e.flux.SetGitRepository(ctx, testbed.FluxNamespace, "bookinfo", art)
}
