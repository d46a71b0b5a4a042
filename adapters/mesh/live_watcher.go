package mesh

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Objects returns the cached objects of every mesh kind watched, by kind: the kinds the
// API server serves, as discovery last said, so the semantic checks read the same
// informers rather than watching the same kinds a second time. A served kind with no
// objects has an empty list. The objects are the informers' own: callers must not
// modify them.
func (w *Watcher) Objects() map[schema.GroupKind][]*unstructured.Unstructured {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[schema.GroupKind][]*unstructured.Unstructured, len(w.kinds))
	for gk, kw := range w.kinds {
		items := kw.informer.GetStore().List()
		objs := make([]*unstructured.Unstructured, 0, len(items))
		for _, o := range items {
			if u, ok := o.(*unstructured.Unstructured); ok {
				objs = append(objs, u)
			}
		}
		out[gk] = objs
	}
	return out
}
