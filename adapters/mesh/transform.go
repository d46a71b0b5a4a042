package mesh

import (
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// AnnotationLastApplied is where client-side kubectl apply keeps a full copy of the object
// it applied: often the largest part of a mesh object, and never read here.
const AnnotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// keptStatus are the status fields kept in the cache: the ones a reader of mesh objects
// uses (istiod's validationMessages and conditions, Gateway API route parents with their
// conditions, observedGeneration). The rest of a status (a Gateway's listeners and
// addresses, for instance) is dropped.
var keptStatus = map[string]bool{
	"conditions":         true,
	"validationMessages": true,
	"observedGeneration": true,
	"parents":            true,
}

// trimObject is the informers' transform (cache.TransformFunc): it drops from a mesh
// object, before the cache keeps it, what meshdrift never reads. It keeps the spec
// (Reach, checks), labels and every annotation but the last-applied one (owner, ignore),
// generation, resourceVersion and timestamps (changes), the status fields in keptStatus,
// and of managedFields (see trimManagedFields) what lastSpecWrite, updateSpecWrite and
// specWrites read. Anything not an *unstructured.Unstructured passes as it is (a
// tombstone carries an object that was transformed already).
func trimObject(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	trimMeta(u.Object)
	if st, ok := u.Object["status"].(map[string]any); ok {
		for k := range st {
			if !keptStatus[k] {
				delete(st, k)
			}
		}
		if len(st) == 0 {
			delete(u.Object, "status")
		}
	}
	return u, nil
}

// trimMeta drops the last-applied annotation and trims managedFields in an object's
// metadata, in place.
func trimMeta(obj map[string]any) {
	md, ok := obj["metadata"].(map[string]any)
	if !ok {
		return
	}
	if ann, ok := md["annotations"].(map[string]any); ok {
		delete(ann, AnnotationLastApplied)
		if len(ann) == 0 {
			delete(md, "annotations")
		}
	}
	if raw, ok := md["managedFields"].([]any); ok {
		if kept := trimManagedFields(raw); len(kept) > 0 {
			md["managedFields"] = kept
		} else {
			delete(md, "managedFields")
		}
	}
}

// trimManagedFields keeps, of the raw managedFields entries of an unstructured object:
//
//   - every entry that owns spec fields, whole: specWrites reports each (MD0801 lists
//     them), and updateSpecWrite compares their fieldsV1 between versions to find who
//     gained fields in a write that fell in the same second as the last one;
//   - of the other entries (status subresource, labels, annotations), the latest per
//     manager (laterWrite's order), without fieldsV1: they are read only for who wrote
//     last when no entry owns spec fields, which needs manager, operation and time.
//
// The order of the entries is kept. An entry that does not have the expected shape is
// kept as it is.
func trimManagedFields(raw []any) []any {
	type other struct {
		index int
		entry entryView
	}
	latest := map[string]other{}
	keep := make([]bool, len(raw))
	for i, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			keep[i] = true
			continue
		}
		e, ok := viewEntry(m)
		if !ok || e.spec {
			keep[i] = true
			continue
		}
		if cur, seen := latest[e.manager]; !seen || e.laterThan(cur.entry) {
			latest[e.manager] = other{i, e}
		}
	}
	for _, o := range latest {
		keep[o.index] = true
	}
	out := make([]any, 0, len(raw))
	for i, r := range raw {
		if !keep[i] {
			continue
		}
		if m, ok := r.(map[string]any); ok {
			if e, ok := viewEntry(m); ok && !e.spec {
				delete(m, "fieldsV1")
				delete(m, "fieldsType")
			}
		}
		out = append(out, r)
	}
	return out
}

// entryView is what trimManagedFields reads of one raw managedFields entry.
type entryView struct {
	manager, operation string
	// at is zero when the entry has no time.
	at time.Time
	// spec: fieldsV1 has "f:spec" at its top level (touchesSpec).
	spec bool
}

