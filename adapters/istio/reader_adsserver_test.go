package istio

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// adsServer is an in-process ADS server for the two things the test bed's real istiod
// cannot do: serve xDS over TLS with token authentication (the bed runs istiod without a
// CA, so its 15012 listener is off), and stream istio.io/nack, which the pinned istiod no
// longer offers (see NACKTypeURL). It answers syncz with a capture from the real istiod,
// and follows istiod's protocol where it matters: the node on a stream's first request,
// one answer per debug request, and NACK events pushed unasked.
type adsServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer

	addr  string
	srv   *grpc.Server
	syncz *discoveryv3.DiscoveryResponse
	// nackErr, when set, refuses istio.io/nack subscriptions as today's istiod does.
	nackErr error
	// synczErr, when set, refuses syncz requests as istiod does a caller debug-endpoint
	// authorization turns away.
	synczErr error

	mu          sync.Mutex
	auth        []string       // the authorization metadata of each stream, "" when none
	nodes       []*corev3.Node // the node of each stream's first request
	synczReads  int
	nackStreams []chan *discoveryv3.DiscoveryResponse
	nackACKs    int
	kick        chan struct{} // closed to end every open stream, as an istiod restart would
}

// tlsFiles are a CA and the paths meshdrift reads.
type tlsFiles struct {
	caFile     string
	serverCert tls.Certificate
}

func newADSServer(t *testing.T, creds credentials.TransportCredentials, syncz *discoveryv3.DiscoveryResponse) *adsServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := &adsServer{addr: lis.Addr().String(), srv: grpc.NewServer(opts...), syncz: syncz, kick: make(chan struct{})}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.srv, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(lis)
	}()
	t.Cleanup(func() {
		s.srv.Stop()
		<-done
	})
	return s
}

func (s *adsServer) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	auth := ""
	if md, ok := metadata.FromIncomingContext(stream.Context()); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			auth = v[0]
		}
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.auth = append(s.auth, auth)
	s.nodes = append(s.nodes, first.GetNode())
	kick := s.kick
	s.mu.Unlock()
	if first.GetNode().GetId() == "" {
		return status.Error(codes.InvalidArgument, "missing node information")
	}

	reqs := make(chan *discoveryv3.DiscoveryRequest, 16)
	go func() {
		defer close(reqs)
		for {
			req, err := stream.Recv()
			if err != nil {
				return
			}
			reqs <- req
		}
	}()
	var pushes chan *discoveryv3.DiscoveryResponse
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.nackStreams = slices.DeleteFunc(s.nackStreams, func(c chan *discoveryv3.DiscoveryResponse) bool { return c == pushes })
	}()
	handle := func(req *discoveryv3.DiscoveryRequest) error {
		switch req.GetTypeUrl() {
		case SynczTypeURL:
			if s.synczErr != nil {
				return s.synczErr
			}
			s.mu.Lock()
			s.synczReads++
			resp := s.syncz
			s.mu.Unlock()
			return stream.Send(resp)
		case NACKTypeURL:
			if req.GetResponseNonce() != "" {
				s.mu.Lock()
				s.nackACKs++
				s.mu.Unlock()
				return nil
			}
			if s.nackErr != nil {
				return s.nackErr
			}
			if pushes == nil {
				pushes = make(chan *discoveryv3.DiscoveryResponse, 16)
				s.mu.Lock()
				s.nackStreams = append(s.nackStreams, pushes)
				s.mu.Unlock()
			}
			// The subscription's own answer is empty, like istiod's.
			return stream.Send(&discoveryv3.DiscoveryResponse{TypeUrl: NACKTypeURL, VersionInfo: "v1", Nonce: "n1"})
		default:
			return status.Errorf(codes.Unimplemented, "type %s", req.GetTypeUrl())
		}
	}
	if err := handle(first); err != nil {
		return err
	}
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				return nil
			}
			if err := handle(req); err != nil {
				return err
			}
		case resp := <-pushes:
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-kick:
			return status.Error(codes.Unavailable, "server restarting")
		case <-stream.Context().Done():
			return nil
		}
	}
}

// setSyncz changes the answer to syncz requests.
func (s *adsServer) setSyncz(resp *discoveryv3.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncz = resp
}

// pushNACK sends resp to every istio.io/nack subscriber and returns how many there were.
func (s *adsServer) pushNACK(resp *discoveryv3.DiscoveryResponse) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.nackStreams {
		ch <- resp
	}
	return len(s.nackStreams)
}

func (s *adsServer) nackSubscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nackStreams)
}

// restartStreams ends every open stream, as a restarting istiod does.
func (s *adsServer) restartStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.kick)
	s.kick = make(chan struct{})
	s.nackStreams = nil
}

func (s *adsServer) seen() (auth []string, nodes []*corev3.Node, synczReads int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...), append([]*corev3.Node(nil), s.nodes...), s.synczReads
}

// newTestCA writes a CA certificate to dir and returns it with a server certificate for
// the names istiod's certificate carries.
func newTestCA(t *testing.T, dir string, serverNames ...string) tlsFiles {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     serverNames,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "root-cert.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tlsFiles{caFile: caFile, serverCert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}
