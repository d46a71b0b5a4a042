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

// Pods lists pods' metadata from a metadata-only informer: selector checks need labels,
// revision and proxy-version checks the mesh's annotations; a full Pod (spec, status)
// would cost memory in proportion to the cluster for nothing meshdrift reads.
type Pods struct {
	*metaCache
	lists listCache[reconcile.PodMeta]
}

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// podAnnotationPrefixes are the annotations kept: the meshes' own. Others (checksums,
// configuration blobs of other tools) can be large and are never read.
var podAnnotationPrefixes = []string{"sidecar.istio.io/", "istio.io/", "proxy.istio.io/", "linkerd.io/", "config.linkerd.io/"}

// NewPods builds the informer; Run starts it.
func NewPods(client metadata.Interface, resync time.Duration) *Pods {
	return &Pods{metaCache: newMetaCache(client, podsGVR, resync, "", trimPodMeta)}
}

// trimPodMeta keeps a pod's name, namespace, labels and the meshes' annotations.
func trimPodMeta(m *metav1.PartialObjectMetadata) {
	m.OwnerReferences, m.Finalizers = nil, nil
	maps.DeleteFunc(m.Annotations, func(k, _ string) bool {
		return !slices.ContainsFunc(podAnnotationPrefixes, func(p string) bool { return strings.HasPrefix(k, p) })
	})
	if len(m.Annotations) == 0 {
		m.Annotations = nil
	}
}

// List returns every pod, sorted by namespace and name; nil before the first list, so
// that no check judges selectors against an empty cluster. The list is kept until the
// cache changes and its maps are the cache's: callers must not modify either.
func (p *Pods) List() []reconcile.PodMeta { return p.lists.get(p.Version(), p.list) }

// list reads the cache anew.
func (p *Pods) list() []reconcile.PodMeta {
	items := p.items()
	if items == nil {
		return nil
	}
	out := make([]reconcile.PodMeta, 0, len(items))
	for _, m := range items {
		out = append(out, reconcile.PodMeta{Namespace: m.Namespace, Name: m.Name, Labels: m.Labels, Annotations: m.Annotations})
	}
	slices.SortFunc(out, func(a, b reconcile.PodMeta) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}
