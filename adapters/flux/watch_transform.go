package flux

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/reconcile"
)

// keptFluxStatus are the status fields KustomizationApp and HelmReleaseApp read.
var keptFluxStatus = map[string]bool{
	"conditions":            true,
	"inventory":             true,
	"observedGeneration":    true,
	"lastAttemptedRevision": true,
	"lastAppliedRevision":   true,
	"history":               true,
}

// trimFluxObject is the informers' transform (cache.TransformFunc): it keeps of a
// Kustomization or HelmRelease, before the cache holds it, what decodeApp reads:
// metadata without managedFields, labels and annotations other than the ignore one;
// spec.suspend alone (a HelmRelease's values and a Kustomization's patches can be
// large); of status, keptFluxStatus, and of a HelmRelease's history only the snapshot
// liveRelease picks. Anything not an *unstructured.Unstructured passes as it is.
func trimFluxObject(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	if md, ok := u.Object["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		delete(md, "labels")
		if ann, ok := md["annotations"].(map[string]any); ok {
			if v, ok := ann[reconcile.AnnotationIgnore]; ok {
				md["annotations"] = map[string]any{reconcile.AnnotationIgnore: v}
			} else {
				delete(md, "annotations")
			}
		}
	}
	if spec, ok := u.Object["spec"].(map[string]any); ok {
		if v, ok := spec["suspend"]; ok {
			u.Object["spec"] = map[string]any{"suspend": v}
		} else {
			u.Object["spec"] = map[string]any{}
		}
	}
	if st, ok := u.Object["status"].(map[string]any); ok {
		for k := range st {
			if !keptFluxStatus[k] {
				delete(st, k)
			}
		}
		if u.GetKind() == KindHelmRelease {
			if h, ok := st["history"].([]any); ok {
				st["history"] = liveSnapshot(h)
			}
		}
	}
	return u, nil
}

// liveSnapshot keeps, of a HelmRelease's raw status.history, the snapshot liveRelease
// picks (deployed, highest version), or all of it when an entry is not of the expected
// shape, for decodeApp to judge.
func liveSnapshot(h []any) []any {
	live := -1
	var liveVersion int64
	for i, e := range h {
		m, ok := e.(map[string]any)
		if !ok {
			return h
		}
		status, _ := m["status"].(string)
		version, ok := m["version"].(int64)
		if _, present := m["version"]; present && !ok {
			return h
		}
		if status == helmReleaseDeployed && (live < 0 || version > liveVersion) {
			live, liveVersion = i, version
		}
	}
	if live < 0 {
		return []any{}
	}
	return []any{h[live]}
}
