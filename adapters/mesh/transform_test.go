package mesh

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/checks"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

var vsKind = schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}

// editedVirtualService is a VirtualService as kubectl and the API server leave it after a
// client-side apply, a kubectl edit under two API versions, istiod's status writes and a
// label: every part the transform looks at.
func editedVirtualService(t testing.TB) *unstructured.Unstructured {
	t.Helper()
	entries := []metav1.ManagedFieldsEntry{
		mf("kubectl-client-side-apply", update, 0,
			`{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app":{}}},"f:spec":{".":{},"f:gateways":{},"f:hosts":{},"f:http":{}}}`),
		mf("kubectl-edit", update, 20, `{"f:spec":{"f:exportTo":{}}}`),
		mf("kubectl-edit", update, 60, fieldsSpecOnly),
		status(mf("pilot-discovery", update, 30, fieldsStatus)),
		status(mf("pilot-discovery", update, 90, `{"f:status":{"f:validationMessages":{}}}`)),
		mf("kubectl-label", update, 70, fieldsLabels),
		mf("kubectl-annotate", update, 75, `{"f:metadata":{"f:annotations":{"f:note":{}}}}`),
	}
	entries[1].APIVersion = "networking.istio.io/v1alpha3"
	entries[3].APIVersion = "networking.istio.io/v1alpha3"
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata": map[string]any{
			"name": "reviews", "namespace": "bookinfo", "generation": int64(3), "resourceVersion": "812",
			"creationTimestamp": t0.Format(time.RFC3339),
			"labels":            map[string]any{"app": "reviews", "app.kubernetes.io/instance": "bookinfo"},
			"annotations": map[string]any{
				AnnotationLastApplied:            `{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","spec":{}}`,
				"argocd.argoproj.io/tracking-id": "bookinfo:networking.istio.io/VirtualService:bookinfo/reviews",
				reconcile.AnnotationIgnore:       "MD0801",
				"note":                           "kept",
			},
		},
		"spec": map[string]any{
			"hosts":    []any{"reviews"},
			"gateways": []any{"mesh", "istio-system/ingress"},
			"exportTo": []any{"."},
			"http":     []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "reviews", "subset": "v2"}}}}},
		},
		"status": map[string]any{
			"observedGeneration": int64(3),
			"conditions":         []any{map[string]any{"type": "Reconciled", "status": "True"}},
			"validationMessages": []any{map[string]any{"level": "ERROR", "type": map[string]any{"code": "IST0101"}}},
			"listeners":          []any{map[string]any{"name": "http", "attachedRoutes": int64(3)}},
			"addresses":          []any{map[string]any{"value": "10.0.0.1"}},
		},
	}}
	u.SetManagedFields(entries)
	return u
}

