package mesh

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
)

// metaCache is a metadata-only informer of one resource, trimmed as it fills and
// remembering its latest list or watch error. Pods, Namespaces and RevisionTags are
// views of one.
type metaCache struct {
	informer cache.SharedIndexInformer
	watchErr
	// version counts the objects added, deleted, or relabelled or re-annotated (Version).
	version atomic.Uint64
}

// newMetaCache builds the informer; selector, if set, filters by label, and trim (which
// may be nil) drops what the view never reads.
func newMetaCache(client metadata.Interface, gvr schema.GroupVersionResource, resync time.Duration, selector string, trim func(*metav1.PartialObjectMetadata)) *metaCache {
	var tweak metadatainformer.TweakListOptionsFunc
	if selector != "" {
		tweak = func(o *metav1.ListOptions) { o.LabelSelector = selector }
	}
	inf := metadatainformer.NewFilteredMetadataInformer(client, gvr, metav1.NamespaceAll, resync, cache.Indexers{}, tweak)
	c := &metaCache{informer: inf.Informer()}
	_ = c.informer.SetTransform(func(obj any) (any, error) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			m.ManagedFields = nil
			if trim != nil {
				trim(m)
			}
		}
		return obj, nil
	})
	_ = c.informer.SetWatchErrorHandlerWithContext(c.handle)
	// Only what the views read counts: every status write of a pod moves its
	// resourceVersion, and would wake the checks for nothing they see.
	_, _ = c.informer.AddEventHandler(countChanges(&c.version, metaChanged))
	return c
}

// Version counts the objects added, deleted, or changed in their (trimmed) labels or
// annotations since the start; see LiveSource.Version.
func (c *metaCache) Version() uint64 { return c.version.Load() }

// Run watches until ctx ends.
func (c *metaCache) Run(ctx context.Context) error {
	c.informer.Run(ctx.Done())
	return nil
}

// HasSynced reports whether the first list is in.
func (c *metaCache) HasSynced() bool { return c.informer.HasSynced() }

// items returns the cached objects; nil before the first list, so that no view judges
// an empty picture as the cluster's.
func (c *metaCache) items() []*metav1.PartialObjectMetadata {
	return syncedItems[*metav1.PartialObjectMetadata](c.informer)
}

// syncedItems returns an informer's cached objects of type T; nil before its first list.
func syncedItems[T any](inf cache.SharedIndexInformer) []T {
	if !inf.HasSynced() {
		return nil
	}
	objs := inf.GetStore().List()
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// listCache keeps a view's latest list with the cache's Version it was read at: the
// findings and the checks read every pod's metadata on every pass, and a fleet has tens
// of thousands of pods. The list is shared: callers must not modify it.
type listCache[T any] struct {
	mu   sync.Mutex
	ok   bool
	ver  uint64
	list []T
}

// get returns the list held if it was read at ver, else read's answer. A nil answer (the
// cache has not synced) is never kept: syncing does not move the version.
func (c *listCache[T]) get(ver uint64, read func() []T) []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && c.ver == ver {
		return c.list
	}
	l := read()
	c.ok, c.ver, c.list = l != nil, ver, l
	return l
}
