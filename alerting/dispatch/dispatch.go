// Package dispatch delivers findings to notifiers (Alertmanager, Kubernetes Events, ...) and
// owns, once for all of them, what delivery needs around a notifier: sending new, changed and
// resolved findings at once, re-sending firing ones every resend interval, retrying failures
// with capped exponential backoff, and a bounded queue per notifier that holds through an
// outage. The shape follows Alertmanager's notify pipeline: a notifier only says whether a
// failed call is worth retrying; when and how often is decided here.
//
// The engine calls Update with its whole current set after every pass. Each notifier then
// owes: every firing finding it has not been sent, or that changed (anything but LastSeen);
// every firing finding again once its resend interval has passed; and the resolution of
// every finding it was given as firing. A finding that was firing and is missing from the
// next Update (suppressed, or its subject deleted) is resolved at that moment, so that no
// receiver is left with a firing alert nobody will resolve. A resolved finding the notifier
// never got as firing is not sent: nothing downstream is waiting for it.
//
// The queue holds at most one entry per finding: a newer version replaces a queued older
// one in place, as Prometheus's notifier sends current state rather than history. So a
// finding that fires and resolves during an outage reaches the notifier as resolved. When
// the queue is full, the oldest resolved finding is dropped first (receivers time a firing
// alert out on their own), then the oldest firing one (it is queued again at its next
// resend); every drop is counted.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Notifier delivers findings to one place. Notify gets firing and resolved findings (State
// says which); it returns retry=true when the failure may heal (a connection error, a 5xx,
// a 429) and false when sending the same findings again would fail the same way. A notifier
// does not retry or queue by itself; the dispatcher does.
type Notifier interface {
	// Name is the notifier's label value in metrics and logs; it must be unique and bounded
	// (e.g. "alertmanager/am-0.monitoring:9093", "events").
	Name() string
	Notify(ctx context.Context, fs []findings.Finding) (retry bool, err error)
}

// Defaults for Sink's zero values.
const (
	DefaultResendInterval = 60 * time.Second
	// DefaultQueueCapacity is Prometheus's notification queue capacity.
	DefaultQueueCapacity = 10000
	DefaultMaxBatch      = 64
	DefaultTimeout       = 10 * time.Second
	DefaultBackoffMin    = 500 * time.Millisecond
	DefaultBackoffMax    = 10 * time.Second
)

// Sink is one notifier and how findings are delivered to it.
type Sink struct {
	Notifier Notifier
	// ResendInterval: a delivered firing finding is sent again after this long, so that a
	// receiver that expires alerts (Alertmanager's endsAt) keeps it active. Zero means
	// DefaultResendInterval; negative means never re-send.
	ResendInterval time.Duration
	// QueueCapacity bounds the findings waiting for this notifier.
	QueueCapacity int
	// MaxBatch bounds the findings handed to one Notify call.
	MaxBatch int
	// Timeout bounds one Notify call.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the wait after a retryable failure; it doubles from
	// min with every consecutive failure. No jitter: each sink has one target, and a fixed
	// schedule makes the wait after an outage predictable.
	BackoffMin time.Duration
	BackoffMax time.Duration
}

