package reconcile

import (
	"sync"
)

// MeshObjects keeps the latest change of every mesh object that exists. The store keeps
// changes only until they have propagated (and Retention passed); the checks that judge
// objects rather than changes (out-of-band edits, orphans) need every object, for as
// long as it exists.
type MeshObjects struct {
	mu      sync.RWMutex
	objects map[ObjectRef]MeshChange
	// sorted is List's answer until the next change: the findings read it every second,
	// and sorting 20,000 objects each time was most of an idle pass.
	sorted []MeshChange
	// version counts the changes (Snapshot.Versions.Objects).
	version uint64
}

// NewMeshObjects returns an empty set.
func NewMeshObjects() *MeshObjects {
	return &MeshObjects{objects: map[ObjectRef]MeshChange{}}
}

// ObserveMeshChange records the object's latest state, or forgets a deleted one.
func (o *MeshObjects) ObserveMeshChange(c MeshChange) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sorted = nil
	o.version++
	if c.Deleted {
		delete(o.objects, c.Ref)
		return
	}
	o.objects[c.Ref] = c
}

// List returns every object, sorted by Ref. The slice is shared with other callers until
// the next change: it must not be modified.
func (o *MeshObjects) List() []MeshChange {
	o.mu.RLock()
	sorted := o.sorted
	o.mu.RUnlock()
	if sorted != nil {
		return sorted
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sorted == nil {
		out := make([]MeshChange, 0, len(o.objects))
		for _, c := range o.objects {
			out = append(out, c)
		}
		sortByKey(out, func(c MeshChange) string { return c.Ref.String() })
		o.sorted = out
	}
	return o.sorted
}

// Version counts the changes recorded so far: List's answer is the same while it is.
func (o *MeshObjects) Version() uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.version
}

// MeshSinks passes every change to each sink in turn.
type MeshSinks []MeshSink

// ObserveMeshChange implements MeshSink.
func (s MeshSinks) ObserveMeshChange(c MeshChange) {
	for _, sink := range s {
		sink.ObserveMeshChange(c)
	}
}

// Namespace is a namespace's name and labels, read metadata-only: the revision checks
// compare its istio.io/rev or istio-injection label with the istiod its proxies use.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// PodMeta is what meshdrift knows of a pod: its metadata, read metadata-only, never its
// spec. Selector checks read the labels; revision and proxy-version checks read the
// injection labels and the mesh's annotations (sidecar.istio.io/*, linkerd.io/*).
type PodMeta struct {
	Namespace, Name     string
	Labels, Annotations map[string]string
}

// RevisionTag is an Istio revision tag (`istioctl tag set`): a stable name a namespace's
// or pod's istio.io/rev label may use instead of a revision. It lives only as the labels
// istio.io/tag and istio.io/rev of the tag's MutatingWebhookConfiguration.
type RevisionTag struct {
	Tag, Revision string
}
