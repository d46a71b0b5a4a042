package istio

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshdrift/meshdrift/reconcile"
)

// SynczTypeURL is the xDS debug type istiod answers with one CSDS ClientConfig per proxy.
const SynczTypeURL = "istio.io/debug/syncz"

// clientConfigTypeURL is the type of every resource in a syncz response.
const clientConfigTypeURL = "type.googleapis.com/envoy.service.status.v3.ClientConfig"

// ParseSynczXDS parses istiod's answer to an xDS request for SynczTypeURL.
//
// The replica that answered names itself in control_plane.identifier, which is preferred
// over the caller's istiod name: a caller dialling a Service cannot know which pod
// answered. This form carries neither nonces nor the proxy type, so SentVersion,
// AckedVersion and ProxyType stay empty; ERROR, STALE, ... are istiod's own verdicts.
//
// The identifier's Info.revision is istiod's git commit, not its control-plane revision
// (istio.io/rev), so Revision is left empty rather than filled with something that would
// look like a revision mismatch to every check.
func ParseSynczXDS(resp *discoveryv3.DiscoveryResponse, istiod string) ([]reconcile.ProxyStatus, error) {
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
	// One ClientConfig per proxy, and one reused: what the proxies' configs repeat (type
	// URLs, cluster and Istio versions) is kept once.
	in := &synczInterner{m: map[string]string{}}
	var cc statusv3.ClientConfig
	for i, res := range resp.GetResources() {
		if got := res.GetTypeUrl(); got != clientConfigTypeURL {
			return nil, fmt.Errorf("syncz resource %d: type url %q, want %q", i, got, clientConfigTypeURL)
		}
		if err := res.UnmarshalTo(&cc); err != nil {
			return nil, fmt.Errorf("syncz resource %d: %w", i, err)
		}
		p, err := clientConfigStatus(&cc, in)
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

// UnmarshalSynczXDSJSON decodes a syncz DiscoveryResponse printed as protojson, as in the
// golden files and `istioctl proxy-status -o json`. Importing the CSDS package registers
// ClientConfig, which the Any resources need to be resolved. Unknown fields are errors:
// the input is a capture that must match the types we parse.
func UnmarshalSynczXDSJSON(b []byte) (*discoveryv3.DiscoveryResponse, error) {
	var resp discoveryv3.DiscoveryResponse
	if err := protojson.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("decode syncz discovery response: %w", err)
	}
	return &resp, nil
}

// controlPlaneIdentifier is the JSON istiod puts in control_plane.identifier.
type controlPlaneIdentifier struct {
	ID   string
	Info struct {
		Version string `json:"version"`
	}
}

func parseControlPlane(identifier string) (controlPlaneIdentifier, error) {
	var cp controlPlaneIdentifier
	if identifier == "" {
		return cp, nil
	}
	if err := json.Unmarshal([]byte(identifier), &cp); err != nil {
		return controlPlaneIdentifier{}, fmt.Errorf("decode control plane identifier: %w", err)
	}
	return cp, nil
}

func clientConfigStatus(cc *statusv3.ClientConfig, in *synczInterner) (reconcile.ProxyStatus, error) {
	id := cc.GetNode().GetId()
	if id == "" {
		return reconcile.ProxyStatus{}, errors.New("client config has no node id")
	}
	md := cc.GetNode().GetMetadata()
	clusterID, err := metadataString(md, "CLUSTER_ID")
	if err != nil {
		return reconcile.ProxyStatus{}, fmt.Errorf("proxy %q: %w", id, err)
	}
	istioVersion, err := metadataString(md, "ISTIO_VERSION")
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
		st, err := genericXDSStatus(gc)
		st.TypeURL = in.str(st.TypeURL)
		if err != nil {
			return reconcile.ProxyStatus{}, fmt.Errorf("proxy %q: %w", id, err)
		}
		p.Types = append(p.Types, st)
	}
	return p, nil
}

func genericXDSStatus(gc *statusv3.ClientConfig_GenericXdsConfig) (reconcile.XDSStatus, error) {
	typeURL := gc.GetTypeUrl()
	if typeURL == "" {
		return reconcile.XDSStatus{}, errors.New("xds config with an empty type url")
	}
	state, err := configState(gc.GetConfigStatus())
	if err != nil {
		return reconcile.XDSStatus{}, fmt.Errorf("type %q: %w", typeURL, err)
	}
	sentAt, err := timestampTime(gc.GetLastUpdated())
	if err != nil {
		return reconcile.XDSStatus{}, fmt.Errorf("type %q: last updated: %w", typeURL, err)
	}
	st := reconcile.XDSStatus{TypeURL: typeURL, State: state, SentAt: sentAt}
	if state == reconcile.StateError {
		st.Error = gc.GetErrorState().GetDetails()
	}
	return st, nil
}

// configState maps the CSDS status istiod computed; UNKNOWN and values from a newer
// protocol are errors, because guessing would turn them into a false SYNCED or alarm.
func configState(s statusv3.ConfigStatus) (reconcile.SyncState, error) {
	switch s {
	case statusv3.ConfigStatus_SYNCED:
		return reconcile.StateSynced, nil
	case statusv3.ConfigStatus_STALE:
		return reconcile.StateStale, nil
	case statusv3.ConfigStatus_NOT_SENT:
		return reconcile.StateNotSent, nil
	case statusv3.ConfigStatus_ERROR:
		return reconcile.StateError, nil
	default:
		return "", fmt.Errorf("config status %v is not one istiod reports", s)
	}
}

func timestampTime(ts *timestamppb.Timestamp) (time.Time, error) {
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
func metadataString(md *structpb.Struct, key string) (string, error) {
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
