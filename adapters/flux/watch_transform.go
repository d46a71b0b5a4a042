package flux

import (
	"strings"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

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

// cachedFluxApp is how the informers cache a Kustomization or HelmRelease: the App
// decodeApp makes of it, so that the cache holds the parsed inventory instead of its
// entries as maps, and an event is decoded once. Its Objects slice is the one
// reconcile's store keeps of the app (the handler hands it over as it is), so an app's
// objects are held once in the process.
type cachedFluxApp struct {
	// TypeMeta's strings are interned.
	metav1.TypeMeta
	// resourceVersion, with app.Key's namespace and name, is what the informer keys and
	// orders by (GetObjectMeta).
	resourceVersion string
	// app has no ObservedAt: the handler sets it. app and err are never changed after
	// compactFluxObject, so copies share them.
	app reconcile.App
	err error
}

// GetObjectMeta implements metav1.ObjectMetaAccessor, through which the informer reads
// an object's key and resource version: a typed ObjectMeta in every cached object would
// take more than the rest of a small app.
func (c *cachedFluxApp) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: c.app.Key.Name, Namespace: c.app.Key.Namespace, ResourceVersion: c.resourceVersion}
}

// DeepCopyObject implements runtime.Object.
func (c *cachedFluxApp) DeepCopyObject() runtime.Object {
	out := *c
	return &out
}

// compactFluxObject is the transform of the informer of kind: trimFluxObject, then the
// object decoded as a *cachedFluxApp.
func compactFluxObject(kind string, obj any) (any, error) {
	obj, err := trimFluxObject(obj)
	u, ok := obj.(*unstructured.Unstructured)
	if err != nil || !ok {
		return obj, err
	}
	app, err := decodeApp(kind, u, time.Time{})
	compactApp(&app)
	return &cachedFluxApp{
		TypeMeta:        metav1.TypeMeta{APIVersion: intern(u.GetAPIVersion()), Kind: intern(u.GetKind())},
		resourceVersion: u.GetResourceVersion(),
		app:             app,
		err:             err,
	}, nil
}

// compactApp lets the cached App hold its strings with as little as it can: the strings
// that repeat across apps (an object's group, kind and namespace, the condition reason)
// once for the process, an object's name on its own rather than as part of its inventory
// id (which a substring would keep whole), and equal revisions once.
func compactApp(app *reconcile.App) {
	app.Reason = intern(app.Reason)
	if app.AppliedRevision == app.DesiredRevision {
		app.AppliedRevision = app.DesiredRevision
	}
	for i := range app.Objects {
		r := &app.Objects[i].Ref
		r.Group, r.Kind, r.Namespace = intern(r.Group), intern(r.Kind), intern(r.Namespace)
		r.Name = strings.Clone(r.Name)
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
