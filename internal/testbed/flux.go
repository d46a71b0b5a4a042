package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Flux is the real kustomize-controller and notification-controller watching all
// namespaces of the bed's API server. There is no source-controller: tests publish
// artifacts on Artifacts and write GitRepository status as source-controller would.
type Flux struct {
	// EventsAddr is notification-controller's event endpoint, where kustomize-controller posts.
	EventsAddr string
	Artifacts  *ArtifactServer

	kustomize, notification *process
	kube                    *Kube
}

// StartFlux starts notification-controller, then kustomize-controller sending its events to it.
func StartFlux(ctx context.Context, assets Assets, kube *Kube) (*Flux, error) {
	f := &Flux{kube: kube}
	var err error
	if f.Artifacts, err = NewArtifactServer(); err != nil {
		return nil, err
	}
	addrs := make([]string, 6)
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			_ = f.Stop()
			return nil, err
		}
	}
	f.EventsAddr = addrs[0]
	logDir := filepath.Join(kube.LogDir, "flux")
	// Each bed's controllers get their own TMPDIR: kustomize-controller builds every
	// artifact in a temporary directory, and beds of parallel test processes must not
	// share (or clean up) each other's.
	tmp := filepath.Join(logDir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		_ = f.Stop()
		return nil, fmt.Errorf("creating flux temporary directory: %w", err)
	}
	env := []string{"KUBECONFIG=" + kube.Kubeconfig, "RUNTIME_NAMESPACE=" + FluxNamespace, "TMPDIR=" + tmp}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	f.notification, err = startProcess("notification-controller", logDir, assets.Bin("notification-controller"), []string{
		"--watch-all-namespaces=true",
		"--events-addr=" + addrs[0],
		"--receiverAddr=" + addrs[1],
		"--metrics-addr=" + addrs[2],
		"--health-addr=" + addrs[3],
		"--log-level=debug",
	}, env)
	if err != nil {
		_ = f.Stop()
		return nil, err
	}
	if err := waitHTTP(ctx, "http://"+addrs[3]+"/readyz"); err != nil {
		_ = f.Stop()
		return nil, fmt.Errorf("notification-controller not ready:\n%s\n%w", f.notification.tail(30), err)
	}
	f.kustomize, err = startProcess("kustomize-controller", logDir, assets.Bin("kustomize-controller"), []string{
		"--watch-all-namespaces=true",
		"--events-addr=http://" + addrs[0],
		"--metrics-addr=" + addrs[4],
		"--health-addr=" + addrs[5],
		"--log-level=debug",
	}, env)
	if err != nil {
		_ = f.Stop()
		return nil, err
	}
	if err := waitHTTP(ctx, "http://"+addrs[5]+"/readyz"); err != nil {
		_ = f.Stop()
		return nil, fmt.Errorf("kustomize-controller not ready:\n%s\n%w", f.kustomize.tail(30), err)
	}
	return f, nil
}

// Stop stops both controllers and the artifact server.
func (f *Flux) Stop() error {
	var first error
	for _, p := range []*process{f.kustomize, f.notification} {
		if err := p.stop(10 * time.Second); err != nil && first == nil {
			first = err
		}
	}
	if f.Artifacts != nil {
		f.Artifacts.Close()
	}
	return first
}

// LogTail returns the last lines of both controllers' logs, for failing tests.
func (f *Flux) LogTail(n int) string {
	return "kustomize-controller:\n" + f.kustomize.tail(n) + "\nnotification-controller:\n" + f.notification.tail(n)
}

// SetGitRepository creates or updates a GitRepository and writes the artifact into its
// status as source-controller does, which makes kustomize-controller fetch it.
func (f *Flux) SetGitRepository(ctx context.Context, namespace, name string, art Artifact) error {
	repo := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1",
		"kind":       "GitRepository",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"spec": map[string]any{
			"url":      "https://git.example.invalid/" + namespace + "/" + name,
			"interval": "10m",
			"ref":      map[string]any{"branch": "main"},
		},
	}}
	applied, err := f.kube.ApplyObject(ctx, "source-controller", repo)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339)
	applied.Object["status"] = map[string]any{
		"observedGeneration": applied.GetGeneration(),
		"artifact": map[string]any{
			"url":            art.URL,
			"path":           art.Path,
			"revision":       art.Revision,
			"digest":         art.Digest,
			"size":           art.Size,
			"lastUpdateTime": now,
		},
		"conditions": []any{map[string]any{
			"type": "Ready", "status": "True", "reason": "Succeeded",
			"message":            "stored artifact for revision '" + art.Revision + "'",
			"lastTransitionTime": now, "observedGeneration": applied.GetGeneration(),
		}},
	}
	_, err = f.kube.UpdateStatus(ctx, applied)
	return err
}

// ApplyKustomization creates or updates a Kustomization of path in a GitRepository.
func (f *Flux) ApplyKustomization(ctx context.Context, namespace, name, repo, path string, suspend bool) error {
	ks := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1",
		"kind":       "Kustomization",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"spec": map[string]any{
			"interval":  "10m",
			"path":      path,
			"prune":     true,
			"suspend":   suspend,
			"sourceRef": map[string]any{"kind": "GitRepository", "name": repo},
		},
	}}
	_, err := f.kube.ApplyObject(ctx, "meshdrift-testbed", ks)
	return err
}

// ForwardEvents makes notification-controller deliver every Kustomization and HelmRelease
// event of namespace to address with a generic-hmac Provider signed with token.
func (f *Flux) ForwardEvents(ctx context.Context, namespace, address, token string) error {
	manifests := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: meshdrift-webhook, namespace: %[1]s}
stringData: {token: %[3]q}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: meshdrift, namespace: %[1]s}
spec:
  type: generic-hmac
  address: %[2]q
  secretRef: {name: meshdrift-webhook}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: meshdrift, namespace: %[1]s}
spec:
  providerRef: {name: meshdrift}
  eventSeverity: info
  eventSources:
  - {kind: Kustomization, name: "*"}
  - {kind: HelmRelease, name: "*"}
`, namespace, address, token)
	_, err := f.kube.Apply(ctx, "meshdrift-testbed", manifests)
	return err
}
