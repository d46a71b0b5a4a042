package istio

import (
	"reflect"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshdrift/meshdrift/reconcile"
)

const testTypeURL = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

// synczResponse builds a syncz response around the given client configs.
func synczResponse(t *testing.T, identifier string, configs ...proto.Message) *discoveryv3.DiscoveryResponse {
	t.Helper()
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: SynczTypeURL}
	if identifier != "" {
		resp.ControlPlane = &corev3.ControlPlane{Identifier: identifier}
	}
	for _, c := range configs {
		a, err := anypb.New(c)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

// clientConfig is one proxy with the given metadata and per-type configs.
func clientConfig(t *testing.T, id string, md map[string]any, configs ...*statusv3.ClientConfig_GenericXdsConfig) *statusv3.ClientConfig {
	t.Helper()
	st, err := structpb.NewStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	return &statusv3.ClientConfig{Node: &corev3.Node{Id: id, Metadata: st}, GenericXdsConfigs: configs}
}

func TestParseSynczXDSMalformed(t *testing.T) {
	ok := &statusv3.ClientConfig_GenericXdsConfig{TypeUrl: testTypeURL, ConfigStatus: statusv3.ConfigStatus_SYNCED}
	tests := []struct {
		name    string
		resp    func(t *testing.T) *discoveryv3.DiscoveryResponse
		wantErr string
	}{
		{
			"nil response",
			func(*testing.T) *discoveryv3.DiscoveryResponse { return nil },
			"syncz response is nil",
		},
		{
			"another type",
			func(*testing.T) *discoveryv3.DiscoveryResponse {
				return &discoveryv3.DiscoveryResponse{TypeUrl: testTypeURL}
			},
			`response type url "type.googleapis.com/envoy.config.cluster.v3.Cluster", want "istio.io/debug/syncz"`,
		},
		{
			"identifier not json",
			func(t *testing.T) *discoveryv3.DiscoveryResponse { return synczResponse(t, "istiod-0") },
			"decode control plane identifier: invalid character 'i' looking for beginning of value",
		},
		{
			"resource of another type",
			func(t *testing.T) *discoveryv3.DiscoveryResponse { return synczResponse(t, "", &structpb.Struct{}) },
			`syncz resource 0: type url "type.googleapis.com/google.protobuf.Struct", want "type.googleapis.com/envoy.service.status.v3.ClientConfig"`,
		},
		{
			"nil resource",
			func(t *testing.T) *discoveryv3.DiscoveryResponse {
				return &discoveryv3.DiscoveryResponse{TypeUrl: SynczTypeURL, Resources: []*anypb.Any{nil}}
			},
			`syncz resource 0: type url "", want "type.googleapis.com/envoy.service.status.v3.ClientConfig"`,
		},
		{
			"no node id",
			func(t *testing.T) *discoveryv3.DiscoveryResponse {
				return synczResponse(t, "", clientConfig(t, "", nil, ok))
			},
			"syncz resource 0: client config has no node id",
		},
		{
			"metadata not a string",
			func(t *testing.T) *discoveryv3.DiscoveryResponse {
				return synczResponse(t, "", clientConfig(t, "a.default", map[string]any{"CLUSTER_ID": 1}, ok))
			},
			`syncz resource 0: proxy "a.default": node metadata CLUSTER_ID is not a string`,
		},
		{
			"empty type url",
			func(t *testing.T) *discoveryv3.DiscoveryResponse {
				return synczResponse(t, "", clientConfig(t, "a.default", nil, &statusv3.ClientConfig_GenericXdsConfig{ConfigStatus: statusv3.ConfigStatus_SYNCED}))
			},
			`syncz resource 0: proxy "a.default": xds config with an empty type url`,
		},
		{
			"unknown status",
			func(t *testing.T) *discoveryv3.DiscoveryResponse {
				return synczResponse(t, "", clientConfig(t, "a.default", nil, &statusv3.ClientConfig_GenericXdsConfig{TypeUrl: testTypeURL}))
			},
			`syncz resource 0: proxy "a.default": type "type.googleapis.com/envoy.config.cluster.v3.Cluster": config status UNKNOWN is not one istiod reports`,
		},
		{
			"status from a newer protocol",
			func(t *testing.T) *discoveryv3.DiscoveryResponse {
				return synczResponse(t, "", clientConfig(t, "a.default", nil, &statusv3.ClientConfig_GenericXdsConfig{TypeUrl: testTypeURL, ConfigStatus: 9}))
			},
			`syncz resource 0: proxy "a.default": type "type.googleapis.com/envoy.config.cluster.v3.Cluster": config status 9 is not one istiod reports`,
		},
		{
			"undecodable client config",
			func(t *testing.T) *discoveryv3.DiscoveryResponse {
				return &discoveryv3.DiscoveryResponse{TypeUrl: SynczTypeURL, Resources: []*anypb.Any{
					{TypeUrl: "type.googleapis.com/envoy.service.status.v3.ClientConfig", Value: []byte{0xff}},
				}}
			},
			"syncz resource 0: ", // then protobuf's own text, which it varies on purpose
		},
		{
			"invalid timestamp",
			func(t *testing.T) *discoveryv3.DiscoveryResponse {
				return synczResponse(t, "", clientConfig(t, "a.default", nil, &statusv3.ClientConfig_GenericXdsConfig{
					TypeUrl: testTypeURL, ConfigStatus: statusv3.ConfigStatus_SYNCED, LastUpdated: &timestamppb.Timestamp{Nanos: -1},
				}))
			},
			`syncz resource 0: proxy "a.default": type "type.googleapis.com/envoy.config.cluster.v3.Cluster": last updated: invalid timestamp: `,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSynczXDS(tt.resp(t), "istiod-0")
			// protobuf-go randomises its error text so that nobody depends on it: where
			// our message ends by wrapping one of its errors, compare up to there.
			if err == nil || err.Error() != tt.wantErr && !(strings.HasSuffix(tt.wantErr, ": ") && strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v\nwant %s", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("got %+v with an error", got)
			}
		})
	}
}

