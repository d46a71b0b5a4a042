package istio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshdrift/meshdrift/reconcile"
)

// NACKTypeURL is the xDS type on which istiod streamed Envoy NACKs as they happened.
//
// Istio 1.7 added it as an experiment (InternalGen, later StatusGen.OnNack: each NACK is
// pushed to every subscriber as a response of this type whose resources are the proxy's
// DiscoveryRequest, node.id set to the proxy's "<pod>.<ns>"); later releases removed it.
// The istiod this project pins (1.31-dev) has no trace of it. Subscribed to with the
// "event" generator, as meshdrift does, it refuses a caller without a verified identity
// when debug endpoint authentication is on (Unauthenticated), and otherwise answers with
// empty responses, on the subscription and on every config push, and never with a NACK.
// The reader falls back to its polls in both cases: on the error, and once a poll shows a
// NACK the stream did not carry (nackWatch).
const NACKTypeURL = "istio.io/nack"

// discoveryRequestTypeURL is the type of every resource of an istio.io/nack response.
const discoveryRequestTypeURL = "type.googleapis.com/envoy.service.discovery.v3.DiscoveryRequest"

// ParseNACKResponse turns one istio.io/nack response into NACK events seen at at. An empty
// response (istiod's answer to the subscription itself) gives no events.
func ParseNACKResponse(resp *discoveryv3.DiscoveryResponse, istiod string, at time.Time) ([]reconcile.NACKEvent, error) {
	if resp == nil {
		return nil, errors.New("nack response is nil")
	}
	if got := resp.GetTypeUrl(); got != NACKTypeURL {
		return nil, fmt.Errorf("response type url %q, want %q", got, NACKTypeURL)
	}
	events := make([]reconcile.NACKEvent, 0, len(resp.GetResources()))
	for i, res := range resp.GetResources() {
		if got := res.GetTypeUrl(); got != discoveryRequestTypeURL {
			return nil, fmt.Errorf("nack resource %d: type url %q, want %q", i, got, discoveryRequestTypeURL)
		}
		var dr discoveryv3.DiscoveryRequest
		if err := res.UnmarshalTo(&dr); err != nil {
			return nil, fmt.Errorf("nack resource %d: %w", i, err)
		}
		proxy := nackProxyID(dr.GetNode().GetId())
		if proxy == "" {
			return nil, fmt.Errorf("nack resource %d: no node id", i)
		}
		if dr.GetErrorDetail() == nil {
			return nil, fmt.Errorf("nack resource %d: proxy %q: request has no error detail", i, proxy)
		}
		if dr.GetTypeUrl() == "" {
			return nil, fmt.Errorf("nack resource %d: proxy %q: request has no type url", i, proxy)
		}
		events = append(events, reconcile.NACKEvent{
			Istiod:  istiod,
			Proxy:   proxy,
			TypeURL: dr.GetTypeUrl(),
			Error:   dr.GetErrorDetail().GetMessage(),
			At:      at,
		})
	}
	return events, nil
}

// nackProxyID names the proxy as syncz does ("<pod>.<namespace>"). istiod sets node.id to
// that; a full Envoy node id ("sidecar~10.0.0.1~<pod>.<ns>~<ns>.svc.cluster.local") is
// reduced to it.
func nackProxyID(nodeID string) string {
	parts := strings.Split(nodeID, "~")
	if len(parts) == 4 {
		return parts[2]
	}
	if len(parts) == 1 {
		return nodeID
	}
	return ""
}

// errNACKUnsupported marks an istiod that does not stream NACKs.
var errNACKUnsupported = errors.New("istiod does not stream istio.io/nack")

// NACK stream retry delays after a broken stream (istiod restarting, unreachable), and
// after one shown not to carry NACKs: a token fixed or an istiod replaced may change that.
const (
	nackRetryMin         = time.Second
	nackRetryMax         = 30 * time.Second
	nackUnsupportedRetry = 10 * time.Minute
	// nackEvidenceGrace is how long a NACK seen by a poll may go without its event before
	// the stream is judged not to carry NACKs; events arrive within milliseconds.
	nackEvidenceGrace = 2 * time.Second
)

// nackWatch is the istio.io/nack subscription to one istiod and what tells whether it
// works. Where istiod answers the subscription without ever streaming a NACK, only the
// polls can tell: a NACK they see, sent after the subscription began, that no event
// announced within nackEvidenceGrace shows the stream does not carry NACKs.
type nackWatch struct {
	mu      sync.Mutex
	since   time.Time             // the current subscription was answered; zero when none
	cancel  context.CancelFunc    // ends the current subscription
	silent  bool                  // the current subscription was shown not to carry NACKs
	seen    map[nackKey]time.Time // last event per proxy and type
	pending map[nackKey]time.Time // NACKs seen by polls without an event, since when
	reason  string                // why the subscription was judged silent
}

type nackKey struct{ proxy, typeURL string }

func newNACKWatch() *nackWatch {
	return &nackWatch{seen: map[nackKey]time.Time{}, pending: map[nackKey]time.Time{}}
}