// compacted is u as the informers cache it.
func compacted(t testing.TB, u *unstructured.Unstructured) *meshObject {
	t.Helper()
	out, err := compactObject(u.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	o, ok := out.(*meshObject)
	if !ok {
		t.Fatalf("compactObject returned a %T", out)
	}
	return o
}

// trimmed is u as the informers cache it, unpacked.
func trimmed(t testing.TB, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	out, err := compacted(t, u).toUnstructured()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTrimObjectDropsWhatIsNotRead(t *testing.T) {
	orig := editedVirtualService(t)
	got := trimmed(t, orig)

	if _, ok := got.GetAnnotations()[AnnotationLastApplied]; ok {
		t.Error("last-applied annotation kept")
	}
	// Of the annotations, the ones read: Argo CD's tracking id and the ignore list.
	wantAnn := map[string]string{
		argoTrackingAnnotation:     orig.GetAnnotations()[argoTrackingAnnotation],
		reconcile.AnnotationIgnore: orig.GetAnnotations()[reconcile.AnnotationIgnore],
	}
	if diff := cmp.Diff(wantAnn, got.GetAnnotations()); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(orig.Object["spec"], got.Object["spec"]); diff != "" {
		t.Errorf("spec changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(orig.GetLabels(), got.GetLabels()); diff != "" {
		t.Errorf("labels changed (-want +got):\n%s", diff)
	}
	st, _ := got.Object["status"].(map[string]any)
	keys := make([]string, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"conditions", "observedGeneration", "validationMessages"}; !slices.Equal(keys, want) {
		t.Errorf("status keeps %v, want %v", keys, want)
	}

	// Spec owners whole (both kubectl-edit entries); of the others, the latest per
	// manager without fieldsV1.
	type entry struct {
		Manager, APIVersion, Subresource string
		Sec                              int
		Fields                           bool
	}
	var entries []entry
	for _, e := range got.GetManagedFields() {
		entries = append(entries, entry{e.Manager, e.APIVersion, e.Subresource, int(e.Time.Sub(t0) / time.Second), e.FieldsV1 != nil})
	}
	want := []entry{
		{"kubectl-client-side-apply", "networking.istio.io/v1", "", 0, true},
		{"kubectl-edit", "networking.istio.io/v1alpha3", "", 20, true},
		{"kubectl-edit", "networking.istio.io/v1", "", 60, true},
		{"pilot-discovery", "networking.istio.io/v1", "status", 90, false},
		{"kubectl-label", "networking.istio.io/v1", "", 70, false},
		{"kubectl-annotate", "networking.istio.io/v1", "", 75, false},
	}
	if diff := cmp.Diff(want, entries); diff != "" {
		t.Errorf("managedFields (-want +got):\n%s", diff)
	}
	for _, e := range got.GetManagedFields() {
		if e.FieldsV1 != nil && e.FieldsV1.GetRawString() != string(fieldsOf(t, orig, e)) {
			t.Errorf("fieldsV1 of %s changed: %s", e.Manager, e.FieldsV1.GetRawString())
		}
	}
}

func fieldsOf(t *testing.T, u *unstructured.Unstructured, want metav1.ManagedFieldsEntry) []byte {
	t.Helper()
	for _, e := range u.GetManagedFields() {
		if keyOf(e) == keyOf(want) && e.Subresource == want.Subresource {
			return e.FieldsV1.GetRawBytes()
		}
	}
	t.Fatalf("no entry %v", keyOf(want))
	return nil
}

// TestTrimObjectKeepsWhatReadersRead runs the watcher's readers on an object before and
// after the transform: they must not tell the difference.
func TestTrimObjectKeepsWhatReadersRead(t *testing.T) {
	orig := editedVirtualService(t)
	got := compacted(t, orig)
	at := t0.Add(time.Hour)
	for _, root := range []string{DefaultRootNamespace, "bookinfo"} {
		want := changeOf(vsKind, orig, lastSpecWrite(orig.GetManagedFields()).Manager, at, false, false, root)
		have := changeOf(vsKind, got, lastSpecWrite(got.GetManagedFields()).Manager, at, false, false, root)
		if diff := cmp.Diff(want, have); diff != "" {
			t.Errorf("MeshChange (-untrimmed +trimmed):\n%s", diff)
		}
		deleted := changeOf(vsKind, got, "", at, true, false, root)
		if wantDel := changeOf(vsKind, orig, "", at, true, false, root); !cmp.Equal(wantDel, deleted) {
			t.Errorf("deletion: %s", cmp.Diff(wantDel, deleted))
		}
		if want.Manager != "kubectl-edit" || len(want.SpecWrites) != 3 || want.GitOpsOwner.Name == "" || want.Ignore == "" {
			t.Errorf("the fixture does not exercise the readers: %+v", want)
		}
	}
	if a, b := lastSpecWrite(orig.GetManagedFields()), lastSpecWrite(got.GetManagedFields()); !sameWrite(a, b) {
		t.Errorf("lastSpecWrite %+v, trimmed %+v", a, b)
	}
	if a, b := specWriteTime(lastSpecWrite(orig.GetManagedFields()), orig, at), specWriteTime(lastSpecWrite(got.GetManagedFields()), got, at); !a.Equal(b) {
		t.Errorf("specWriteTime %s, trimmed %s", a, b)
	}
}

// TestTrimManagedFieldsKeepsManagers replays the managedFields tables of manager_test.go
// through the transform.
func TestTrimManagedFieldsKeepsManagers(t *testing.T) {
	fixtures := [][]metav1.ManagedFieldsEntry{
		nil,
		{mf("kustomize-controller", apply, 0, fieldsSpec), mf("kubectl-edit", update, 60, fieldsSpecOnly), status(mf("istiod", update, 90, fieldsStatus))},
		{status(mf("istiod", update, 5, fieldsStatus)), mf("kubectl-label", update, 6, fieldsLabels), mf("x", update, 7, fieldsNested)},
		{mf("a", update, 5, fieldsLabels), mf("b", apply, 5, fieldsLabels), mf("a", update, 4, fieldsStatus)},
		{mf("no-time", update, -1, fieldsLabels), mf("no-time", apply, -1, "")},
	}
	for i, entries := range fixtures {
		trim := trimEntries(t, entries)
		if a, b := lastSpecWrite(entries), lastSpecWrite(trim); !sameWrite(a, b) {
			t.Errorf("fixture %d: lastSpecWrite %+v, trimmed %+v", i, a, b)
		}
		if diff := cmp.Diff(specWrites(entries), specWrites(trim)); diff != "" {
			t.Errorf("fixture %d: specWrites (-untrimmed +trimmed):\n%s", i, diff)
		}
	}
}

func sameWrite(a, b specWrite) bool { return a.Manager == b.Manager && a.At.Equal(b.At) }

// trimEntries puts entries into an object, transforms it and reads them back.
func trimEntries(t testing.TB, entries []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}
	u.SetManagedFields(entries)
	return trimmed(t, u).GetManagedFields()
}

// TestTrimObjectCapturedLifecycle replays the managedFields kube-apiserver wrote through
// a lifecycle (testdata/managedfields) with the transform applied to every version, as the
// informer does: each step's manager and spec writes are the same as without it.
func TestTrimObjectCapturedLifecycle(t *testing.T) {
	steps := capturedLifecycle(t)
	var prev *unstructured.Unstructured
	var prevTrim *meshObject
	for _, s := range steps {
		cur := &unstructured.Unstructured{}
		if err := cur.UnmarshalJSON(s.Object); err != nil {
			t.Fatalf("step %s: %v", s.Step, err)
		}
		curTrim := compacted(t, cur)
		var want, got specWrite
		switch {
		case prev == nil:
			want, got = lastSpecWrite(cur.GetManagedFields()), lastSpecWrite(curTrim.GetManagedFields())
		case specChanged(prev, cur) != specChanged(prevTrim, curTrim):
			t.Errorf("step %s: specChanged differs after the transform", s.Step)
		case specChanged(prev, cur):
			want = updateSpecWrite(prev.GetManagedFields(), cur.GetManagedFields())
			got = updateSpecWrite(prevTrim.GetManagedFields(), curTrim.GetManagedFields())
		}
		if !sameWrite(want, got) {
			t.Errorf("step %s: writer %+v, trimmed %+v", s.Step, want, got)
		}
		if diff := cmp.Diff(specWrites(cur.GetManagedFields()), specWrites(curTrim.GetManagedFields())); diff != "" {
			t.Errorf("step %s: specWrites (-untrimmed +trimmed):\n%s", s.Step, diff)
		}
		prev, prevTrim = cur, curTrim
	}
}

// TestTrimObjectKeepsWhatChecksRead runs every check on the check fixtures (which carry
// istiod's validationMessages and Gateway API route status) before and after the
// transform: a check that starts to read a dropped field fails here.
func TestTrimObjectKeepsWhatChecksRead(t *testing.T) {
	files, err := filepath.Glob("../../reconcile/checks/testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no check fixtures: %v", err)
	}
	orig, trim := checks.NewSnapshot(), checks.NewSnapshot()
	// Live: the fixtures' status stands for what controllers wrote, as the cache holds it.
	orig.Live, trim.Live = true, true
	// Now: the route status check judges lag against it from managedFields.
	orig.Now, trim.Now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := checks.ParseManifests(f, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			orig.Add(m.Object, m.Origin)
			// As the live checks read the cache: checkView of the compact object.
			view, err := checkView(m.Object.GroupVersionKind().GroupKind(), compacted(t, m.Object))
			if err != nil {
				t.Fatal(err)
			}
			trim.Add(view, m.Origin)
		}
	}
	want, skipped := checks.Run(context.Background(), orig, checks.All())
	got, _ := checks.Run(context.Background(), trim, checks.All())
	for _, sk := range skipped {
		t.Logf("check %s skipped, its reads untested here: %s", sk.Name, sk.Reason)
	}
	if len(want) == 0 {
		t.Fatal("the check fixtures raise nothing: the comparison would prove nothing")
	}
	// The check that reads managedFields through the view must be among them.
	if !slices.ContainsFunc(want, func(r checks.Result) bool { return r.Code == findings.CodeRouteStatusStale }) {
		t.Errorf("no %s among the fixtures' results: the view's managedFields are untested", findings.CodeRouteStatusStale)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("check results (-untrimmed +trimmed):\n%s", diff)
	}
}

