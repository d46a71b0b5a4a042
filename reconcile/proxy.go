package reconcile

import "time"

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
