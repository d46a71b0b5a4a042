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

// fleet is the mesh of the fleet-scale benchmarks: 2 istiod replicas with 5,000 proxies
// each in 50 namespaces (1 in 25 a gateway in istio-ingress), 5 xDS types per proxy.
const (
	fleetIstiods    = 2
	fleetProxies    = 5000 // per istiod
	fleetNamespaces = 50
	fleetChanges    = 500
)

var fleetTypes = []string{typeCluster, typeListener, typeRoute, typeEndpoint, typeExtension}

// fleetView is one read of istiod r at readAt: every type of every proxy was pushed at
// pushedAt; with stale, 1 proxy in 47 has not ACKed it; the proxies listed in nacking NACK RDS with
// a text naming the host of one VirtualService, and one NACKs EDS (a type no
// VirtualService writes).
func fleetView(r int, readAt, pushedAt time.Time, nacking map[int]bool, stale bool) IstiodView {
	v := IstiodView{Istiod: fmt.Sprintf("istiod-%d", r), ObservedAt: readAt, ReadStartedAt: readAt.Add(-20 * time.Millisecond)}
	v.Proxies = make([]ProxyStatus, 0, fleetProxies)
	for i := range fleetProxies {
		ns, typ := fmt.Sprintf("ns-%d", i%fleetNamespaces), "sidecar"
		if i%25 == 0 {
			ns, typ = "istio-ingress", "router"
		}
		px := ProxyStatus{ID: fmt.Sprintf("app-%d-%d.%s", r, i, ns), ProxyType: typ, Istiod: v.Istiod, Types: make([]XDSStatus, 0, len(fleetTypes))}
		for _, t := range fleetTypes {
			x := XDSStatus{TypeURL: t, State: StateSynced, SentAt: pushedAt}
			switch {
			case stale && i%47 == 3:
				x.State = StateStale
			case nacking[i] && t == typeRoute:
				x.State, x.Error = StateError, fmt.Sprintf("route: duplicate virtual host outbound|80||svc-%d.ns-%d.svc.cluster.local", i%fleetChanges, i%fleetNamespaces)
			case nacking[i] && i%2 == 1 && t == typeEndpoint:
				x.State, x.Error = StateError, "endpoints: cluster not found"
			}
			px.Types = append(px.Types, x)
		}
		v.Proxies = append(v.Proxies, px)
	}
	return v
}

// fleetChange is change i of the fleet benchmarks, observed at at: VirtualServices,
// DestinationRules, Gateways, ServiceEntries and Sidecars with what their specs say.
func fleetChange(i int, at time.Time) MeshChange {
	ns := fmt.Sprintf("ns-%d", i%fleetNamespaces)
	host := fmt.Sprintf("svc-%d", i)
	c := MeshChange{Generation: 1, ObservedAt: at, Reach: Reach{Known: true, Hosts: []string{host}, Ports: []uint32{80}}}
	switch i % 5 {
	case 0:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "VirtualService"}
		if i%10 == 0 {
			c.Reach.Gateways = []string{"istio-ingress/public", "mesh"}
		}
	case 1:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "DestinationRule"}
		if i%3 == 0 {
			c.Reach.ExportTo = []string{"."}
		}
	case 2:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "Gateway"}
		ns = "istio-ingress"
	case 3:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "ServiceEntry"}
		c.Reach.Hosts = []string{host + ".example.com"}
	case 4:
		c.Ref = ObjectRef{Group: "networking.istio.io", Kind: "Sidecar"}
		c.Reach.Hosts = nil
	}
	c.Ref.Namespace, c.Ref.Name = ns, fmt.Sprintf("obj-%d", i)
	return c
}

