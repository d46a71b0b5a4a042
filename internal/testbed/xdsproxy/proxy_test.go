package xdsproxy

import (
	"context"
	"errors"
	"maps"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

const reviewsEDS = "outbound|9080||reviews.default.svc.cluster.local"

func testConfig(addr string) Config {
	return Config{
		Addr:           addr,
		PodName:        "reviews-v1-abc",
		Namespace:      "default",
		IP:             "10.0.0.1",
		Labels:         map[string]string{"app": "reviews", "version": "v1"},
		ServiceAccount: "bookinfo-reviews",
		WorkloadName:   "reviews-v1",
		ConnectBackoff: 10 * time.Millisecond,
	}
}

func startProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	p := New(cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

func waitFor(t *testing.T, p *Proxy, what string, cond func(Snapshot) bool) Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := p.WaitFor(ctx, cond); err != nil {
		t.Fatalf("wait for %s: %v", what, err)
	}
	return p.Snapshot()
}

func acked(typeURL, version string) func(Snapshot) bool {
	return func(s Snapshot) bool { return s.Type(typeURL).ACKedVersion == version }
}

// waitInitialACKs waits until both sides saw the ACKs of CDS and LDS v1, so later requests can be
// told apart with srv.mark.
func waitInitialACKs(t *testing.T, srv *fakeADS, p *Proxy) {
	t.Helper()
	for _, typeURL := range []string{TypeCluster, TypeListener} {
		srv.waitRequest(t, 0, func(r *discoveryv3.DiscoveryRequest) bool {
			return r.GetTypeUrl() == typeURL && r.GetVersionInfo() == "v1"
		})
	}
	waitFor(t, p, "initial ACKs", func(s Snapshot) bool {
		return acked(TypeCluster, "v1")(s) && acked(TypeListener, "v1")(s)
	})
}

func edsCluster(name, serviceName string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: serviceName},
	}
}

func staticCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
}

func hcmFilter(t *testing.T, hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	t.Helper()
	a, err := anypb.New(hcm)
	if err != nil {
		t.Fatalf("marshal hcm: %v", err)
	}
	return &listenerv3.Filter{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a},
	}
}

func rdsHCM(route string) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     "outbound_0.0.0.0_" + route,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: route}},
	}
}

func routeConfig(name string, routeNames ...string) *routev3.RouteConfiguration {
	vh := &routev3.VirtualHost{Name: "reviews.default.svc.cluster.local:9080", Domains: []string{"reviews"}}
	for _, r := range routeNames {
		vh.Routes = append(vh.Routes, &routev3.Route{Name: r})
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}}
}

func hasRoute(rc *routev3.RouteConfiguration, name string) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() == name {
				return true
			}
		}
	}
	return false
}

func TestStartSendsNodeAndWildcardSubscriptions(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "v1", staticCluster("BlackHoleCluster"))
	srv.set(t, TypeListener, "v1")
	p := startProxy(t, testConfig(srv.addr))

	cds := srv.waitRequest(t, 0, ofType(TypeCluster))
	lds := srv.waitRequest(t, 0, ofType(TypeListener))
	if reqs := srv.requestsSince(0); reqs[0] != cds {
		t.Errorf("first request is %s, want CDS", reqs[0].GetTypeUrl())
	}
	if lds.GetNode() != nil {
		t.Errorf("node sent again on LDS request")
	}
	for _, r := range []*discoveryv3.DiscoveryRequest{cds, lds} {
		if len(r.GetResourceNames()) != 0 || r.GetResponseNonce() != "" || r.GetVersionInfo() != "" {
			t.Errorf("initial %s request = %v, want wildcard without version and nonce", r.GetTypeUrl(), r)
		}
	}

	node := cds.GetNode()
	if want := "sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local"; node.GetId() != want {
		t.Errorf("node id = %q, want %q", node.GetId(), want)
	}
	if node.GetCluster() != "reviews.default" {
		t.Errorf("node cluster = %q, want reviews.default", node.GetCluster())
	}
	if p.Name() != "reviews-v1-abc.default" {
		t.Errorf("Name() = %q", p.Name())
	}
	meta := node.GetMetadata().GetFields()
	for key, want := range map[string]string{
		"ISTIO_VERSION":     "1.31.0",
		"CLUSTER_ID":        "Kubernetes",
		"NAMESPACE":         "default",
		"NAME":              "reviews-v1-abc",
		"INSTANCE_IPS":      "10.0.0.1",
		"SERVICE_ACCOUNT":   "bookinfo-reviews",
		"MESH_ID":           "cluster.local",
		"WORKLOAD_NAME":     "reviews-v1",
		"INTERCEPTION_MODE": "REDIRECT",
	} {
		if got := meta[key].GetStringValue(); got != want {
			t.Errorf("metadata %s = %q, want %q", key, got, want)
		}
	}
	if got := meta["PROXY_CONFIG"].GetStructValue().GetFields()["discoveryAddress"].GetStringValue(); got != srv.addr {
		t.Errorf("PROXY_CONFIG.discoveryAddress = %q, want %q", got, srv.addr)
	}
	if got := meta["LABELS"].GetStructValue().GetFields()["app"].GetStringValue(); got != "reviews" {
		t.Errorf("LABELS.app = %q, want reviews", got)
	}
	if !p.Snapshot().Connected {
		t.Errorf("not connected after Start")
	}
}

