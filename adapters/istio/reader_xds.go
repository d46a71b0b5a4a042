package istio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshdrift/meshdrift/reconcile"
)

const (
	// maxTokenBytes and maxCABytes bound what is read from the mounted files.
	maxTokenBytes = 64 << 10
	maxCABytes    = 1 << 20
	// maxOtherResponses bounds how many responses of other types a syncz read skips.
	maxOtherResponses = 8
)

// xdsSynczClient reads syncz over one ADS stream that stays open between reads: each read
// is one DiscoveryRequest and its answer. istiod does not register debug requests as
// watches, so nothing arrives on the stream between reads. Measured against the real
// istiod (TestMeasureXDSStreamReuse) a read on an open stream takes a fraction of a new
// connection's, and a new connection costs istiod a proxy initialisation and two log lines.
type xdsSynczClient struct {
	target Target
	cfg    ReaderConfig

	mu     sync.Mutex // one read at a time: responses are matched to requests by order
	cc     *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc // ends stream
	// decoder decodes only the proxies that changed since the last read. It outlives a
	// stream: it compares bytes, so a reconnect (even to another replica) cannot fool it.
	decoder synczDecoder
}

func (c *xdsSynczClient) read(ctx context.Context) (string, []reconcile.ProxyStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reused := c.stream != nil
	version, proxies, err := c.readLocked(ctx)
	if err != nil && reused && c.stream == nil && ctx.Err() == nil {
		// The open stream may have died since the last read (istiod restarted): that is
		// not a failed read yet, so try once on a new connection.
		version, proxies, err = c.readLocked(ctx)
	}
	return version, proxies, err
}

func (c *xdsSynczClient) readLocked(ctx context.Context) (string, []reconcile.ProxyStatus, error) {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: SynczTypeURL}
	if c.stream == nil {
		node, err := c.openLocked(ctx)
		if err != nil {
			c.resetLocked()
			return "", nil, err
		}
		req.Node = node // istiod takes the node from a stream's first request only
	}
	// Recv has no deadline of its own: the read's context ends the stream.
	stop := context.AfterFunc(ctx, c.cancel)
	resp, err := exchangeSyncz(c.stream, req)
	if !stop() {
		// ctx ended and cancelled the stream; a response that made it is still good.
		c.resetLocked()
		if err != nil {
			return "", nil, fmt.Errorf("syncz over xds: %w", ctx.Err())
		}
	}
	if err != nil {
		c.resetLocked()
		return "", nil, fmt.Errorf("syncz over xds: %w", err)
	}
	proxies, err := c.decoder.Decode(resp, c.target.Name)
	if err != nil {
		return "", nil, fmt.Errorf("syncz over xds: %w", err)
	}
	return resp.GetVersionInfo(), proxies, nil
}

// openLocked connects and opens the stream. It is bounded by ctx.
func (c *xdsSynczClient) openLocked(ctx context.Context) (*corev3.Node, error) {
	cc, err := c.cfg.dialXDS(c.target.Addr)
	if err != nil {
		return nil, err
	}
	c.cc = cc
	sctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	sctx, node, err := c.cfg.streamContext(sctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(sctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("open ads stream: %w", ctx.Err())
		}
		return nil, fmt.Errorf("open ads stream: %w", err)
	}
	c.stream = stream
	return node, nil
}

func (c *xdsSynczClient) resetLocked() {
	if c.cancel != nil {
		c.cancel()
	}
	if c.cc != nil {
		_ = c.cc.Close()
	}
	c.cc, c.stream, c.cancel = nil, nil, nil
}

func (c *xdsSynczClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked()
	c.decoder.reset()
}

// exchangeSyncz sends one syncz request and returns its answer.
func exchangeSyncz(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	if err := stream.Send(req); err != nil {
		if errors.Is(err, io.EOF) {
			// The stream is gone; Recv says why.
			_, err = stream.Recv()
		}
		return nil, fmt.Errorf("send request: %w", err)
	}
	for range maxOtherResponses + 1 {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("receive response: %w", err)
		}
		if resp.GetTypeUrl() == SynczTypeURL {
			return resp, nil
		}
	}
	return nil, fmt.Errorf("no %s response among %d responses", SynczTypeURL, maxOtherResponses+1)
}

