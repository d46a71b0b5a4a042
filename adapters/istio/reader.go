package istio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Transport is how the reader asks istiod for its per-proxy state.
type Transport string

const (
	// TransportXDSTLS: ADS on 15012 with TLS (Istio root CA) and an istio-ca bearer token.
	TransportXDSTLS Transport = "xds-tls"
	// TransportXDSPlaintext: ADS on 15010; istiod must run with ENABLE_DEBUG_ENDPOINT_AUTH=false.
	TransportXDSPlaintext Transport = "xds-plaintext"
	// TransportHTTP: GET /debug/syncz on 15014, with a bearer token unless from loopback.
	TransportHTTP Transport = "http"
)

func (t Transport) validate() error {
	switch t {
	case TransportXDSTLS, TransportXDSPlaintext, TransportHTTP:
		return nil
	default:
		return fmt.Errorf("transport %q: must be one of %s, %s, %s", t, TransportXDSTLS, TransportXDSPlaintext, TransportHTTP)
	}
}

func (t Transport) isXDS() bool { return t == TransportXDSTLS || t == TransportXDSPlaintext }

// Defaults of ReaderConfig.
const (
	DefaultInterval           = 10 * time.Second
	DefaultReadTimeout        = 5 * time.Second
	DefaultMaxConcurrentReads = 4
	// MinInterval bounds how often the propagation tracker may make the reader poll.
	MinInterval = 100 * time.Millisecond
)

// ReaderConfig says how to read istiod. Zero values get the documented defaults.
type ReaderConfig struct {
	// Transport; default TransportXDSTLS.
	Transport Transport
	// Interval between reads of every istiod; default 10 s.
	Interval time.Duration
	// ReadTimeout bounds one read of one istiod, connecting included; default 5 s.
	ReadTimeout time.Duration
	// MaxConcurrentReads bounds how many istiods are read at once; default 4.
	MaxConcurrentReads int

	// TokenFile holds a projected service account token with audience istio-ca. It is read
	// again for every new connection, as the kubelet rotates it. Sent with xds-tls
	// (required there) and http (optional: to loopback addresses only, unless
	// AllowInsecureTokenOverHTTP); never over plaintext xDS.
	TokenFile string
	// AllowInsecureTokenOverHTTP sends the token over the http transport to non-loopback
	// istiods too, in clear text.
	AllowInsecureTokenOverHTTP bool
	// CAFile is the Istio root CA (xds-tls); read for every new connection.
	CAFile string
	// ServerName is the name istiod's certificate is checked against (xds-tls); default
	// "istiod.<IstioNamespace>.svc", which istiod puts in its certificate for every revision.
	ServerName string
	// IstioNamespace is where istiod runs; default "istio-system".
	IstioNamespace string

	// NodeName, NodeNamespace and NodeServiceAccount identify meshdrift to istiod as an xDS
	// client. istiod checks the namespace and service account against the token, so they
	// default to the token's own claims, else to "meshdrift" in "default".
	NodeName           string
	NodeNamespace      string
	NodeServiceAccount string

	// DisableNACKStream turns off the istio.io/nack subscription (xDS transports only).
	DisableNACKStream bool
}

func (c ReaderConfig) withDefaults() ReaderConfig {
	if c.Transport == "" {
		c.Transport = TransportXDSTLS
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.MaxConcurrentReads == 0 {
		c.MaxConcurrentReads = DefaultMaxConcurrentReads
	}
	if c.IstioNamespace == "" {
		c.IstioNamespace = "istio-system"
	}
	if c.ServerName == "" {
		c.ServerName = "istiod." + c.IstioNamespace + ".svc"
	}
	if c.NodeName == "" {
		c.NodeName = "meshdrift"
	}
	return c
}

func (c ReaderConfig) validate() error {
	var errs []error
	if err := c.Transport.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Interval < MinInterval {
		errs = append(errs, fmt.Errorf("interval %s: must be at least %s", c.Interval, MinInterval))
	}
	if c.ReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("read timeout %s: must be positive", c.ReadTimeout))
	}
	if c.MaxConcurrentReads < 1 {
		errs = append(errs, fmt.Errorf("max concurrent reads %d: must be at least 1", c.MaxConcurrentReads))
	}
	if c.Transport == TransportXDSTLS {
		if c.CAFile == "" {
			errs = append(errs, errors.New("xds-tls needs a CA file"))
		}
		if c.TokenFile == "" {
			errs = append(errs, errors.New("xds-tls needs a token file"))
		}
	}
	return errors.Join(errs...)
}