func TestACKCarriesVersionNonceAndNames(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "v1", staticCluster("BlackHoleCluster"))
	srv.set(t, TypeListener, "v1")
	p := startProxy(t, testConfig(srv.addr))
	waitInitialACKs(t, srv, p)

	from := srv.mark()
	nonce := srv.set(t, TypeCluster, "v2", staticCluster("BlackHoleCluster"), staticCluster("PassthroughCluster"))
	ack := srv.waitRequest(t, from, ackOf(TypeCluster, nonce))
	if ack.GetVersionInfo() != "v2" || ack.GetErrorDetail() != nil || len(ack.GetResourceNames()) != 0 {
		t.Errorf("ACK = %v, want version v2, no error, wildcard", ack)
	}
	// The proxy records an ACK once it is sent, so the server may see it first.
	st := waitFor(t, p, "ACK of v2 recorded", acked(TypeCluster, "v2")).Type(TypeCluster)
	if st.ACKedNonce != nonce || st.ACKs != 2 || st.Responses != 2 || st.Pending {
		t.Errorf("CDS state = %+v", st)
	}
	if got := slices.Sorted(maps.Keys(p.Snapshot().Clusters())); !slices.Equal(got, []string{"BlackHoleCluster", "PassthroughCluster"}) {
		t.Errorf("clusters = %v", got)
	}
	if _, ok := p.Received(TypeCluster)["PassthroughCluster"].(*clusterv3.Cluster); !ok {
		t.Errorf("Received(CDS) lacks decoded PassthroughCluster")
	}
}

func TestNACKCarriesLastAcceptedVersionAndErrorDetail(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "v1", staticCluster("BlackHoleCluster"))
	srv.set(t, TypeListener, "v1")
	p := startProxy(t, testConfig(srv.addr))
	waitInitialACKs(t, srv, p)

	p.SetMode(ModeNACK)
	p.SetNACKMessage("Error adding/updating listener(s) virtualOutbound: boom")
	from := srv.mark()
	nonce := srv.set(t, TypeCluster, "v2", staticCluster("PassthroughCluster"))
	nack := srv.waitRequest(t, from, ackOf(TypeCluster, nonce))
	if nack.GetVersionInfo() != "v1" {
		t.Errorf("NACK version = %q, want last accepted v1", nack.GetVersionInfo())
	}
	if d := nack.GetErrorDetail(); d.GetCode() != 13 || d.GetMessage() != "Error adding/updating listener(s) virtualOutbound: boom" {
		t.Errorf("NACK error_detail = %v, want code 13 and the message", d)
	}
	st := waitFor(t, p, "NACK recorded", func(s Snapshot) bool { return s.Type(TypeCluster).NACKs == 1 }).Type(TypeCluster)
	want := NACK{Version: "v1", RejectedVersion: "v2", Nonce: nonce, Message: "Error adding/updating listener(s) virtualOutbound: boom"}
	if st.LastNACK == nil || st.LastNACK.Version != want.Version || st.LastNACK.RejectedVersion != want.RejectedVersion ||
		st.LastNACK.Nonce != want.Nonce || st.LastNACK.Message != want.Message {
		t.Errorf("LastNACK = %+v, want %+v", st.LastNACK, want)
	}
	if st.ACKedVersion != "v1" || st.NACKs != 1 || st.Version != "v2" {
		t.Errorf("CDS state = %+v", st)
	}
	// Rejected resources are still visible to tests.
	if _, ok := p.Snapshot().Clusters()["PassthroughCluster"]; !ok {
		t.Errorf("rejected cluster not kept")
	}

	// A second NACK still reports the last accepted version, not the rejected one.
	from = srv.mark()
	nonce = srv.set(t, TypeCluster, "v3", staticCluster("PassthroughCluster"))
	if nack := srv.waitRequest(t, from, ackOf(TypeCluster, nonce)); nack.GetVersionInfo() != "v1" || nack.GetErrorDetail() == nil {
		t.Errorf("second NACK = %v, want version v1 with error_detail", nack)
	}

	p.SetMode(ModeACK)
	from = srv.mark()
	nonce = srv.set(t, TypeCluster, "v4", staticCluster("PassthroughCluster"))
	if ack := srv.waitRequest(t, from, ackOf(TypeCluster, nonce)); ack.GetVersionInfo() != "v4" || ack.GetErrorDetail() != nil {
		t.Errorf("ACK after NACKs = %v, want version v4 without error", ack)
	}
}

