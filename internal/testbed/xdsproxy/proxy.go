// Package xdsproxy provides fake Envoy sidecars for the test bed: ADS clients that connect to a
// real istiod's plaintext xDS port, follow CDS→EDS and LDS→RDS like Envoy does, and ACK, NACK or
// ignore what istiod pushes, as a test decides at run time.
//
// There is no Envoy binary on the test machines, so these proxies are what istiod's syncz,
// `istioctl proxy-status` and meshdrift see.
package xdsproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Mode says how the proxy answers the responses it receives.
type Mode int

const (
	// ModeACK accepts every response: {version_info, response_nonce, resource_names}.
	ModeACK Mode = iota
	// ModeNACK rejects every response: same nonce, the last accepted version and an error_detail
	// with code 13 (INTERNAL), as Envoy does.
	ModeNACK
	// ModeSilent sends nothing at all, as a stuck proxy would: istiod keeps it STALE.
	ModeSilent
)

func (m Mode) String() string {
	switch m {
	case ModeACK:
		return "ACK"
	case ModeNACK:
		return "NACK"
	case ModeSilent:
		return "Silent"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// DefaultNACKMessage is the error_detail message of a NACK unless SetNACKMessage changed it.
const DefaultNACKMessage = "xdsproxy: configuration rejected by test"

// ErrStopped is returned by WaitFor when the stream has ended, so nothing can change any more.
var ErrStopped = errors.New("proxy stopped")

// Watch is an extra subscription besides CDS, LDS, EDS and RDS, e.g. PCDS or ECDS.
type Watch struct {
	TypeURL string
	// ResourceNames for types that are not wildcard (ECDS, SDS). For ECDS the names of the
	// config_discovery filters found in accepted listeners are added, as Envoy does. Ignored for
	// wildcard types.
	ResourceNames []string
}

// Config identifies the fake sidecar to istiod and tunes the client. Zero values get the defaults
// documented on each field.
type Config struct {
	// Addr is istiod's plaintext xDS address (its --grpcAddr, 15010 in a cluster), host:port.
	// A departure from production, where Envoy connects to 15012 with a workload
	// certificate: there is no Envoy or SDS agent here to hold one. What the tests measure
	// does not depend on it: istiod pushes, tracks ACKs and NACKs, and reports syncz the
	// same for either port, and meshdrift itself reads istiod over TLS with a token, with
	// debug-endpoint authorization on, as in production.
	Addr string

	PodName   string
	Namespace string
	// IP is the pod IP; a WorkloadEntry or ServiceEntry with this IP gives the proxy inbound config.
	IP     string
	Labels map[string]string
	// ServiceAccount is the service account name; default "default".
	ServiceAccount string
	// WorkloadName is the owning workload, e.g. the Deployment; default PodName.
	WorkloadName string
	// ClusterID default "Kubernetes".
	ClusterID string
	// IstioVersion default "1.31.0".
	IstioVersion string
	// MeshID default "cluster.local".
	MeshID string
	// DomainSuffix is the cluster DNS domain used in the node id; default "cluster.local".
	DomainSuffix string
	// ExtraMetadata is merged into the node metadata last, so it can override the generated keys.
	ExtraMetadata map[string]any

	// ExtraWatches are subscribed when the stream opens, after CDS and LDS.
	ExtraWatches []Watch

	// Mode is the initial answering mode; the zero value is ModeACK.
	Mode Mode
	// NACKMessage default DefaultNACKMessage.
	NACKMessage string
	// NACKWhenContains, when set, makes a proxy in ModeACK reject the responses one of
	// whose resources contains it, the way Envoy rejects one bad object among good ones:
	// see SetNACKWhenContains.
	NACKWhenContains string

	// MaxConnectAttempts bounds Start's retries on ResourceExhausted (istiod's connection rate
	// limit) and Unavailable (istiod not ready); default 10.
	MaxConnectAttempts int
	// ConnectBackoff is the delay before the first retry, doubled per attempt up to 5 s with
	// jitter; default 100 ms.
	ConnectBackoff time.Duration
	// CloseTimeout is how long Close waits for istiod to end the stream after the half-close
	// before it cancels the stream; default 2 s.
	CloseTimeout time.Duration
	// DialOptions are appended to the defaults (insecure credentials, 64 MiB receive limit).
	DialOptions []grpc.DialOption
}

const (
	maxBackoff    = 5 * time.Second
	maxRecvBytes  = 64 << 20
	nackErrorCode = int32(codes.Internal) // 13, what Envoy puts in error_detail
)

func (c Config) withDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.ServiceAccount, "default")
	def(&c.WorkloadName, c.PodName)
	def(&c.ClusterID, "Kubernetes")
	def(&c.IstioVersion, "1.31.0")
	def(&c.MeshID, "cluster.local")
	def(&c.DomainSuffix, "cluster.local")
	def(&c.NACKMessage, DefaultNACKMessage)
	if c.MaxConnectAttempts <= 0 {
		c.MaxConnectAttempts = 10
	}
	if c.ConnectBackoff <= 0 {
		c.ConnectBackoff = 100 * time.Millisecond
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 2 * time.Second
	}
	c.Labels = maps.Clone(c.Labels)
	c.ExtraMetadata = maps.Clone(c.ExtraMetadata)
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr is required"))
	}
	if c.PodName == "" {
		errs = append(errs, errors.New("pod name is required"))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("namespace is required"))
	}
	if _, err := netip.ParseAddr(c.IP); err != nil {
		errs = append(errs, fmt.Errorf("ip: %w", err))
	}
	for _, w := range c.ExtraWatches {
		if w.TypeURL == "" {
			errs = append(errs, errors.New("extra watch without type url"))
		}
	}
	return errors.Join(errs...)
}