func TestTrimObjectPassesOtherTypes(t *testing.T) {
	for _, obj := range []any{nil, "x", &unstructured.Unstructured{Object: map[string]any{}}} {
		if _, err := trimObject(obj); err != nil {
			t.Errorf("trimObject(%#v): %v", obj, err)
		}
		if _, err := compactObject(obj); err != nil {
			t.Errorf("compactObject(%#v): %v", obj, err)
		}
	}
	// Metadata the typed ObjectMeta cannot take stays unstructured, which the handlers read.
	odd := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x", "generation": "two"}, "spec": map[string]any{}}}
	got, err := compactObject(odd)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := cachedObject(got); !ok || o.GetName() != "x" {
		t.Errorf("compactObject of odd metadata: %#v", got)
	}
}

func TestMeshObjectDeepCopy(t *testing.T) {
	o := compacted(t, editedVirtualService(t))
	c := o.DeepCopyObject().(*meshObject)
	l := c.GetLabels()
	l["app"] = "changed"
	if o.GetLabels()["app"] != "reviews" {
		t.Error("GetLabels hands out the cached labels")
	}
	c.SetLabels(l)
	if o.GetLabels()["app"] != "reviews" || c.GetLabels()["app"] != "changed" {
		t.Error("DeepCopyObject shares labels")
	}
	now := metav1.Now()
	c.SetDeletionTimestamp(&now)
	if o.GetDeletionTimestamp() != nil {
		t.Error("DeepCopyObject shares the deletion timestamp")
	}
	if c.GroupVersionKind() != o.GroupVersionKind() || string(c.content) != string(o.content) {
		t.Error("DeepCopyObject lost type or content")
	}
}

