package mesh

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/meshdrift/meshdrift/reconcile"
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

// meshObject is how the mesh informers cache an object: what meshdrift reads of its
// metadata, packed, and the other top-level fields (spec, the kept status) as JSON,
// decoded again only when the object is reported or checked. Held as unstructured maps,
// a mesh object takes about five times the size of its JSON; as a typed ObjectMeta, its
// labels, annotations and managedFields entries (each with its own copy of every
// manager name and fieldsV1 tree) took half of what the object held.
//
// It implements metav1.Object for the informer and the handlers. Its getters build what
// they return anew, so a caller may change that freely. Of the metadata it keeps name,
// namespace, resourceVersion, generation, creation and deletion timestamps, labels, the
// annotations in keptAnnotations and the managedFields trimManagedFields keeps; the rest
// (uid, finalizers, ownerReferences, generateName, selfLink, the deletion grace period
// and the other annotations) nothing reads, so their getters return nothing and their
// setters drop what they are given.
type meshObject struct {
	// TypeMeta's strings are interned.
	metav1.TypeMeta
	name, namespace, resourceVersion string
	generation                       int64
	created                          unixTime
	deleted                          *metav1.Time
	// labels and annotations are key, value pairs sorted by key; keys and values are
	// interned.
	labels, annotations []string
	managed             []managedEntry
	// content is the JSON object of every top-level field but apiVersion, kind and
	// metadata. It is never changed after compactObject, so copies share it.
	content []byte
}

// keptAnnotations are the annotations a reader of mesh objects uses: the Argo CD tracking
// id (gitOpsOwner) and meshdrift's own ignore list (MeshChange.Ignore). The checks read
// none (checkView).
var keptAnnotations = map[string]bool{
	argoTrackingAnnotation:     true,
	reconcile.AnnotationIgnore: true,
}

// managedEntry is one metav1.ManagedFieldsEntry with its strings interned: the managers,
// versions and fieldsV1 trees of a fleet's objects repeat from one object to the next.
type managedEntry struct {
	manager, operation, apiVersion, fieldsType, subresource string
	at                                                      unixTime
	// fields is the fieldsV1 JSON; "" when the entry has none.
	fields string
}

// unixTime is a metav1.Time in Unix seconds, the API server's resolution (metav1.Time
// encodes no finer), or noTime.
type unixTime int64

// noTime is an absent (zero) time.
const noTime unixTime = math.MinInt64

func packTime(t metav1.Time) unixTime {
	if t.IsZero() {
		return noTime
	}
	return unixTime(t.Unix())
}

// time returns the time as metav1.Time decodes it: in the local zone.
func (u unixTime) time() metav1.Time {
	if u == noTime {
		return metav1.Time{}
	}
	return metav1.NewTime(time.Unix(int64(u), 0))
}

// intern returns a shared copy of s. unique forgets a value once no handle holds it,
// and none is kept here: the strings interned between two garbage collections share one
// copy, which stays alive as long as any of them does; a later one may get a new copy.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// packPairs turns a map into sorted key, value pairs of interned strings; keep, if set,
// picks the keys kept.
func packPairs(m map[string]string, keep func(string) bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if keep == nil || keep(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	out := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		out = append(out, intern(k), intern(m[k]))
	}
	return out
}

func unpackPairs(p []string) map[string]string {
	if len(p) == 0 {
		return nil
	}
	m := make(map[string]string, len(p)/2)
	for i := 0; i+1 < len(p); i += 2 {
		m[p[i]] = p[i+1]
	}
	return m
}

// DeepCopyObject implements runtime.Object. The packed fields are never changed in
// place (the setters replace them), so the copy shares them.
func (o *meshObject) DeepCopyObject() runtime.Object {
	c := *o
	c.deleted = o.deleted.DeepCopy()
	return &c
}

// GetObjectKind implements runtime.Object.
func (o *meshObject) GetObjectKind() schema.ObjectKind { return &o.TypeMeta }

// setObjectMeta packs m into o, dropping what meshObject does not keep.
func (o *meshObject) setObjectMeta(m *metav1.ObjectMeta) {
	o.name, o.namespace, o.resourceVersion = m.Name, intern(m.Namespace), m.ResourceVersion
	o.generation = m.Generation
	o.created = packTime(m.CreationTimestamp)
	o.SetDeletionTimestamp(m.DeletionTimestamp)
	o.SetLabels(m.Labels)
	o.SetAnnotations(m.Annotations)
	o.SetManagedFields(m.ManagedFields)
}

// objectMeta unpacks o's metadata.
func (o *meshObject) objectMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: o.name, Namespace: o.namespace, ResourceVersion: o.resourceVersion, Generation: o.generation,
		CreationTimestamp: o.created.time(), DeletionTimestamp: o.GetDeletionTimestamp(),
		Labels: o.GetLabels(), Annotations: o.GetAnnotations(), ManagedFields: o.GetManagedFields(),
	}
}