func TestParseSynczXDSEdges(t *testing.T) {
	sent := time.Date(2026, 11, 25, 15, 33, 6, 584785464, time.UTC)
	resp := synczResponse(t, "",
		clientConfig(t, "b.default", map[string]any{"CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.31.0"},
			&statusv3.ClientConfig_GenericXdsConfig{
				TypeUrl: testTypeURL, ConfigStatus: statusv3.ConfigStatus_ERROR, LastUpdated: timestamppb.New(sent),
				ErrorState: &adminv3.UpdateFailureState{Details: "rejected"},
			},
			&statusv3.ClientConfig_GenericXdsConfig{
				// istiod sets error details only with ERROR; if not, they do not describe the state.
				TypeUrl: "a.type", ConfigStatus: statusv3.ConfigStatus_SYNCED,
				ErrorState: &adminv3.UpdateFailureState{Details: "old"},
			},
		),
		clientConfig(t, "a.default", nil),
	)
	got, err := ParseSynczXDS(resp, "istiod-0")
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcile.ProxyStatus{
		{ID: "a.default", Istiod: "istiod-0", Types: []reconcile.XDSStatus{}},
		{ID: "b.default", ClusterID: "Kubernetes", IstioVersion: "1.31.0", Istiod: "istiod-0", Types: []reconcile.XDSStatus{
			{TypeURL: "a.type", State: reconcile.StateSynced},
			{TypeURL: testTypeURL, State: reconcile.StateError, SentAt: sent, Error: "rejected"},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}

	empty, err := ParseSynczXDS(&discoveryv3.DiscoveryResponse{TypeUrl: SynczTypeURL}, "istiod-0")
	if err != nil || len(empty) != 0 {
		t.Errorf("empty response = %+v, %v", empty, err)
	}
}

func TestUnmarshalSynczXDSJSONStrict(t *testing.T) {
	_, err := UnmarshalSynczXDSJSON([]byte(`{"typeUrl":"istio.io/debug/syncz","extra":1}`))
	if err == nil {
		t.Fatal("unknown field accepted")
	}
}

func FuzzParseSynczXDS(f *testing.F) {
	for _, step := range synczSteps() {
		resp, err := UnmarshalSynczXDSJSON(readGolden(f, "syncz-xds-"+step+".json"))
		if err != nil {
			f.Fatal(err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
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
		got, err := ParseSynczXDS(&resp, "istiod-0")
		if err != nil {
			if got != nil {
				t.Fatalf("results %+v with error %v", got, err)
			}
			return
		}
		checkSynczInvariants(t, got, false)
		again, err := ParseSynczXDS(&resp, "istiod-0")
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}
