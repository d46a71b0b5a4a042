package mesh_test

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/meshdrift/meshdrift/adapters/mesh"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// TestOutOfBandEditThroughTheCacheTransform: an object as client-side kubectl apply
// leaves it (the last-applied annotation, its manager owning spec and metadata), with
// istiod's status write, then kubectl edit. The informers cache it trimmed and compacted;
// the change must still name the editor, its operation and fields, and the owner, both
// from the watch and from a later initial list.
func TestOutOfBandEditThroughTheCacheTransform(t *testing.T) {
	testbed.Need(t, bed.started)
	r := start(t, mesh.Config{})
	ns := namespace(t)
	ctx := context.Background()
	res := bed.kube.Dynamic.Resource(vsGVR).Namespace(ns)
	owner := reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Name: "details"}

	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(virtualService(ns, "details", `app.kubernetes.io/instance: details`,
		`kubectl.kubernetes.io/last-applied-configuration: '{"apiVersion":"networking.istio.io/v1","kind":"VirtualService"}'`)), &u.Object); err != nil {
		t.Fatal(err)
	}
	// As kubectl's client-side apply creates an object: a create carrying the annotation.
	created, err := res.Create(ctx, u, metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(created.Object, int64(1), "status", "observedGeneration"); err != nil {
		t.Fatal(err)
	}
	if _, err := res.UpdateStatus(ctx, created, metav1.UpdateOptions{FieldManager: "pilot-discovery"}); err != nil {
		t.Fatal(err)
	}
	// Times have one-second resolution: in the same second, a later list could not tell
	// the editor from the creator (lastSpecWrite breaks the tie by name).
	time.Sleep(1100 * time.Millisecond)
	edited, written := edit(t, ns, "details", "kubectl-edit", setHosts(t, "details", "details.example.com"))
	if edited.GetAnnotations()["kubectl.kubernetes.io/last-applied-configuration"] == "" {
		t.Fatal("the edited object lost its last-applied annotation: the test would prove nothing")
	}

	check := func(how string, c reconcile.MeshChange) {
		t.Helper()
		if c.Manager != "kubectl-edit" || c.GitOpsOwner != owner || c.Generation != edited.GetGeneration() {
			t.Errorf("%s: change %+v: want kubectl-edit, owner %v, generation %d", how, c, owner, edited.GetGeneration())
		}
		w, ok := specWriteBy(c, "kubectl-edit")
		if !ok || w.Operation != "Update" || !slices.Contains(w.Fields, "spec.hosts") || w.At.IsZero() {
			t.Errorf("%s: spec writes %+v: want kubectl-edit (Update) owning spec.hosts, with a time", how, c.SpecWrites)
		}
		if w, ok := specWriteBy(c, "kubectl-client-side-apply"); !ok || w.Operation != "Update" || !slices.Contains(w.Fields, "spec.http") {
			t.Errorf("%s: spec writes %+v: want kubectl-client-side-apply (Update) owning spec.http", how, c.SpecWrites)
		}
		if _, ok := specWriteBy(c, "pilot-discovery"); ok {
			t.Errorf("%s: the status writer is among the spec writes: %+v", how, c.SpecWrites)
		}
	}
	// The create, then the edit: the status write is no change.
	check("watch", r.rec.waitChange(t, "VirtualService", ns, "details", 2, written))

	listed := start(t, mesh.Config{})
	got := listed.rec.of("VirtualService", ns, "details")
	if len(got) != 1 {
		t.Fatalf("%d changes at start, want 1: %+v", len(got), got)
	}
	check("initial list", got[0].change)
}