func (o *meshObject) GetNamespace() string                  { return o.namespace }
func (o *meshObject) SetNamespace(ns string)                { o.namespace = intern(ns) }
func (o *meshObject) GetName() string                       { return o.name }
func (o *meshObject) SetName(name string)                   { o.name = name }
func (o *meshObject) GetGenerateName() string               { return "" }
func (o *meshObject) SetGenerateName(string)                {}
func (o *meshObject) GetUID() types.UID                     { return "" }
func (o *meshObject) SetUID(types.UID)                      {}
func (o *meshObject) GetResourceVersion() string            { return o.resourceVersion }
func (o *meshObject) SetResourceVersion(v string)           { o.resourceVersion = v }
func (o *meshObject) GetGeneration() int64                  { return o.generation }
func (o *meshObject) SetGeneration(g int64)                 { o.generation = g }
func (o *meshObject) GetSelfLink() string                   { return "" }
func (o *meshObject) SetSelfLink(string)                    {}
func (o *meshObject) GetCreationTimestamp() metav1.Time     { return o.created.time() }
func (o *meshObject) SetCreationTimestamp(t metav1.Time)    { o.created = packTime(t) }
func (o *meshObject) GetDeletionTimestamp() *metav1.Time    { return o.deleted.DeepCopy() }
func (o *meshObject) SetDeletionTimestamp(t *metav1.Time)   { o.deleted = t.DeepCopy() }
func (o *meshObject) GetDeletionGracePeriodSeconds() *int64 { return nil }
func (o *meshObject) SetDeletionGracePeriodSeconds(*int64)  {}
func (o *meshObject) GetLabels() map[string]string          { return unpackPairs(o.labels) }
func (o *meshObject) SetLabels(l map[string]string)         { o.labels = packPairs(l, nil) }
func (o *meshObject) GetAnnotations() map[string]string     { return unpackPairs(o.annotations) }
func (o *meshObject) GetFinalizers() []string               { return nil }
func (o *meshObject) SetFinalizers([]string)                {}
func (o *meshObject) GetOwnerReferences() []metav1.OwnerReference {
	return nil
}
func (o *meshObject) SetOwnerReferences([]metav1.OwnerReference) {}

// SetAnnotations keeps keptAnnotations only.
func (o *meshObject) SetAnnotations(a map[string]string) {
	o.annotations = packPairs(a, func(k string) bool { return keptAnnotations[k] })
}

func (o *meshObject) GetManagedFields() []metav1.ManagedFieldsEntry {
	if len(o.managed) == 0 {
		return nil
	}
	out := make([]metav1.ManagedFieldsEntry, len(o.managed))
	for i, e := range o.managed {
		out[i] = metav1.ManagedFieldsEntry{
			Manager: e.manager, Operation: metav1.ManagedFieldsOperationType(e.operation), APIVersion: e.apiVersion,
			FieldsType: e.fieldsType, Subresource: e.subresource,
		}
		if e.at != noTime {
			t := e.at.time()
			out[i].Time = &t
		}
		if e.fields != "" {
			out[i].FieldsV1 = metav1.NewFieldsV1(e.fields)
		}
	}
	return out
}

func (o *meshObject) SetManagedFields(entries []metav1.ManagedFieldsEntry) {
	if len(entries) == 0 {
		o.managed = nil
		return
	}
	o.managed = make([]managedEntry, len(entries))
	for i, e := range entries {
		m := managedEntry{
			manager: intern(e.Manager), operation: intern(string(e.Operation)), apiVersion: intern(e.APIVersion),
			fieldsType: intern(e.FieldsType), subresource: intern(e.Subresource), at: noTime,
		}
		if e.Time != nil {
			m.at = packTime(*e.Time)
		}
		if e.FieldsV1 != nil {
			m.fields = intern(e.FieldsV1.GetRawString())
		}
		o.managed[i] = m
	}
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
// trimObject and meshObject dropped.
func (o *meshObject) toUnstructured() (*unstructured.Unstructured, error) {
	meta := o.objectMeta()
	md, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&meta)
	if err != nil {
		return nil, fmt.Errorf("converting the metadata of %s/%s: %w", o.namespace, o.name, err)
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
	var meta metav1.ObjectMeta
	md, _ := u.Object["metadata"].(map[string]any)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(md, &meta); err != nil {
		return u, nil
	}
	rest := make(map[string]any, len(u.Object))
	for k, v := range u.Object {
		if k != "apiVersion" && k != "kind" && k != "metadata" {
			rest[k] = v
		}
	}
	o := &meshObject{}
	if o.content, err = json.Marshal(rest); err != nil {
		return u, nil
	}
	o.setObjectMeta(&meta)
	o.APIVersion, o.Kind = intern(u.GetAPIVersion()), intern(u.GetKind())
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