func viewEntry(m map[string]any) (entryView, bool) {
	manager, ok1 := m["manager"].(string)
	operation, ok2 := m["operation"].(string)
	if !ok1 || !ok2 {
		return entryView{}, false
	}
	e := entryView{manager: manager, operation: operation}
	if t, ok := m["time"]; ok && t != nil {
		s, ok := t.(string)
		if !ok {
			return entryView{}, false
		}
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return entryView{}, false
		}
		e.at = at
	}
	if f, ok := m["fieldsV1"]; ok && f != nil {
		fm, ok := f.(map[string]any)
		if !ok {
			return entryView{}, false
		}
		_, e.spec = fm["f:spec"]
	}
	return e, true
}

// laterThan orders entries as laterWrite does; an absent time is the earliest.
func (a entryView) laterThan(b entryView) bool {
	if !a.at.Equal(b.at) {
		return a.at.After(b.at)
	}
	ua, ub := a.operation == "Update", b.operation == "Update"
	if ua != ub {
		return ua
	}
	return a.manager < b.manager
}

// meshObject is how the mesh informers cache an object: typed metadata, whose
// managedFields keep fieldsV1 as JSON bytes, and the other top-level fields (spec, the
// kept status) as JSON, decoded again only when the object is reported. Held as
// unstructured maps, a mesh object takes about five times the size of its JSON.
type meshObject struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	// content is the JSON object of every top-level field but apiVersion, kind and
	// metadata. It is never changed after compactObject, so copies share it.
	content []byte
}

// DeepCopyObject implements runtime.Object.
func (o *meshObject) DeepCopyObject() runtime.Object {
	c := &meshObject{TypeMeta: o.TypeMeta, content: o.content}
	o.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return c
}

// fields decodes content, integers as int64 as the dynamic client decodes them; nil when
// it does not decode, which compactObject never lets happen.
func (o *meshObject) fields() map[string]any {
	var m map[string]any
	if utiljson.Unmarshal(o.content, &m) != nil {
		return nil
	}
	return m
}

// toUnstructured rebuilds the object as the dynamic client returns it, less what
// trimObject dropped.
func (o *meshObject) toUnstructured() (*unstructured.Unstructured, error) {
	md, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&o.ObjectMeta)
	if err != nil {
		return nil, fmt.Errorf("converting the metadata of %s/%s: %w", o.Namespace, o.Name, err)
	}
	u := &unstructured.Unstructured{Object: o.fields()}
	if u.Object == nil {
		u.Object = map[string]any{}
	}
	u.Object["metadata"] = md
	u.SetGroupVersionKind(o.GroupVersionKind())
	return u, nil
}

// compactObject is the mesh informers' transform (cache.TransformFunc): trimObject, then
// the object packed as a meshObject. An object that does not convert (metadata of an
// unexpected shape) stays an *unstructured.Unstructured, which the handlers also take.
func compactObject(obj any) (any, error) {
	obj, err := trimObject(obj)
	u, ok := obj.(*unstructured.Unstructured)
	if err != nil || !ok {
		return obj, err
	}
	o := &meshObject{}
	md, _ := u.Object["metadata"].(map[string]any)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(md, &o.ObjectMeta); err != nil {
		return u, nil
	}
	rest := make(map[string]any, len(u.Object))
	for k, v := range u.Object {
		if k != "apiVersion" && k != "kind" && k != "metadata" {
			rest[k] = v
		}
	}
	if o.content, err = json.Marshal(rest); err != nil {
		return u, nil
	}
	o.SetGroupVersionKind(u.GroupVersionKind())
	return o, nil
}

// cachedObject reads what a mesh informer delivers: a *meshObject, or an
// *unstructured.Unstructured (one compactObject left as it was).
func cachedObject(obj any) (metav1.Object, bool) {
	switch o := obj.(type) {
	case *meshObject:
		return o, true
	case *unstructured.Unstructured:
		return o, true
	}
	return nil, false
}

// contentOf returns the top-level fields of a cached object (spec, status).
func contentOf(obj metav1.Object) map[string]any {
	switch o := obj.(type) {
	case *meshObject:
		return o.fields()
	case *unstructured.Unstructured:
		return o.Object
	}
	return nil
}