// dialXDS creates the gRPC client of one istiod. It does not connect yet.
func (c ReaderConfig) dialXDS(addr string) (*grpc.ClientConn, error) {
	creds, err := c.transportCredentials()
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		// A syncz answer carries every proxy of the istiod: allow what the HTTP form allows.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxSynczBodyBytes)),
		// istiod allows pings every 15 s (half its GRPC_KEEPALIVE_INTERVAL) and pings at 30 s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithUserAgent("meshdrift"),
	)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", addr, err)
	}
	return cc, nil
}

func (c ReaderConfig) transportCredentials() (credentials.TransportCredentials, error) {
	if c.Transport != TransportXDSTLS {
		return insecure.NewCredentials(), nil
	}
	pem, err := readBounded(c.CAFile, maxCABytes)
	if err != nil {
		return nil, fmt.Errorf("istio root ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("istio root ca: no certificate in %s", c.CAFile)
	}
	return credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}), nil
}

// streamContext adds the bearer token (xds-tls only: never in clear text) to a stream's
// context and returns the node to introduce the stream with.
func (c ReaderConfig) streamContext(ctx context.Context) (context.Context, *corev3.Node, error) {
	var token string
	if c.Transport == TransportXDSTLS {
		var err error
		if token, err = readToken(c.TokenFile); err != nil {
			return ctx, nil, err
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx, c.xdsNode(token), nil
}

// xdsNode is how meshdrift introduces itself on an ADS stream. istiod accepts only proxy
// node types and a valid IP, so it is a "sidecar" on loopback with the "event" generator,
// like istioctl's node; without PROXY_CONFIG istiod leaves it out of syncz. With a token,
// istiod's identity check wants the node's namespace and service account to match the
// token's.
func (c ReaderConfig) xdsNode(token string) *corev3.Node {
	ns, sa := c.NodeNamespace, c.NodeServiceAccount
	if token != "" {
		tns, tsa := tokenIdentity(token)
		if ns == "" {
			ns = tns
		}
		if sa == "" {
			sa = tsa
		}
	}
	if ns == "" {
		ns = "default"
	}
	md := map[string]*structpb.Value{
		"NAMESPACE": structpb.NewStringValue(ns),
		// Debug and status types go to istiod's "event" generator, as istioctl's do; the
		// default "api" generator would log a warning for istio.io/nack on every push.
		"GENERATOR": structpb.NewStringValue("event"),
	}
	if sa != "" {
		md["SERVICE_ACCOUNT"] = structpb.NewStringValue(sa)
	}
	return &corev3.Node{
		Id:            fmt.Sprintf("sidecar~127.0.0.1~%s.%s~%s.svc.cluster.local", c.NodeName, ns, ns),
		Metadata:      &structpb.Struct{Fields: md},
		UserAgentName: "meshdrift",
	}
}

// tokenIdentity reads the namespace and service account a Kubernetes service account
// token names. The signature is istiod's to check, not ours.
func tokenIdentity(token string) (namespace, serviceAccount string) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", ""
	}
	var claims struct {
		Sub string `json:"sub"`
		K8s struct {
			Namespace      string `json:"namespace"`
			ServiceAccount struct {
				Name string `json:"name"`
			} `json:"serviceaccount"`
		} `json:"kubernetes.io"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return "", ""
	}
	if claims.K8s.Namespace != "" {
		return claims.K8s.Namespace, claims.K8s.ServiceAccount.Name
	}
	// Older tokens only have sub: system:serviceaccount:<namespace>:<name>.
	if rest, ok := strings.CutPrefix(claims.Sub, "system:serviceaccount:"); ok {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			return ns, name
		}
	}
	return "", ""
}

// readToken reads a bearer token file. Errors name the file, never its content.
func readToken(path string) (string, error) {
	b, err := readBounded(path, maxTokenBytes)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("token: %s is empty", path)
	}
	return token, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
