package argocd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

func trimmedApp(t testing.TB, u *unstructured.Unstructured) any {
	t.Helper()
	out, err := trimApplication(u.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// appOf is what observe reports of an object as the informer delivers it: the App, or
// the decoding error.
func appOf(t testing.TB, obj any) (reconcile.App, string) {
	t.Helper()
	switch o := obj.(type) {
	case *cachedApplication:
		return o.app, ""
	case *unstructured.Unstructured:
		a, err := appview.FromUnstructured(o)
		if err != nil {
			return reconcile.App{}, err.Error()
		}
		return appview.ToApp(a, time.Time{}), ""
	}
	t.Fatalf("unexpected %T", obj)
	return reconcile.App{}, ""
}

// bloated adds to an Application what the API server and kubectl put there and ToApp does
// not read, plus the annotations it does read.
func bloated(t testing.TB, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	u = u.DeepCopy()
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[annotationLastApplied] = `{"apiVersion":"argoproj.io/v1alpha1","kind":"Application"}`
	ann[appview.AnnotationRefresh] = "normal"
	ann[reconcile.AnnotationIgnore] = "MD0801"
	ann["notified.notifications.argoproj.io"] = `{"on-sync-succeeded":1}`
	u.SetAnnotations(ann)
	u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "argocd-application-controller", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: appview.APIVersion, FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:status":{".":{},"f:history":{}}}`)}})
	var hist []any
	for i := range 10 {
		hist = append(hist, map[string]any{
			"id": int64(i), "revision": strings.Repeat("a", 39) + string(rune('0'+i)),
			"deployedAt": time.Date(2026, 5, 4, 10, i, 0, 0, time.UTC).Format(time.RFC3339), "deployStartedAt": "2026-05-04T09:00:00Z",
			"source": map[string]any{"repoURL": "https://git.example.com/mesh.git", "path": "apps", "targetRevision": "main"},
		})
	}
	// The highest id is not last; the last of equal ids wins.
	hist[3].(map[string]any)["id"] = int64(20)
	hist[6].(map[string]any)["id"] = int64(20)
	if err := unstructured.SetNestedSlice(u.Object, hist, "status", "history"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, "ignored", "status", "sourceType"); err != nil {
		t.Fatal(err)
	}
	return u
}

func fixtures(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("appview", "testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, u, bloated(t, u))
	}
	// The items of a list Argo CD's API server returned: Applications as its controller
	// writes them, without apiVersion and kind, as list items come.
	data, err := os.ReadFile(filepath.Join("testdata", "applications.json"))
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Items []map[string]any }
	if err := json.Unmarshal(data, &list); err != nil || len(list.Items) == 0 {
		t.Fatalf("testdata/applications.json: %d items, %v", len(list.Items), err)
	}
	for _, item := range list.Items {
		raw, err := json.Marshal(item)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(append([]byte(`{"apiVersion":"argoproj.io/v1alpha1","kind":"Application",`), raw[1:]...)); err != nil {
			t.Fatal(err)
		}
		out = append(out, u, bloated(t, u))
	}
	return out
}

// TestTrimApplicationKeepsWhatObserveReads: observe's result is the same on the
// transformed object as on the full one, for every fixture.
func TestTrimApplicationKeepsWhatObserveReads(t *testing.T) {
	for _, u := range fixtures(t) {
		want, wantErr := appOf(t, u)
		got, gotErr := appOf(t, trimmedApp(t, u))
		if wantErr != gotErr {
			t.Errorf("%s: decode error %q, after the transform %q", u.GetName(), wantErr, gotErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: App (-full +trimmed):\n%s", u.GetName(), diff)
		}
	}
}

func TestTrimApplicationCachesTheApp(t *testing.T) {
	u := bloated(t, fixture(t, "operation-failed.json", "argocd", "reviews"))
	u.SetResourceVersion("4711")
	got, ok := trimmedApp(t, u).(*cachedApplication)
	if !ok {
		t.Fatalf("not cached as an App: %T", trimmedApp(t, u))
	}
	key, err := cache.MetaNamespaceKeyFunc(got)
	if err != nil || key != "argocd/reviews" || got.GetObjectMeta().GetResourceVersion() != "4711" {
		t.Errorf("the informer's key and version lost: %q (%v) at %q", key, err, got.GetObjectMeta().GetResourceVersion())
	}
	if got.GetObjectKind().GroupVersionKind().Kind != appview.Kind {
		t.Errorf("kind %v", got.GetObjectKind().GroupVersionKind())
	}
	if !got.app.ObservedAt.IsZero() {
		t.Errorf("the cached App carries an observation time: %s", got.app.ObservedAt)
	}
	if len(got.app.Objects) == 0 || got.app.Ignore != "MD0801" || !got.app.Stale {
		t.Errorf("the fixture does not exercise the App: %+v", got.app)
	}
	c := got.DeepCopyObject().(*cachedApplication)
	c.resourceVersion = "4712"
	if got.GetObjectMeta().GetResourceVersion() != "4711" {
		t.Error("DeepCopyObject shares metadata")
	}
}

// TestTrimApplicationInternsObjects: the strings that repeat across apps (group, kind,
// namespace, sync and health) are held once, not once per app.
func TestTrimApplicationInternsObjects(t *testing.T) {
	a := trimmedApp(t, fixture(t, "synced-healthy.json", "argocd", "one")).(*cachedApplication)
	b := trimmedApp(t, fixture(t, "synced-healthy.json", "argocd", "two")).(*cachedApplication)
	if len(a.app.Objects) == 0 || len(a.app.Objects) != len(b.app.Objects) {
		t.Fatalf("objects %d and %d", len(a.app.Objects), len(b.app.Objects))
	}
	for i, oa := range a.app.Objects {
		ob := b.app.Objects[i]
		for _, p := range [][2]string{{oa.Ref.Group, ob.Ref.Group}, {oa.Ref.Kind, ob.Ref.Kind}, {oa.Ref.Namespace, ob.Ref.Namespace}, {oa.Sync, ob.Sync}, {oa.Health, ob.Health}} {
			if p[0] != "" && unsafe.StringData(p[0]) != unsafe.StringData(p[1]) {
				t.Errorf("object %d: %q is held twice", i, p[0])
			}
		}
	}
}

// TestTrimApplicationKeepsDecodeErrors: an object the view cannot decode reaches observe
// with the same error.
func TestTrimApplicationKeepsDecodeErrors(t *testing.T) {
	bad := bloated(t, fixture(t, "synced-healthy.json", "argocd", "broken"))
	if err := unstructured.SetNestedField(bad.Object, "Synced", "status", "sync"); err != nil {
		t.Fatal(err)
	}
	_, want := appOf(t, bad)
	got, ok := trimmedApp(t, bad).(*unstructured.Unstructured)
	if !ok {
		t.Fatalf("an undecodable object is cached as %T", trimmedApp(t, bad))
	}
	if _, have := appOf(t, got); want == "" || have != want {
		t.Errorf("decode error %q, after the transform %q", want, have)
	}
	if got.GetManagedFields() != nil || got.GetAnnotations()[annotationLastApplied] != "" {
		t.Error("an undecodable object keeps managedFields or the last-applied annotation")
	}
	if _, err := trimApplication("not an object"); err != nil {
		t.Error(err)
	}
}

// TestObserveReportsTheCachedApp: observe reports the cached App with the time it
// observed it, and hands over the cached objects rather than a copy, so that the cache
// and the sink hold an app's objects once.
func TestObserveReportsTheCachedApp(t *testing.T) {
	sink := newRecordingSink()
	w, err := New(WatcherConfig{}, fakeDynamic(), argoDiscovery(), sink, newRecordingSources(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	w.now = func() time.Time { return at }
	u := fixture(t, "synced-healthy.json", "team-a", "reviews")
	c := trimmedApp(t, u).(*cachedApplication)
	w.observe(c)
	a, _ := appview.FromUnstructured(u)
	want := appview.ToApp(a, at)
	if len(sink.events) != 1 {
		t.Fatalf("%d events, want 1", len(sink.events))
	}
	got := sink.events[0].app
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("App (-full +observed):\n%s", diff)
	}
	if len(got.Objects) == 0 || &got.Objects[0] != &c.app.Objects[0] {
		t.Error("observe copied the cached objects")
	}
	if !c.app.ObservedAt.IsZero() {
		t.Error("observe changed the cached App")
	}
}