// TestMeshObjectKeepsTheMetadataRead packs every version of the captured lifecycle and
// the edited VirtualService (plus a deletion in progress) and reads the metadata back
// through metav1.Object, as the handlers do: each field a reader uses is what the
// trimmed object holds, and the fields dropped are the ones nothing reads.
func TestMeshObjectKeepsTheMetadataRead(t *testing.T) {
	var objs []*unstructured.Unstructured
	for _, s := range capturedLifecycle(t) {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(s.Object); err != nil {
			t.Fatalf("step %s: %v", s.Step, err)
		}
		objs = append(objs, u)
	}
	deleting := editedVirtualService(t)
	deleting.SetDeletionTimestamp(&metav1.Time{Time: t0.Add(time.Hour)})
	deleting.SetFinalizers([]string{"example.com/hold"})
	deleting.SetUID("6b1f3a2e-0000-4000-8000-000000000001")
	objs = append(objs, editedVirtualService(t), deleting)
	for _, u := range objs {
		// The reference: the trimmed object as unstructured, metadata typed as the
		// informers decode it.
		ref, err := trimObject(u.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		var want metav1.ObjectMeta
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ref.(*unstructured.Unstructured).Object["metadata"].(map[string]any), &want); err != nil {
			t.Fatal(err)
		}
		var o metav1.Object = compacted(t, u)
		name := u.GetName() + "@" + u.GetResourceVersion()
		if o.GetName() != want.Name || o.GetNamespace() != want.Namespace || o.GetResourceVersion() != want.ResourceVersion || o.GetGeneration() != want.Generation {
			t.Errorf("%s: key, version or generation lost", name)
		}
		if diff := cmp.Diff(want.CreationTimestamp, o.GetCreationTimestamp()); diff != "" {
			t.Errorf("%s: creationTimestamp (-trimmed +packed):\n%s", name, diff)
		}
		if diff := cmp.Diff(want.DeletionTimestamp, o.GetDeletionTimestamp()); diff != "" {
			t.Errorf("%s: deletionTimestamp (-trimmed +packed):\n%s", name, diff)
		}
		if diff := cmp.Diff(want.Labels, o.GetLabels()); diff != "" {
			t.Errorf("%s: labels (-trimmed +packed):\n%s", name, diff)
		}
		if diff := cmp.Diff(want.ManagedFields, o.GetManagedFields()); diff != "" {
			t.Errorf("%s: managedFields (-trimmed +packed):\n%s", name, diff)
		}
		for k, v := range want.Annotations {
			if got, ok := o.GetAnnotations()[k]; keptAnnotations[k] != ok || (ok && got != v) {
				t.Errorf("%s: annotation %s: kept %v (%q), want kept only if read", name, k, ok, got)
			}
		}
		if o.GetUID() != "" || o.GetFinalizers() != nil || o.GetOwnerReferences() != nil {
			t.Errorf("%s: unread metadata kept", name)
		}
		// What the watcher reports of it.
		at := t0.Add(2 * time.Hour)
		for _, deleted := range []bool{false, true} {
			w := changeOf(vsKind, ref.(*unstructured.Unstructured), "m", at, deleted, false, DefaultRootNamespace)
			g := changeOf(vsKind, o, "m", at, deleted, false, DefaultRootNamespace)
			if diff := cmp.Diff(w, g); diff != "" {
				t.Errorf("%s: MeshChange (-trimmed +packed):\n%s", name, diff)
			}
		}
	}
	if specChanged(compacted(t, editedVirtualService(t)), compacted(t, deleting)) {
		t.Error("the start of a deletion reads as a spec change")
	}
}

