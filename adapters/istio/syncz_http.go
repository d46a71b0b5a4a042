package istio

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// MaxSynczBodyBytes bounds how much of a /debug/syncz body is read. One proxy takes about
// 2 KiB, so this leaves room for tens of thousands of proxies per istiod while a broken or
// hostile endpoint cannot exhaust our memory.
const MaxSynczBodyBytes = 64 << 20

// ErrSynczTooLarge is returned (wrapped) when a syncz body exceeds MaxSynczBodyBytes.
var ErrSynczTooLarge = errors.New("syncz body too large")

// synczHTTPProxy is one element of istiod's /debug/syncz array. The per-type legacy fields
// (cluster_sent, listener_acked, ...) are left out: only resources covers every type a
// proxy watches (ECDS, PCDS, ...).
type synczHTTPProxy struct {
	ClusterID    string                       `json:"cluster_id"`
	Proxy        string                       `json:"proxy"`
	ProxyType    string                       `json:"proxy_type"`
	IstioVersion string                       `json:"istio_version"`
	Resources    map[string]synczHTTPResource `json:"resources"`
}

// synczHTTPResource is istiod's record of the last response of one type sent to a proxy.
type synczHTTPResource struct {
	Sent      string    `json:"sent"`
	Acked     string    `json:"acked"`
	SentTime  time.Time `json:"sentTime"`
	LastError string    `json:"lastError"`
}

// ParseSynczHTTP parses the body of istiod's GET /debug/syncz. istiod names the replica
// that served it (the body does not say); the HTTP form carries no control-plane version
// or revision, so those stay empty.
//
// Unknown JSON fields are ignored, as istiod adds fields between releases; anything that
// istiod would not produce (a proxy without an id, a malformed nonce or time, trailing
// data) fails the whole body rather than yielding a partial view.
func ParseSynczHTTP(r io.Reader, istiod string) ([]reconcile.ProxyStatus, error) {
	return parseSynczHTTP(r, istiod, MaxSynczBodyBytes)
}

func parseSynczHTTP(r io.Reader, istiod string, limit int64) ([]reconcile.ProxyStatus, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read syncz body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("syncz body exceeds %d bytes: %w", limit, ErrSynczTooLarge)
	}
	var entries []synczHTTPProxy
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, fmt.Errorf("decode syncz body: %w", err)
	}
	proxies := make([]reconcile.ProxyStatus, 0, len(entries))
	for i, e := range entries {
		p, err := e.proxyStatus(istiod)
		if err != nil {
			return nil, fmt.Errorf("syncz entry %d: %w", i, err)
		}
		proxies = append(proxies, p)
	}
	sortSyncz(proxies)
	return proxies, nil
}

func (e synczHTTPProxy) proxyStatus(istiod string) (reconcile.ProxyStatus, error) {
	if e.Proxy == "" {
		return reconcile.ProxyStatus{}, errors.New("proxy has no id")
	}
	p := reconcile.ProxyStatus{
		ID:           e.Proxy,
		ClusterID:    e.ClusterID,
		ProxyType:    e.ProxyType,
		IstioVersion: e.IstioVersion,
		Istiod:       istiod,
		Types:        make([]reconcile.XDSStatus, 0, len(e.Resources)),
	}
	for typeURL, res := range e.Resources {
		st, err := res.xdsStatus(typeURL)
		if err != nil {
			return reconcile.ProxyStatus{}, fmt.Errorf("proxy %q: %w", e.Proxy, err)
		}
		p.Types = append(p.Types, st)
	}
	return p, nil
}

func (res synczHTTPResource) xdsStatus(typeURL string) (reconcile.XDSStatus, error) {
	if typeURL == "" {
		return reconcile.XDSStatus{}, errors.New("resource with an empty type url")
	}
	sent, err := PushVersion(res.Sent)
	if err != nil {
		return reconcile.XDSStatus{}, fmt.Errorf("type %q: sent: %w", typeURL, err)
	}
	acked, err := PushVersion(res.Acked)
	if err != nil {
		return reconcile.XDSStatus{}, fmt.Errorf("type %q: acked: %w", typeURL, err)
	}
	return reconcile.XDSStatus{
		TypeURL:      typeURL,
		State:        synczState(res.Sent, res.Acked, res.LastError),
		SentVersion:  sent,
		AckedVersion: acked,
		SentAt:       synczTime(res.SentTime),
		Error:        res.LastError,
	}, nil
}
