package reconcile

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// rollupByApp finds the same owners as comparing every app with every change: by the
// objects an app lists, by the tracking owner a change names (with and without its
// namespace), for several apps at once and for none.
func TestRollupByAppMatchesEveryPair(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ref := func(i int) ObjectRef {
		return ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: fmt.Sprintf("ns-%d", i%3), Name: fmt.Sprintf("vs-%d", i)}
	}
	var apps []App
	for i := range 30 {
		a := App{Key: AppKey{Source: []Source{SourceArgoCD, SourceFlux}[i%2], Kind: []string{"Application", "Kustomization"}[i%2],
			Namespace: fmt.Sprintf("team-%d", i%4), Name: fmt.Sprintf("app-%d", i%12)}}
		for range rng.IntN(5) {
			a.Objects = append(a.Objects, OwnedObject{Ref: ref(rng.IntN(60))})
		}
		apps = append(apps, a)
	}
	sortByKey(apps, func(a App) string { return a.Key.String() })
	var changes []Propagation
	for i := range 80 {
		c := MeshChange{Ref: ref(rng.IntN(60)), Generation: int64(i)}
		if rng.IntN(2) == 0 {
			o := apps[rng.IntN(len(apps))].Key
			if rng.IntN(3) == 0 {
				o.Namespace = ""
			}
			c.GitOpsOwner = o
		}
		changes = append(changes, Propagation{Change: c, State: PropagationPending})
	}
	sortByKey(changes, func(p Propagation) string { return p.Change.Ref.String() })

	var want []Rollup
	for _, a := range apps {
		var props []Propagation
		for _, p := range changes {
			if ownedBy(p.Change, a) {
				props = append(props, p)
			}
		}
		if len(props) > 0 {
			want = append(want, rollup(a, props))
		}
	}
	if len(want) == 0 {
		t.Fatal("the generated fleet owns nothing: the test proves nothing")
	}
	if diff := cmp.Diff(want, rollupByApp(apps, changes)); diff != "" {
		t.Errorf("rollupByApp differs from every pair (-want +got):\n%s", diff)
	}
}

// A store's snapshot at fleet scale: 5,000 apps listing 4 objects each and 10,000 changes
// held (the cap), taken for the findings, /metrics and the status API. idle: nothing was
// written since the last snapshot; istiod-read: an istiod was read (the views are taken
// again); change: a mesh object changed (changes and roll-ups are built again).
func BenchmarkSnapshotFleet(b *testing.B) {
	s := NewStore(PropagationConfig{}, nil)
	for i := range 5000 {
		a := App{Key: AppKey{Source: SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: fmt.Sprintf("app-%d", i)}, State: AppSynced}
		for j := range 4 {
			a.Objects = append(a.Objects, OwnedObject{Ref: ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: fmt.Sprintf("ns-%d", i%200), Name: fmt.Sprintf("vs-%d-%d", i, j)}})
		}
		s.ObserveApp(a)
	}
	for i := range 10000 {
		ref := ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: fmt.Sprintf("ns-%d", (i/4)%200), Name: fmt.Sprintf("vs-%d-%d", i/4, i%4)}
		s.ObserveMeshChange(MeshChange{Ref: ref, Generation: 1, ObservedAt: t0})
	}
	s.Evaluate(t0.Add(time.Second))
	view := IstiodView{Istiod: "istiod-0", ObservedAt: t0}
	for i := range 1000 {
		view.Proxies = append(view.Proxies, ProxyStatus{ID: fmt.Sprintf("p-%d.ns-%d", i, i%200), Types: []XDSStatus{{TypeURL: "cds", State: StateSynced, SentAt: t0}}})
	}
	for _, bc := range []struct {
		name  string
		write func(i int)
	}{
		{"idle", func(int) {}},
		{"istiod-read", func(i int) {
			view.ObservedAt = t0.Add(time.Duration(i) * time.Second)
			s.ObserveIstiod(view)
		}},
		{"change", func(i int) {
			s.ObserveMeshChange(MeshChange{Ref: ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "ns-0", Name: "vs-0-0"}, Generation: int64(2 + i), ObservedAt: t0})
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bc.write(i)
				i++
				if snap := s.Snapshot(); len(snap.Propagation) == 0 {
					b.Fatal("no roll-ups")
				}
			}
		})
	}
}