// ErrNoIstiod is returned by ReadOnce when discovery finds no istiod to read.
var ErrNoIstiod = errors.New("no istiod found")

// Reader polls every istiod for its per-proxy state, one request per istiod per cycle
// (never per proxy), and streams NACKs where istiod offers them. It reports each read to
// the ProxySink and each instance's reachability to the SourceReporter: an istiod that
// cannot be read is reported down and its last view is left alone, never replaced by an
// empty one.
//
// Over xDS the syncz stream stays open between reads (see xdsSynczClient). With debug
// endpoint authentication on (istiod's default), istiod shows a caller whose token is not
// from its root namespace, or a namespace in DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES, only
// the proxies of the caller's own namespace, without saying so: every view is checked
// against istiod's own count of connected proxies and reported restricted, with the fix,
// when it lacks some (restricted.go).
type Reader struct {
	cfg     ReaderConfig
	targets TargetSource
	sink    reconcile.ProxySink
	sources reconcile.SourceReporter
	log     *slog.Logger
	metrics *readerMetrics
	http    *http.Client
	now     func() time.Time

	running          atomic.Bool
	poke             chan struct{}
	intervalChanged  chan struct{}
	intervalOverride atomic.Int64

	mu           sync.Mutex
	status       map[string]reconcile.SourceStatus // by source name
	nackLogs     map[string]bool                   // targets whose NACK fallback was logged
	restrictions map[string]string                 // last logged restriction per target
}

// DiscoverySource is the name of the source status that says whether istiod instances
// can be found: it is down when discovery fails or finds none, as meshdrift then cannot
// tell anything about the mesh. Each instance is the source "istiod/<name>".
const DiscoverySource = "istiod"

func instanceSource(name string) string { return DiscoverySource + "/" + name }

// NewReader builds a reader; nothing runs until Run or ReadOnce. reg may be nil (no
// metrics registered), log may be nil (discarded).
func NewReader(cfg ReaderConfig, targets TargetSource, sink reconcile.ProxySink, sources reconcile.SourceReporter, reg prometheus.Registerer, log *slog.Logger) (*Reader, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("istiod reader: %w", err)
	}
	var errs []error
	if targets == nil {
		errs = append(errs, errors.New("istiod reader: target source is nil"))
	}
	if sink == nil {
		errs = append(errs, errors.New("istiod reader: proxy sink is nil"))
	}
	if sources == nil {
		errs = append(errs, errors.New("istiod reader: source reporter is nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newReaderMetrics(reg, cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("istiod reader: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "istiod-reader")
	logTokenPolicy(cfg, log)
	return &Reader{
		cfg:     cfg,
		targets: targets,
		sink:    sink,
		sources: sources,
		log:     log,
		metrics: m,
		// Each request's context bounds it (ReadTimeout). istiod is in-cluster: no HTTP proxy.
		http: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
		}},
		now:             time.Now,
		poke:            make(chan struct{}, 1),
		intervalChanged: make(chan struct{}, 1),
		status:          map[string]reconcile.SourceStatus{},
		nackLogs:        map[string]bool{},
		restrictions:    map[string]string{},
	}, nil
}

// Poke asks Run for a read of every istiod now, e.g. when a change was just applied.
// Pokes arriving during a read cycle are merged into one more cycle.
func (r *Reader) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// SetInterval changes the polling interval while changes are pending; d <= 0 restores the
// configured interval. Values below MinInterval are raised to it.
func (r *Reader) SetInterval(d time.Duration) {
	if d > 0 {
		d = max(d, MinInterval)
	}
	r.intervalOverride.Store(int64(d))
	select {
	case r.intervalChanged <- struct{}{}:
	default:
	}
}

func (r *Reader) interval() time.Duration {
	if d := time.Duration(r.intervalOverride.Load()); d > 0 {
		return d
	}
	return r.cfg.Interval
}

