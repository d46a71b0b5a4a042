package xdsproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// fakeADS is a minimal state-of-the-world ADS server that answers like istiod does
// (pkg/xds.ShouldRespond): it responds to initial requests and to subscription changes carrying
// the latest nonce, never to ACKs or NACKs. The go-control-plane server lives in another module
// than the one in go.mod, hence this hand-rolled one.
type fakeADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer

	addr string
	grpc *grpc.Server

	mu          sync.Mutex
	rejectFirst int // streams refused with ResourceExhausted, like istiod's rate limit
	streams     int
	content     map[string]typeContent
	active      *serverStream
	requests    []*discoveryv3.DiscoveryRequest
	newRequest  chan struct{} // closed and replaced on every request
	ended       chan error    // result of every served stream
	nonceSeq    int
}

type typeContent struct {
	version   string
	resources []proto.Message
}

type serverStream struct {
	sendMu sync.Mutex // serialises Send and the nonce bookkeeping with it
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	watch  map[string]*serverWatch // guarded by fakeADS.mu
}

type serverWatch struct {
	names     []string
	nonceSent string
}

func newFakeADS(t *testing.T) *fakeADS {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &fakeADS{
		addr:       lis.Addr().String(),
		grpc:       grpc.NewServer(),
		content:    map[string]typeContent{},
		newRequest: make(chan struct{}),
		ended:      make(chan error, 100),
	}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, s)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.grpc.Serve(lis)
	}()
	t.Cleanup(func() {
		s.grpc.Stop()
		<-served
	})
	return s
}

func (s *fakeADS) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) (err error) {
	s.mu.Lock()
	s.streams++
	reject := s.streams <= s.rejectFirst
	s.mu.Unlock()
	if reject {
		return status.Error(codes.ResourceExhausted, "request rate limit exceeded: rate: Wait(n=1) would exceed context deadline")
	}

	ss := &serverStream{stream: stream, watch: map[string]*serverWatch{}}
	s.mu.Lock()
	s.active = ss
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.active == ss {
			s.active = nil
		}
		s.mu.Unlock()
		s.ended <- err
	}()

	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if s.handle(ss, req) {
			if _, err := s.respond(ss, req.GetTypeUrl()); err != nil {
				return err
			}
		}
	}
}

// handle records a request and decides whether to respond, as istiod does.
func (s *fakeADS) handle(ss *serverStream, req *discoveryv3.DiscoveryRequest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
	close(s.newRequest)
	s.newRequest = make(chan struct{})

	t := req.GetTypeUrl()
	if req.GetErrorDetail() != nil {
		return false
	}
	w, ok := ss.watch[t]
	if req.GetResponseNonce() == "" || !ok {
		ss.watch[t] = &serverWatch{names: req.GetResourceNames()}
		_, has := s.content[t]
		return has
	}
	if req.GetResponseNonce() != w.nonceSent {
		return false // expired nonce
	}
	changed := !slices.Equal(w.names, req.GetResourceNames())
	w.names = req.GetResourceNames()
	_, has := s.content[t]
	return changed && has
}

// respond sends the current content of a type, filtered by the watched names for non-wildcard
// types, and returns the nonce.
func (s *fakeADS) respond(ss *serverStream, t string) (string, error) {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	s.mu.Lock()
	c := s.content[t]
	w := ss.watch[t]
	s.nonceSeq++
	nonce := fmt.Sprintf("%s-nonce%d", c.version, s.nonceSeq)
	w.nonceSent = nonce
	names := w.names
	s.mu.Unlock()

	resp := &discoveryv3.DiscoveryResponse{TypeUrl: t, VersionInfo: c.version, Nonce: nonce}
	for _, r := range c.resources {
		if !isWildcard(t) && !slices.Contains(names, resourceName(r)) {
			continue
		}
		a, err := anypb.New(r)
		if err != nil {
			return "", fmt.Errorf("marshal %s: %w", t, err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return nonce, ss.stream.Send(resp)
}

// set replaces the content of a type and pushes it to the connected proxy if it watches the type.
// It returns the nonce pushed, "" when nothing was pushed.
func (s *fakeADS) set(t *testing.T, typeURL, version string, resources ...proto.Message) string {
	t.Helper()
	s.mu.Lock()
	s.content[typeURL] = typeContent{version: version, resources: resources}
	ss := s.active
	var watched bool
	if ss != nil {
		w, ok := ss.watch[typeURL]
		watched = ok && (isWildcard(typeURL) || len(w.names) > 0)
	}
	s.mu.Unlock()
	if !watched {
		return ""
	}
	nonce, err := s.respond(ss, typeURL)
	if err != nil {
		t.Fatalf("push %s: %v", typeURL, err)
	}
	return nonce
}

// mark is the index of the next request, for waitRequest.
func (s *fakeADS) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// waitRequest returns the first request at or after index from that matches.
func (s *fakeADS) waitRequest(t *testing.T, from int, match func(*discoveryv3.DiscoveryRequest) bool) *discoveryv3.DiscoveryRequest {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		reqs := s.requests[min(from, len(s.requests)):]
		ch := s.newRequest
		s.mu.Unlock()
		for _, r := range reqs {
			if match(r) {
				return r
			}
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("no matching request after index %d; got %v", from, s.requestsSince(from))
			return nil
		}
	}
}

func (s *fakeADS) requestsSince(from int) []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests[min(from, len(s.requests)):])
}

func (s *fakeADS) streamCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams
}

func ofType(typeURL string) func(*discoveryv3.DiscoveryRequest) bool {
	return func(r *discoveryv3.DiscoveryRequest) bool { return r.GetTypeUrl() == typeURL }
}

func ackOf(typeURL, nonce string) func(*discoveryv3.DiscoveryRequest) bool {
	return func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == typeURL && r.GetResponseNonce() == nonce
	}
}

func withNames(typeURL string, names ...string) func(*discoveryv3.DiscoveryRequest) bool {
	return func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetTypeUrl() == typeURL && slices.Equal(r.GetResourceNames(), names)
	}
}