// subscribed records a subscription istiod answered at at; cancel ends it.
func (w *nackWatch) subscribed(at time.Time, cancel context.CancelFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.since, w.cancel, w.silent, w.reason = at, cancel, false, ""
	clear(w.seen)
	clear(w.pending)
}

// ended records the end of the subscription and says whether it was judged silent.
func (w *nackWatch) ended() (silent bool, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	silent, reason = w.silent, w.reason
	w.since, w.cancel, w.silent, w.reason = time.Time{}, nil, false, ""
	return silent, reason
}

func (w *nackWatch) event(ev reconcile.NACKEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := nackKey{ev.Proxy, ev.TypeURL}
	w.seen[k] = ev.At
	delete(w.pending, k)
}

// checkPoll compares a poll with the events and ends a subscription shown not to carry
// NACKs.
func (w *nackWatch) checkPoll(proxies []reconcile.ProxyStatus, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.since.IsZero() || w.silent {
		return
	}
	still := map[nackKey]bool{}
	for _, p := range proxies {
		for _, ts := range p.Types {
			if ts.State != reconcile.StateError || !ts.SentAt.After(w.since) {
				continue // not a NACK of a push made while subscribed
			}
			k := nackKey{p.ID, ts.TypeURL}
			if at, ok := w.seen[k]; ok && !at.Before(ts.SentAt) {
				continue // announced
			}
			still[k] = true
			first, ok := w.pending[k]
			if !ok {
				w.pending[k] = now
				continue
			}
			if now.Sub(first) >= nackEvidenceGrace {
				w.silent = true
				w.reason = fmt.Sprintf("no event for the NACK of %s by %s, seen by polls for %s", ts.TypeURL, p.ID, now.Sub(first).Round(time.Millisecond))
				w.cancel()
				return
			}
		}
	}
	maps.DeleteFunc(w.pending, func(k nackKey, _ time.Time) bool { return !still[k] })
}

// watchNACKs keeps an istio.io/nack subscription to one istiod until ctx ends. It has its
// own connection, so that neither a refused subscription nor a long-lived stream can
// disturb the syncz reads.
func (r *Reader) watchNACKs(ctx context.Context, t Target, w *nackWatch) {
	delay := nackRetryMin
	for ctx.Err() == nil {
		got, err := r.streamNACKs(ctx, t, w)
		silent, reason := w.ended()
		if ctx.Err() != nil {
			return
		}
		wait := delay
		switch {
		case silent:
			err = fmt.Errorf("%w: %s", errNACKUnsupported, reason)
			fallthrough
		case errors.Is(err, errNACKUnsupported):
			r.logNACKFallback(t.Name, err)
			wait = nackUnsupportedRetry
		case got:
			delay, wait = nackRetryMin, nackRetryMin
		default:
			delay = min(2*delay, nackRetryMax)
		}
		r.log.Debug("nack stream ended", "istiod", t.Name, "error", err, "retry", wait)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// streamNACKs runs one subscription; got reports whether istiod answered at all.
func (r *Reader) streamNACKs(ctx context.Context, t Target, w *nackWatch) (got bool, err error) {
	cc, err := r.cfg.dialXDS(t.Addr)
	if err != nil {
		return false, err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sctx, node, err := r.cfg.streamContext(ctx)
	if err != nil {
		return false, err
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(sctx)
	if err != nil {
		return false, classifyNACKError(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: NACKTypeURL, Node: node}); err != nil {
		if errors.Is(err, io.EOF) {
			_, err = stream.Recv()
		}
		return false, classifyNACKError(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return got, classifyNACKError(err)
		}
		if !got {
			got = true
			w.subscribed(r.now(), cancel)
		}
		if resp.GetTypeUrl() != NACKTypeURL {
			continue
		}
		events, err := ParseNACKResponse(resp, t.Name, r.now())
		if err != nil {
			return got, fmt.Errorf("%w: %w", errNACKUnsupported, err)
		}
		for _, ev := range events {
			w.event(ev)
			r.metrics.nacks.Inc()
			r.sink.ObserveNACK(ev)
		}
		if resp.GetNonce() != "" {
			ack := &discoveryv3.DiscoveryRequest{TypeUrl: NACKTypeURL, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			if err := stream.Send(ack); err != nil && !errors.Is(err, io.EOF) {
				return got, fmt.Errorf("ack nack response: %w", err)
			}
		}
	}
}

// classifyNACKError tells a refused subscription (the type is not offered to us) from a
// broken connection, which is retried.
func classifyNACKError(err error) error {
	switch status.Code(err) {
	case codes.Unimplemented, codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition:
		return fmt.Errorf("%w: %w", errNACKUnsupported, err)
	default:
		return err
	}
}

func (r *Reader) logNACKFallback(name string, err error) {
	r.mu.Lock()
	logged := r.nackLogs[name]
	r.nackLogs[name] = true
	r.mu.Unlock()
	if !logged {
		r.log.Info("istiod does not stream NACKs; they show at the next poll", "istiod", name, "reason", err)
	}
}
