package dispatch

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// These are unit tests: a fake notifier on a fake clock. Alertmanager itself is tested
// against the real program in alerting/alertmanager.

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

type call struct {
	at time.Time
	fs []findings.Finding
}

// fakeNotifier records every call; result decides each call's answer (nil: success).
type fakeNotifier struct {
	name  string
	clock *clocktesting.FakeClock
	calls chan call

	mu     sync.Mutex
	result func(n int, fs []findings.Finding) (bool, error)
	n      int
}

func newFake(name string, c *clocktesting.FakeClock) *fakeNotifier {
	return &fakeNotifier{name: name, clock: c, calls: make(chan call, 100)}
}

func (f *fakeNotifier) Name() string { return f.name }

func (f *fakeNotifier) Notify(_ context.Context, fs []findings.Finding) (bool, error) {
	f.mu.Lock()
	f.n++
	n, result := f.n, f.result
	f.mu.Unlock()
	f.calls <- call{at: f.clock.Now(), fs: append([]findings.Finding(nil), fs...)}
	if result == nil {
		return false, nil
	}
	return result(n, fs)
}

func (f *fakeNotifier) setResult(r func(n int, fs []findings.Finding) (bool, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.result = r
}

var errDown = errors.New("connection refused")

func down(int, []findings.Finding) (bool, error) { return true, errDown }

type harness struct {
	t     *testing.T
	clock *clocktesting.FakeClock
	reg   *prometheus.Registry
	d     *Dispatcher
}

func start(t *testing.T, sinks ...Sink) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewPedanticRegistry()}
	h.clock = sinks[0].Notifier.(*fakeNotifier).clock
	d, err := New(sinks, Options{Registerer: h.reg, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// next waits for the notifier's next call.
func next(t *testing.T, f *fakeNotifier) call {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no Notify call", f.name)
		return call{}
	}
}

// none asserts that the notifier is not called. The dispatcher calls at once when
// something is due, so a short real wait is enough to see a wrong call.
func none(t *testing.T, f *fakeNotifier) {
	t.Helper()
	select {
	case c := <-f.calls:
		t.Fatalf("%s: unexpected Notify call at %s with %v", f.name, c.at, states(c.fs))
	case <-time.After(100 * time.Millisecond):
	}
}

// step waits until the dispatcher sleeps on the clock, then moves it on.
func (h *harness) step(d time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !h.clock.HasWaiters() {
		if time.Now().After(deadline) {
			h.t.Fatal("dispatcher is not waiting on the clock")
		}
		time.Sleep(time.Millisecond)
	}
	h.clock.Step(d)
}

func firing(id string) findings.Finding {
	return findings.Finding{
		ID: id, Code: "MD0201", Name: "ChangeNACKed", Severity: findings.SeverityCritical,
		State: findings.StateFiring, Summary: "a proxy rejected " + id, Evidence: "nack " + id,
		StartsAt: t0.Add(-time.Minute), FirstSeen: t0, LastSeen: t0,
	}
}

func resolved(f findings.Finding, at time.Time) findings.Finding {
	f.State, f.ResolvedAt = findings.StateResolved, at
	return f
}

func states(fs []findings.Finding) map[string]findings.State {
	m := map[string]findings.State{}
	for _, f := range fs {
		m[f.ID] = f.State
	}
	return m
}

func wantBatch(t *testing.T, c call, want map[string]findings.State) {
	t.Helper()
	got := states(c.fs)
	if len(got) != len(want) || len(c.fs) != len(want) {
		t.Fatalf("batch = %v, want %v", got, want)
	}
	for id, s := range want {
		if got[id] != s {
			t.Fatalf("batch = %v, want %v", got, want)
		}
	}
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func TestFiringIsSentAtOnceAndResentEveryInterval(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	h := start(t, Sink{Notifier: f, ResendInterval: time.Minute})

	a := firing("a")
	h.d.Update([]findings.Finding{a})
	first := next(t, f)
	wantBatch(t, first, map[string]findings.State{"a": findings.StateFiring})
	if !first.at.Equal(t0) {
		t.Fatalf("first send at %s, want at once (%s)", first.at, t0)
	}

	// A later pass that only moves LastSeen is nothing new, nor is the same start in
	// another location.
	a.LastSeen = t0.Add(10 * time.Second)
	again := a
	again.StartsAt = a.StartsAt.In(time.FixedZone("CET", 3600))
	h.d.Update([]findings.Finding{again})
	none(t, f)

	h.step(59 * time.Second)
	none(t, f)
	h.step(time.Second)
	resend := next(t, f)
	wantBatch(t, resend, map[string]findings.State{"a": findings.StateFiring})
	if got := resend.fs[0].LastSeen; !got.Equal(a.LastSeen) {
		t.Errorf("resend carries LastSeen %s, want the latest %s", got, a.LastSeen)
	}
	h.step(time.Minute)
	if got := next(t, f).at; !got.Equal(t0.Add(2 * time.Minute)) {
		t.Errorf("second resend at %s, want %s", got, t0.Add(2*time.Minute))
	}
	if got := settledCounter(t, h.d.sinks[0].m.notifications.WithLabelValues("am", OutcomeSuccess), 3); got != 3 {
		t.Errorf("successes = %v, want 3", got)
	}
	if got := settledCounter(t, h.d.sinks[0].m.lastSuccess.WithLabelValues("am"), float64(t0.Add(2*time.Minute).Unix())); got != float64(t0.Add(2*time.Minute).Unix()) {
		t.Errorf("last success = %v", got)
	}
}

func TestChangedFindingIsSentAtOnce(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	h := start(t, Sink{Notifier: f})

	a := firing("a")
	h.d.Update([]findings.Finding{a})
	next(t, f)
	h.step(5 * time.Second)
	a.Evidence = "another nack"
	h.d.Update([]findings.Finding{a})
	got := next(t, f)
	if got.fs[0].Evidence != "another nack" || !got.at.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("got %q at %s, want the new evidence at once", got.fs[0].Evidence, got.at)
	}
}

func TestResolvedIsSentOnceAndNeverResent(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	h := start(t, Sink{Notifier: f, ResendInterval: time.Minute})

	a := firing("a")
	h.d.Update([]findings.Finding{a})
	next(t, f)
	resolvedAt := t0.Add(-time.Second) // the engine's time, not the dispatcher's
	h.d.Update([]findings.Finding{resolved(a, resolvedAt)})
	got := next(t, f)
	wantBatch(t, got, map[string]findings.State{"a": findings.StateResolved})
	if !got.fs[0].ResolvedAt.Equal(resolvedAt) {
		t.Errorf("ResolvedAt = %s, want the engine's %s", got.fs[0].ResolvedAt, resolvedAt)
	}
	// The engine may keep reporting it resolved; nothing more is owed.
	h.d.Update([]findings.Finding{resolved(a, resolvedAt)})
	none(t, f)
	if c.HasWaiters() {
		t.Error("a resend is scheduled although nothing is firing")
	}
}

func TestVanishedFiringFindingIsResolved(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	h := start(t, Sink{Notifier: f})

	h.d.Update([]findings.Finding{firing("a"), firing("b")})
	next(t, f)
	h.step(3 * time.Second)
	h.d.Update([]findings.Finding{firing("b")}) // a suppressed, or its object deleted
	got := next(t, f)
	wantBatch(t, got, map[string]findings.State{"a": findings.StateResolved})
	if !got.fs[0].ResolvedAt.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("ResolvedAt = %s, want the moment it vanished", got.fs[0].ResolvedAt)
	}
}

