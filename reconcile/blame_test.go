package reconcile

import (
	"slices"
	"testing"
	"time"
)

var (
	drRef = ObjectRef{Group: "networking.istio.io", Kind: "DestinationRule", Namespace: "payments", Name: "api"}
	gwRef = ObjectRef{Group: "networking.istio.io", Kind: "Gateway", Namespace: "ingress", Name: "public"}
)

// sent builds a proxy of one namespace and type whose listed types were sent at sent;
// errs gives a type's NACK text (the type is then in ERROR).
func sent(id, proxyType string, at time.Time, errs map[string]string, types ...string) ProxyStatus {
	p := ProxyStatus{ID: id, ProxyType: proxyType}
	for _, typ := range types {
		x := XDSStatus{TypeURL: typ, State: StateSynced, SentAt: at}
		if e, ok := errs[typ]; ok {
			x.State, x.Error = StateError, e
		}
		p.Types = append(p.Types, x)
	}
	return p
}

func TestBlame(t *testing.T) {
	after := t0.Add(120 * time.Millisecond)
	vs := MeshChange{Ref: vsRef, ObservedAt: t0, Reach: Reach{Known: true,
		Hosts: []string{"api"}, Ports: []uint32{9080}}}
	vsLocal := vs
	vsLocal.Reach.ExportTo = []string{"."}
	vsGateway := vs
	vsGateway.Reach.Gateways = []string{"ingress/public"}
	dr := MeshChange{Ref: drRef, ObservedAt: t0, Reach: Reach{Known: true, Hosts: []string{"api.payments.svc.cluster.local"}}}
	gw := MeshChange{Ref: gwRef, ObservedAt: t0, Reach: Reach{Known: true, Hosts: []string{"shop.example.com"}, Ports: []uint32{8080}}}
	baseline := vs
	baseline.Baseline = true
	baseline.ObservedAt = t0.Add(-24 * time.Hour)
	unknown := MeshChange{Ref: ObjectRef{Group: "policy.linkerd.io", Kind: "Server", Namespace: "payments", Name: "api"}, ObservedAt: t0}

	const (
		namesRoute   = "Error adding/updating route configuration(s) 9080: Only unique values for domains are permitted. Duplicate entry of domain api.payments.svc.cluster.local"
		anonymous    = "Proto constraint validation failed: route: invalid regex"
		namesOther   = "Error adding/updating cluster(s) outbound|8080||orders.shop.svc.cluster.local: invalid TLS context"
		namesCluster = "Error adding/updating cluster(s) outbound|9080|v1|api.payments.svc.cluster.local: lb policy"
	)
	cases := []struct {
		name       string
		change     MeshChange
		settled    bool
		proxies    []ProxyStatus
		nacks      []NACKEvent
		now        time.Duration
		want       PropagationState
		targeted   int
		outcomes   []ProxyOutcome
		concurrent []ProxyOutcome
	}{
		{
			name:     "VirtualService change, RDS NACK in reach naming its route: NACKed, named",
			change:   vs,
			proxies:  []ProxyStatus{sent("web-1.payments", "sidecar", after, map[string]string{rds: namesRoute}, cds, lds, rds)},
			want:     PropagationNACKed,
			targeted: 1,
			outcomes: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: namesRoute, Named: true}},
		},
		{
			name:     "VirtualService change, RDS NACK naming nothing: still the change's, not named",
			change:   vs,
			proxies:  []ProxyStatus{sent("web-1.payments", "", after, map[string]string{rds: anonymous}, cds, lds, rds)},
			want:     PropagationNACKed,
			targeted: 1,
			outcomes: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
		{
			name:       "DestinationRule change, RDS NACK: a type it does not write, concurrent",
			change:     dr,
			proxies:    []ProxyStatus{sent("web-1.payments", "sidecar", after, map[string]string{rds: anonymous}, cds, eds, lds, rds)},
			want:       PropagationPropagated,
			targeted:   1,
			concurrent: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
		{
			name:     "DestinationRule change, CDS NACK naming its subset cluster: NACKed, named",
			change:   dr,
			proxies:  []ProxyStatus{sent("web-1.payments", "sidecar", after, map[string]string{cds: namesCluster}, cds, eds)},
			want:     PropagationNACKed,
			targeted: 1,
			outcomes: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: namesCluster, Named: true}},
		},
		{
			name:       "a NACK naming only another object's cluster is concurrent",
			change:     vs,
			proxies:    []ProxyStatus{sent("web-1.payments", "sidecar", after, map[string]string{cds: namesOther}, cds, lds, rds)},
			want:       PropagationPropagated,
			targeted:   1,
			concurrent: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: namesOther}},
		},
		{
			name:   "exportTo \".\": a proxy in another namespace is not targeted, its NACK concurrent",
			change: vsLocal,
			proxies: []ProxyStatus{
				sent("web-1.payments", "sidecar", after, nil, cds, lds, rds),
				sent("cart-1.shop", "sidecar", after, map[string]string{rds: anonymous}, cds, lds, rds),
			},
			want:       PropagationPropagated,
			targeted:   1,
			concurrent: []ProxyOutcome{{Proxy: "cart-1.shop", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
		{
			name:   "pushed only to proxies out of reach: pushed to nobody in reach, not unpushed",
			change: vsLocal,
			proxies: []ProxyStatus{
				sent("cart-1.shop", "sidecar", after, nil, cds, lds, rds),
			},
			now:  time.Minute,
			want: PropagationPropagated,
		},
		{
			name:   "a gateway-only VirtualService does not reach sidecars, only gateways",
			change: vsGateway,
			proxies: []ProxyStatus{
				sent("web-1.payments", "sidecar", after, map[string]string{rds: anonymous}, cds, lds, rds),
				sent("ingress-1.istio-system", "router", after, nil, cds, lds, rds),
			},
			want:       PropagationPropagated,
			targeted:   1,
			concurrent: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
		{
			name:     "proxy type unknown (xDS syncz): a gateway-only VirtualService may reach it",
			change:   vsGateway,
			proxies:  []ProxyStatus{sent("web-1.payments", "", after, map[string]string{rds: anonymous}, cds, lds, rds)},
			want:     PropagationNACKed,
			targeted: 1,
			outcomes: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
		{
			name:   "an Istio Gateway reaches routers in any namespace, never sidecars",
			change: gw,
			proxies: []ProxyStatus{
				sent("web-1.payments", "sidecar", after, map[string]string{lds: anonymous}, cds, lds, rds),
				sent("ingress-1.istio-system", "router", after, map[string]string{lds: "Error adding/updating listener(s) 0.0.0.0_8080: bad filter chain"}, cds, lds, rds),
			},
			want:       PropagationNACKed,
			targeted:   1,
			outcomes:   []ProxyOutcome{{Proxy: "ingress-1.istio-system", Istiod: "istiod-a", State: PropagationNACKed, Error: "Error adding/updating listener(s) 0.0.0.0_8080: bad filter chain", Named: true}},
			concurrent: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
		{
			name:       "baseline object settled before start: a pre-existing NACK is the proxy's own",
			change:     baseline,
			settled:    true,
			proxies:    []ProxyStatus{sent("web-1.payments", "sidecar", t0.Add(-time.Hour), map[string]string{rds: anonymous}, cds, lds, rds)},
			want:       PropagationPropagated,
			targeted:   1,
			concurrent: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
		{
			name:     "baseline object settled before start: a NACK naming it is still its own",
			change:   baseline,
			settled:  true,
			proxies:  []ProxyStatus{sent("web-1.payments", "sidecar", t0.Add(-time.Hour), map[string]string{rds: namesRoute}, cds, lds, rds)},
			want:     PropagationNACKed,
			targeted: 1,
			outcomes: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: namesRoute, Named: true}},
		},
		{
			name:    "baseline object settled before start: a silent proxy is not stale against it",
			change:  baseline,
			settled: true,
			proxies: []ProxyStatus{
				sent("web-1.payments", "sidecar", t0.Add(-time.Hour), nil, cds, lds, rds),
				{ID: "stuck-1.payments", Types: []XDSStatus{{TypeURL: rds, State: StateStale, SentAt: t0.Add(-time.Hour)}}},
			},
			want:       PropagationPropagated,
			targeted:   1,
			concurrent: []ProxyOutcome{{Proxy: "stuck-1.payments", Istiod: "istiod-a", State: PropagationStale}},
		},
		{
			name:     "a streamed NACK of a type the kind writes counts",
			change:   vs,
			proxies:  []ProxyStatus{sent("web-1.payments", "sidecar", t0.Add(-time.Minute), nil, cds, lds, rds)},
			nacks:    []NACKEvent{{Istiod: "istiod-a", Proxy: "web-1.payments", TypeURL: rds, Error: namesRoute, At: after}},
			want:     PropagationNACKed,
			targeted: 1,
			outcomes: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: namesRoute, Named: true}},
		},
		{
			name:       "a streamed NACK of another type is concurrent",
			change:     vs,
			proxies:    []ProxyStatus{sent("web-1.payments", "sidecar", after, nil, cds, lds, rds)},
			nacks:      []NACKEvent{{Istiod: "istiod-a", Proxy: "web-1.payments", TypeURL: eds, Error: anonymous, At: after}},
			want:       PropagationPropagated,
			targeted:   1,
			concurrent: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
		{
			name:     "an unknown kind can explain every type: fail open to blame",
			change:   unknown,
			proxies:  []ProxyStatus{sent("web-1.payments", "sidecar", after, map[string]string{eds: anonymous}, eds)},
			want:     PropagationNACKed,
			targeted: 1,
			outcomes: []ProxyOutcome{{Proxy: "web-1.payments", Istiod: "istiod-a", State: PropagationNACKed, Error: anonymous}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := &trackedChange{change: tc.change, settled: tc.settled}
			v := view("istiod-a", "", tc.proxies...)
			now := tc.now
			if now == 0 {
				now = 2 * time.Second
			}
			got := ch.evaluate(PropagationConfig{}.withDefaults(), map[string]IstiodView{"istiod-a": v}, latestNACKs(tc.nacks), nil, t0.Add(now))
			if got.State != tc.want || got.Targeted != tc.targeted {
				t.Errorf("state %s targeted %d, want %s targeted %d", got.State, got.Targeted, tc.want, tc.targeted)
			}
			if !slices.Equal(got.Proxies, tc.outcomes) {
				t.Errorf("proxies = %+v\nwant %+v", got.Proxies, tc.outcomes)
			}
			if !slices.Equal(got.Concurrent, tc.concurrent) {
				t.Errorf("concurrent = %+v\nwant %+v", got.Concurrent, tc.concurrent)
			}
		})
	}
}

// Two changes at once and one NACK naming one of them: only that one is NACKed.
func TestBlameTwoChangesOneNamed(t *testing.T) {
	const text = "Error adding/updating route configuration(s) 9080 (virtual host bad.shop.svc.cluster.local:9080): invalid regex"
	good := MeshChange{Ref: ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "shop", Name: "good"},
		ObservedAt: t0, Reach: Reach{Known: true, Hosts: []string{"good"}, Ports: []uint32{8080}}}
	bad := MeshChange{Ref: ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "shop", Name: "bad"},
		ObservedAt: t0, Reach: Reach{Known: true, Hosts: []string{"bad"}, Ports: []uint32{9080}}}
	s := NewStore(PropagationConfig{}, nil)
	s.ObserveMeshChange(good)
	s.ObserveMeshChange(bad)
	s.ObserveIstiod(view("istiod-a", "", sent("web-1.shop", "", t0.Add(150*time.Millisecond), map[string]string{rds: text}, cds, lds, rds)))
	s.Evaluate(t0.Add(time.Second))
	for _, p := range s.Snapshot().Changes {
		switch p.Change.Ref.Name {
		case "good":
			if p.State != PropagationPropagated || len(p.Concurrent) != 1 || p.Concurrent[0].Named {
				t.Errorf("good change = %s proxies %+v concurrent %+v, want Propagated with the NACK concurrent", p.State, p.Proxies, p.Concurrent)
			}
		case "bad":
			if p.State != PropagationNACKed || len(p.Proxies) != 1 || !p.Proxies[0].Named || p.Proxies[0].Error != text {
				t.Errorf("bad change = %s proxies %+v, want NACKed and named", p.State, p.Proxies)
			}
		}
	}
}

