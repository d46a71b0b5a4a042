package flux

import (
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"

	"github.com/meshdrift/meshdrift/reconcile"
)

// helmReleaseWithHistory is a HelmRelease with what helm-controller and kubectl leave in
// it: values, labels, managedFields, and a history whose live release is neither first
// nor last.
const helmReleaseWithHistory = `apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: istio-gateway
  namespace: mesh
  generation: 4
  resourceVersion: "991"
  labels: {team: mesh}
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"apiVersion":"helm.toolkit.fluxcd.io/v2","kind":"HelmRelease"}'
    reconcile.fluxcd.io/requestedAt: "2026-05-04T10:00:00Z"
    meshdrift.io/ignore: MD0801
  managedFields:
  - {manager: kubectl-client-side-apply, operation: Update, apiVersion: helm.toolkit.fluxcd.io/v2, time: "2026-05-04T10:00:00Z", fieldsType: FieldsV1, fieldsV1: {"f:spec": {}}}
spec:
  interval: 10m
  chart: {spec: {chart: gateway, version: 1.31.x, sourceRef: {kind: HelmRepository, name: istio}}}
  values: {replicaCount: 3, service: {type: LoadBalancer, ports: [{name: http2, port: 80}, {name: https, port: 443}]}}
status:
  observedGeneration: 4
  lastAttemptedRevision: 1.31.2
  lastAttemptedValuesChecksum: sha256:0a1b
  lastHandledReconcileAt: "2026-05-04T10:00:00Z"
  storageNamespace: mesh
  helmChart: mesh/mesh-istio-gateway
  conditions:
  - {type: Ready, status: "False", reason: UpgradeFailed, message: "upgrade failed", lastTransitionTime: "2026-05-04T10:05:00Z", observedGeneration: 4}
  history:
  - {name: istio-gateway, namespace: mesh, version: 4, status: failed, chartName: gateway, chartVersion: 1.31.2, configDigest: "sha256:4", digest: "sha256:d4", firstDeployed: "2026-05-01T10:00:00Z", lastDeployed: "2026-05-04T10:04:00Z"}
  - {name: istio-gateway, namespace: mesh, version: 3, status: deployed, chartName: gateway, chartVersion: 1.31.1, configDigest: "sha256:3", digest: "sha256:d3", firstDeployed: "2026-05-01T10:00:00Z", lastDeployed: "2026-05-03T10:00:00Z"}
  - {name: istio-gateway, namespace: mesh, version: 2, status: superseded, chartName: gateway, chartVersion: 1.31.0, configDigest: "sha256:2", digest: "sha256:d2", firstDeployed: "2026-05-01T10:00:00Z", lastDeployed: "2026-05-02T10:00:00Z"}
  - {name: istio-gateway, namespace: mesh, version: 1, status: deployed, chartName: gateway, chartVersion: 1.30.0, configDigest: "sha256:1", digest: "sha256:d1", firstDeployed: "2026-05-01T10:00:00Z", lastDeployed: "2026-05-01T10:00:00Z"}
  inventory:
    entries:
    - {id: mesh_istio-gateway_apps_Deployment, v: v1}
    - {id: mesh_istio-gateway__Service, v: v1}
`

// informerObject decodes YAML as the dynamic client decodes JSON, integers as int64.
func informerObject(t *testing.T, doc []byte) *unstructured.Unstructured {
	t.Helper()
	data, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	return u
}

