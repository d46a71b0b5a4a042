package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshdrift/meshdrift/adapters/istio"
	"github.com/meshdrift/meshdrift/internal/testbed"
)

// synczClient reads istiod's syncz over TLS xDS with a token, on one open stream, as
// meshdrift and istioctl do. The harness uses it to record syncz and to measure what one
// read costs istiod.
type synczClient struct {
	cc     *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	node   *corev3.Node
}

func newSynczClient(addr, caFile, token, ns, sa string) (*synczClient, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: testbed.IstiodServerName, MinVersion: tls.VersionTLS12})),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, fmt.Errorf("grpc client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		cc.Close()
		return nil, fmt.Errorf("open ads stream: %w", err)
	}
	node := &corev3.Node{
		Id: fmt.Sprintf("sidecar~127.0.0.1~scale-harness.%s~%s.svc.cluster.local", ns, ns),
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"NAMESPACE": structpb.NewStringValue(ns), "GENERATOR": structpb.NewStringValue("event"),
			"SERVICE_ACCOUNT": structpb.NewStringValue(sa),
		}},
	}
	return &synczClient{cc: cc, stream: stream, cancel: cancel, node: node}, nil
}

func (c *synczClient) read() (*discoveryv3.DiscoveryResponse, error) {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: istio.SynczTypeURL, Node: c.node}
	c.node = nil // istiod takes the node from the stream's first request only
	if err := c.stream.Send(req); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	for range 10 {
		resp, err := c.stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		if resp.GetTypeUrl() == istio.SynczTypeURL {
			return resp, nil
		}
	}
	return nil, fmt.Errorf("no syncz answer")
}

func (c *synczClient) close() {
	c.cancel()
	_ = c.cc.Close()
}

// replicate builds a syncz answer of n proxies from a recorded one: each recorded proxy is
// copied with a new pod name, so the copies keep istiod's real per-type states and times.
func replicate(rec *discoveryv3.DiscoveryResponse, n int, name string) (*discoveryv3.DiscoveryResponse, error) {
	if len(rec.GetResources()) == 0 {
		return nil, fmt.Errorf("recorded syncz holds no proxy")
	}
	var ident map[string]any
	if id := rec.GetControlPlane().GetIdentifier(); id != "" {
		if err := json.Unmarshal([]byte(id), &ident); err != nil {
			return nil, fmt.Errorf("control plane identifier: %w", err)
		}
	} else {
		ident = map[string]any{}
	}
	ident["ID"] = name
	idJSON, err := json.Marshal(ident)
	if err != nil {
		return nil, err
	}
	out := &discoveryv3.DiscoveryResponse{
		TypeUrl: istio.SynczTypeURL, VersionInfo: rec.GetVersionInfo(), Nonce: "replica",
		ControlPlane: &corev3.ControlPlane{Identifier: string(idJSON)},
	}
	for k := range n {
		src := rec.GetResources()[k%len(rec.GetResources())]
		var cc statusv3.ClientConfig
		if err := src.UnmarshalTo(&cc); err != nil {
			return nil, fmt.Errorf("recorded resource: %w", err)
		}
		// sidecar~IP~pod.ns~ns.svc.cluster.local
		parts := strings.Split(cc.GetNode().GetId(), "~")
		if len(parts) == 4 {
			pod, ns, _ := strings.Cut(parts[2], ".")
			parts[2] = fmt.Sprintf("%s-r%d.%s", pod, k, ns)
			cc.Node.Id = strings.Join(parts, "~")
		}
		a, err := anypb.New(&cc)
		if err != nil {
			return nil, err
		}
		out.Resources = append(out.Resources, a)
	}
	return out, nil
}

// replicaServer answers syncz over TLS xDS with a fixed, replicated answer: the rest of a
// 10,000-proxy fleet, as a second istiod meshdrift reads next to the real one. It answers
// nothing else (meshdrift's NACK stream stays silent).
type replicaServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	resp   *discoveryv3.DiscoveryResponse
	srv    *grpc.Server
	Addr   string
	CAFile string // the replica's own root, PEM
}

func (s *replicaServer) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if req.GetTypeUrl() != istio.SynczTypeURL {
			continue
		}
		if err := stream.Send(s.resp); err != nil {
			return err
		}
	}
}

func startReplica(resp *discoveryv3.DiscoveryResponse, dir string) (*replicaServer, error) {
	cert, caPEM, err := selfSignedIstiodCert()
	if err != nil {
		return nil, err
	}
	caFile := dir + "/replica-root.pem"
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &replicaServer{resp: resp, Addr: lis.Addr().String(), CAFile: caFile}
	s.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})),
		grpc.MaxSendMsgSize(256<<20),
		// meshdrift pings every 30 s, as istiod allows; grpc-go's default policy would
		// answer that with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

func (s *replicaServer) stop() { s.srv.Stop() }

// selfSignedIstiodCert is a certificate for istiod's service name, self-signed: meshdrift
// trusts it through a CA file that holds both istiod's root and this one.
func selfSignedIstiodCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "meshdrift scale harness replica"},
		DNSNames:     []string{testbed.IstiodServerName},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return cert, certPEM, err
}

// waitSyncz waits until istiod's syncz lists want proxies, every type of each SYNCED, and
// returns that answer.
func waitSyncz(ctx context.Context, c *synczClient, want int) (*discoveryv3.DiscoveryResponse, error) {
	deadline := time.Now().Add(5 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		resp, err := c.read()
		if err != nil {
			return nil, err
		}
		synced := 0
		for _, r := range resp.GetResources() {
			var cc statusv3.ClientConfig
			if err := r.UnmarshalTo(&cc); err != nil {
				return nil, err
			}
			ok := len(cc.GetGenericXdsConfigs()) > 0
			for _, g := range cc.GetGenericXdsConfigs() {
				if s := g.GetConfigStatus(); s != statusv3.ConfigStatus_SYNCED && s != statusv3.ConfigStatus_NOT_SENT {
					ok = false
				}
			}
			if ok {
				synced++
			}
		}
		last = fmt.Sprintf("%d listed, %d synced, want %d", len(resp.GetResources()), synced, want)
		if synced >= want {
			logf("istiod syncz: %s", last)
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	return nil, fmt.Errorf("istiod's syncz never listed every proxy synced: %s", last)
}

// replicaMetrics serves the part of an istiod /metrics page meshdrift reads next to syncz
// (pilot_info and the pilot_xds connected-proxies gauge), taken from the real istiod's page
// with the gauge set to the replica's proxy count, so that meshdrift checks the replica's
// view as it checks istiod's.
func startReplicaMetrics(ctx context.Context, realAddr string, proxies int) (addr string, stop func(), err error) {
	page, err := fetchText(ctx, "http://"+realAddr+"/metrics")
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	for _, line := range strings.Split(page, "\n") {
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		switch {
		case strings.HasPrefix(name, "pilot_info ") || strings.HasPrefix(name, "pilot_info{"),
			strings.HasPrefix(name, "pilot_xds ") && strings.HasPrefix(line, "#"):
			b.WriteString(line + "\n")
		case strings.HasPrefix(line, "pilot_xds{"):
			if i := strings.LastIndexByte(line, ' '); i > 0 {
				fmt.Fprintf(&b, "%s %d\n", line[:i], proxies)
				proxies = 0 // one version carries them all
			}
		}
	}
	body := b.String()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, body)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), func() { _ = srv.Close() }, nil
}

func fetchText(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
