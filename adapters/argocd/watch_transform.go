package argocd

import (
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

// annotationLastApplied is client-side kubectl apply's copy of the whole object.
const annotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// cachedApplication is how the informers cache an Application: the App that observe
// reports of it (appview.ToApp), made once by trimApplication, and nothing else. That is
// exactly what meshdrift reads of an Application, and its Objects slice is the one
// reconcile's store keeps of the app (observe hands it over as it is), so an app's
// objects are held once in the process, not once in the cache and once in the store.
// As unstructured maps an Application with 50 objects and a history of 10 takes about
// 130 KB (see BenchmarkArgoAppsHeap).
type cachedApplication struct {
	metav1.TypeMeta
	// resourceVersion, with app.Key's namespace and name, is what the informer keys and
	// orders by (GetObjectMeta).
	resourceVersion string
	// app has no ObservedAt: observe sets it on its copy. app is never changed after
	// trimApplication, so copies (and the sink) share its Objects.
	app reconcile.App
}

// GetObjectMeta implements metav1.ObjectMetaAccessor, through which the informer reads
// an object's key and resource version: a typed ObjectMeta in every cached object would
// take more than the rest of a small app.
func (c *cachedApplication) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: c.app.Key.Name, Namespace: c.app.Key.Namespace, ResourceVersion: c.resourceVersion}
}

// DeepCopyObject implements runtime.Object.
func (c *cachedApplication) DeepCopyObject() runtime.Object {
	out := *c
	return &out
}

// trimApplication is the informers' transform (cache.TransformFunc): it replaces an
// Application, before the cache keeps it, by the App observe reports of it, as a
// *cachedApplication. observe's result is the same as on the full object (see
// TestTrimApplicationKeepsWhatObserveReads). An object the view cannot decode stays an
// *unstructured.Unstructured, without managedFields and the last-applied annotation, for
// observe to report the decoding error.
func trimApplication(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	a, err := appview.FromUnstructured(u)
	if err != nil {
		u.SetManagedFields(nil)
		if ann := u.GetAnnotations(); ann[annotationLastApplied] != "" {
			delete(ann, annotationLastApplied)
			u.SetAnnotations(ann)
		}
		return u, nil
	}
	app := appview.ToApp(a, time.Time{})
	app.Reason = intern(app.Reason)
	if app.AppliedRevision == app.DesiredRevision {
		app.AppliedRevision = app.DesiredRevision // held once
	}
	internObjects(app.Objects)
	c := &cachedApplication{
		TypeMeta:        metav1.TypeMeta{APIVersion: appview.APIVersion, Kind: appview.Kind},
		resourceVersion: a.Metadata.ResourceVersion,
		app:             app,
	}
	return c, nil
}

// internObjects shares, across apps, the strings of objects that repeat: group, kind,
// namespace, sync and health status. Only names are the object's own.
func internObjects(objs []reconcile.OwnedObject) {
	for i := range objs {
		o := &objs[i]
		o.Ref.Group = intern(o.Ref.Group)
		o.Ref.Kind = intern(o.Ref.Kind)
		o.Ref.Namespace = intern(o.Ref.Namespace)
		o.Sync = intern(o.Sync)
		o.Health = intern(o.Health)
	}
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
