// Package heapbench measures how much heap an informer store holds for a set of objects,
// with and without the informer's transform, for the adapters' memory benchmarks.
package heapbench

import (
	"runtime"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/cache"
)

// Case is one way of caching the objects: a name and the transform (nil: none).
type Case struct {
	Name      string
	Transform cache.TransformFunc
}

// Run runs one sub-benchmark per case, each filling a store with docs (objects' JSON as
// the API server serves them) and reporting the heap it holds, in all and per object.
func Run(b *testing.B, docs [][]byte, cases ...Case) {
	for _, tc := range cases {
		b.Run(tc.Name, func(b *testing.B) {
			var held uint64
			for range b.N {
				held = Held(func() any { return FillStore(b, docs, tc.Transform) })
			}
			b.ReportMetric(float64(held)/(1<<20), "MiB-held")
			b.ReportMetric(float64(held)/float64(len(docs)), "B/object")
		})
	}
}

// Held reports how much live heap the value that fill builds holds.
func Held(fill func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := fill()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

// FillStore decodes docs as the dynamic client does and adds them to a store through
// transform, as an informer would.
func FillStore(tb testing.TB, docs [][]byte, transform cache.TransformFunc) cache.Store {
	tb.Helper()
	store := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc)
	for _, d := range docs {
		var obj any = &unstructured.Unstructured{}
		if err := obj.(*unstructured.Unstructured).UnmarshalJSON(d); err != nil {
			tb.Fatal(err)
		}
		if transform != nil {
			var err error
			if obj, err = transform(obj); err != nil {
				tb.Fatal(err)
			}
		}
		if err := store.Add(obj); err != nil {
			tb.Fatal(err)
		}
	}
	return store
}
