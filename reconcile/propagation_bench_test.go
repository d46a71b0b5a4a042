package reconcile

import (
	"fmt"
	"testing"
	"time"
)

// A mesh of 2 istiod replicas with 1,000 proxies each and 200 tracked changes: one
// evaluation must stay well under the fast poll interval (250 ms) it runs on.
func BenchmarkEvaluateLargeMesh(b *testing.B) {
	s := NewStore(PropagationConfig{}, nil)
	for r := range 2 {
		v := IstiodView{Istiod: fmt.Sprintf("istiod-%d", r), ObservedAt: t0.Add(2 * time.Second)}
		for i := range 1000 {
			st := StateSynced
			if i%50 == 0 {
				st = StateStale
			}
			v.Proxies = append(v.Proxies, proxy(fmt.Sprintf("p%d-%d.ns", r, i), t0.Add(100*time.Millisecond), st, ""))
		}
		s.ObserveIstiod(v)
	}
	for i := range 200 {
		ref := vsRef
		ref.Name = fmt.Sprintf("vs-%d", i)
		s.ObserveMeshChange(MeshChange{Ref: ref, Generation: 1, ObservedAt: t0})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.Evaluate(t0.Add(time.Second))
	}
}
