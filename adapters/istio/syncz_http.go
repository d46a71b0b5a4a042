package istio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
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
	buf := synczBodies.Get().(*bytes.Buffer)
	defer func() {
		buf.Reset()
		synczBodies.Put(buf)
	}()
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, fmt.Errorf("read syncz body: %w", err)
	}
	body := buf.Bytes()
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("syncz body exceeds %d bytes: %w", limit, ErrSynczTooLarge)
	}
	if proxies, ok := decodeSynczHTTP(body, istiod); ok {
		return proxies, nil
	}
	// Whatever the streaming decoder refused, decoding the whole body says why, in the
	// words it always has.
	return decodeSynczHTTPWhole(body, istiod)
}

// synczBodies holds read buffers between polls: a body of 10,000 proxies is about 20 MB,
// read once per istiod per poll.
var synczBodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decodeSynczHTTPWhole decodes the body in one go; it gives the errors.
func decodeSynczHTTPWhole(body []byte, istiod string) ([]reconcile.ProxyStatus, error) {
	var entries []synczHTTPProxy
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, fmt.Errorf("decode syncz body: %w", err)
	}
	proxies := make([]reconcile.ProxyStatus, 0, len(entries))
	for i, e := range entries {
		p, err := e.proxyStatus(istiod, nil)
		if err != nil {
			return nil, fmt.Errorf("syncz entry %d: %w", i, err)
		}
		proxies = append(proxies, p)
	}
	sortSyncz(proxies)
	return proxies, nil
}

// decodeSynczHTTP decodes a body one proxy at a time into the same entry and map,
// with the strings that repeat from proxy to proxy (type URLs, push versions, cluster
// and Istio versions) shared and the types of many proxies in one allocation. ok is
// false for anything else; decodeSynczHTTPWhole then says what is wrong.
func decodeSynczHTTP(body []byte, istiod string) (proxies []reconcile.ProxyStatus, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, false
	}
	switch {
	case tok == nil: // null: istiod marshalled a nil slice
		proxies = []reconcile.ProxyStatus{}
	case tok == json.Delim('['):
		in := &synczInterner{m: map[string]string{}}
		res := map[string]synczHTTPResource{}
		var e synczHTTPProxy
		for dec.More() {
			clear(res)
			e = synczHTTPProxy{Resources: res}
			if err := dec.Decode(&e); err != nil {
				return nil, false
			}
			p, err := e.proxyStatus(istiod, in)
			if err != nil {
				return nil, false
			}
			proxies = append(proxies, p)
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
			return nil, false
		}
		if proxies == nil {
			proxies = []reconcile.ProxyStatus{}
		}
	default:
		return nil, false
	}
	// Nothing may follow the value.
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	sortSyncz(proxies)
	return proxies, true
}

// synczInterner shares equal strings within one body, and hands out the types of many
// proxies from one slab.
type synczInterner struct {
	m    map[string]string
	slab []reconcile.XDSStatus
	// recent holds, by place in a proxy, the string the last proxy had there (see slot).
	recent [16]string
}

func (in *synczInterner) str(s string) string {
	if in == nil || s == "" {
		return s
	}
	if v, ok := in.m[s]; ok {
		return v
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

// bytes is str for bytes: a string already held costs no allocation.
func (in *synczInterner) bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if v, ok := in.m[string(b)]; ok {
		return v
	}
	s := string(b)
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}

// slot is bytes for a string that usually equals the last proxy's at the same place
// (istiod sorts each proxy's types): a hit compares bytes without hashing them. known
// says the string came from the slot.
func (in *synczInterner) slot(i int, b []byte) (s string, known bool) {
	if i >= len(in.recent) {
		return in.bytes(b), false
	}
	if s := in.recent[i]; s == string(b) {
		return s, true
	}
	s = in.bytes(b)
	in.recent[i] = s
	return s, false
}

// maxInterned bounds the strings shared per body: istiod has a handful of type URLs and
// versions at a time, so more means input that does not repeat.
const maxInterned = 4096

// types is an empty slice with room for n types.
func (in *synczInterner) types(n int) []reconcile.XDSStatus {
	if in == nil || n == 0 || n > 64 {
		return make([]reconcile.XDSStatus, 0, n)
	}
	if len(in.slab)+n > cap(in.slab) {
		in.slab = make([]reconcile.XDSStatus, 0, 1024)
	}
	start := len(in.slab)
	in.slab = in.slab[:start+n]
	return in.slab[start : start : start+n]
}

// proxyStatus converts one entry; in, when not nil, shares repeated strings.
func (e synczHTTPProxy) proxyStatus(istiod string, in *synczInterner) (reconcile.ProxyStatus, error) {
	if e.Proxy == "" {
		return reconcile.ProxyStatus{}, errors.New("proxy has no id")
	}
	p := reconcile.ProxyStatus{
		ID:           e.Proxy,
		ClusterID:    in.str(e.ClusterID),
		ProxyType:    in.str(e.ProxyType),
		IstioVersion: in.str(e.IstioVersion),
		Istiod:       istiod,
		Types:        in.types(len(e.Resources)),
	}
	for typeURL, res := range e.Resources {
		st, err := res.xdsStatus(in.str(typeURL), in)
		if err != nil {
			return reconcile.ProxyStatus{}, fmt.Errorf("proxy %q: %w", e.Proxy, err)
		}
		p.Types = append(p.Types, st)
	}
	return p, nil
}

func (res synczHTTPResource) xdsStatus(typeURL string, in *synczInterner) (reconcile.XDSStatus, error) {
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
		SentVersion:  in.str(sent),
		AckedVersion: in.str(acked),
		SentAt:       synczTime(res.SentTime),
		Error:        res.LastError,
	}, nil
}
