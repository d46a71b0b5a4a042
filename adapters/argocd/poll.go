package argocd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshdrift/meshdrift/adapters/adaptermetrics"
	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

// Defaults for PollerConfig's zero values.
const (
	DefaultPollInterval = 30 * time.Second
	// DefaultPollSourceName keeps the API-server source apart from the Kubernetes watch
	// (SourceName) in SourceStatus.
	DefaultPollSourceName = "argocd-api"
)

// PollerConfig configures polling Argo CD's API server.
type PollerConfig struct {
	// Interval is the time between the starts of two lists. Zero means DefaultPollInterval.
	Interval time.Duration
	// SourceName names the source in SourceStatus. Empty means DefaultPollSourceName.
	SourceName string
}

// AppLister lists every Application a source holds, all or nothing: on error it returns
// no apps. *APIServerClient is one.
type AppLister interface {
	ListApps(ctx context.Context) ([]reconcile.App, error)
}

// Poller reads Applications from Argo CD's API server, for installations where meshdrift
// cannot watch them in Kubernetes; use it instead of a Watcher, not beside one, as both
// report the same apps. Every interval it lists all apps, observes each, and forgets those
// a successful list no longer holds. A failed list reports the source down and keeps the
// apps as last seen: an unreachable server says nothing about whether apps were deleted.
type Poller struct {
	cfg     PollerConfig
	lister  AppLister
	sink    reconcile.AppSink
	status  *sourceStatus
	log     *slog.Logger
	objects prometheus.Gauge
	running atomic.Bool
	synced  atomic.Bool

	// mu serialises polls and guards known, the apps of the last successful list.
	mu    sync.Mutex
	known map[reconcile.AppKey]struct{}
}

// NewPoller checks cfg and registers the adapter metrics in reg (nil: unregistered).
func NewPoller(cfg PollerConfig, lister AppLister, sink reconcile.AppSink, sources reconcile.SourceReporter,
	reg prometheus.Registerer, log *slog.Logger) (*Poller, error) {
	if lister == nil || sink == nil || sources == nil {
		return nil, errors.New("argo cd poller: a lister, an app sink and a source reporter are required")
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("argo cd poller: interval %s is negative", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultPollInterval
	}
	if cfg.SourceName == "" {
		cfg.SourceName = DefaultPollSourceName
	}
	m, err := adaptermetrics.New(reg)
	if err != nil {
		return nil, fmt.Errorf("argo cd poller: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("adapter", adapterLabel, "source", cfg.SourceName)
	return &Poller{
		cfg:     cfg,
		lister:  lister,
		sink:    sink,
		status:  &sourceStatus{name: cfg.SourceName, reporter: sources, log: log, now: time.Now},
		log:     log,
		objects: m.Objects.WithLabelValues(adapterLabel, appview.Kind),
		known:   map[reconcile.AppKey]struct{}{},
	}, nil
}

// Run lists at once and then every interval until ctx is done; it returns nil then. It may
// be called once. A list slower than the interval delays the next one.
func (p *Poller) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("argo cd poller: already running")
	}
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		_ = p.poll(ctx) // reported as the source's status
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// poll lists once and reports the result.
func (p *Poller) poll(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	apps, err := p.lister.ListApps(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // shutting down: not the source's fault
		}
		p.status.set(false, err.Error())
		return err
	}
	seen := make(map[reconcile.AppKey]struct{}, len(apps))
	for _, a := range apps {
		seen[a.Key] = struct{}{}
		p.sink.ObserveApp(a)
	}
	var gone []reconcile.AppKey
	for k := range p.known {
		if _, ok := seen[k]; !ok {
			gone = append(gone, k)
		}
	}
	// Sorted so that logs and sinks see a stable order.
	slices.SortFunc(gone, func(a, b reconcile.AppKey) int { return cmp.Compare(a.String(), b.String()) })
	for _, k := range gone {
		p.sink.ForgetApp(k)
	}
	if len(gone) > 0 {
		p.log.Debug("argo cd applications gone from the api server", "count", len(gone))
	}
	p.known = seen
	p.objects.Set(float64(len(seen)))
	p.synced.Store(true)
	p.status.set(true, "")
	return nil
}

// HasSynced reports whether a list has succeeded, so that the sink holds every app.
func (p *Poller) HasSynced() bool { return p.synced.Load() }
