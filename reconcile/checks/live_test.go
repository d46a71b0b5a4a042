package checks

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// stubSource answers with waiting until ready, then with a fixture's snapshot; it counts
// the snapshots asked for.
type stubSource struct {
	mu      sync.Mutex
	waiting string
	file    string
	t       *testing.T
	calls   int
	at      []time.Time
}

func (s *stubSource) set(waiting string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiting = waiting
}

func (s *stubSource) Snapshot() (*Snapshot, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.at = append(s.at, time.Now())
	if s.waiting != "" {
		return nil, s.waiting
	}
	snap := loadFixture(s.t, s.file)
	snap.Live, snap.Now = true, time.Now()
	return snap, ""
}

func (s *stubSource) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}

// Until the source is synced, a run has no results and every check is skipped with the
// reason; once synced it runs; waiting again keeps the last run's time.
func TestLiveWaitsForSync(t *testing.T) {
	src := &stubSource{waiting: "not synced: services", file: "destinationhost.yaml", t: t}
	l, err := NewLive(LiveConfig{}, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := l.Latest(); r.Waiting != "not run yet" || len(r.Results) != 0 {
		t.Errorf("before any run: %+v", r)
	}
	r := l.RunOnce(context.Background())
	if r.Waiting != "not synced: services" || len(r.Results) != 0 || !r.At.IsZero() {
		t.Errorf("unsynced run: waiting %q, %d results, at %s", r.Waiting, len(r.Results), r.At)
	}
	if len(r.Checks) != len(All()) {
		t.Fatalf("%d check statuses, want %d", len(r.Checks), len(All()))
	}
	for _, c := range r.Checks {
		if c.Skipped != "not synced: services" {
			t.Errorf("check %s: skipped %q, want the waiting reason", c.Name, c.Skipped)
		}
	}

	src.set("")
	r = l.RunOnce(context.Background())
	if r.Waiting != "" || r.At.IsZero() || len(r.Results) != 4 {
		t.Fatalf("synced run: waiting %q, at %s, %d results, want 4", r.Waiting, r.At, len(r.Results))
	}
	for _, res := range r.Results {
		if res.Code != "MD0501" || res.Object.Kind != "VirtualService" || !strings.HasPrefix(res.Path, "spec.") {
			t.Errorf("result %+v", res)
		}
	}
	ran := 0
	for _, c := range r.Checks {
		if c.Skipped == "" {
			ran++
		}
	}
	if ran != len(All()) {
		t.Errorf("%d checks ran on a live snapshot serving every kind, want %d", ran, len(All()))
	}
	at := r.At

	src.set("not synced: mesh objects")
	r = l.RunOnce(context.Background())
	if r.Waiting == "" || len(r.Results) != 0 || !r.At.Equal(at) {
		t.Errorf("waiting again: %+v, want no results and the last run's time %s", r, at)
	}
}

// Pokes in a burst fold into one run, no sooner than MinInterval after the last.
func TestLiveCoalescesPokes(t *testing.T) {
	src := &stubSource{file: "destinationhost.yaml", t: t}
	const minInterval = 300 * time.Millisecond
	l, err := NewLive(LiveConfig{MinInterval: minInterval, MaxInterval: time.Hour, Settle: time.Millisecond}, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-l.Ran() // the first run, at start
	for range 100 {
		l.ObserveMeshChange(reconcile.MeshChange{})
		l.Poke()
	}
	<-l.Ran()
	time.Sleep(2 * minInterval)
	at := src.times()
	if len(at) != 2 {
		t.Fatalf("%d runs for a start and one burst of pokes, want 2", len(at))
	}
	if gap := at[1].Sub(at[0]); gap < minInterval {
		t.Errorf("second run %s after the first, want at least %s", gap, minInterval)
	}
}

// Without any poke, the checks still run every MaxInterval.
func TestLiveRunsAtMaxInterval(t *testing.T) {
	src := &stubSource{file: "destinationhost.yaml", t: t}
	l, err := NewLive(LiveConfig{MinInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Settle: time.Millisecond}, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for range 3 {
		select {
		case <-l.Ran():
		case <-time.After(10 * time.Second):
			t.Fatal("no run within 10 s with a 50 ms maximum interval")
		}
	}
}

func TestNewLiveRejectsBadIntervals(t *testing.T) {
	src := &stubSource{t: t}
	for _, cfg := range []LiveConfig{
		{MinInterval: -time.Second},
		{MaxInterval: -time.Second},
		{Settle: -time.Second},
		{MinInterval: time.Minute, MaxInterval: time.Second},
	} {
		if _, err := NewLive(cfg, src, nil, nil); err == nil {
			t.Errorf("NewLive(%+v) accepted", cfg)
		}
	}
	if _, err := NewLive(LiveConfig{}, nil, nil, nil); err == nil {
		t.Error("NewLive without a source accepted")
	}
}

// After a quiet spell, a change is judged Settle after it arrived, not at once: the
// Service an apply creates with its VirtualService has time to arrive too.
func TestLiveSettlesAfterAChange(t *testing.T) {
	src := &stubSource{file: "destinationhost.yaml", t: t}
	const settle = 300 * time.Millisecond
	l, err := NewLive(LiveConfig{MinInterval: 10 * time.Millisecond, MaxInterval: time.Hour, Settle: settle}, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-l.Ran()
	time.Sleep(50 * time.Millisecond) // past the minimum interval
	poked := time.Now()
	l.Poke()
	<-l.Ran()
	at := src.times()
	if len(at) != 2 {
		t.Fatalf("%d runs, want 2", len(at))
	}
	if d := at[1].Sub(poked); d < settle {
		t.Errorf("ran %s after the change, want at least the %s settle", d, settle)
	}
}
