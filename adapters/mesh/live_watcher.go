package mesh

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// gatewayAPIGroup is the group of the Gateway API routes.
const gatewayAPIGroup = "gateway.networking.k8s.io"

// checkView decodes what the checks read of an object: spec, the kept status, labels,
// and managedFields only for Gateway API routes (how long their status lagged a spec
// write, MD0603). Annotations and the other kinds' managedFields would double what the
// decoded objects hold for nothing the checks read.
func checkView(gk schema.GroupKind, o *meshObject) (*unstructured.Unstructured, error) {
	c := *o // the copy may drop fields; the cached object keeps them
	c.annotations = nil
	if gk.Group != gatewayAPIGroup {
		c.managed = nil
	}
	return c.toUnstructured()
}

// Objects returns the cached objects of the watched mesh kinds that want selects (nil:
// every kind), by kind: the kinds the API server serves, as discovery last said, so the
// semantic checks read the same informers rather than watching the same kinds a second
// time. A served kind with no objects has an empty list.
//
// The informers hold objects compact (meshObject); each call decodes them anew. Keeping
// the decoded objects between runs would hold about 12 KB per object (240 MiB at 20,000,
// BenchmarkChecksViewHeap) to save a decode that a run, spaced by ten times its own
// duration and skipped while Version stands still, can afford.
func (w *Watcher) Objects(want func(schema.GroupKind) bool) map[schema.GroupKind][]*unstructured.Unstructured {
	w.mu.Lock()
	kinds := make(map[schema.GroupKind]*kindWatch, len(w.kinds))
	for gk, kw := range w.kinds {
		if want == nil || want(gk) {
			kinds[gk] = kw
		}
	}
	w.mu.Unlock()

	out := make(map[schema.GroupKind][]*unstructured.Unstructured, len(kinds))
	for gk, kw := range kinds {
		items := kw.informer.GetStore().List()
		objs := make([]*unstructured.Unstructured, 0, len(items))
		for _, item := range items {
			switch o := item.(type) {
			case *unstructured.Unstructured:
				objs = append(objs, o)
			case *meshObject:
				u, err := checkView(gk, o)
				if err != nil {
					w.log.Warn("object left out of the checks", "kind", gk.String(), "namespace", o.namespace, "name", o.name, "err", err)
					continue
				}
				objs = append(objs, u)
			}
		}
		out[gk] = objs
	}
	return out
}

// Version counts the changes of the cached objects of the kinds want selects (nil: every
// kind) and of the kinds watched: it grows after an object is added or deleted, or
// written (a new resourceVersion, status included), and when a kind starts or stops
// being watched. A resync is no change. Each change is counted once the informer's store
// holds it (as its handler runs), so Version read before Objects never misses one.
func (w *Watcher) Version(want func(schema.GroupKind) bool) uint64 {
	v := w.kindsVersion.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	for gk, c := range w.versions {
		if want == nil || want(gk) {
			v += c.Load()
		}
	}
	return v
}