// Proxy is one fake sidecar. All methods are safe for concurrent use.
type Proxy struct {
	cfg Config

	closeCtx    context.Context // cancelled by Close, so a Start in progress gives up
	closeCancel context.CancelFunc

	// lifeMu serialises Start and Close.
	lifeMu   sync.Mutex
	started  bool
	closed   bool
	closeErr error
	conn     *grpc.ClientConn
	stream   discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel   context.CancelFunc // cancels the stream
	loopDone chan struct{}

	// opMu serialises the protocol: deciding what to send and sending it, so requests leave in
	// the order their state changes were made. Lock order: opMu before mu.
	opMu       sync.Mutex
	types      map[string]*typeProto
	sendStream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node       *corev3.Node
	nodeSent   bool
	sendClosed bool // CloseSend was called: nothing may be sent any more

	// mu guards what tests observe and the modes; it is never held during network I/O.
	mu        sync.Mutex
	mode      Mode
	typeModes map[string]Mode
	nackMsg   string
	nackWhen  string
	connected bool
	stopped   bool
	streamErr error
	stoppedCh chan struct{} // closed when stopped becomes true
	obs       map[string]*TypeState
	changed   chan struct{} // closed and replaced on every observable change
}

// New returns a proxy that has not connected yet; Start connects it.
func New(cfg Config) *Proxy {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Proxy{
		cfg:         cfg,
		closeCtx:    ctx,
		closeCancel: cancel,
		types:       map[string]*typeProto{},
		mode:        cfg.Mode,
		typeModes:   map[string]Mode{},
		nackMsg:     cfg.NACKMessage,
		nackWhen:    cfg.NACKWhenContains,
		obs:         map[string]*TypeState{},
		stoppedCh:   make(chan struct{}),
		changed:     make(chan struct{}),
	}
}

// Name is the proxy as istiod's syncz and istioctl name it: "<pod>.<namespace>".
func (p *Proxy) Name() string { return p.cfg.PodName + "." + p.cfg.Namespace }

// NodeID is the Envoy node id sent to istiod.
func (p *Proxy) NodeID() string {
	return fmt.Sprintf("sidecar~%s~%s~%s.svc.%s", p.cfg.IP, p.Name(), p.cfg.Namespace, p.cfg.DomainSuffix)
}

// Node builds the Envoy node sent on the first request of the stream.
func (p *Proxy) Node() (*corev3.Node, error) {
	c := p.cfg
	labels := make(map[string]any, len(c.Labels))
	for k, v := range c.Labels {
		labels[k] = v
	}
	meta := map[string]any{
		// istiod's syncz skips nodes without PROXY_CONFIG.
		"PROXY_CONFIG":      map[string]any{"discoveryAddress": c.Addr},
		"ISTIO_VERSION":     c.IstioVersion,
		"CLUSTER_ID":        c.ClusterID,
		"NAMESPACE":         c.Namespace,
		"NAME":              c.PodName,
		"LABELS":            labels,
		"INSTANCE_IPS":      c.IP, // istiod reads a comma-separated string
		"SERVICE_ACCOUNT":   c.ServiceAccount,
		"MESH_ID":           c.MeshID,
		"WORKLOAD_NAME":     c.WorkloadName,
		"INTERCEPTION_MODE": "REDIRECT",
		"OWNER":             fmt.Sprintf("kubernetes://apis/apps/v1/namespaces/%s/deployments/%s", c.Namespace, c.WorkloadName),
	}
	maps.Copy(meta, c.ExtraMetadata)
	st, err := structpb.NewStruct(meta)
	if err != nil {
		return nil, fmt.Errorf("build node metadata: %w", err)
	}
	return &corev3.Node{
		Id:            p.NodeID(),
		Cluster:       p.serviceCluster(),
		Metadata:      st,
		UserAgentName: "envoy",
	}, nil
}

