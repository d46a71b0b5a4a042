package mesh

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// specWrite is who last wrote an object's spec and when, as read from managedFields.
type specWrite struct {
	Manager string
	// At has the API server's one-second resolution; zero when managedFields carry no time.
	At time.Time
}

// lastSpecWrite picks, from an object's managedFields, the entry of the latest write that
// touched spec: the API server moves an entry's time only when that manager's operation
// changed the object, and a manager owns the spec fields it set. When no entry owns spec
// fields (a kind without spec, or fields stripped), the latest entry of any kind is used.
//
// Times have one-second resolution, so two writes in the same second tie. The tie goes to
// an Update (imperative: kubectl edit, patch) over an Apply, because a forced apply after
// an edit usually takes the edited fields back, leaving the editor no spec fields; then by
// manager name, only so that the answer is stable.
func lastSpecWrite(entries []metav1.ManagedFieldsEntry) specWrite {
	best, found := -1, false
	for i, e := range entries {
		if touchesSpec(e) && (!found || laterWrite(e, entries[best])) {
			best, found = i, true
		}
	}
	if !found {
		for i, e := range entries {
			if best < 0 || laterWrite(e, entries[best]) {
				best = i
			}
		}
	}
	if best < 0 {
		return specWrite{}
	}
	return writeOf(entries[best])
}

// updateSpecWrite finds who made the update from old to new. Comparing the two sets of
// managedFields is exact where times tie: the writer's entry is the one that is new, whose
// time moved, or that gained fields (in one write only the writer gains; the managers it
// took fields from lose them). When none did (an Update that only removed fields takes no
// ownership and moves no time), it falls back to lastSpecWrite of new, which may then
// name the previous spec writer.
func updateSpecWrite(old, new []metav1.ManagedFieldsEntry) specWrite {
	before := make(map[fieldsKey]metav1.ManagedFieldsEntry, len(old))
	for _, e := range old {
		before[keyOf(e)] = e
	}
	var moved []metav1.ManagedFieldsEntry
	for _, e := range new {
		prev, ok := before[keyOf(e)]
		if !ok || !timeOf(prev).Equal(timeOf(e)) || gainedFields(prev, e) {
			moved = append(moved, e)
		}
	}
	// In one watch event one entry moves; after a relist several may, and the spec
	// writers among them are the ones that changed the generation.
	var spec []metav1.ManagedFieldsEntry
	for _, e := range moved {
		if touchesSpec(e) {
			spec = append(spec, e)
		}
	}
	switch {
	case len(spec) > 0:
		return lastSpecWrite(spec)
	case len(moved) > 0:
		// The writer owns no spec field afterwards: it only removed some.
		return lastSpecWrite(moved)
	default:
		return lastSpecWrite(new)
	}
}

// fieldsKey identifies a managedFields entry the way the API server keys them: an Update
// entry per manager, API version and subresource; an Apply entry per manager and subresource.
type fieldsKey struct {
	manager, operation, apiVersion, subresource string
}

func keyOf(e metav1.ManagedFieldsEntry) fieldsKey {
	k := fieldsKey{manager: e.Manager, operation: string(e.Operation), subresource: e.Subresource}
	if e.Operation != metav1.ManagedFieldsOperationApply {
		k.apiVersion = e.APIVersion
	}
	return k
}

func writeOf(e metav1.ManagedFieldsEntry) specWrite {
	return specWrite{Manager: e.Manager, At: timeOf(e)}
}

func timeOf(e metav1.ManagedFieldsEntry) time.Time {
	if e.Time == nil {
		return time.Time{}
	}
	return e.Time.Time
}

// laterWrite reports whether a is a later write than b, ties broken as lastSpecWrite says.
func laterWrite(a, b metav1.ManagedFieldsEntry) bool {
	ta, tb := timeOf(a), timeOf(b)
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	ua, ub := a.Operation == metav1.ManagedFieldsOperationUpdate, b.Operation == metav1.ManagedFieldsOperationUpdate
	if ua != ub {
		return ua
	}
	return a.Manager < b.Manager
}

// gainedFields reports whether entry now owns a field that it did not own in prev.
func gainedFields(prev, now metav1.ManagedFieldsEntry) bool {
	was, is := prev.FieldsV1.GetRawBytes(), now.FieldsV1.GetRawBytes()
	if len(is) == 0 || bytes.Equal(was, is) {
		return false
	}
	var wasSet, isSet map[string]any
	if json.Unmarshal(is, &isSet) != nil {
		return false
	}
	if len(was) > 0 && json.Unmarshal(was, &wasSet) != nil {
		return false
	}
	return hasFieldNotIn(isSet, wasSet)
}

// hasFieldNotIn walks a fieldsV1 tree ({"f:spec": {"f:hosts": {}}}) for a path of a that
// b lacks.
func hasFieldNotIn(a, b map[string]any) bool {
	for k, av := range a {
		bv, ok := b[k]
		if !ok {
			return true
		}
		am, _ := av.(map[string]any)
		bm, _ := bv.(map[string]any)
		if hasFieldNotIn(am, bm) {
			return true
		}
	}
	return false
}

// touchesSpec reports whether the entry owns any field under .spec. fieldsV1 is a JSON
// object keyed by "f:<field>"; only its top level matters here.
func touchesSpec(e metav1.ManagedFieldsEntry) bool {
	raw := e.FieldsV1.GetRawBytes()
	// Cheap reject before decoding: most status and metadata entries never mention it.
	if !bytes.Contains(raw, []byte(`"f:spec"`)) {
		return false
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return false
	}
	_, ok := top["f:spec"]
	return ok
}

// Manager classes: the bounded label values of meshdrift_mesh_changes_total.
const (
	classGitOps  = "gitops"
	classKubectl = "kubectl"
	classOther   = "other"
)

// gitOpsManagers are the field managers the GitOps controllers write with: Flux's
// controllers, Argo CD's server-side apply and its client-side apply (kubectl library).
var gitOpsManagers = map[string]bool{
	"kustomize-controller":          true,
	"helm-controller":               true,
	"argocd-controller":             true,
	"argocd-application-controller": true,
}

// managerClass buckets a field manager for metrics. kubectl names its managers
// "kubectl" (server-side apply) or "kubectl-<command>" (kubectl-edit, kubectl-patch,
// kubectl-client-side-apply, ...). An empty manager (unknown, or a deletion, whose
// author no object records) is "other".
func managerClass(manager string) string {
	switch {
	case gitOpsManagers[manager]:
		return classGitOps
	case manager == "kubectl" || strings.HasPrefix(manager, "kubectl-"):
		return classKubectl
	default:
		return classOther
	}
}