func TestPendingAndNeverFiredAreNotSent(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	h := start(t, Sink{Notifier: f})

	p := firing("p")
	p.State = findings.StatePending
	h.d.Update([]findings.Finding{p, resolved(firing("r"), t0)})
	none(t, f)
	if got := counter(t, h.d.sinks[0].m.queueLength.WithLabelValues("am")); got != 0 {
		t.Errorf("queue length = %v, want 0", got)
	}
}

func TestRetryBacksOffExponentiallyUpToTheCap(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	f.setResult(func(n int, _ []findings.Finding) (bool, error) {
		if n <= 5 {
			return true, errDown
		}
		return false, nil
	})
	h := start(t, Sink{Notifier: f, ResendInterval: time.Minute, BackoffMin: time.Second, BackoffMax: 4 * time.Second})

	h.d.Update([]findings.Finding{firing("a")})
	var at []time.Duration
	at = append(at, next(t, f).at.Sub(t0))
	// Step a quarter second at a time: a call before its backoff ended shows as a wrong time.
	for i := 0; len(at) < 6 && i < 200; i++ {
		h.step(250 * time.Millisecond)
		if c, ok := poll(f); ok {
			at = append(at, c.at.Sub(t0))
		}
	}
	want := []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second, 15 * time.Second}
	if len(at) != len(want) {
		t.Fatalf("calls at %v, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("calls at %v, want %v (backoff 1s, 2s, 4s, 4s, 4s)", at, want)
		}
	}
	// The fake records a call before it returns; the dispatcher counts the outcome after.
	m := h.d.sinks[0].m
	s := settledCounter(t, m.notifications.WithLabelValues("am", OutcomeSuccess), 1)
	r := counter(t, m.notifications.WithLabelValues("am", OutcomeRetry))
	if r != 5 || s != 1 {
		t.Errorf("retry=%v success=%v, want 5 and 1", r, s)
	}
	// After the success the resend clock starts from the delivery.
	h.step(time.Minute)
	if got := next(t, f).at.Sub(t0); got != 15*time.Second+time.Minute {
		t.Errorf("resend at %s, want 1m15s", got)
	}
}

