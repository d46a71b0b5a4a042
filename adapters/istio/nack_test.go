package istio

import (
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

const testRouteType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

// nackResponse is what istiod's StatusGen.OnNack pushed: the proxy's NACK request, its
// node reduced to the proxy id, as the resource of an istio.io/nack response.
func nackResponse(t testing.TB, reqs ...*discoveryv3.DiscoveryRequest) *discoveryv3.DiscoveryResponse {
	t.Helper()
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: NACKTypeURL}
	for _, r := range reqs {
		a, err := anypb.New(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

func nackRequest(node, typeURL, msg string) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{
		Node:          &corev3.Node{Id: node},
		TypeUrl:       typeURL,
		VersionInfo:   "2026-11-25T15:33:04Z/1",
		ResponseNonce: "2026-11-25T15:33:06Z/2" + "7ce6aa2-4d3b-4041-b8ba-a4a4fd874681",
		ErrorDetail:   &rpcstatus.Status{Code: int32(codes.Internal), Message: msg},
	}
}

func TestParseNACKResponse(t *testing.T) {
	at := time.Date(2026, 11, 25, 15, 33, 6, 0, time.UTC)
	resp := nackResponse(t,
		nackRequest("ratings-v1-xyz.default", testRouteType, "route: invalid regex"),
		nackRequest("sidecar~10.0.0.2~reviews-v1-abc.default~default.svc.cluster.local", testTypeURL, "cluster: bad"),
	)
	got, err := ParseNACKResponse(resp, "istiod-0", at)
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcile.NACKEvent{
		{Istiod: "istiod-0", Proxy: "ratings-v1-xyz.default", TypeURL: testRouteType, Error: "route: invalid regex", At: at},
		{Istiod: "istiod-0", Proxy: "reviews-v1-abc.default", TypeURL: testTypeURL, Error: "cluster: bad", At: at},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("events\n got %+v\nwant %+v", got, want)
	}
	if got, err := ParseNACKResponse(&discoveryv3.DiscoveryResponse{TypeUrl: NACKTypeURL, Nonce: "n"}, "istiod-0", at); err != nil || len(got) != 0 {
		t.Errorf("empty response: %v %v", got, err)
	}
}

func TestParseNACKResponseMalformed(t *testing.T) {
	noDetail := nackRequest("a.ns", testTypeURL, "")
	noDetail.ErrorDetail = nil
	noType := nackRequest("a.ns", "", "x")
	st, _ := structpb.NewStruct(map[string]any{})
	other, _ := anypb.New(st)
	tests := []struct {
		name    string
		resp    *discoveryv3.DiscoveryResponse
		wantErr string
	}{
		{"nil", nil, "nack response is nil"},
		{"other type", &discoveryv3.DiscoveryResponse{TypeUrl: SynczTypeURL}, `response type url "istio.io/debug/syncz", want "istio.io/nack"`},
		{"resource not a request", &discoveryv3.DiscoveryResponse{TypeUrl: NACKTypeURL, Resources: []*anypb.Any{other}},
			`nack resource 0: type url "type.googleapis.com/google.protobuf.Struct", want "type.googleapis.com/envoy.service.discovery.v3.DiscoveryRequest"`},
		{"garbage bytes", &discoveryv3.DiscoveryResponse{TypeUrl: NACKTypeURL, Resources: []*anypb.Any{{TypeUrl: discoveryRequestTypeURL, Value: []byte{0xff}}}}, "nack resource 0: "},
		{"no node", nackResponse(t, nackRequest("", testTypeURL, "x")), "nack resource 0: no node id"},
		{"odd node", nackResponse(t, nackRequest("a~b", testTypeURL, "x")), "nack resource 0: no node id"},
		{"an ack", nackResponse(t, noDetail), `nack resource 0: proxy "a.ns": request has no error detail`},
		{"no type", nackResponse(t, noType), `nack resource 0: proxy "a.ns": request has no type url`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNACKResponse(tt.resp, "istiod-0", time.Now())
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want prefix %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParseNACKResponse(f *testing.F) {
	for _, resp := range []*discoveryv3.DiscoveryResponse{
		nackResponse(f, nackRequest("ratings-v1-xyz.default", testRouteType, "route: invalid regex")),
		nackResponse(f, nackRequest("sidecar~10.0.0.2~a.b~b.svc.cluster.local", testTypeURL, "")),
		{TypeUrl: NACKTypeURL, Nonce: "n"},
	} {
		b, err := proto.Marshal(resp)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp discoveryv3.DiscoveryResponse
		if proto.Unmarshal(b, &resp) != nil {
			return
		}
		events, err := ParseNACKResponse(&resp, "istiod-0", time.Time{})
		if err != nil {
			return
		}
		for _, ev := range events {
			if ev.Proxy == "" || ev.TypeURL == "" || strings.Contains(ev.Proxy, "~") {
				t.Fatalf("event %+v", ev)
			}
		}
	})
}

// An istiod that streams istio.io/nack (older releases; the in-process server speaks
// their format because the pinned istiod cannot) gets each NACK to the sink as it is
// pushed, well ahead of the next poll.
func TestNACKStreamDeliversEvents(t *testing.T) {
	resp, err := UnmarshalSynczXDSJSON(readGolden(t, "syncz-xds-1-initial.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newADSServer(t, nil, resp)
	r, rec, reg, logs := newTestReader(t, ReaderConfig{Transport: TransportXDSPlaintext, Interval: time.Hour},
		[]Target{{Name: "istiod-old", Addr: srv.addr}})
	runReader(t, r)
	testbed.Eventually(t, 10*time.Second, "nack subscription", func() (bool, string) { return srv.nackSubscribers() == 1, "" })

	const reason = "route_config: invalid regex in virtual host ratings"
	pushed := time.Now()
	srv.pushNACK(nackResponse(t, nackRequest("ratings-v1-xyz.default", testRouteType, reason)))
	var got reconcile.NACKEvent
	testbed.Eventually(t, 2*time.Second, "NACK event", func() (bool, string) {
		nacks := rec.snapshot().nacks
		if len(nacks) == 0 {
			return false, "none"
		}
		got = nacks[0]
		return true, ""
	})
	t.Logf("NACK pushed by istiod -> ObserveNACK: %s", got.At.Sub(pushed))
	if got.Istiod != "istiod-old" || got.Proxy != "ratings-v1-xyz.default" || got.TypeURL != testRouteType || got.Error != reason || got.At.Before(pushed) {
		t.Errorf("event %+v", got)
	}
	if m := exposition(t, reg, "meshdrift_istiod_nack_events_total"); !strings.HasSuffix(m, "meshdrift_istiod_nack_events_total 1") {
		t.Errorf("metrics:\n%s", m)
	}
	// Polls that show the NACK the stream announced keep the stream.
	srv.setSyncz(synczWithNACK(t, "ratings-v1-xyz.default", testRouteType, reason, pushed))
	r.SetInterval(MinInterval)
	time.Sleep(nackEvidenceGrace + 500*time.Millisecond)
	if strings.Contains(logs.String(), "istiod does not stream NACKs") || srv.nackSubscribers() != 1 {
		t.Fatalf("a working stream was dropped:\n%s", logs)
	}
	// istiod restarts: the subscription comes back by itself.
	srv.restartStreams()
	testbed.Eventually(t, 10*time.Second, "resubscribed after restart", func() (bool, string) { return srv.nackSubscribers() == 1, "" })
	srv.pushNACK(nackResponse(t, nackRequest("ratings-v1-xyz.default", testRouteType, "again")))
	testbed.Eventually(t, 2*time.Second, "NACK after restart", func() (bool, string) { return len(rec.snapshot().nacks) == 2, "" })
}

// An istiod that refuses the subscription, as the pinned one does, leaves polling alone
// and is logged once at info.
func TestNACKStreamRefusedFallsBackQuietly(t *testing.T) {
	resp, err := UnmarshalSynczXDSJSON(readGolden(t, "syncz-xds-1-initial.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newADSServer(t, nil, resp)
	srv.nackErr = status.Error(codes.Unauthenticated, "the api generator requires an authenticated control-plane identity")
	r, rec, _, logs := newTestReader(t, ReaderConfig{Transport: TransportXDSPlaintext, Interval: MinInterval},
		[]Target{{Name: "istiod-new", Addr: srv.addr}})
	runReader(t, r)
	testbed.Eventually(t, 10*time.Second, "fallback logged", func() (bool, string) {
		return strings.Contains(logs.String(), "istiod does not stream NACKs"), logs.String()
	})
	testbed.Eventually(t, 10*time.Second, "polls go on", func() (bool, string) {
		_, _, n := srv.seen()
		return n >= 5, ""
	})
	out := logs.String()
	if n := strings.Count(out, "istiod does not stream NACKs"); n != 1 {
		t.Errorf("fallback logged %d times:\n%s", n, out)
	}
	if !strings.Contains(out, "level=INFO msg=\"istiod does not stream NACKs; they show at the next poll\" component=istiod-reader istiod=istiod-new") {
		t.Errorf("log:\n%s", out)
	}
	for _, st := range rec.snapshot().instances() {
		if !st.Up {
			t.Errorf("status %+v", st)
		}
	}
}

// synczWithNACK is a syncz answer with one proxy in ERROR for typeURL since sentAt.
func synczWithNACK(t *testing.T, proxy, typeURL, reason string, sentAt time.Time) *discoveryv3.DiscoveryResponse {
	t.Helper()
	md := map[string]any{"CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.31.0", "NAMESPACE": "default"}
	resp := synczResponse(t, `{"Component":"istiod","ID":"istiod-0","Info":{"version":"1.31-dev"}}`,
		clientConfig(t, proxy, md, &statusv3.ClientConfig_GenericXdsConfig{
			TypeUrl:      typeURL,
			ConfigStatus: statusv3.ConfigStatus_ERROR,
			LastUpdated:  timestamppb.New(sentAt),
			ErrorState:   &adminv3.UpdateFailureState{Details: reason},
		}))
	resp.VersionInfo = "2026-11-25T15:33:06Z/2"
	return resp
}

// An istiod that answers the subscription but never streams a NACK (the pinned istiod
// without debug endpoint authentication, or with a verified caller) is found out by the
// polls: a NACK sent after the subscription that no event announced ends the stream,
// logged once at info.
func TestNACKStreamSilentIsJudgedByPolls(t *testing.T) {
	resp, err := UnmarshalSynczXDSJSON(readGolden(t, "syncz-xds-1-initial.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newADSServer(t, nil, resp)
	r, rec, _, logs := newTestReader(t, ReaderConfig{Transport: TransportXDSPlaintext, Interval: MinInterval},
		[]Target{{Name: "istiod-new", Addr: srv.addr}})
	runReader(t, r)
	testbed.Eventually(t, 10*time.Second, "nack subscription", func() (bool, string) { return srv.nackSubscribers() == 1, "" })
	// A NACK from before the subscription proves nothing.
	srv.setSyncz(synczWithNACK(t, "ratings-v1-xyz.default", testRouteType, "old", time.Now().Add(-time.Minute)))
	time.Sleep(nackEvidenceGrace + 500*time.Millisecond)
	if srv.nackSubscribers() != 1 || strings.Contains(logs.String(), "istiod does not stream NACKs") {
		t.Fatalf("stream dropped for a NACK older than the subscription:\n%s", logs)
	}
	srv.setSyncz(synczWithNACK(t, "ratings-v1-xyz.default", testRouteType, "route: invalid regex", time.Now()))
	seen := time.Now()
	testbed.Eventually(t, 10*time.Second, "fallback", func() (bool, string) {
		return strings.Contains(logs.String(), "istiod does not stream NACKs"), logs.String()
	})
	if d := time.Since(seen); d < nackEvidenceGrace {
		t.Errorf("judged after %s, before the grace of %s", d, nackEvidenceGrace)
	}
	want := `level=INFO msg="istiod does not stream NACKs; they show at the next poll" component=istiod-reader istiod=istiod-new reason="istiod does not stream istio.io/nack: no event for the NACK of ` + testRouteType + ` by ratings-v1-xyz.default, seen by polls for `
	if out := logs.String(); !strings.Contains(out, want) || strings.Count(out, "istiod does not stream NACKs") != 1 {
		t.Errorf("log:\n%s\nwant a line with %s", out, want)
	}
	testbed.Eventually(t, 5*time.Second, "subscription ended", func() (bool, string) { return srv.nackSubscribers() == 0, "" })
	if v, ok := rec.lastView("istiod-new"); !ok || len(v.Proxies) != 1 || v.Proxies[0].Types[0].Error != "route: invalid regex" {
		t.Errorf("the polls go on: %+v", v)
	}
}
