package mesh

import (
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Labels `istioctl tag set` (and the istiod chart's revisionTags) put on a tag's
// MutatingWebhookConfiguration: the tag's name and the revision it points to.
const (
	labelTag      = "istio.io/tag"
	labelRevision = "istio.io/rev"
)

// RevisionTags lists Istio's revision tags from a metadata-only informer on the
// MutatingWebhookConfigurations labelled istio.io/tag: the labels say everything, and
// the webhooks' bodies (CA bundles, selectors) are never needed.
type RevisionTags struct {
	*metaCache
	lists listCache[reconcile.RevisionTag]
}

var mutatingWebhooksGVR = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}

// NewRevisionTags builds the informer; Run starts it.
func NewRevisionTags(client metadata.Interface, resync time.Duration) *RevisionTags {
	return &RevisionTags{metaCache: newMetaCache(client, mutatingWebhooksGVR, resync, labelTag, func(m *metav1.PartialObjectMetadata) {
		m.Annotations, m.OwnerReferences = nil, nil
	})}
}

// List returns every tag with the revision it points to, sorted by tag; nil before the
// first list, so that a namespace on a tag is not judged as if the tag were a revision.
// A tag with several webhooks (one per injector namespace) is listed once per distinct
// revision. The list is kept until the cache changes: callers must not modify it.
func (r *RevisionTags) List() []reconcile.RevisionTag { return r.lists.get(r.Version(), r.list) }

// list reads the cache anew.
func (r *RevisionTags) list() []reconcile.RevisionTag {
	items := r.items()
	if items == nil {
		return nil
	}
	out := []reconcile.RevisionTag{}
	for _, m := range items {
		t := reconcile.RevisionTag{Tag: m.Labels[labelTag], Revision: m.Labels[labelRevision]}
		if t.Tag == "" || t.Revision == "" || slices.Contains(out, t) {
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b reconcile.RevisionTag) int {
		if c := strings.Compare(a.Tag, b.Tag); c != 0 {
			return c
		}
		return strings.Compare(a.Revision, b.Revision)
	})
	return out
}
