package mesh

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// decodedObjects keeps the objects the checks read decoded between runs: the informers
// hold them compact (meshObject), and decoding all of them for every run would cost far
// more than the run itself. An entry is decoded again only when its resourceVersion
// changes, and dropped when the object is gone.
type decodedObjects struct {
	byUID map[types.UID]decodedObject
}

type decodedObject struct {
	resourceVersion string
	obj             *unstructured.Unstructured
}

// Objects returns the cached objects of the watched mesh kinds that want selects (nil:
// every kind), by kind: the kinds the API server serves, as discovery last said, so the
// semantic checks read the same informers rather than watching the same kinds a second
// time. A served kind with no objects has an empty list. The objects are shared with
// later calls: callers must not modify them. Calls must not overlap.
func (w *Watcher) Objects(want func(schema.GroupKind) bool) map[schema.GroupKind][]*unstructured.Unstructured {
	w.mu.Lock()
	kinds := make(map[schema.GroupKind]*kindWatch, len(w.kinds))
	for gk, kw := range w.kinds {
		if want == nil || want(gk) {
			kinds[gk] = kw
		}
	}
	w.mu.Unlock()

	prev := w.decoded.byUID
	next := make(map[types.UID]decodedObject, len(prev))
	out := make(map[schema.GroupKind][]*unstructured.Unstructured, len(kinds))
	for gk, kw := range kinds {
		items := kw.informer.GetStore().List()
		objs := make([]*unstructured.Unstructured, 0, len(items))
		for _, item := range items {
			switch o := item.(type) {
			case *unstructured.Unstructured:
				objs = append(objs, o)
			case *meshObject:
				d, ok := prev[o.UID]
				if !ok || d.resourceVersion != o.ResourceVersion {
					u, err := o.toUnstructured()
					if err != nil {
						w.log.Warn("object left out of the checks", "kind", gk.String(), "namespace", o.Namespace, "name", o.Name, "err", err)
						continue
					}
					d = decodedObject{resourceVersion: o.ResourceVersion, obj: u}
				}
				next[o.UID] = d
				objs = append(objs, d.obj)
			}
		}
		out[gk] = objs
	}
	w.decoded.byUID = next
	return out
}