func trimmedFlux(t *testing.T, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out, err := trimFluxObject(u.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	return out.(*unstructured.Unstructured)
}

// TestTrimFluxObjectKeepsWhatDecodeAppReads: decodeApp's App is the same on the
// transformed object as on the full one, for Kustomizations as kustomize-controller left
// them and a HelmRelease with history.
func TestTrimFluxObjectKeepsWhatDecodeAppReads(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden Kustomizations: %v", err)
	}
	type object struct {
		name, kind string
		u          *unstructured.Unstructured
	}
	var objects []object
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objects = append(objects, object{filepath.Base(f), KindKustomization, informerObject(t, doc)})
	}
	objects = append(objects, object{"helmrelease", KindHelmRelease, informerObject(t, []byte(helmReleaseWithHistory))})
	for _, o := range objects {
		want, wantErr := decodeApp(o.kind, o.u, viewObservedAt)
		got, gotErr := decodeApp(o.kind, trimmedFlux(t, o.u), viewObservedAt)
		if (wantErr == nil) != (gotErr == nil) {
			t.Errorf("%s: error %v, after the transform %v", o.name, wantErr, gotErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: App (-full +trimmed):\n%s", o.name, diff)
		}
		// What the informers cache: the same App, without ObservedAt, which the handler sets.
		out, err := compactFluxObject(o.kind, o.u.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		c, ok := out.(*cachedFluxApp)
		if !ok {
			t.Fatalf("%s: cached as %T", o.name, out)
		}
		cached := c.app
		cached.ObservedAt = viewObservedAt
		if diff := cmp.Diff(want, cached); diff != "" || (wantErr == nil) != (c.err == nil) {
			t.Errorf("%s: cached App (-full +cached):\n%s\nerror %v, cached %v", o.name, diff, wantErr, c.err)
		}
		if key, err := cache.MetaNamespaceKeyFunc(c); err != nil || key != o.u.GetNamespace()+"/"+o.u.GetName() || c.GetObjectMeta().GetResourceVersion() != o.u.GetResourceVersion() {
			t.Errorf("%s: informer key %q (%v), resource version %q", o.name, key, err, c.GetObjectMeta().GetResourceVersion())
		}
	}
	hr := objects[len(objects)-1].u
	app, _ := decodeApp(KindHelmRelease, hr, viewObservedAt)
	if app.AppliedRevision != "1.31.1" || len(app.Objects) != 2 || app.Ignore == "" || app.State != reconcile.AppFailed {
		t.Errorf("the HelmRelease fixture does not exercise the readers: %+v", app)
	}
}

func TestTrimFluxObjectDropsWhatIsNotRead(t *testing.T) {
	got := trimmedFlux(t, informerObject(t, []byte(helmReleaseWithHistory)))
	if got.GetManagedFields() != nil || got.GetLabels() != nil {
		t.Error("managedFields or labels kept")
	}
	if diff := cmp.Diff(map[string]string{reconcile.AnnotationIgnore: "MD0801"}, got.GetAnnotations()); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if got.GetName() != "istio-gateway" || got.GetNamespace() != "mesh" || got.GetResourceVersion() != "991" || got.GetGeneration() != 4 {
		t.Errorf("metadata the watcher reads lost: %v", got.Object["metadata"])
	}
	if diff := cmp.Diff(map[string]any{}, got.Object["spec"]); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	st := got.Object["status"].(map[string]any)
	for _, k := range []string{"lastAttemptedValuesChecksum", "lastHandledReconcileAt", "storageNamespace", "helmChart"} {
		if _, ok := st[k]; ok {
			t.Errorf("status.%s kept", k)
		}
	}
	hist := st["history"].([]any)
	if len(hist) != 1 || hist[0].(map[string]any)["version"] != int64(3) {
		t.Errorf("history %v, want the live release (version 3) only", hist)
	}

	suspended := informerObject(t, []byte("apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: a, namespace: b}\nspec: {suspend: true, interval: 1m, path: ./}\n"))
	if diff := cmp.Diff(map[string]any{"suspend": true}, trimmedFlux(t, suspended).Object["spec"]); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if _, err := trimFluxObject("not an object"); err != nil {
		t.Error(err)
	}
}

func TestLiveSnapshotKeepsOddShapes(t *testing.T) {
	odd := []any{map[string]any{"status": "deployed", "version": "3"}}
	if got := liveSnapshot(odd); len(got) != 1 {
		t.Errorf("an entry of unexpected shape was dropped: %v", got)
	}
	if got := liveSnapshot([]any{map[string]any{"status": "failed", "version": int64(1)}}); len(got) != 0 {
		t.Errorf("no deployed release: %v, want none", got)
	}
}

func TestCompactFluxObjectKeepsDecodeErrors(t *testing.T) {
	bad := informerObject(t, []byte("apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: a, namespace: b, resourceVersion: \"7\"}\nspec: {suspend: \"yes\"}\n"))
	want, wantErr := decodeApp(KindKustomization, bad, time.Time{})
	out, err := compactFluxObject(KindKustomization, bad.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	c := out.(*cachedFluxApp)
	if wantErr == nil || c.err == nil || c.err.Error() != wantErr.Error() || !cmp.Equal(want, c.app) {
		t.Errorf("cached %+v, %v; want %+v, %v", c.app, c.err, want, wantErr)
	}
	cp := c.DeepCopyObject().(*cachedFluxApp)
	cp.resourceVersion = "8"
	if key, err := cache.MetaNamespaceKeyFunc(cp); err != nil || key != "b/a" || c.GetObjectMeta().GetResourceVersion() != "7" {
		t.Errorf("DeepCopyObject: key %q (%v), original at version %q", key, err, c.GetObjectMeta().GetResourceVersion())
	}
}

// TestCompactFluxObjectInternsObjects: the strings that repeat across apps (an object's
// group, kind and namespace) are held once, not once per app.
func TestCompactFluxObjectInternsObjects(t *testing.T) {
	cached := func() *cachedFluxApp {
		out, err := compactFluxObject(KindHelmRelease, informerObject(t, []byte(helmReleaseWithHistory)))
		if err != nil {
			t.Fatal(err)
		}
		return out.(*cachedFluxApp)
	}
	a, b := cached(), cached()
	if len(a.app.Objects) == 0 || len(a.app.Objects) != len(b.app.Objects) {
		t.Fatalf("objects %d and %d", len(a.app.Objects), len(b.app.Objects))
	}
	for i, oa := range a.app.Objects {
		ob := b.app.Objects[i]
		for _, p := range [][2]string{{oa.Ref.Group, ob.Ref.Group}, {oa.Ref.Kind, ob.Ref.Kind}, {oa.Ref.Namespace, ob.Ref.Namespace}} {
			if p[0] != "" && unsafe.StringData(p[0]) != unsafe.StringData(p[1]) {
				t.Errorf("object %d: %q is held twice", i, p[0])
			}
		}
	}
}