// serviceCluster mirrors the sidecar's --serviceCluster: "<canonical name>.<namespace>".
func (p *Proxy) serviceCluster() string {
	name := p.cfg.WorkloadName
	for _, k := range []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"} {
		if v := p.cfg.Labels[k]; v != "" {
			name = v
			break
		}
	}
	return name + "." + p.cfg.Namespace
}

// SetMode sets how every type is answered, except types with their own SetTypeMode. A response
// left unanswered while Silent stays so until the next response of its type or AnswerPending.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
	p.notify()
}

// SetTypeMode overrides the mode for one type URL.
func (p *Proxy) SetTypeMode(typeURL string, m Mode) {
	p.mu.Lock()
	p.typeModes[typeURL] = m
	p.mu.Unlock()
	p.notify()
}

// ClearTypeMode removes the override of SetTypeMode.
func (p *Proxy) ClearTypeMode(typeURL string) {
	p.mu.Lock()
	delete(p.typeModes, typeURL)
	p.mu.Unlock()
	p.notify()
}

// SetNACKMessage sets the error_detail message of the following NACKs.
func (p *Proxy) SetNACKMessage(msg string) {
	p.mu.Lock()
	p.nackMsg = msg
	p.mu.Unlock()
}

// SetNACKWhenContains makes the proxy, while in ModeACK for a type, NACK the responses of
// which a resource contains substr (in any string field, e.g. a route name or host) and
// ACK the others. The NACK's message names the offending resources as Envoy does
// ("Error adding/updating cluster(s) <name>: <NACK message>"; for route configurations
// also the virtual hosts that contain substr), followed by the SetNACKMessage text. ""
// turns it off.
func (p *Proxy) SetNACKWhenContains(substr string) {
	p.mu.Lock()
	p.nackWhen = substr
	p.mu.Unlock()
}

func (p *Proxy) modeFor(typeURL string) Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.typeModes[typeURL]; ok {
		return m
	}
	return p.mode
}

