package xdsproxy

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// Type URLs of the xDS types a sidecar watches.
const (
	TypeCluster         = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	TypeListener        = "type.googleapis.com/envoy.config.listener.v3.Listener"
	TypeRoute           = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	TypeEndpoint        = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	TypeExtensionConfig = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
	TypeSecret          = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	TypeProxyConfig     = "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig"
)

// isWildcard follows the xDS spec as istiod applies it: an empty resource_names subscribes to
// everything for these types, and unsubscribes for the others.
func isWildcard(typeURL string) bool {
	switch typeURL {
	case TypeEndpoint, TypeRoute, TypeExtensionConfig, TypeSecret:
		return false
	default:
		return true
	}
}

// TypeState is what the proxy observed for one type URL on its stream. Slices, maps and messages
// are shared between snapshots and must not be modified.
type TypeState struct {
	TypeURL string
	// Wildcard is true when the type is subscribed with empty resource_names.
	Wildcard bool
	// Subscribed are the resource names currently wanted (sorted); nil for wildcard types.
	Subscribed []string

	// Requests counts DiscoveryRequests sent: subscriptions, ACKs and NACKs.
	Requests    int
	LastRequest *discoveryv3.DiscoveryRequest

	// Responses counts DiscoveryResponses received; Version and Nonce are the last one's.
	Responses  int
	Version    string
	Nonce      string
	ReceivedAt time.Time
	// ResponseNames are the names of the resources in the last response, in order.
	ResponseNames []string
	// Resources is what the proxy holds, by name, including resources it rejected: CDS, LDS and
	// other wildcard types are replaced by each response; EDS, RDS and ECDS responses are merged
	// and trimmed to the subscription, as Envoy does.
	Resources map[string]proto.Message
	// Pending is true when the last response has not been answered (Silent).
	Pending bool

	ACKs         int
	ACKedVersion string
	ACKedNonce   string

	NACKs    int
	LastNACK *NACK
}

// NACK is a rejection the proxy sent.
type NACK struct {
	// Version is the version_info sent: the last accepted version, "" if none.
	Version string
	// RejectedVersion is the version_info of the rejected response.
	RejectedVersion string
	Nonce           string
	Message         string
	At              time.Time
}

// Snapshot is a copy of what the proxy observed.
type Snapshot struct {
	// Connected is true while the stream is up and istiod has answered.
	Connected bool
	// Stopped is true once the stream has ended; nothing changes afterwards.
	Stopped bool
	// Err is why the stream ended; nil while it runs or when Close ended it.
	Err   error
	Mode  Mode
	Types map[string]TypeState
}

// Type returns the state of one type URL; its zero value when nothing happened for it.
func (s Snapshot) Type(typeURL string) TypeState {
	if t, ok := s.Types[typeURL]; ok {
		return t
	}
	return TypeState{TypeURL: typeURL, Wildcard: isWildcard(typeURL)}
}

// typeProto is the per-type protocol state on the current stream, like Envoy's per-type request
// template: every request of the type is built from it.
type typeProto struct {
	wildcard  bool
	explicit  []string // names from Config.ExtraWatches, always subscribed
	names     []string // current subscription, sorted; nil for wildcard types
	requested bool     // a request was sent on this stream
	dirty     bool     // names changed but not sent, because the type is Silent
	version   string   // last accepted
	nonce     string   // of the last answered response
	pending   *pendingResponse
}

type pendingResponse struct {
	version   string
	nonce     string
	resources []namedResource
}

// resetStream starts protocol and observed state afresh for a new stream.
func (p *Proxy) resetStream(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, node *corev3.Node) {
	p.opMu.Lock()
	p.types = map[string]*typeProto{}
	p.sendStream = stream
	p.node = node
	p.nodeSent = false
	p.sendClosed = false
	p.opMu.Unlock()

	p.mu.Lock()
	p.obs = map[string]*TypeState{}
	p.connected = false
	p.mu.Unlock()
	p.notify()
}

// subscribeInitial sends the node with the CDS and LDS wildcard subscriptions, then the extra
// watches.
func (p *Proxy) subscribeInitial() error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	for _, t := range []string{TypeCluster, TypeListener} {
		if _, err := p.sendLocked(t, p.typeStateLocked(t), nil); err != nil {
			return err
		}
	}
	for _, w := range p.cfg.ExtraWatches {
		if _, seen := p.types[w.TypeURL]; seen {
			continue
		}
		st := p.typeStateLocked(w.TypeURL)
		if !st.wildcard {
			if len(st.explicit) == 0 {
				continue // derived from listeners later; an empty list would mean unsubscribe
			}
			st.names = st.explicit
			p.recordSubscribed(w.TypeURL, st.names)
		}
		if _, err := p.sendLocked(w.TypeURL, st, nil); err != nil {
			return err
		}
	}
	return nil
}

