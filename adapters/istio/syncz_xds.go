package istio

import (
	"encoding/json"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"

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
//
// It decodes every proxy; a reader that reads the same istiod again and again keeps a
// synczDecoder, which decodes only the proxies that changed.
func ParseSynczXDS(resp *discoveryv3.DiscoveryResponse, istiod string) ([]reconcile.ProxyStatus, error) {
	var d synczDecoder
	return d.Decode(resp, istiod)
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
