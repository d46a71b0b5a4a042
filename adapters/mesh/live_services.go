package mesh

import (
	"context"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
)

// Services watches Kubernetes Services for the semantic checks, keeping only what they
// read: name, namespace, labels, Istio's annotations (networking.istio.io/exportTo) and
// spec.selector, ports and type. Everything else (status, managedFields, other tools'
// annotations) is dropped as it arrives.
type Services struct {
	informer cache.SharedIndexInformer
	watchErr
	// version counts the Services added, deleted and written (Version).
	version atomic.Uint64
}

var servicesGVR = schema.GroupVersionResource{Version: "v1", Resource: "services"}

// serviceAnnotationPrefix: the only Service annotations the checks read are Istio's.
const serviceAnnotationPrefix = "networking.istio.io/"

// NewServices builds the informer; Run starts it.
func NewServices(dyn dynamic.Interface, resync time.Duration) *Services {
	s := &Services{}
	res := dyn.Resource(servicesGVR)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, opts)
		},
	}
	s.informer = cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, dyn),
		&unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{ResyncPeriod: resync, ObjectDescription: servicesGVR.String()},
	)
	_ = s.informer.SetTransform(trimService)
	_ = s.informer.SetWatchErrorHandlerWithContext(s.handle)
	// Any write counts: Services change seldom, and their status (load balancers) is
	// already dropped by trimService but not from the resourceVersion.
	_, _ = s.informer.AddEventHandler(countChanges(&s.version, nil))
	return s
}

// Version counts the Services added, deleted and written since the start; see
// LiveSource.Version.
func (s *Services) Version() uint64 { return s.version.Load() }

// trimService keeps what the checks read of a Service.
func trimService(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	meta := map[string]any{"name": u.GetName(), "namespace": u.GetNamespace(), "resourceVersion": u.GetResourceVersion()}
	if l := u.GetLabels(); len(l) > 0 {
		meta["labels"] = stringMap(l)
	}
	ann := u.GetAnnotations()
	maps.DeleteFunc(ann, func(k, _ string) bool { return !strings.HasPrefix(k, serviceAnnotationPrefix) })
	if len(ann) > 0 {
		meta["annotations"] = stringMap(ann)
	}
	spec := map[string]any{}
	if src, ok := u.Object["spec"].(map[string]any); ok {
		for _, f := range []string{"selector", "ports", "type"} {
			if v, ok := src[f]; ok {
				spec[f] = v
			}
		}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec,
	}}, nil
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Run watches until ctx ends.
func (s *Services) Run(ctx context.Context) error {
	s.informer.RunWithContext(ctx)
	return nil
}

// HasSynced reports whether the first list is in.
func (s *Services) HasSynced() bool { return s.informer.HasSynced() }

// List returns every Service as trimmed; nil before the first list. The objects are the
// cache's: callers must not modify them.
func (s *Services) List() []*unstructured.Unstructured {
	return syncedItems[*unstructured.Unstructured](s.informer)
}

// OnChange calls f after a Service is added, deleted, or changed in what the checks read.
func (s *Services) OnChange(f func()) error {
	return onChange(s.informer, func(old, cur any) bool {
		o, ok1 := old.(*unstructured.Unstructured)
		c, ok2 := cur.(*unstructured.Unstructured)
		if !ok1 || !ok2 {
			return true
		}
		return !equality.Semantic.DeepEqual(o.Object["spec"], c.Object["spec"]) ||
			!maps.Equal(o.GetLabels(), c.GetLabels()) || !maps.Equal(o.GetAnnotations(), c.GetAnnotations())
	}, f)
}

// OnChange calls f after a pod is added, deleted, or relabelled (or its mesh annotations
// change): status churn is not a change the checks see.
func (p *Pods) OnChange(f func()) error {
	return onChange(p.informer, metaChanged, f)
}

// OnChange calls f after a namespace is added, deleted or relabelled.
func (n *Namespaces) OnChange(f func()) error {
	return onChange(n.informer, metaChanged, f)
}

func metaChanged(old, cur any) bool {
	o, ok1 := old.(*metav1.PartialObjectMetadata)
	c, ok2 := cur.(*metav1.PartialObjectMetadata)
	if !ok1 || !ok2 {
		return true
	}
	return !maps.Equal(o.Labels, c.Labels) || !maps.Equal(o.Annotations, c.Annotations)
}

func onChange(inf cache.SharedIndexInformer, changed func(old, cur any) bool, f func()) error {
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { f() },
		UpdateFunc: func(old, cur any) {
			if changed(old, cur) {
				f()
			}
		},
		DeleteFunc: func(any) { f() },
	})
	return err
}