func (p *Proxy) typeStateLocked(typeURL string) *typeProto {
	if st, ok := p.types[typeURL]; ok {
		return st
	}
	st := &typeProto{wildcard: isWildcard(typeURL)}
	for _, w := range p.cfg.ExtraWatches {
		if w.TypeURL == typeURL && !st.wildcard {
			st.explicit = sortedUnique(append(slices.Clone(st.explicit), w.ResourceNames...))
		}
	}
	p.types[typeURL] = st
	return st
}

func (p *Proxy) watches(typeURL string) bool {
	return slices.ContainsFunc(p.cfg.ExtraWatches, func(w Watch) bool { return w.TypeURL == typeURL })
}

// handleResponse records a response and answers it unless its type is Silent.
func (p *Proxy) handleResponse(resp *discoveryv3.DiscoveryResponse) error {
	t := resp.GetTypeUrl()
	res := decodeResources(resp.GetResources())

	p.opMu.Lock()
	defer p.opMu.Unlock()
	st := p.typeStateLocked(t)
	st.pending = &pendingResponse{version: resp.GetVersionInfo(), nonce: resp.GetNonce(), resources: res}
	p.recordReceived(t, st.wildcard, resp, res)
	if p.modeFor(t) == ModeSilent {
		return nil
	}
	return p.answerLocked(t, st)
}

// AnswerPending answers, in the current mode, the last response of every type that was left
// unanswered while Silent, and sends subscription changes held back meanwhile. Types still
// Silent are skipped.
func (p *Proxy) AnswerPending() error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped || p.sendStream == nil {
		return fmt.Errorf("answer pending responses of proxy %s: %w", p.Name(), ErrStopped)
	}
	var errs []error
	for _, t := range p.typeOrderLocked() {
		st := p.types[t]
		if p.modeFor(t) == ModeSilent {
			continue
		}
		switch {
		case st.pending != nil:
			errs = append(errs, p.answerLocked(t, st))
		case st.dirty && (st.requested || len(st.names) > 0):
			_, err := p.sendLocked(t, st, nil)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// typeOrderLocked is the order Envoy applies updates in: clusters before endpoints, listeners
// before routes.
func (p *Proxy) typeOrderLocked() []string {
	order := []string{TypeCluster, TypeEndpoint, TypeListener, TypeRoute}
	rest := slices.Sorted(maps.Keys(p.types))
	rest = slices.DeleteFunc(rest, func(t string) bool { return slices.Contains(order, t) })
	order = slices.DeleteFunc(order, func(t string) bool { _, ok := p.types[t]; return !ok })
	return append(order, rest...)
}

// answerLocked ACKs or NACKs the pending response of a type; on ACK it follows the accepted
// clusters and listeners to the EDS, RDS and ECDS names they reference.
func (p *Proxy) answerLocked(t string, st *typeProto) error {
	pr := st.pending
	if pr == nil {
		return nil
	}
	mode := p.modeFor(t)
	if mode == ModeSilent {
		return nil
	}
	st.pending = nil

	p.mu.Lock()
	msg, when := p.nackMsg, p.nackWhen
	p.mu.Unlock()
	if mode == ModeACK && when != "" {
		if named := rejectedNames(t, pr.resources, when); named != "" {
			mode, msg = ModeNACK, named+": "+msg
		}
	}
	if mode == ModeNACK {
		st.nonce = pr.nonce
		sent, err := p.sendLocked(t, st, &spb.Status{Code: nackErrorCode, Message: msg})
		if sent {
			p.updateObs(t, func(ts *TypeState) {
				ts.Pending = false
				ts.NACKs++
				ts.LastNACK = &NACK{Version: st.version, RejectedVersion: pr.version, Nonce: pr.nonce, Message: msg, At: time.Now()}
			})
		}
		return err
	}

	st.version, st.nonce = pr.version, pr.nonce
	sent, err := p.sendLocked(t, st, nil)
	if err != nil || !sent {
		return err
	}
	p.updateObs(t, func(ts *TypeState) {
		ts.Pending = false
		ts.ACKs++
		ts.ACKedVersion = pr.version
		ts.ACKedNonce = pr.nonce
	})
	switch t {
	case TypeCluster:
		return p.setNamesLocked(TypeEndpoint, edsNames(pr.resources))
	case TypeListener:
		refs := listenerRefs(pr.resources)
		err := p.setNamesLocked(TypeRoute, refs.routes)
		if p.watches(TypeExtensionConfig) {
			err = errors.Join(err, p.setNamesLocked(TypeExtensionConfig, refs.extensions))
		}
		return err
	}
	return nil
}

// setNamesLocked changes the subscription of a non-wildcard type and tells istiod, unless the
// type is Silent: then the change goes out with its next request.
func (p *Proxy) setNamesLocked(t string, names []string) error {
	st := p.typeStateLocked(t)
	names = sortedUnique(append(slices.Clone(st.explicit), names...))
	if slices.Equal(st.names, names) && !st.dirty {
		return nil
	}
	st.names = names
	st.dirty = true
	p.recordSubscribed(t, names)
	if !st.requested && len(names) == 0 {
		st.dirty = false // never subscribed, nothing to withdraw
		return nil
	}
	if p.modeFor(t) == ModeSilent {
		return nil
	}
	if st.pending != nil {
		return p.answerLocked(t, st)
	}
	_, err := p.sendLocked(t, st, nil)
	return err
}

// sendLocked sends the type's current request, with errDetail for a NACK; sent is false once
// Close has half-closed. Like Envoy, only the NACK itself carries the error: a later
// subscription change of the type goes out with the rejected nonce and no error.
func (p *Proxy) sendLocked(t string, st *typeProto, errDetail *spb.Status) (sent bool, err error) {
	if p.sendClosed || p.sendStream == nil {
		return false, nil
	}
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl:       t,
		VersionInfo:   st.version,
		ResponseNonce: st.nonce,
		ResourceNames: slices.Clone(st.names),
		ErrorDetail:   errDetail,
	}
	if !p.nodeSent {
		req.Node = p.node // istiod requires the node on the first request only
	}
	if err := p.sendStream.Send(req); err != nil {
		return false, fmt.Errorf("send %s request: %w", t, err)
	}
	p.nodeSent = true
	st.requested = true
	st.dirty = false
	p.updateObs(t, func(ts *TypeState) {
		ts.Requests++
		ts.LastRequest = req
	})
	return true, nil
}

// recvAfterSendError turns the io.EOF of a failed Send into the stream's real status.
func recvAfterSendError(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
		return fmt.Errorf("%w (stream status: %w)", err, rerr)
	}
	return err
}

