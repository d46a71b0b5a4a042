package mesh

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdrift/meshdrift/reconcile"
)

func TestSpecWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []metav1.ManagedFieldsEntry
		want    []reconcile.SpecWrite
	}{
		{"none", nil, nil},
		{"status and labels only", []metav1.ManagedFieldsEntry{
			status(mf("istiod", update, 5, fieldsStatus)), mf("kubectl-label", update, 6, fieldsLabels), mf("x", update, 7, fieldsNested),
		}, nil},
		{"kubectl edit after the apply, latest first", []metav1.ManagedFieldsEntry{
			mf("kustomize-controller", apply, 0, fieldsSpec),
			mf("kubectl-edit", update, 60, fieldsSpecOnly),
			status(mf("istiod", update, 90, fieldsStatus)),
		}, []reconcile.SpecWrite{
			{Manager: "kubectl-edit", Operation: "Update", At: t0.Add(time.Minute), Fields: []string{"spec.http"}},
			{Manager: "kustomize-controller", Operation: "Apply", At: t0, Fields: []string{"spec.hosts", "spec.http"}},
		}},
		{"spec owned as a whole, no time", []metav1.ManagedFieldsEntry{mf("before-first-apply", update, -1, `{"f:spec":{".":{}}}`)},
			[]reconcile.SpecWrite{{Manager: "before-first-apply", Operation: "Update", Fields: []string{"spec"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, specWrites(tc.entries)); diff != "" {
				t.Errorf("specWrites (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSpecWritesBounded(t *testing.T) {
	var fields []string
	for i := range 20 {
		fields = append(fields, fmt.Sprintf(`"f:f%02d":{}`, i))
	}
	raw := `{"f:spec":{` + strings.Join(fields, ",") + `}}`
	var entries []metav1.ManagedFieldsEntry
	for i := range 20 {
		entries = append(entries, mf(fmt.Sprintf("m%02d", i), update, i, raw))
	}
	got := specWrites(entries)
	if len(got) != reconcile.MaxSpecWrites {
		t.Fatalf("%d entries, want %d", len(got), reconcile.MaxSpecWrites)
	}
	if got[0].Manager != "m19" || len(got[0].Fields) != reconcile.MaxSpecFields || got[0].Fields[0] != "spec.f00" {
		t.Errorf("first entry %+v, want m19 with %d fields from spec.f00", got[0], reconcile.MaxSpecFields)
	}
}
