package mesh

import (
	"encoding/json"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestCapturedManagedFields replays managedFields captured from kube-apiserver (see
// testdata/managedfields/README.md) through the change and manager logic.
func TestCapturedManagedFields(t *testing.T) {
	steps := capturedLifecycle(t)
	// The manager each step's change must carry; "" where the step is no change.
	want := map[string]string{
		"apply":   "kustomize-controller",
		"edit":    "kubectl-edit",
		"status":  "",
		"label":   "",
		"reapply": "kustomize-controller",
	}
	if len(steps) != len(want) {
		t.Fatalf("%d steps captured, want %d", len(steps), len(want))
	}
	var prev *unstructured.Unstructured
	for _, s := range steps {
		// Decoded as the informers decode, with integers as int64.
		cur := &unstructured.Unstructured{}
		if err := cur.UnmarshalJSON(s.Object); err != nil {
			t.Fatalf("step %s: %v", s.Step, err)
		}
		got := ""
		switch {
		case prev == nil:
			got = lastSpecWrite(cur.GetManagedFields()).Manager
		case specChanged(prev, cur):
			got = updateSpecWrite(prev.GetManagedFields(), cur.GetManagedFields()).Manager
		}
		if got != want[s.Step] {
			t.Errorf("step %s: manager %q, want %q", s.Step, got, want[s.Step])
		}
		prev = cur
	}
	// Found by a later initial list, the object's last spec write is Flux's re-apply.
	if w := lastSpecWrite(prev.GetManagedFields()); w.Manager != "kustomize-controller" || w.At.IsZero() {
		t.Errorf("last spec write of the final object: %+v", w)
	}
}

// capturedStep is one version of the object in testdata/managedfields/vs-lifecycle.json.
type capturedStep struct {
	Step   string          `json:"step"`
	Object json.RawMessage `json:"object"`
}

// capturedLifecycle reads the versions kube-apiserver wrote through a VirtualService's
// lifecycle.
func capturedLifecycle(t *testing.T) []capturedStep {
	t.Helper()
	data, err := os.ReadFile("testdata/managedfields/vs-lifecycle.json")
	if err != nil {
		t.Fatal(err)
	}
	var steps []capturedStep
	if err := json.Unmarshal(data, &steps); err != nil {
		t.Fatal(err)
	}
	return steps
}