func TestSilentSendsNothingUntilAnswerPending(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "v1", staticCluster("BlackHoleCluster"))
	srv.set(t, TypeListener, "v1")
	srv.set(t, TypeEndpoint, "v1", &endpointv3.ClusterLoadAssignment{ClusterName: reviewsEDS})
	p := startProxy(t, testConfig(srv.addr))
	waitInitialACKs(t, srv, p)

	p.SetMode(ModeSilent)
	from := srv.mark()
	nonce := srv.set(t, TypeCluster, "v2", edsCluster("outbound|9080||reviews.default.svc.cluster.local", reviewsEDS))
	snap := waitFor(t, p, "CDS v2 received", func(s Snapshot) bool { return s.Type(TypeCluster).Version == "v2" })
	if st := snap.Type(TypeCluster); !st.Pending || st.ACKedVersion != "v1" {
		t.Errorf("CDS state while silent = %+v, want pending with v1 accepted", st)
	}
	time.Sleep(300 * time.Millisecond)
	if reqs := srv.requestsSince(from); len(reqs) != 0 {
		t.Fatalf("silent proxy sent %v", reqs)
	}

	p.SetMode(ModeACK)
	if err := p.AnswerPending(); err != nil {
		t.Fatalf("answer pending: %v", err)
	}
	if ack := srv.waitRequest(t, from, ackOf(TypeCluster, nonce)); ack.GetVersionInfo() != "v2" {
		t.Errorf("late ACK = %v, want version v2", ack)
	}
	// The subscription held back while silent follows the ACK.
	eds := srv.waitRequest(t, from, ofType(TypeEndpoint))
	if !slices.Equal(eds.GetResourceNames(), []string{reviewsEDS}) {
		t.Errorf("EDS names = %v", eds.GetResourceNames())
	}
	waitFor(t, p, "EDS ACK", acked(TypeEndpoint, "v1"))
}

