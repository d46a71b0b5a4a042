package mesh

import (
	"context"
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
	informer cache.SharedIndexInformer
	watchErr
}

var mutatingWebhooksGVR = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}

// NewRevisionTags builds the informer; Run starts it.
func NewRevisionTags(client metadata.Interface, resync time.Duration) *RevisionTags {
	inf := metadatainformer.NewFilteredMetadataInformer(client, mutatingWebhooksGVR, metav1.NamespaceAll, resync, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = labelTag })
	_ = inf.Informer().SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			m.ManagedFields, m.Annotations, m.OwnerReferences = nil, nil, nil
		}
		return obj, nil
	})
	x := &RevisionTags{informer: inf.Informer()}
	_ = x.informer.SetWatchErrorHandlerWithContext(x.handle)
	return x
}

// Run watches until ctx ends.
func (r *RevisionTags) Run(ctx context.Context) error {
	r.informer.Run(ctx.Done())
	return nil
}

// HasSynced reports whether the first list is in.
func (r *RevisionTags) HasSynced() bool { return r.informer.HasSynced() }

// List returns every tag with the revision it points to, sorted by tag; nil before the
// first list, so that a namespace on a tag is not judged as if the tag were a revision.
// A tag with several webhooks (one per injector namespace) is listed once per distinct
// revision.
func (r *RevisionTags) List() []reconcile.RevisionTag {
	if !r.informer.HasSynced() {
		return nil
	}
	out := []reconcile.RevisionTag{}
	for _, o := range r.informer.GetStore().List() {
		m, ok := o.(*metav1.PartialObjectMetadata)
		if !ok {
			continue
		}
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