// The store decides once, when it first holds a change, whether a baseline change had
// settled before meshdrift started; one written just before start is still in flight.
func TestSettledAtStart(t *testing.T) {
	started := t0
	grace := 30 * time.Second
	for _, tc := range []struct {
		name string
		c    MeshChange
		want bool
	}{
		{"baseline written long before start", MeshChange{Baseline: true, ObservedAt: t0.Add(-time.Hour)}, true},
		{"baseline written just before start", MeshChange{Baseline: true, ObservedAt: t0.Add(-2 * time.Second)}, false},
		{"a change seen while watching", MeshChange{ObservedAt: t0.Add(-time.Hour)}, false},
	} {
		if got := settledAtStart(tc.c, started, grace); got != tc.want {
			t.Errorf("%s: settled %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBlameNamed(t *testing.T) {
	b := newBlame(MeshChange{Ref: ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "ns", Name: "reviews"},
		Reach: Reach{Known: true, Hosts: []string{"reviews", "*.example.com", "*"}, Ports: []uint32{9080}}}, false)
	for _, tc := range []struct {
		text          string
		ours, foreign bool
	}{
		{"Error adding/updating cluster(s) outbound|9080|v1|reviews.ns.svc.cluster.local: x", true, false},
		{"Error adding/updating cluster(s) outbound_.9080_.v1_.reviews.ns.svc.cluster.local: x", true, false},
		{"Error adding/updating cluster(s) outbound|9080|v1|ratings.ns.svc.cluster.local: x", false, true},
		{"route 9080: bad", true, false},
		{"route http.9080: bad", true, false},
		{"route https.9080.https.gw.ns: bad", true, false},
		{"Error adding/updating listener(s) 0.0.0.0_9080: bad", true, false},
		{"Error adding/updating listener(s) 10.0.0.1_15006: bad", false, false},
		{"virtual host 'shop.example.com:443': bad", true, false},
		{"virtual host 'ratings.ns.svc.cluster.local:9080', duplicate", false, true},
		{"Duplicate entry of domain other.example.org", false, false},
		{"no filter envoy.filters.http.router registered", false, false},
		{"ratings.ns.svc.cluster.local is bad", false, true},
		{"", false, false},
	} {
		ours, foreign := b.named(tc.text)
		if ours != tc.ours || foreign != tc.foreign {
			t.Errorf("named(%q) = ours %v foreign %v, want %v %v", tc.text, ours, foreign, tc.ours, tc.foreign)
		}
	}
}

func TestBlameReach(t *testing.T) {
	route := func(gateways, serviceNS []string) MeshChange {
		return MeshChange{Ref: ObjectRef{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Namespace: "shop", Name: "r"},
			Reach: Reach{Known: true, Gateways: gateways, ServiceParentNamespaces: serviceNS}}
	}
	policy := func(ns string, root bool) MeshChange {
		return MeshChange{Ref: ObjectRef{Group: "security.istio.io", Kind: "AuthorizationPolicy", Namespace: ns, Name: "p"},
			Reach: Reach{Known: true, RootNamespace: root, Selector: true}}
	}
	exported := func(to ...string) MeshChange {
		return MeshChange{Ref: drRef, Reach: Reach{Known: true, ExportTo: to}}
	}
	for _, tc := range []struct {
		name      string
		c         MeshChange
		proxy     string
		proxyType string
		want      bool
	}{
		{"exportTo . same namespace", exported("."), "a.payments", "sidecar", true},
		{"exportTo . other namespace", exported("."), "a.shop", "sidecar", false},
		{"exportTo listed namespace", exported("shop"), "a.shop", "", true},
		{"exportTo listed excludes own", exported("shop"), "a.payments", "", false},
		{"exportTo ~", exported("~"), "a.payments", "", false},
		{"exportTo *", exported("*"), "a.shop", "", true},
		{"exportTo default", exported(), "a.shop", "", true},
		{"DestinationRule workloadSelector: own namespace only", MeshChange{Ref: drRef, Reach: Reach{Known: true, Selector: true}}, "a.shop", "", false},
		{"DestinationRule workloadSelector: own namespace", MeshChange{Ref: drRef, Reach: Reach{Known: true, Selector: true}}, "a.payments", "", true},
		{"policy in its namespace", policy("shop", false), "a.shop", "sidecar", true},
		{"policy in another namespace", policy("shop", false), "a.payments", "sidecar", false},
		{"policy in the root namespace is mesh-wide", policy("istio-system", true), "a.payments", "router", true},
		{"Sidecar never reaches gateways", MeshChange{Ref: ObjectRef{Group: "networking.istio.io", Kind: "Sidecar", Namespace: "shop"}}, "gw.shop", "router", false},
		{"route to a gateway reaches routers in its namespace", route([]string{"ingress/public"}, nil), "gw.ingress", "router", true},
		{"route to a gateway does not reach sidecars", route([]string{"ingress/public"}, nil), "a.ingress", "sidecar", false},
		{"route to a gateway does not reach other namespaces", route([]string{"ingress/public"}, nil), "gw.other", "", false},
		{"producer route reaches every client", route([]string{"mesh"}, []string{"shop"}), "a.payments", "sidecar", true},
		{"consumer route reaches its own namespace", route([]string{"mesh"}, []string{"backend"}), "a.shop", "sidecar", true},
		{"consumer route does not reach other clients", route([]string{"mesh"}, []string{"backend"}), "a.payments", "sidecar", false},
		{"route without parents: fail open", route(nil, nil), "a.payments", "sidecar", true},
		{"pod names may hold dots", exported("."), "web.v2.payments", "", true},
	} {
		if got := newBlame(tc.c, false).reaches(tc.proxy, tc.proxyType); got != tc.want {
			t.Errorf("%s: reaches(%s, %q) = %v, want %v", tc.name, tc.proxy, tc.proxyType, got, tc.want)
		}
	}
}