// Run follows the target source and reads every istiod each interval until ctx ends; it
// returns nil then, or an error when discovery fails.
func (r *Reader) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("istiod reader is already running")
	}
	defer r.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	updates := make(chan []Target, 1)
	watchErr := make(chan error, 1)
	watchDone := false
	defer func() {
		cancel()
		if !watchDone {
			<-watchErr // nothing may report after Run returned
		}
	}()
	go func() {
		watchErr <- r.targets.Watch(ctx, func(ts []Target) {
			// Only the latest set matters: replace one not yet taken.
			select {
			case <-updates:
			default:
			}
			updates <- ts
		}, func(err error) {
			r.setStatus(DiscoverySource, fmt.Errorf("istiod discovery: %w", err))
		})
	}()

	w := &runState{r: r, clients: map[string]*targetClient{}}
	defer w.closeAll()

	ticker := time.NewTicker(r.interval())
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-watchErr:
			watchDone = true
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("target source stopped")
			}
			err = fmt.Errorf("istiod discovery: %w", err)
			r.setStatus(DiscoverySource, err)
			return err
		case ts := <-updates:
			w.setTargets(ctx, ts)
			w.cycle(ctx)
		case <-ticker.C:
			w.cycle(ctx)
		case <-r.poke:
			w.cycle(ctx)
		case <-r.intervalChanged:
			ticker.Reset(r.interval())
		}
	}
}

