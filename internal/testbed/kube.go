package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Namespaces the bed creates: where istiod, Flux and Argo CD live in a real cluster.
const (
	IstioNamespace  = "istio-system"
	FluxNamespace   = "flux-system"
	ArgoCDNamespace = "argocd"
)

// Kube is a real kube-apiserver and etcd with the CRDs of Argo CD, Flux, Istio and Gateway API.
type Kube struct {
	Config *rest.Config
	// Kubeconfig is a file for programs of the bed (istiod, Flux, kubectl, meshdrift).
	Kubeconfig string
	Dynamic    dynamic.Interface
	Clientset  kubernetes.Interface
	// LogDir holds the logs of this bed's programs; kept when a test fails.
	LogDir string

	env    *envtest.Environment
	mapper *restmapper.DeferredDiscoveryRESTMapper
	logs   []io.Closer
}

// StartKube starts kube-apiserver and etcd, installs every CRD of the bed and the
// namespaces the GitOps tools and istiod live in. logDir receives the programs' logs.
func StartKube(assets Assets, logDir string) (*Kube, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}
	k := &Kube{LogDir: logDir}
	env := &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join(assets.Dir, "bin"),
		CRDDirectoryPaths:     assets.CRDDirs(),
		ErrorIfCRDPathMissing: true,
	}
	api := env.ControlPlane.GetAPIServer()
	etcd := env.ControlPlane.Etcd
	if etcd == nil {
		env.ControlPlane.Etcd = &envtest.Etcd{}
		etcd = env.ControlPlane.Etcd
	}
	for name, set := range map[string]func(io.Writer){
		"kube-apiserver": func(w io.Writer) { api.Out, api.Err = w, w },
		"etcd":           func(w io.Writer) { etcd.Out, etcd.Err = w, w },
	} {
		f, err := os.Create(filepath.Join(logDir, name+".log"))
		if err != nil {
			k.closeLogs()
			return nil, fmt.Errorf("creating %s log: %w", name, err)
		}
		k.logs = append(k.logs, f)
		set(f)
	}
	cfg, err := env.Start()
	if err != nil {
		// Start may fail after etcd is up (API server too slow, a bad CRD): stop what runs.
		_ = env.Stop()
		k.closeLogs()
		return nil, fmt.Errorf("starting kube-apiserver and etcd (logs in %s): %w", logDir, err)
	}
	k.env, k.Config = env, cfg
	k.Kubeconfig = filepath.Join(logDir, "kubeconfig")
	if err := os.WriteFile(k.Kubeconfig, env.KubeConfig, 0o600); err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	if k.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	if k.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("clientset: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	k.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range []string{IstioNamespace, FluxNamespace, ArgoCDNamespace} {
		if err := k.CreateNamespace(ctx, ns); err != nil {
			_ = k.Stop()
			return nil, err
		}
	}
	// istioctl asks for a token of istio-system's default ServiceAccount to read istiod
	// over TLS; without a controller-manager nobody else creates it.
	if err := k.EnsureServiceAccount(ctx, IstioNamespace, "default"); err != nil {
		_ = k.Stop()
		return nil, err
	}
	return k, nil
}

// Stop stops the API server and etcd.
func (k *Kube) Stop() error {
	var err error
	if k.env != nil {
		err = k.env.Stop()
	}
	k.closeLogs()
	if err != nil {
		return fmt.Errorf("stopping kube-apiserver and etcd: %w", err)
	}
	return nil
}

func (k *Kube) closeLogs() {
	for _, c := range k.logs {
		_ = c.Close()
	}
	k.logs = nil
}

// CreateNamespace creates a namespace if it does not exist yet.
func (k *Kube) CreateNamespace(ctx context.Context, name string) error {
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	_, err := k.Dynamic.Resource(corev1.SchemeGroupVersion.WithResource("namespaces")).Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// Apply server-side applies every object of a multi-document YAML as fieldManager, the
// way kubectl apply --server-side and the GitOps controllers write objects.
func (k *Kube) Apply(ctx context.Context, fieldManager, manifests string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(manifests)), 4096)
	var out []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, fmt.Errorf("decoding manifests: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		applied, err := k.ApplyObject(ctx, fieldManager, obj)
		if err != nil {
			return out, err
		}
		out = append(out, applied)
	}
}

// ApplyObject server-side applies one object.
func (k *Kube) ApplyObject(ctx context.Context, fieldManager string, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	ri, err := k.resource(obj)
	if err != nil {
		return nil, err
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	force := true
	applied, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: &force})
	if err != nil {
		return nil, fmt.Errorf("applying %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
	return applied, nil
}

// MergePatch applies a JSON merge patch to obj as fieldManager. Argo CD's Application CRD
// has no status subresource: its controller writes .status this way.
func (k *Kube) MergePatch(ctx context.Context, fieldManager string, obj *unstructured.Unstructured, patch []byte) (*unstructured.Unstructured, error) {
	ri, err := k.resource(obj)
	if err != nil {
		return nil, err
	}
	out, err := ri.Patch(ctx, obj.GetName(), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, fmt.Errorf("patching %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
	return out, nil
}

// UpdateStatus writes obj's status subresource, as the owning controller would, for kinds
// that have one (Flux's; not Argo CD's Application, see MergePatch).
func (k *Kube) UpdateStatus(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	ri, err := k.resource(obj)
	if err != nil {
		return nil, err
	}
	out, err := ri.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating status of %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
	return out, nil
}

// Resource returns the dynamic client for obj's kind, namespaced where the kind is.
func (k *Kube) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		// A CRD installed after the mapper cached discovery shows up after a reset.
		k.mapper.Reset()
		if m, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, fmt.Errorf("mapping %s: %w", gvk, err)
		}
	}
	if m.Scope.Name() == "namespace" {
		return k.Dynamic.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return k.Dynamic.Resource(m.Resource), nil
}