// settledCounter reads a metric once it shows want, or after 5 s: the fake notifier
// records a call before it returns, and the dispatcher counts the outcome after.
func settledCounter(t *testing.T, m prometheus.Collector, want float64) float64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := counter(t, m)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// poll returns a call if one arrives shortly.
func poll(f *fakeNotifier) (call, bool) {
	select {
	case c := <-f.calls:
		return c, true
	case <-time.After(20 * time.Millisecond):
		return call{}, false
	}
}

func TestOutageHoldsEverythingAndDeliversCurrentState(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	f.setResult(down)
	h := start(t, Sink{Notifier: f, BackoffMin: time.Second, BackoffMax: time.Second})

	h.d.Update([]findings.Finding{firing("a")})
	next(t, f) // fails
	// During the outage: a resolves, b fires, c fires and resolves.
	h.d.Update([]findings.Finding{resolved(firing("a"), t0), firing("b"), firing("c")})
	h.d.Update([]findings.Finding{firing("b"), resolved(firing("c"), t0)})
	if got := counter(t, h.d.sinks[0].m.queueLength.WithLabelValues("am")); got != 3 {
		t.Fatalf("queue length = %v, want 3", got)
	}
	for range 3 {
		h.step(time.Second)
		next(t, f)
	}
	f.setResult(nil)
	h.step(time.Second)
	got := next(t, f)
	wantBatch(t, got, map[string]findings.State{
		"a": findings.StateResolved, "b": findings.StateFiring, "c": findings.StateResolved,
	})
	if got.fs[0].ID != "a" {
		t.Errorf("order %v: the oldest queued finding goes first", got.fs)
	}
	if d := counter(t, h.d.sinks[0].m.dropped.WithLabelValues("am")); d != 0 {
		t.Errorf("dropped = %v, want 0", d)
	}
	if got := counter(t, h.d.sinks[0].m.queueLength.WithLabelValues("am")); got != 0 {
		t.Errorf("queue length = %v after delivery, want 0", got)
	}
}

func TestFullQueueDropsOldestResolvedFirst(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	f.setResult(down)
	h := start(t, Sink{Notifier: f, QueueCapacity: 3, ResendInterval: time.Minute, BackoffMin: 10 * time.Second, BackoffMax: 10 * time.Second})
	m := h.d.sinks[0].m

	h.d.Update([]findings.Finding{firing("a"), firing("b")})
	next(t, f)                                               // fails; a and b stay queued
	h.d.Update([]findings.Finding{firing("b")})              // a resolved: a(resolved), b
	h.d.Update([]findings.Finding{firing("b"), firing("c")}) // a(resolved), b, c: full
	h.d.Update([]findings.Finding{firing("b"), firing("c"), firing("d")})
	if got := counter(t, m.dropped.WithLabelValues("am")); got != 1 {
		t.Fatalf("dropped = %v, want 1 (the resolved a)", got)
	}
	h.d.Update([]findings.Finding{firing("b"), firing("c"), firing("d"), firing("e")})
	if got := counter(t, m.dropped.WithLabelValues("am")); got != 2 {
		t.Fatalf("dropped = %v, want 2 (then the oldest firing, b)", got)
	}
	f.setResult(nil)
	h.step(10 * time.Second)
	wantBatch(t, next(t, f), map[string]findings.State{
		"c": findings.StateFiring, "d": findings.StateFiring, "e": findings.StateFiring,
	})
	// b is still firing: it comes back at its next resend, counted from when it was dropped.
	h.step(50 * time.Second)
	wantBatch(t, next(t, f), map[string]findings.State{"b": findings.StateFiring})
}

