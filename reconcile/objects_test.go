package reconcile

import "testing"

func TestMeshObjectsKeepsLatestAndForgetsDeleted(t *testing.T) {
	o := NewMeshObjects()
	a := ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "ns", Name: "a"}
	b := ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "ns", Name: "b"}
	var sinks MeshSinks = []MeshSink{o}
	sinks.ObserveMeshChange(MeshChange{Ref: b, Generation: 1})
	sinks.ObserveMeshChange(MeshChange{Ref: a, Generation: 1})
	sinks.ObserveMeshChange(MeshChange{Ref: a, Generation: 2, Manager: "kubectl-edit"})
	got := o.List()
	if len(got) != 2 || got[0].Ref != a || got[0].Generation != 2 || got[0].Manager != "kubectl-edit" || got[1].Ref != b {
		t.Fatalf("List() = %+v, want a at generation 2, then b", got)
	}
	sinks.ObserveMeshChange(MeshChange{Ref: a, Deleted: true})
	if got := o.List(); len(got) != 1 || got[0].Ref != b {
		t.Fatalf("after deleting a: %+v, want only b", got)
	}
}
