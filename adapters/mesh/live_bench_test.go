package mesh

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshdrift/meshdrift/reconcile/checks"
)

// countedLive is the live source with a count of its snapshots: each decodes every
// mesh object the checks read.
type countedLive struct {
	*LiveSource
	snapshots int
}

func (c *countedLive) Snapshot() (*checks.Snapshot, string) {
	c.snapshots++
	return c.LiveSource.Snapshot()
}

// BenchmarkLiveSourceTick is the checks runner's maximum-interval tick on the live
// source over benchMeshObjects mesh objects (BenchmarkMeshObjectsHeap's, through fake
// clients' informers): "changed" after a change of what the source reads (a run: every
// object decoded, every check run), "idle" with nothing changed (Version read and
// compared; no snapshot). An idle meshdrift paid "changed" every 30 s before.
//
//	go test -short -run '^$' -bench 'BenchmarkLiveSourceTick/changed' -benchtime 3x ./adapters/mesh/
//	go test -short -run '^$' -bench 'BenchmarkLiveSourceTick/idle' ./adapters/mesh/
func BenchmarkLiveSourceTick(b *testing.B) {
	objs := make([]runtime.Object, benchMeshObjects)
	for i := range objs {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(benchMeshObject(b, i)); err != nil {
			b.Fatal(err)
		}
		objs[i] = u
	}
	live, _ := fakeLive(b, 0, objs...)
	src := &countedLive{LiveSource: live}
	l, err := checks.NewLive(checks.LiveConfig{}, src, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if run, ran := l.RunIfChanged(ctx); !ran || run.Waiting != "" {
		b.Fatalf("first tick: ran %t, waiting %q", ran, run.Waiting)
	}
	b.Run("changed", func(b *testing.B) {
		src.snapshots = 0
		b.ReportAllocs()
		for b.Loop() {
			// RunOnce is what RunIfChanged does once the version moved.
			l.RunOnce(ctx)
		}
		b.ReportMetric(float64(src.snapshots)/float64(b.N), "snapshots/op")
	})
	b.Run("idle", func(b *testing.B) {
		src.snapshots = 0
		b.ReportAllocs()
		for b.Loop() {
			if _, ran := l.RunIfChanged(ctx); ran {
				b.Fatal("an idle tick ran the checks")
			}
		}
		b.ReportMetric(float64(src.snapshots)/float64(b.N), "snapshots/op")
	})
}
