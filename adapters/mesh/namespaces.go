package mesh

import (
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Namespaces lists namespaces with their labels from a metadata-only informer: the
// revision checks (MD0701) read istio.io/rev and istio-injection, never the rest.
type Namespaces struct {
	*metaCache
	lists listCache[reconcile.Namespace]
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// NewNamespaces builds the informer; Run starts it.
func NewNamespaces(client metadata.Interface, resync time.Duration) *Namespaces {
	// Keep only what the checks read: names and labels.
	return &Namespaces{metaCache: newMetaCache(client, namespacesGVR, resync, "", func(m *metav1.PartialObjectMetadata) { m.Annotations = nil })}
}

// List returns every namespace, sorted by name; nil before the first list, so that the
// revision checks do not run on an empty picture. The list is kept until the cache
// changes: callers must not modify it.
func (n *Namespaces) List() []reconcile.Namespace { return n.lists.get(n.Version(), n.list) }

// list reads the cache anew.
func (n *Namespaces) list() []reconcile.Namespace {
	items := n.items()
	if items == nil {
		return nil
	}
	out := make([]reconcile.Namespace, 0, len(items))
	for _, m := range items {
		out = append(out, reconcile.Namespace{Name: m.Name, Labels: maps.Clone(m.Labels)})
	}
	slices.SortFunc(out, func(a, b reconcile.Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out
}
