package mesh

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Namespaces lists namespaces with their labels from a metadata-only informer: the
// revision checks (MD0701) read istio.io/rev and istio-injection, never the rest.
type Namespaces struct {
	informer cache.SharedIndexInformer
	watchErr
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// NewNamespaces builds the informer; Run starts it.
func NewNamespaces(client metadata.Interface, resync time.Duration) *Namespaces {
	inf := metadatainformer.NewFilteredMetadataInformer(client, namespacesGVR, metav1.NamespaceAll, resync, cache.Indexers{}, nil)
	// Keep only what the checks read: names and labels.
	_ = inf.Informer().SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			m.ManagedFields, m.Annotations = nil, nil
		}
		return obj, nil
	})
	x := &Namespaces{informer: inf.Informer()}
	_ = x.informer.SetWatchErrorHandlerWithContext(x.handle)
	return x
}

// Run watches until ctx ends.
func (n *Namespaces) Run(ctx context.Context) error {
	n.informer.Run(ctx.Done())
	return nil
}

// HasSynced reports whether the first list is in.
func (n *Namespaces) HasSynced() bool { return n.informer.HasSynced() }

// List returns every namespace, sorted by name; nil before the first list, so that the
// revision checks do not run on an empty picture.
func (n *Namespaces) List() []reconcile.Namespace {
	if !n.informer.HasSynced() {
		return nil
	}
	objs := n.informer.GetStore().List()
	out := make([]reconcile.Namespace, 0, len(objs))
	for _, o := range objs {
		m, ok := o.(*metav1.PartialObjectMetadata)
		if !ok {
			continue
		}
		out = append(out, reconcile.Namespace{Name: m.Name, Labels: maps.Clone(m.Labels)})
	}
	slices.SortFunc(out, func(a, b reconcile.Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out
}