func TestRejectedFindingsAreDroppedNotRetried(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	f.setResult(func(n int, _ []findings.Finding) (bool, error) {
		if n == 1 {
			return false, errors.New("400 bad request")
		}
		return false, nil
	})
	h := start(t, Sink{Notifier: f, ResendInterval: time.Minute})
	m := h.d.sinks[0].m

	h.d.Update([]findings.Finding{firing("a")})
	next(t, f)
	h.step(30 * time.Second)
	none(t, f)
	if got := counter(t, m.notifications.WithLabelValues("am", OutcomeFailure)); got != 1 {
		t.Errorf("failures = %v, want 1", got)
	}
	if got := counter(t, m.dropped.WithLabelValues("am")); got != 1 {
		t.Errorf("dropped = %v, want 1", got)
	}
	// Still firing, so it is tried again at the resend interval, not in a hot loop.
	h.step(30 * time.Second)
	if got := next(t, f).at.Sub(t0); got != time.Minute {
		t.Errorf("next try at %s, want 1m", got)
	}
}

func TestBatchesAreBounded(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	h := start(t, Sink{Notifier: f, MaxBatch: 2})

	h.d.Update([]findings.Finding{firing("a"), firing("b"), firing("c"), firing("d"), firing("e")})
	sizes := []int{len(next(t, f).fs), len(next(t, f).fs), len(next(t, f).fs)}
	if sizes[0] != 2 || sizes[1] != 2 || sizes[2] != 1 {
		t.Fatalf("batch sizes %v, want [2 2 1]", sizes)
	}
}

func TestUpdateDuringNotifyIsNotLost(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	f := newFake("am", c)
	release := make(chan struct{})
	f.setResult(func(n int, _ []findings.Finding) (bool, error) {
		if n == 1 {
			<-release
		}
		return false, nil
	})
	h := start(t, Sink{Notifier: f})

	a := firing("a")
	h.d.Update([]findings.Finding{a})
	next(t, f) // in flight with the old evidence
	a.Evidence = "newer nack"
	h.d.Update([]findings.Finding{a})
	close(release)
	got := next(t, f)
	if got.fs[0].Evidence != "newer nack" {
		t.Fatalf("second call has %q, want the version updated during the first call", got.fs[0].Evidence)
	}
}

func TestOneNotifierDownDoesNotDelayAnother(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	bad, good := newFake("am-0", c), newFake("am-1", c)
	bad.setResult(down)
	h := start(t, Sink{Notifier: bad, BackoffMin: time.Minute, BackoffMax: time.Minute}, Sink{Notifier: good})

	h.d.Update([]findings.Finding{firing("a")})
	next(t, bad)
	next(t, good)
	h.d.Update([]findings.Finding{firing("a"), firing("b")})
	wantBatch(t, next(t, good), map[string]findings.State{"b": findings.StateFiring})
	none(t, bad)
	m := h.d.sinks[0].m
	if got := counter(t, m.queueLength.WithLabelValues("am-0")); got != 2 {
		t.Errorf("am-0 queue = %v, want 2", got)
	}
	if got := counter(t, m.queueLength.WithLabelValues("am-1")); got != 0 {
		t.Errorf("am-1 queue = %v, want 0", got)
	}
}

func TestNewRejectsBadSinks(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	cases := map[string][]Sink{
		"no notifier":    {{}},
		"duplicate name": {{Notifier: newFake("x", c)}, {Notifier: newFake("x", c)}},
		"negative":       {{Notifier: newFake("x", c), QueueCapacity: -1}},
	}
	for name, sinks := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := New(sinks, Options{}); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

// The exposition has every series of a notifier from the start, with the documented names.
func TestMetricsExposition(t *testing.T) {
	c := clocktesting.NewFakeClock(t0)
	reg := prometheus.NewPedanticRegistry()
	if _, err := New([]Sink{{Notifier: newFake("am", c), QueueCapacity: 5}}, Options{Registerer: reg, Clock: c}); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg,
		"meshdrift_notifications_total", "meshdrift_notifications_dropped_total",
		"meshdrift_notification_queue_length", "meshdrift_notification_queue_capacity",
		"meshdrift_notification_last_success_timestamp_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if n != 7 { // three outcomes, and one series each for the other four
		t.Errorf("%d series, want 7", n)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// The exposition after a success, a retry and a drop passes the real `promtool check metrics`.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testbed.Required() {
			t.Fatalf("promtool not found (make testbed installs Debian's prometheus): %v", err)
		}
		t.Skip("promtool not installed")
	}
	c := clocktesting.NewFakeClock(t0)
	f := newFake("alertmanager/am-0.monitoring:9093", c)
	f.setResult(func(n int, _ []findings.Finding) (bool, error) {
		if n == 1 {
			return true, errDown
		}
		return false, nil
	})
	h := start(t, Sink{Notifier: f, QueueCapacity: 1})
	h.d.Update([]findings.Finding{firing("a"), firing("b")}) // b drops a
	next(t, f)
	h.step(time.Second)
	next(t, f)

	var buf bytes.Buffer
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
