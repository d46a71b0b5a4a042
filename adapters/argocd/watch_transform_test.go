package argocd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

func trimmedApp(t testing.TB, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out, err := trimApplication(u.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	return out.(*unstructured.Unstructured)
}

// appOf is what observe reports of u: the App, or the decoding error.
func appOf(t testing.TB, u *unstructured.Unstructured) (reconcile.App, string) {
	t.Helper()
	a, err := appview.FromUnstructured(u)
	if err != nil {
		return reconcile.App{}, err.Error()
	}
	return appview.ToApp(a, time.Time{}), ""
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

func TestTrimApplicationDropsWhatIsNotRead(t *testing.T) {
	u := bloated(t, fixture(t, "operation-failed.json", "argocd", "reviews"))
	u.SetResourceVersion("4711")
	got := trimmedApp(t, u)

	if got.GetName() != "reviews" || got.GetNamespace() != "argocd" || got.GetResourceVersion() != "4711" {
		t.Errorf("the informer's key and version lost: %s/%s at %q", got.GetNamespace(), got.GetName(), got.GetResourceVersion())
	}
	if diff := cmp.Diff(map[string]string{appview.AnnotationRefresh: "normal", reconcile.AnnotationIgnore: "MD0801"}, got.GetAnnotations()); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if got.GetManagedFields() != nil || got.GetLabels() != nil || got.GetUID() != "" {
		t.Errorf("metadata not trimmed: %v", got.Object["metadata"])
	}
	hist, _, _ := unstructured.NestedSlice(got.Object, "status", "history")
	if len(hist) != 1 || hist[0].(map[string]any)["revision"] != strings.Repeat("a", 39)+"6" {
		t.Errorf("history %v, want only the latest (id 20, the last of two)", hist)
	}
	if _, ok := hist[0].(map[string]any)["source"]; ok {
		t.Error("history entry keeps its source")
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(got.Object, "status", "operationState", "syncResult", "resources"); found {
		t.Error("operationState.syncResult.resources kept")
	}
	if rev, _, _ := unstructured.NestedString(got.Object, "status", "operationState", "syncResult", "revision"); rev == "" {
		t.Error("operationState.syncResult.revision lost")
	}
	for _, path := range [][]string{{"status", "sourceType"}, {"spec", "project"}, {"spec", "destination"}} {
		if _, found, _ := unstructured.NestedFieldNoCopy(got.Object, path...); found {
			t.Errorf("%s kept", strings.Join(path, "."))
		}
	}
	res, _, _ := unstructured.NestedSlice(got.Object, "status", "resources")
	if len(res) == 0 {
		t.Fatal("status.resources lost")
	}
	for _, r := range res {
		for k := range r.(map[string]any) {
			if !slices.Contains([]string{"group", "kind", "namespace", "name", "status", "health"}, k) {
				t.Errorf("status.resources entry keeps %q", k)
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
	got := trimmedApp(t, bad)
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