func TestSubscriptionsFollowClustersAndListeners(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "c1",
		edsCluster(reviewsEDS, reviewsEDS),
		edsCluster("legacy", ""), // empty service_name: Envoy uses the cluster name
		staticCluster("BlackHoleCluster"),
	)
	tcp, err := anypb.New(staticCluster("not-an-hcm"))
	if err != nil {
		t.Fatal(err)
	}
	srv.set(t, TypeListener, "l1",
		&listenerv3.Listener{
			Name:         "0.0.0.0_9080",
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, rdsHCM("9080"))}}},
		},
		&listenerv3.Listener{
			Name: "virtualOutbound",
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
				{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tcp}},
			}}},
			DefaultFilterChain: &listenerv3.FilterChain{Filters: []*listenerv3.Filter{hcmFilter(t, rdsHCM("default-route"))}},
		},
		&listenerv3.Listener{
			Name: "inline",
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, &hcmv3.HttpConnectionManager{
				RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routeConfig("inline")},
			})}}},
		},
	)
	srv.set(t, TypeEndpoint, "e1",
		&endpointv3.ClusterLoadAssignment{ClusterName: reviewsEDS},
		&endpointv3.ClusterLoadAssignment{ClusterName: "legacy"},
	)
	srv.set(t, TypeRoute, "r1", routeConfig("9080", "reviews-v1"), routeConfig("default-route"))
	p := startProxy(t, testConfig(srv.addr))

	eds := srv.waitRequest(t, 0, ofType(TypeEndpoint))
	if want := []string{"legacy", reviewsEDS}; !slices.Equal(eds.GetResourceNames(), want) {
		t.Errorf("EDS names = %v, want %v", eds.GetResourceNames(), want)
	}
	rds := srv.waitRequest(t, 0, ofType(TypeRoute))
	if want := []string{"9080", "default-route"}; !slices.Equal(rds.GetResourceNames(), want) {
		t.Errorf("RDS names = %v, want %v", rds.GetResourceNames(), want)
	}
	waitFor(t, p, "route reviews-v1", func(s Snapshot) bool {
		return hasRoute(s.RouteConfigs()["9080"], "reviews-v1") && len(s.Endpoints()) == 2 && acked(TypeEndpoint, "e1")(s)
	})

	// An RDS push is seen by tests as it arrives.
	srv.set(t, TypeRoute, "r2", routeConfig("9080", "reviews-v2"), routeConfig("default-route"))
	waitFor(t, p, "route reviews-v2", func(s Snapshot) bool { return hasRoute(s.RouteConfigs()["9080"], "reviews-v2") })

	// Dropping a cluster shrinks the EDS subscription, sent with the EDS type's own version and
	// nonce so istiod takes it as current.
	edsState := p.Snapshot().Type(TypeEndpoint)
	from := srv.mark()
	srv.set(t, TypeCluster, "c2", edsCluster(reviewsEDS, reviewsEDS))
	eds = srv.waitRequest(t, from, withNames(TypeEndpoint, reviewsEDS))
	if eds.GetVersionInfo() != "e1" || eds.GetResponseNonce() != edsState.ACKedNonce {
		t.Errorf("EDS change = %v, want version e1 and nonce %s", eds, edsState.ACKedNonce)
	}
	waitFor(t, p, "legacy endpoints dropped", func(s Snapshot) bool {
		_, stale := s.Endpoints()["legacy"]
		return !stale && slices.Equal(s.Type(TypeEndpoint).Subscribed, []string{reviewsEDS})
	})

	from = srv.mark()
	srv.set(t, TypeListener, "l2", &listenerv3.Listener{
		Name:         "0.0.0.0_9080",
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, rdsHCM("9080"))}}},
	})
	if rds := srv.waitRequest(t, from, withNames(TypeRoute, "9080")); rds.GetVersionInfo() != "r2" {
		t.Errorf("RDS change = %v, want version r2", rds)
	}
}

func TestTypeModeOverridesGlobalMode(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "c1", staticCluster("BlackHoleCluster"))
	srv.set(t, TypeListener, "l1", &listenerv3.Listener{
		Name:         "0.0.0.0_9080",
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, rdsHCM("9080"))}}},
	})
	srv.set(t, TypeRoute, "r1", routeConfig("9080", "reviews-v1"))
	p := New(testConfig(srv.addr))
	p.SetTypeMode(TypeRoute, ModeNACK)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()

	snap := waitFor(t, p, "RDS NACK and LDS ACK", func(s Snapshot) bool {
		return s.Type(TypeRoute).NACKs == 1 && acked(TypeListener, "l1")(s)
	})
	if n := snap.Type(TypeRoute).LastNACK; n.Version != "" || n.RejectedVersion != "r1" {
		t.Errorf("RDS NACK = %+v, want version \"\" rejecting r1", n)
	}

	p.ClearTypeMode(TypeRoute)
	from := srv.mark()
	nonce := srv.set(t, TypeRoute, "r2", routeConfig("9080", "reviews-v2"))
	if ack := srv.waitRequest(t, from, ackOf(TypeRoute, nonce)); ack.GetVersionInfo() != "r2" || ack.GetErrorDetail() != nil {
		t.Errorf("RDS after ClearTypeMode = %v, want ACK of r2", ack)
	}
}

