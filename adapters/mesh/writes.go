package mesh

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdrift/meshdrift/reconcile"
)

// specWrites lists the managedFields entries that own spec fields, latest first (ties as
// laterWrite breaks them), with their top-level spec fields: what the out-of-band edit
// check (MD0801) needs to say who changed which part of the spec, and when. Status
// subresource entries never own spec. Bounded by reconcile.MaxSpecWrites entries of
// reconcile.MaxSpecFields fields, so a MeshChange stays small.
func specWrites(entries []metav1.ManagedFieldsEntry) []reconcile.SpecWrite {
	var picked []metav1.ManagedFieldsEntry
	for _, e := range entries {
		if e.Subresource == "" && touchesSpec(e) {
			picked = append(picked, e)
		}
	}
	slices.SortStableFunc(picked, func(a, b metav1.ManagedFieldsEntry) int {
		switch {
		case laterWrite(a, b):
			return -1
		case laterWrite(b, a):
			return 1
		}
		return 0
	})
	if len(picked) > reconcile.MaxSpecWrites {
		picked = picked[:reconcile.MaxSpecWrites]
	}
	out := make([]reconcile.SpecWrite, 0, len(picked))
	for _, e := range picked {
		out = append(out, reconcile.SpecWrite{
			Manager:   e.Manager,
			Operation: string(e.Operation),
			At:        timeOf(e),
			Fields:    specFields(e.FieldsV1.GetRawBytes()),
		})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// specFields names the top-level spec fields a fieldsV1 tree owns ({"f:spec":
// {"f:http": {}}} → "spec.http"), sorted; "spec" alone when it owns spec but no field
// under it is named ("." keys only).
func specFields(raw []byte) []string {
	if !bytes.Contains(raw, []byte(`"f:spec"`)) {
		return nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(raw, &top) != nil {
		return nil
	}
	var spec map[string]json.RawMessage
	if json.Unmarshal(top["f:spec"], &spec) != nil {
		return nil
	}
	var out []string
	for k := range spec {
		if name, ok := strings.CutPrefix(k, "f:"); ok {
			out = append(out, "spec."+name)
		}
	}
	slices.Sort(out)
	if len(out) > reconcile.MaxSpecFields {
		out = out[:reconcile.MaxSpecFields]
	}
	if len(out) == 0 {
		return []string{"spec"}
	}
	return out
}