// ReadOnce reads every istiod the target source knows once, for one-shot checks, with its
// own connections that it closes before returning. Every result goes to the sink and
// reporter as in Run; the returned error joins the failed reads.
func (r *Reader) ReadOnce(ctx context.Context) error {
	ts, err := r.targets.Targets(ctx)
	if err != nil {
		err = fmt.Errorf("istiod discovery: %w", err)
		r.setStatus(DiscoverySource, err)
		return err
	}
	if len(ts) == 0 {
		r.setStatus(DiscoverySource, ErrNoIstiod)
		return ErrNoIstiod
	}
	r.setStatus(DiscoverySource, nil)
	clients := make([]*targetClient, 0, len(ts))
	for _, t := range ts {
		clients = append(clients, r.newTargetClient(t))
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	return errors.Join(r.readAll(ctx, clients)...)
}

// runState is what Run keeps between cycles: a client per target, with its NACK stream.
type runState struct {
	r       *Reader
	clients map[string]*targetClient
	nacks   sync.WaitGroup
}

func (w *runState) setTargets(ctx context.Context, ts []Target) {
	r := w.r
	want := make(map[string]Target, len(ts))
	for _, t := range ts {
		want[t.Name] = t
	}
	for name, c := range w.clients {
		t, ok := want[name]
		if ok && t == c.target {
			continue
		}
		c.close()
		delete(w.clients, name)
		if !ok {
			r.forget(name)
		}
	}
	for _, t := range ts {
		if _, ok := w.clients[t.Name]; ok {
			continue
		}
		c := r.newTargetClient(t)
		w.clients[t.Name] = c
		if r.cfg.Transport.isXDS() && !r.cfg.DisableNACKStream {
			nctx, cancel := context.WithCancel(ctx)
			c.stopNACK, c.nack = cancel, newNACKWatch()
			w.nacks.Add(1)
			go func() {
				defer w.nacks.Done()
				r.watchNACKs(nctx, t, c.nack)
			}()
		}
	}
	if len(ts) == 0 {
		r.setStatus(DiscoverySource, ErrNoIstiod)
	} else {
		r.setStatus(DiscoverySource, nil)
	}
}

func (w *runState) cycle(ctx context.Context) {
	clients := make([]*targetClient, 0, len(w.clients))
	for _, c := range w.clients {
		clients = append(clients, c)
	}
	for _, err := range w.r.readAll(ctx, clients) {
		w.r.log.Debug("istiod read failed", "error", err)
	}
}

func (w *runState) closeAll() {
	for _, c := range w.clients {
		c.close()
	}
	w.nacks.Wait()
}

// forget drops an istiod that no longer exists.
func (r *Reader) forget(name string) {
	r.mu.Lock()
	delete(r.status, instanceSource(name))
	delete(r.nackLogs, name)
	delete(r.restrictions, name)
	r.updateInstancesLocked()
	r.mu.Unlock()
	r.sink.ForgetIstiod(name)
}

// synczClient reads one istiod's syncz over one transport.
type synczClient interface {
	// read returns istiod's push version ("" over HTTP) and its proxies.
	read(ctx context.Context) (pushVersion string, proxies []reconcile.ProxyStatus, err error)
	close()
}

type targetClient struct {
	target Target
	syncz  synczClient
	// signals is istiod's own metrics as last read, and when; read less often than syncz.
	signals   *reconcile.IstiodSignals
	signalsAt time.Time
	nack      *nackWatch // nil without a NACK subscription
	stopNACK  context.CancelFunc
	// restriction is the last count check's finding (restricted.go).
	restriction *reconcile.ViewRestriction
}

func (c *targetClient) close() {
	if c.stopNACK != nil {
		c.stopNACK()
	}
	c.syncz.close()
}

func (r *Reader) newTargetClient(t Target) *targetClient {
	r.logUnverified(t)
	c := &targetClient{target: t}
	if r.cfg.Transport == TransportHTTP {
		c.syncz = newHTTPSynczClient(t, r.http, r.cfg)
	} else {
		c.syncz = &xdsSynczClient{target: t, cfg: r.cfg}
	}
	return c
}

// readAll reads each client once, at most MaxConcurrentReads at a time.
func (r *Reader) readAll(ctx context.Context, clients []*targetClient) []error {
	sem := make(chan struct{}, r.cfg.MaxConcurrentReads)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			if err := r.readTarget(ctx, c); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

// readTarget makes one read of one istiod and reports it.
func (r *Reader) readTarget(ctx context.Context, c *targetClient) error {
	t := c.target
	rctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
	defer cancel()
	// Send and receive times bound istiod's clock offset (reconcile.ClockOffset).
	readStarted := r.now()
	start := time.Now()
	version, proxies, check, err := r.readChecked(ctx, rctx, c)
	elapsed := time.Since(start)
	if err != nil && ctx.Err() != nil {
		return nil // we are shutting down: that says nothing about istiod
	}
	timedOut := errors.Is(rctx.Err(), context.DeadlineExceeded)
	r.metrics.observeRead(err, timedOut, elapsed)
	if err == nil || check.restriction != nil {
		r.reportRestriction(c, check) // an unreachable istiod says nothing about it
	}
	if err != nil {
		if timedOut {
			err = fmt.Errorf("no answer within %s: %w", r.cfg.ReadTimeout, err)
		}
		err = fmt.Errorf("read istiod %s at %s: %w", t.Name, t.Addr, err)
		if rs := check.restriction; rs != nil {
			// Refused, not unreachable: say so, and what to fix, where the istiod is listed.
			err = fmt.Errorf("%s (fix: %s): %w", rs.Reason, rs.Fix, err)
			r.sink.ObserveIstiod(reconcile.IstiodView{Istiod: t.Name, Revision: t.Revision, ObservedAt: r.now(), Signals: c.signals, Restriction: rs})
		}
		r.setStatus(instanceSource(t.Name), err)
		return err
	}
	// istiod's HTTP syncz also lists debug clients (meshdrift's own streams, istioctl):
	// they are not proxies and receive no config.
	proxies = slices.DeleteFunc(proxies, func(p reconcile.ProxyStatus) bool { return debugClientVersions[p.IstioVersion] })
	for i := range proxies {
		proxies[i].Revision = t.Revision
	}
	now := r.now()
	if c.nack != nil {
		c.nack.checkPoll(proxies, now)
	}
	r.refreshSignals(ctx, c, now)
	view := reconcile.IstiodView{
		Istiod:        t.Name,
		Revision:      t.Revision,
		PushVersion:   version,
		Proxies:       proxies,
		ObservedAt:    now,
		ReadStartedAt: readStarted,
		Signals:       c.signals,
		Restriction:   check.restriction,
		Unverified:    check.unverified,
	}
	if d, ok := c.syncz.(interface{ serverDate() time.Time }); ok {
		view.ServerDate = d.serverDate()
	}
	r.sink.ObserveIstiod(view)
	r.setStatus(instanceSource(t.Name), nil)
	return nil
}

// setStatus records a source's state and reports it when the state or its error changed;
// Since stays at the time the source went up or down.
func (r *Reader) setStatus(source string, err error) {
	st := reconcile.SourceStatus{Name: source, Up: err == nil, Since: r.now()}
	if err != nil {
		st.Error = err.Error()
	}
	r.mu.Lock()
	prev, seen := r.status[source]
	if seen && prev.Up == st.Up {
		if prev.Error == st.Error {
			r.mu.Unlock()
			return
		}
		st.Since = prev.Since
	}
	r.status[source] = st
	r.updateInstancesLocked()
	r.mu.Unlock()
	switch {
	case !st.Up:
		r.log.Warn("istiod source down", "source", source, "error", st.Error)
	case seen:
		r.log.Info("istiod source up again", "source", source)
	}
	r.sources.ReportSource(st)
}

func (r *Reader) updateInstancesLocked() {
	up, down := 0, 0
	for name, st := range r.status {
		switch {
		case name == DiscoverySource:
		case st.Up:
			up++
		default:
			down++
		}
	}
	r.metrics.setInstances(up, down)
}