func (p *Proxy) recordReceived(t string, wildcard bool, resp *discoveryv3.DiscoveryResponse, res []namedResource) {
	names := make([]string, len(res))
	for i, r := range res {
		names[i] = r.name
	}
	p.updateObs(t, func(ts *TypeState) {
		ts.Responses++
		ts.Version = resp.GetVersionInfo()
		ts.Nonce = resp.GetNonce()
		ts.ReceivedAt = time.Now()
		ts.ResponseNames = names
		ts.Pending = true
		var held map[string]proto.Message
		if wildcard {
			held = make(map[string]proto.Message, len(res))
		} else {
			held = maps.Clone(ts.Resources) // copy-on-write: snapshots share the old map
			if held == nil {
				held = make(map[string]proto.Message, len(res))
			}
		}
		for _, r := range res {
			held[r.name] = r.msg
		}
		ts.Resources = held
	})
}

// recordSubscribed records a subscription change and drops resources no longer subscribed.
func (p *Proxy) recordSubscribed(t string, names []string) {
	p.updateObs(t, func(ts *TypeState) {
		ts.Subscribed = names
		if ts.Resources == nil {
			return
		}
		held := maps.Clone(ts.Resources)
		maps.DeleteFunc(held, func(name string, _ proto.Message) bool {
			_, found := slices.BinarySearch(names, name)
			return !found
		})
		ts.Resources = held
	})
}

// updateObs changes the observed state of a type and wakes WaitFor.
func (p *Proxy) updateObs(t string, f func(*TypeState)) {
	p.mu.Lock()
	ts, ok := p.obs[t]
	if !ok {
		ts = &TypeState{TypeURL: t, Wildcard: isWildcard(t)}
		p.obs[t] = ts
	}
	f(ts)
	p.mu.Unlock()
	p.notify()
}

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