func TestExtraWatchesIncludingECDSFromListeners(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "c1")
	hcm := rdsHCM("9080")
	hcm.HttpFilters = []*hcmv3.HttpFilter{
		{Name: "istio.stats", ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
			TypeUrls:     []string{"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"},
		}}},
		{Name: "envoy.filters.http.router"},
	}
	cfg := testConfig(srv.addr)
	cfg.ExtraWatches = []Watch{
		{TypeURL: TypeProxyConfig},
		{TypeURL: TypeExtensionConfig, ResourceNames: []string{"explicit"}},
	}
	startProxy(t, cfg)

	if pcds := srv.waitRequest(t, 0, ofType(TypeProxyConfig)); len(pcds.GetResourceNames()) != 0 {
		t.Errorf("PCDS names = %v, want wildcard", pcds.GetResourceNames())
	}
	if ecds := srv.waitRequest(t, 0, ofType(TypeExtensionConfig)); !slices.Equal(ecds.GetResourceNames(), []string{"explicit"}) {
		t.Errorf("initial ECDS names = %v, want [explicit]", ecds.GetResourceNames())
	}
	from := srv.mark()
	srv.set(t, TypeListener, "l1", &listenerv3.Listener{
		Name:         "0.0.0.0_9080",
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, hcm)}}},
	})
	ecds := srv.waitRequest(t, from, ofType(TypeExtensionConfig))
	if want := []string{"explicit", "istio.stats"}; !slices.Equal(ecds.GetResourceNames(), want) {
		t.Errorf("ECDS names = %v, want %v", ecds.GetResourceNames(), want)
	}
}

func TestStartRetriesResourceExhausted(t *testing.T) {
	srv := newFakeADS(t)
	srv.rejectFirst = 2
	srv.set(t, TypeCluster, "v1")
	p := startProxy(t, testConfig(srv.addr))
	if n := srv.streamCount(); n != 3 {
		t.Errorf("streams = %d, want 3 (two refused)", n)
	}
	if !p.Snapshot().Connected {
		t.Errorf("not connected")
	}
}

func TestStartGivesUpAfterMaxAttempts(t *testing.T) {
	srv := newFakeADS(t)
	srv.rejectFirst = 100
	srv.set(t, TypeCluster, "v1")
	cfg := testConfig(srv.addr)
	cfg.MaxConnectAttempts = 3
	p := New(cfg)
	err := p.Start(t.Context())
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("start error = %v, want ResourceExhausted", err)
	}
	if n := srv.streamCount(); n != 3 {
		t.Errorf("streams = %d, want 3", n)
	}
	if err := p.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	checkNoProxyGoroutines(t)
}

func TestStartHonoursContext(t *testing.T) {
	srv := newFakeADS(t) // no content: never answers, like an istiod that hangs
	p := New(testConfig(srv.addr))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := p.Start(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start error = %v, want deadline exceeded", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	checkNoProxyGoroutines(t)
}

func TestStartRejectsInvalidConfig(t *testing.T) {
	err := New(Config{IP: "not-an-ip"}).Start(t.Context())
	if err == nil {
		t.Fatal("start with empty config succeeded")
	}
	for _, want := range []string{"addr is required", "pod name is required", "namespace is required", "ip: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestCloseDisconnectsCleanly(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "v1")
	p := New(testConfig(srv.addr))
	if err := p.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-srv.ended:
		if err != nil {
			t.Errorf("server stream ended with %v, want a clean half-close", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server stream still open after Close")
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done not closed after Close")
	}
	snap := p.Snapshot()
	if snap.Connected || !snap.Stopped || snap.Err != nil {
		t.Errorf("after Close: connected=%v stopped=%v err=%v", snap.Connected, snap.Stopped, snap.Err)
	}
	if err := p.WaitFor(t.Context(), func(s Snapshot) bool { return false }); !errors.Is(err, ErrStopped) {
		t.Errorf("WaitFor after Close = %v, want ErrStopped", err)
	}
	if err := p.AnswerPending(); !errors.Is(err, ErrStopped) {
		t.Errorf("AnswerPending after Close = %v, want ErrStopped", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := p.Start(t.Context()); err == nil {
		t.Error("Start after Close succeeded")
	}
	checkNoProxyGoroutines(t)
}

func TestServerEndingStreamIsReported(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "v1")
	p := startProxy(t, testConfig(srv.addr))
	srv.grpc.Stop()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the server went away")
	}
	if p.Err() == nil {
		t.Error("Err() = nil after the server went away")
	}
}

func TestWaitForHonoursContext(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "v1")
	p := startProxy(t, testConfig(srv.addr))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.WaitFor(ctx, func(Snapshot) bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor = %v, want deadline exceeded", err)
	}
}

func FuzzDecodeResources(f *testing.F) {
	l, err := proto.Marshal(&listenerv3.Listener{Name: "l", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: typeHCM}},
	}}}}})
	if err != nil {
		f.Fatal(err)
	}
	c, err := proto.Marshal(edsCluster("c", ""))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(TypeListener, l)
	f.Add(TypeCluster, c)
	f.Add("type.googleapis.com/envoy.service.discovery.v3.Resource", []byte{0x1a, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, typeURL string, value []byte) {
		res := decodeResources([]*anypb.Any{{TypeUrl: typeURL, Value: value}})
		if len(res) != 1 || res[0].name == "" {
			t.Fatalf("decoded %v", res)
		}
		_ = edsNames(res)
		_ = listenerRefs(res)
	})
}