// TestCheckViewIsTheTrimmedObject: what the checks decode from the cache is the trimmed
// object less the metadata no check reads, for every kind's rule (Gateway API routes
// keep managedFields, the others do not).
func TestCheckViewIsTheTrimmedObject(t *testing.T) {
	for _, gk := range []schema.GroupKind{vsKind, {Group: gatewayAPIGroup, Kind: "HTTPRoute"}} {
		u := editedVirtualService(t)
		u.SetUID("6b1f3a2e-0000-4000-8000-000000000001")
		u.SetFinalizers([]string{"example.com/hold"})
		want, err := trimObject(u.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		w := want.(*unstructured.Unstructured)
		w.SetAnnotations(nil)
		w.SetUID("")
		w.SetFinalizers(nil)
		if gk.Group != gatewayAPIGroup {
			w.SetManagedFields(nil)
		}
		got, err := checkView(gk, compacted(t, u))
		if err != nil {
			t.Fatal(err)
		}
		// Both through JSON: the view's integers and times are as the checks see them.
		wj, _ := w.MarshalJSON()
		gj, _ := got.MarshalJSON()
		var wm, gm map[string]any
		if err := json.Unmarshal(wj, &wm); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(gj, &gm); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wm, gm); diff != "" {
			t.Errorf("%s: check view (-trimmed +view):\n%s", gk, diff)
		}
	}
}