// fleetStore is the fleet with its changes observed 40 ms apart from t0 and istiod's
// pushes after all of them (pushedAt) or before all of them.
func fleetStore(pushedAt time.Time) (*Store, [2]IstiodView) {
	s := NewStore(PropagationConfig{}, nil)
	for i := range fleetChanges {
		s.ObserveMeshChange(fleetChange(i, t0.Add(time.Duration(i)*40*time.Millisecond+123*time.Microsecond)))
	}
	nacking := map[int]bool{3: true, 1001: true, 2500: true, 4999: true}
	readAt := t0.Add(22 * time.Second)
	var alt [2]IstiodView
	for r := range fleetIstiods {
		v := fleetView(r, readAt, pushedAt, nacking, true)
		s.ObserveIstiod(v)
		if r == 0 {
			// The next reads of istiod-0: what changed is one more stale proxy.
			for k := range alt {
				alt[k] = fleetView(r, readAt.Add(time.Duration(k+1)*250*time.Millisecond), pushedAt, nacking, true)
				alt[k].Proxies[100+k].Types[0].State = StateStale
			}
		}
	}
	s.ObserveNACK(NACKEvent{Istiod: "istiod-1", Proxy: "app-1-1001.ns-1", TypeURL: typeRoute, Error: "route: duplicate virtual host outbound|80||svc-1.ns-1.svc.cluster.local", At: t0.Add(21 * time.Second)})
	return s, alt
}

// One evaluation pass with 500 changes in flight over 10,000 proxies × 5 xDS types, as
// the fast poll runs it: istiod-0 has just been read again (something new to look at).
// Target: ≤ 100 ms (issue 10).
func BenchmarkEvaluateInFlight(b *testing.B) {
	s, alt := fleetStore(t0.Add(21 * time.Second))
	now := t0.Add(23 * time.Second)
	s.Evaluate(now)
	if n := unresolvedCount(s); n < fleetChanges*9/10 {
		b.Fatalf("%d changes in flight, want most of %d", n, fleetChanges)
	}
	b.ReportAllocs()
	b.ResetTimer()
	k := 0
	for b.Loop() {
		s.ObserveIstiod(alt[k%2])
		k++
		s.Evaluate(now)
	}
}

// One pass over the same mesh with nothing in flight: every change propagated.
// Target: ≤ 10 ms (issue 10).
func BenchmarkEvaluateSteady(b *testing.B) {
	s, alt := fleetStore(t0.Add(21 * time.Second))
	for r := range fleetIstiods {
		v := fleetView(r, t0.Add(40*time.Second), t0.Add(39*time.Second), nil, false)
		s.ObserveIstiod(v)
		if r == 0 {
			alt[0], alt[1] = v, fleetView(r, t0.Add(41*time.Second), t0.Add(39*time.Second), nil, false)
		}
	}
	now := t0.Add(42 * time.Second)
	s.Evaluate(now)
	if n := unresolvedCount(s); n != 0 {
		b.Fatalf("%d changes unresolved, want none", n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	k := 0
	for b.Loop() {
		s.ObserveIstiod(alt[k%2])
		k++
		s.Evaluate(now)
	}
}

func unresolvedCount(s *Store) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, tc := range s.changes {
		if !tc.resolved {
			n++
		}
	}
	return n
}

// The worst pass with 500 changes in flight: every istiod was read again, so every
// change visits all 10,000 proxies' index entries again.
func BenchmarkEvaluateInFlightAllIstiods(b *testing.B) {
	s, alt := fleetStore(t0.Add(21 * time.Second))
	other := fleetView(1, t0.Add(22*time.Second), t0.Add(21*time.Second), map[int]bool{3: true, 1001: true, 2500: true, 4999: true}, true)
	now := t0.Add(23 * time.Second)
	s.Evaluate(now)
	b.ReportAllocs()
	b.ResetTimer()
	k := 0
	for b.Loop() {
		s.ObserveIstiod(alt[k%2])
		other.ObservedAt = other.ObservedAt.Add(250 * time.Millisecond)
		s.ObserveIstiod(other)
		k++
		s.Evaluate(now)
	}
}