// checkNoProxyGoroutines fails when a proxy or grpc client goroutine outlives Close.
func checkNoProxyGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		leaked := ""
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "xdsproxy.(*Proxy)") || strings.Contains(g, "transport.(*http2Client)") {
				leaked = g
				break
			}
		}
		if leaked == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine leaked:\n%s", leaked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NACKWhenContains rejects only the responses with a resource that contains the text, and
// names that resource the way Envoy does, so a test can reject one object's config among
// others.
func TestNACKWhenContains(t *testing.T) {
	srv := newFakeADS(t)
	srv.set(t, TypeCluster, "v1", staticCluster("BlackHoleCluster"))
	srv.set(t, TypeListener, "v1")
	cfg := testConfig(srv.addr)
	cfg.NACKWhenContains = "bad.shop"
	cfg.NACKMessage = "invalid lb policy"
	p := startProxy(t, cfg)
	waitInitialACKs(t, srv, p)

	from := srv.mark()
	nonce := srv.set(t, TypeCluster, "v2", staticCluster("outbound|8080||good.shop.svc.cluster.local"), staticCluster("outbound|9080||bad.shop.svc.cluster.local"))
	nack := srv.waitRequest(t, from, ackOf(TypeCluster, nonce))
	const want = "Error adding/updating cluster(s) outbound|9080||bad.shop.svc.cluster.local: invalid lb policy"
	if nack.GetVersionInfo() != "v1" || nack.GetErrorDetail().GetMessage() != want {
		t.Errorf("answer = version %q error %v, want a NACK of v2 saying %q", nack.GetVersionInfo(), nack.GetErrorDetail(), want)
	}

	// Without the offending resource the same proxy ACKs.
	from = srv.mark()
	nonce = srv.set(t, TypeCluster, "v3", staticCluster("outbound|8080||good.shop.svc.cluster.local"))
	if ack := srv.waitRequest(t, from, ackOf(TypeCluster, nonce)); ack.GetVersionInfo() != "v3" || ack.GetErrorDetail() != nil {
		t.Errorf("answer = %v, want an ACK of v3", ack)
	}

	// Switched off, it ACKs what it rejected before.
	p.SetNACKWhenContains("")
	from = srv.mark()
	nonce = srv.set(t, TypeCluster, "v4", staticCluster("outbound|9080||bad.shop.svc.cluster.local"))
	if ack := srv.waitRequest(t, from, ackOf(TypeCluster, nonce)); ack.GetVersionInfo() != "v4" || ack.GetErrorDetail() != nil {
		t.Errorf("answer = %v, want an ACK of v4", ack)
	}
}

func TestRejectedNamesOfRoutes(t *testing.T) {
	good := routeConfig("8080", "good-route")
	bad := routeConfig("9080", "meshdrift-reject-me")
	var res []namedResource
	for _, rc := range []*routev3.RouteConfiguration{good, bad} {
		a, err := anypb.New(rc)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, decodeResources([]*anypb.Any{a})...)
	}
	const want = "Error adding/updating route configuration(s) 9080 (virtual host reviews.default.svc.cluster.local:9080)"
	if got := rejectedNames(TypeRoute, res, "reject-me"); got != want {
		t.Errorf("rejectedNames = %q, want %q", got, want)
	}
	if got := rejectedNames(TypeRoute, res, "absent"); got != "" {
		t.Errorf("rejectedNames without a match = %q", got)
	}
}
