package reconcile

import (
	"strings"
	"time"
)

// SyncState is the state of one xDS type on one proxy, as istiod derives it.
type SyncState string

const (
	// StateSynced: the proxy ACKed the last config istiod sent for the type.
	StateSynced SyncState = "SYNCED"
	// StateStale: istiod sent config the proxy has not ACKed (yet).
	StateStale SyncState = "STALE"
	// StateNotSent: istiod has never sent the type to the proxy.
	StateNotSent SyncState = "NOT SENT"
	// StateError: the proxy NACKed the last config it was sent.
	StateError SyncState = "ERROR"
)

// XDSStatus is one proxy's state for one xDS type.
type XDSStatus struct {
	TypeURL string
	State   SyncState
	// SentVersion and AckedVersion are istiod push versions ("<RFC3339 second>/<counter>")
	// of the last response sent and the last one ACKed; empty when none.
	SentVersion  string
	AckedVersion string
	// SentAt is when istiod last sent the type; zero when never.
	SentAt time.Time
	// Error is the proxy's NACK text while State is StateError.
	Error string
}

// ProxyStatus is one proxy as seen by the istiod it is connected to.
type ProxyStatus struct {
	// ID is "<pod>.<namespace>", as istiod names proxies.
	ID           string
	ClusterID    string
	ProxyType    string
	IstioVersion string
	// Istiod is the istiod instance (pod) serving the proxy; Revision its control-plane
	// revision; ControlPlaneVersion the istiod build.
	Istiod              string
	Revision            string
	ControlPlaneVersion string
	Types               []XDSStatus
}

// shortTypes names the common xDS types the way istioctl proxy-status does.
var shortTypes = map[string]string{
	"type.googleapis.com/envoy.config.cluster.v3.Cluster":                "CDS",
	"type.googleapis.com/envoy.config.listener.v3.Listener":              "LDS",
	"type.googleapis.com/envoy.config.route.v3.RouteConfiguration":       "RDS",
	"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "EDS",
	"type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig":      "ECDS",
	"type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig":                "PCDS",
}

// ShortType is istioctl's column name for an xDS type URL (CDS, LDS, ...), or the URL's
// last element for other types.
func ShortType(typeURL string) string {
	if s, ok := shortTypes[typeURL]; ok {
		return s
	}
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}