// Options are shared by every sink of a Dispatcher.
type Options struct {
	// Registerer receives the delivery metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Clock drives resends and backoff; nil means the real clock.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Dispatcher fans the engine's findings out to every sink, each with its own queue,
// resend schedule and backoff, so that one slow or down notifier never delays another.
type Dispatcher struct {
	sinks []*sink
}

// New validates the sinks, fills in defaults and registers the metrics. Nothing is sent
// before Run.
func New(sinks []Sink, opts Options) (*Dispatcher, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	names := map[string]bool{}
	for i, s := range sinks {
		if s.Notifier == nil {
			errs = append(errs, fmt.Errorf("dispatch: sink %d has no notifier", i))
			continue
		}
		name := s.Notifier.Name()
		if name == "" || names[name] {
			errs = append(errs, fmt.Errorf("dispatch: notifier name %q is empty or not unique", name))
		}
		names[name] = true
		if s.QueueCapacity < 0 || s.MaxBatch < 0 || s.Timeout < 0 || s.BackoffMin < 0 || s.BackoffMax < 0 {
			errs = append(errs, fmt.Errorf("dispatch: notifier %s: capacity, batch, timeout and backoff must not be negative", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{}
	for _, s := range sinks {
		s = withDefaults(s)
		name := s.Notifier.Name()
		m.init0(name, s.QueueCapacity)
		d.sinks = append(d.sinks, &sink{
			cfg:    s,
			name:   name,
			clock:  opts.Clock,
			log:    opts.Logger.With("notifier", name),
			m:      m,
			firing: map[string]*known{},
			queue:  map[string]*entry{},
			wake:   make(chan struct{}, 1),
		})
	}
	return d, nil
}

func withDefaults(s Sink) Sink {
	if s.ResendInterval == 0 {
		s.ResendInterval = DefaultResendInterval
	}
	if s.QueueCapacity == 0 {
		s.QueueCapacity = DefaultQueueCapacity
	}
	if s.MaxBatch == 0 {
		s.MaxBatch = DefaultMaxBatch
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.BackoffMin == 0 {
		s.BackoffMin = DefaultBackoffMin
	}
	if s.BackoffMax == 0 {
		s.BackoffMax = max(DefaultBackoffMax, s.BackoffMin)
	}
	return s
}

// Update hands the engine's whole current set to every sink (pending findings are
// ignored). It never blocks on a notifier.
func (d *Dispatcher) Update(current []findings.Finding) {
	for _, s := range d.sinks {
		s.update(current)
	}
}

// Run delivers until ctx ends, then returns nil. Findings still queued then are not sent.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range d.sinks {
		wg.Go(func() { s.run(ctx) })
	}
	wg.Wait()
	<-ctx.Done() // with no sinks, still run as long as the caller's other components
	return nil
}

// known is a finding the notifier was given (or has queued) as firing.
type known struct {
	f findings.Finding
	// sentAt is the last delivery, or the moment it was given up (dropped, rejected);
	// zero while it waits for its first delivery.
	sentAt time.Time
}

// entry is one queued finding.
type entry struct {
	f findings.Finding
	// order is the queue position (oldest first); version tells a delivered entry from
	// one Update replaced during the Notify call.
	order, version uint64
}

type sink struct {
	cfg   Sink
	name  string
	clock clock.Clock
	log   *slog.Logger
	m     *metrics
	wake  chan struct{}

	mu       sync.Mutex
	firing   map[string]*known
	queue    map[string]*entry
	seq      uint64
	failures int
	// failingSince is the first failure of the current run of failures.
	failingSince time.Time
	retryAt      time.Time
}

func (s *sink) update(current []findings.Finding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	seen := make(map[string]bool, len(current))
	for _, f := range current {
		switch f.State {
		case findings.StateFiring:
			seen[f.ID] = true
			k, ok := s.firing[f.ID]
			if !ok {
				s.firing[f.ID] = &known{f: f}
				s.enqueue(f)
				continue
			}
			changed := !sameContent(k.f, f)
			k.f = f
			if e, queued := s.queue[f.ID]; changed {
				s.enqueue(f)
			} else if queued {
				e.f = f // the freshest LastSeen, without a new delivery
			}
		case findings.StateResolved:
			if _, ok := s.firing[f.ID]; ok {
				delete(s.firing, f.ID)
				if f.ResolvedAt.IsZero() {
					f.ResolvedAt = now
				}
				s.enqueue(f)
			}
		}
	}
	for id, k := range s.firing {
		if seen[id] {
			continue
		}
		delete(s.firing, id)
		r := k.f
		r.State, r.ResolvedAt = findings.StateResolved, now
		s.enqueue(r)
	}
	s.m.queueLength.WithLabelValues(s.name).Set(float64(len(s.queue)))
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sameContent reports whether b says nothing new to a receiver compared with a: only
// LastSeen moves on every pass. Times compare as instants (== on time.Time also compares
// the location and monotonic reading, which a re-derived finding may not share).
func sameContent(a, b findings.Finding) bool {
	norm := func(f findings.Finding) findings.Finding {
		f.LastSeen = time.Time{}
		f.StartsAt, f.FirstSeen, f.ResolvedAt = instant(f.StartsAt), instant(f.FirstSeen), instant(f.ResolvedAt)
		return f
	}
	return norm(a) == norm(b)
}

func instant(t time.Time) time.Time { return t.Round(0).UTC() }

func (s *sink) enqueue(f findings.Finding) {
	s.seq++
	if e, ok := s.queue[f.ID]; ok {
		e.f, e.version = f, s.seq
		return
	}
	for len(s.queue) >= s.cfg.QueueCapacity {
		s.dropOldest()
	}
	s.queue[f.ID] = &entry{f: f, order: s.seq, version: s.seq}
}

// dropOldest drops the oldest resolved entry, or else the oldest firing one.
func (s *sink) dropOldest() {
	var victim *entry
	for _, e := range s.queue {
		older := victim == nil || e.order < victim.order
		resolved := e.f.State == findings.StateResolved
		switch {
		case victim == nil,
			resolved && victim.f.State != findings.StateResolved,
			resolved == (victim.f.State == findings.StateResolved) && older:
			victim = e
		}
	}
	if victim == nil {
		return
	}
	delete(s.queue, victim.f.ID)
	if k, ok := s.firing[victim.f.ID]; ok {
		k.sentAt = s.clock.Now() // queued again at its next resend, not at once
	}
	s.m.dropped.WithLabelValues(s.name).Inc()
	s.log.Warn("notification queue full, dropped a finding",
		"capacity", s.cfg.QueueCapacity, "finding", victim.f.ID, "code", victim.f.Code, "state", victim.f.State)
}

// enqueueDue queues every delivered firing finding whose resend interval has passed.
func (s *sink) enqueueDue(now time.Time) {
	if s.cfg.ResendInterval < 0 {
		return
	}
	for id, k := range s.firing {
		if _, queued := s.queue[id]; queued || k.sentAt.IsZero() {
			continue
		}
		if !now.Before(k.sentAt.Add(s.cfg.ResendInterval)) {
			s.enqueue(k.f)
		}
	}
}

// nextResend is the earliest time a firing finding falls due again.
func (s *sink) nextResend() (time.Time, bool) {
	var next time.Time
	if s.cfg.ResendInterval < 0 {
		return next, false
	}
	for id, k := range s.firing {
		if _, queued := s.queue[id]; queued || k.sentAt.IsZero() {
			continue
		}
		if t := k.sentAt.Add(s.cfg.ResendInterval); next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next, !next.IsZero()
}

type sent struct {
	id      string
	version uint64
}

// take returns the oldest queued entries, up to MaxBatch.
func (s *sink) take() ([]findings.Finding, []sent) {
	es := make([]*entry, 0, len(s.queue))
	for _, e := range s.queue {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].order < es[j].order })
	es = es[:min(len(es), s.cfg.MaxBatch)]
	fs := make([]findings.Finding, len(es))
	ids := make([]sent, len(es))
	for i, e := range es {
		fs[i], ids[i] = e.f, sent{id: e.f.ID, version: e.version}
	}
	return fs, ids
}

func (s *sink) run(ctx context.Context) {
	for {
		s.mu.Lock()
		now := s.clock.Now()
		s.enqueueDue(now)
		s.m.queueLength.WithLabelValues(s.name).Set(float64(len(s.queue)))
		var (
			batch   []findings.Finding
			ids     []sent
			wait    time.Duration
			forever bool
		)
		switch next, ok := s.nextResend(); {
		case now.Before(s.retryAt):
			wait = s.retryAt.Sub(now)
		case len(s.queue) > 0:
			batch, ids = s.take()
		case ok:
			wait = next.Sub(now)
		default:
			forever = true
		}
		s.mu.Unlock()

		if batch != nil {
			s.deliver(ctx, batch, ids)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		var timer clock.Timer
		var fire <-chan time.Time
		if !forever {
			timer = s.clock.NewTimer(wait)
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (s *sink) deliver(ctx context.Context, batch []findings.Finding, ids []sent) {
	callCtx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	start := s.clock.Now()
	retry, err := s.cfg.Notifier.Notify(callCtx, batch)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: neither a success nor a failure of the notifier
	}
	s.m.duration.WithLabelValues(s.name).Observe(s.clock.Since(start).Seconds())

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	switch {
	case err == nil:
		s.settle(ids, now, false)
		if s.failures > 0 {
			s.log.Info("notifier delivers again", "failedAttempts", s.failures, "since", s.failingSince)
		}
		s.failures, s.retryAt = 0, time.Time{}
		s.m.notifications.WithLabelValues(s.name, OutcomeSuccess).Inc()
		s.m.lastSuccess.WithLabelValues(s.name).Set(float64(now.UnixNano()) / 1e9)
	case retry:
		s.failures++
		backoff := s.cfg.BackoffMax
		if s.failures < 32 {
			backoff = min(s.cfg.BackoffMin<<(s.failures-1), s.cfg.BackoffMax)
		}
		s.retryAt = now.Add(backoff)
		s.m.notifications.WithLabelValues(s.name, OutcomeRetry).Inc()
		// One warning per outage, not one per attempt; the metrics count every attempt.
		level := slog.LevelDebug
		if s.failures == 1 {
			level, s.failingSince = slog.LevelWarn, now
		}
		s.log.Log(ctx, level, "notify failed, retrying with backoff", "err", err, "findings", len(batch),
			"consecutiveFailures", s.failures, "backoff", backoff)
	default:
		s.settle(ids, now, true)
		s.failures, s.retryAt = 0, time.Time{}
		s.m.notifications.WithLabelValues(s.name, OutcomeFailure).Inc()
		s.log.Error("notifier rejected findings, dropped them", "err", err, "findings", len(batch))
	}
	s.m.queueLength.WithLabelValues(s.name).Set(float64(len(s.queue)))
}

// settle takes delivered (or rejected) entries off the queue, unless Update replaced them
// during the call, and starts the resend clock of the firing ones.
func (s *sink) settle(ids []sent, now time.Time, rejected bool) {
	for _, id := range ids {
		e, ok := s.queue[id.id]
		if !ok || e.version != id.version {
			continue
		}
		delete(s.queue, id.id)
		if rejected {
			s.m.dropped.WithLabelValues(s.name).Inc()
		}
		if k, ok := s.firing[id.id]; ok && e.f.State == findings.StateFiring {
			k.sentAt = now
		}
	}
}
