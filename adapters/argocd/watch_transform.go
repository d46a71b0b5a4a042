package argocd

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

// annotationLastApplied is client-side kubectl apply's copy of the whole object.
const annotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// trimApplication is the informers' transform (cache.TransformFunc): it replaces an
// Application, before the cache keeps it, by what appview reads of it, less what ToApp
// does not use: every status.history entry but the one latestHistory picks, the
// per-object results of the last sync (operationState.syncResult.resources), and every
// annotation but the refresh and ignore ones. So the cache holds what observe reads, and
// observe's result is the same as on the full object; the fields the view omits (the
// project, destination, sync options, resource versions and sync waves of
// status.resources, ...) never reach it. An object the view cannot decode is kept as it
// is, without managedFields and the last-applied annotation, for observe to report the
// decoding error.
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
	data, err := json.Marshal(a)
	if err != nil {
		return u, nil
	}
	var m map[string]any
	// utiljson keeps integers int64, as the dynamic client's decoding does.
	if err := utiljson.Unmarshal(data, &m); err != nil {
		return u, nil
	}
	return &unstructured.Unstructured{Object: m}, nil
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
		a.Status.History = h[latest : latest+1]
	}
	if op := a.Status.OperationState; op != nil && op.SyncResult != nil {
		op.SyncResult.Resources = nil
	}
}
