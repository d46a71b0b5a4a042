package argocd

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

// annotationLastApplied is client-side kubectl apply's copy of the whole object.
const annotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// cachedApplication is how the informers cache an Application: its appview, decoded once
// by trimApplication, less what ToApp does not read (trimView). The cache keeps every
// Application of the cluster: as unstructured maps an Application with 50 objects and a
// history of 10 takes about 130 KB, its trimmed view a fraction of that (see
// BenchmarkArgoAppsHeap).
type cachedApplication struct {
	metav1.TypeMeta
	// ObjectMeta holds what the informer keys and orders by: name, namespace,
	// resourceVersion.
	metav1.ObjectMeta
	// view is never changed after trimApplication, so copies share it.
	view appview.Application
}

// DeepCopyObject implements runtime.Object.
func (c *cachedApplication) DeepCopyObject() runtime.Object {
	out := &cachedApplication{TypeMeta: c.TypeMeta, view: c.view}
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// trimApplication is the informers' transform (cache.TransformFunc): it replaces an
// Application, before the cache keeps it, by its decoded view as a *cachedApplication,
// without every status.history entry but the one latestHistory picks, the per-object
// results of the last sync (operationState.syncResult.resources), and every annotation
// but the refresh and ignore ones. observe's result is the same as on the full object;
// the fields the view omits (the project, destination, sync options, versions and sync
// waves of status.resources, managedFields, ...) never reach the cache. An object the
// view cannot decode stays an *unstructured.Unstructured, without managedFields and the
// last-applied annotation, for observe to report the decoding error.
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
	trimView(&a)
	c := &cachedApplication{
		TypeMeta:   metav1.TypeMeta{APIVersion: appview.APIVersion, Kind: appview.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: a.Metadata.Name, Namespace: a.Metadata.Namespace, ResourceVersion: a.Metadata.ResourceVersion},
		view:       a,
	}
	return c, nil
}

// trimView drops from a decoded Application what ToApp does not read.
func trimView(a *appview.Application) {
	var ann map[string]string
	for _, k := range []string{appview.AnnotationRefresh, reconcile.AnnotationIgnore} {
		if v, ok := a.Metadata.Annotations[k]; ok {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	a.Metadata.Annotations = ann
	if h := a.Status.History; len(h) > 1 {
		// latestHistory's pick: the highest ID, the last of equal ones.
		latest := 0
		for i := range h {
			if h[i].ID >= h[latest].ID {
				latest = i
			}
		}
		// A copy: a subslice would keep the whole history alive.
		a.Status.History = []appview.RevisionHistory{h[latest]}
	}
	if op := a.Status.OperationState; op != nil && op.SyncResult != nil {
		op.SyncResult.Resources = nil
	}
}