// Start connects to istiod, sends the node with the CDS and LDS subscriptions and returns once
// istiod has answered, so the proxy is known to istiod. It retries ResourceExhausted and
// Unavailable with backoff, at most MaxConnectAttempts times. ctx bounds connecting only; the
// stream lives until Close.
func (p *Proxy) Start(ctx context.Context) error {
	if err := p.cfg.validate(); err != nil {
		return fmt.Errorf("invalid proxy config: %w", err)
	}
	node, err := p.Node()
	if err != nil {
		return err
	}

	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed {
		return fmt.Errorf("start proxy %s: already closed", p.Name())
	}
	if p.started {
		return fmt.Errorf("start proxy %s: already started", p.Name())
	}

	// Close must be able to interrupt a Start that is waiting for istiod.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.closeCtx, cancel)
	defer stop()

	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvBytes)),
	}, p.cfg.DialOptions...)
	conn, err := grpc.NewClient(p.cfg.Addr, opts...)
	if err != nil {
		return fmt.Errorf("create grpc client for %s: %w", p.cfg.Addr, err)
	}

	fail := func(attempt int, err error) error {
		p.opMu.Lock()
		p.sendStream = nil // the failed stream must not be used by AnswerPending
		p.opMu.Unlock()
		_ = conn.Close()
		return fmt.Errorf("connect proxy %s to %s (attempt %d): %w", p.Name(), p.cfg.Addr, attempt, err)
	}
	backoff := p.cfg.ConnectBackoff
	for attempt := 1; ; attempt++ {
		err := p.connect(ctx, conn, node)
		if err == nil {
			p.conn = conn
			p.started = true
			return nil
		}
		code := status.Code(err)
		if ctx.Err() != nil || (code != codes.ResourceExhausted && code != codes.Unavailable) || attempt >= p.cfg.MaxConnectAttempts {
			return fail(attempt, err)
		}
		// Jitter spreads many proxies retrying against the same istiod rate limit.
		delay := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fail(attempt, errors.Join(err, ctx.Err()))
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// connect opens one stream, subscribes, and handles istiod's first response. On success the
// receive loop runs.
func (p *Proxy) connect(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node) error {
	streamCtx, cancel := context.WithCancel(context.Background())
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(streamCtx)
	if err != nil {
		cancel()
		return fmt.Errorf("open ads stream: %w", err)
	}
	p.resetStream(stream, node)
	if err := p.subscribeInitial(); err != nil {
		err = recvAfterSendError(stream, err)
		cancel()
		return err
	}
	// istiod refuses (rate limit, not ready) only after the stream is open, so the first Recv
	// is where a connection attempt really succeeds or fails.
	stop := context.AfterFunc(ctx, cancel)
	resp, err := stream.Recv()
	if !stop() {
		cancel()
		return fmt.Errorf("wait for first response: %w", ctx.Err())
	}
	if err != nil {
		cancel()
		return fmt.Errorf("wait for first response: %w", err)
	}
	p.mu.Lock()
	p.connected = true
	p.mu.Unlock()
	if err := p.handleResponse(resp); err != nil {
		cancel()
		return err
	}
	p.stream = stream
	p.cancel = cancel
	p.loopDone = make(chan struct{})
	go p.receive(stream, cancel, p.loopDone)
	return nil
}

func (p *Proxy) receive(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, cancel context.CancelFunc, done chan<- struct{}) {
	defer close(done)
	for {
		resp, err := stream.Recv()
		if err != nil {
			p.finish(err)
			return
		}
		if err := p.handleResponse(resp); err != nil {
			cancel()
			p.finish(err)
			return
		}
	}
}

// finish records the end of the stream.
func (p *Proxy) finish(err error) {
	p.opMu.Lock()
	closing := p.sendClosed
	p.opMu.Unlock()
	p.mu.Lock()
	// After our half-close, istiod ending the stream (EOF) or our cancel is the expected end.
	if !closing || (!errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled) {
		p.streamErr = fmt.Errorf("ads stream: %w", err)
	}
	p.setStoppedLocked()
	p.mu.Unlock()
	p.notify()
}

func (p *Proxy) setStoppedLocked() {
	p.connected = false
	if !p.stopped {
		p.stopped = true
		close(p.stoppedCh)
	}
}

// Close half-closes the stream so istiod ends it and forgets the proxy, cancels it if istiod
// takes longer than CloseTimeout, and releases the connection. It waits for the proxy's
// goroutines to end. Calling it again returns the first result.
func (p *Proxy) Close() error {
	p.closeCancel()
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed {
		return p.closeErr
	}
	p.closed = true
	if !p.started {
		p.markStopped()
		return nil
	}

	halfClosed := make(chan struct{})
	go func() {
		defer close(halfClosed)
		p.opMu.Lock()
		defer p.opMu.Unlock()
		p.sendClosed = true
		_ = p.stream.CloseSend()
	}()
	t := time.NewTimer(p.cfg.CloseTimeout)
	select {
	case <-p.loopDone:
	case <-t.C:
	}
	t.Stop()
	// Also unblocks a Send stuck on flow control, so the half-close goroutine ends.
	p.cancel()
	<-halfClosed
	<-p.loopDone
	p.markStopped()
	if err := p.conn.Close(); err != nil {
		p.closeErr = fmt.Errorf("close connection to %s: %w", p.cfg.Addr, err)
	}
	return p.closeErr
}

func (p *Proxy) markStopped() {
	p.mu.Lock()
	p.setStoppedLocked()
	p.mu.Unlock()
	p.notify()
}

// Done is closed when the stream has ended, by Close or by istiod; Err then says why.
func (p *Proxy) Done() <-chan struct{} { return p.stoppedCh }

// Err is why the stream ended; nil while it runs or when Close ended it.
func (p *Proxy) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streamErr
}

// Snapshot returns what the proxy has observed so far. Its maps and messages are shared and
// must not be modified.
func (p *Proxy) Snapshot() Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snapshotLocked()
}

func (p *Proxy) snapshotLocked() Snapshot {
	s := Snapshot{
		Connected: p.connected,
		Stopped:   p.stopped,
		Err:       p.streamErr,
		Mode:      p.mode,
		Types:     make(map[string]TypeState, len(p.obs)),
	}
	for k, v := range p.obs {
		s.Types[k] = *v
	}
	return s
}

// Received returns the resources of a type as the proxy currently holds them, by name, decoded
// into go-control-plane types (an *anypb.Any when the type is unknown); nil before any response.
func (p *Proxy) Received(typeURL string) map[string]proto.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.obs[typeURL]; ok {
		return maps.Clone(st.Resources)
	}
	return nil
}

// WaitFor blocks until cond holds for the proxy's snapshot, ctx is done, or the stream has ended
// (ErrStopped). cond runs without locks held and may be called many times.
func (p *Proxy) WaitFor(ctx context.Context, cond func(Snapshot) bool) error {
	for {
		p.mu.Lock()
		snap := p.snapshotLocked()
		changed := p.changed
		p.mu.Unlock()
		if cond(snap) {
			return nil
		}
		if snap.Stopped {
			return fmt.Errorf("wait for proxy %s: %w", p.Name(), errors.Join(ErrStopped, snap.Err))
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for proxy %s: %w", p.Name(), ctx.Err())
		}
	}
}

// notify wakes every WaitFor.
func (p *Proxy) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}
