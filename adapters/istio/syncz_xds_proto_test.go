package istio

import (
	"errors"
	"fmt"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshdrift/meshdrift/reconcile"
)

// protoParseSynczXDS is how ParseSynczXDS decoded before it read the wire format
// itself: every ClientConfig through protobuf reflection. It is kept as the reference
// the wire decoder must agree with.
func protoParseSynczXDS(resp *discoveryv3.DiscoveryResponse, istiod string) ([]reconcile.ProxyStatus, error) {
	if resp == nil {
		return nil, errors.New("syncz response is nil")
	}
	if got := resp.GetTypeUrl(); got != SynczTypeURL {
		return nil, fmt.Errorf("response type url %q, want %q", got, SynczTypeURL)
	}
	cp, err := parseControlPlane(resp.GetControlPlane().GetIdentifier())
	if err != nil {
		return nil, err
	}
	if cp.ID != "" {
		istiod = cp.ID
	}
	proxies := make([]reconcile.ProxyStatus, 0, len(resp.GetResources()))
	in := &synczInterner{m: map[string]string{}}
	var cc statusv3.ClientConfig
	for i, res := range resp.GetResources() {
		if got := res.GetTypeUrl(); got != clientConfigTypeURL {
			return nil, fmt.Errorf("syncz resource %d: type url %q, want %q", i, got, clientConfigTypeURL)
		}
		if err := res.UnmarshalTo(&cc); err != nil {
			return nil, fmt.Errorf("syncz resource %d: %w", i, err)
		}
		p, err := protoClientConfigStatus(&cc, in)
		if err != nil {
			return nil, fmt.Errorf("syncz resource %d: %w", i, err)
		}
		p.Istiod = istiod
		p.ControlPlaneVersion = cp.Info.Version
		proxies = append(proxies, p)
	}
	sortSyncz(proxies)
	return proxies, nil
}

func protoClientConfigStatus(cc *statusv3.ClientConfig, in *synczInterner) (reconcile.ProxyStatus, error) {
	id := cc.GetNode().GetId()
	if id == "" {
		return reconcile.ProxyStatus{}, errors.New("client config has no node id")
	}
	md := cc.GetNode().GetMetadata()
	clusterID, err := protoMetadataString(md, "CLUSTER_ID")
	if err != nil {
		return reconcile.ProxyStatus{}, fmt.Errorf("proxy %q: %w", id, err)
	}
	istioVersion, err := protoMetadataString(md, "ISTIO_VERSION")
	if err != nil {
		return reconcile.ProxyStatus{}, fmt.Errorf("proxy %q: %w", id, err)
	}
	p := reconcile.ProxyStatus{
		ID:           id,
		ClusterID:    in.str(clusterID),
		IstioVersion: in.str(istioVersion),
		Types:        in.types(len(cc.GetGenericXdsConfigs())),
	}
	for _, gc := range cc.GetGenericXdsConfigs() {
		st, err := protoGenericXDSStatus(gc)
		st.TypeURL = in.str(st.TypeURL)
		if err != nil {
			return reconcile.ProxyStatus{}, fmt.Errorf("proxy %q: %w", id, err)
		}
		p.Types = append(p.Types, st)
	}
	return p, nil
}

func protoGenericXDSStatus(gc *statusv3.ClientConfig_GenericXdsConfig) (reconcile.XDSStatus, error) {
	typeURL := gc.GetTypeUrl()
	if typeURL == "" {
		return reconcile.XDSStatus{}, errors.New("xds config with an empty type url")
	}
	state, err := configState(gc.GetConfigStatus())
	if err != nil {
		return reconcile.XDSStatus{}, fmt.Errorf("type %q: %w", typeURL, err)
	}
	sentAt, err := protoTimestampTime(gc.GetLastUpdated())
	if err != nil {
		return reconcile.XDSStatus{}, fmt.Errorf("type %q: last updated: %w", typeURL, err)
	}
	st := reconcile.XDSStatus{TypeURL: typeURL, State: state, SentAt: sentAt}
	if state == reconcile.StateError {
		st.Error = gc.GetErrorState().GetDetails()
	}
	return st, nil
}

func protoTimestampTime(ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("invalid timestamp: %w", err)
	}
	return synczTime(ts.AsTime()), nil
}

// metadataString reads a string from the node metadata istiod copies into each
// ClientConfig; a missing key is empty, a key of another kind is an error.
func protoMetadataString(md *structpb.Struct, key string) (string, error) {
	v, ok := md.GetFields()[key]
	if !ok {
		return "", nil
	}
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", fmt.Errorf("node metadata %s is not a string", key)
	}
	return s.StringValue, nil
}
