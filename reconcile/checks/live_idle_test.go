package checks

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/reconcile"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// versionedSource is a Versioned source: build makes each snapshot (taken at now), change
// stands for an informer counting a change. It counts the snapshots asked for: each one
// is what costs a decode of every object on the real source.
type versionedSource struct {
	build func(now time.Time) *Snapshot
	now   func() time.Time

	mu        sync.Mutex
	waiting   string
	version   uint64
	snapshots int
}

func fixtureSource(t *testing.T, file string, now func() time.Time) *versionedSource {
	return &versionedSource{now: now, build: func(now time.Time) *Snapshot {
		s := loadFixture(t, file)
		s.Live, s.Now = true, now
		return s
	}}
}

func (s *versionedSource) Version() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

func (s *versionedSource) Snapshot() (*Snapshot, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots++
	if s.waiting != "" {
		return nil, s.waiting
	}
	return s.build(s.now()), ""
}

func (s *versionedSource) change() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
}

func (s *versionedSource) setWaiting(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiting = why
}

func (s *versionedSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshots
}

func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// On a Versioned source, the periodic run is skipped while the version stands: no
// snapshot is taken, the latest run keeps its time and results, says when it was found
// current, and Ran stays silent. A change of version runs the checks again.
func TestLiveSkipsUnchangedInputs(t *testing.T) {
	clock := &fakeClock{t: fixtureNow}
	src := fixtureSource(t, "destinationhost.yaml", clock.now)
	l, err := NewLive(LiveConfig{}, src, clock.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, ran := l.RunIfChanged(ctx)
	if !ran || src.count() != 1 || first.Waiting != "" || len(first.Results) != 4 || !first.At.Equal(fixtureNow) {
		t.Fatalf("first run: ran %t, %d snapshots, %+v", ran, src.count(), first)
	}
	if !signalled(l.Ran()) {
		t.Error("the first run did not signal Ran")
	}

	for i := 1; i <= 3; i++ {
		clock.advance(DefaultMaxInterval)
		r, ran := l.RunIfChanged(ctx)
		if ran || src.count() != 1 {
			t.Fatalf("tick %d on an unchanged version: ran %t, %d snapshots, want no new one", i, ran, src.count())
		}
		if !r.At.Equal(first.At) || r.Duration != first.Duration || !slices.Equal(r.Results, first.Results) || !r.ConfirmedAt.Equal(clock.now()) {
			t.Errorf("tick %d: latest run %+v, want the first run's time and results, confirmed at %s", i, r, clock.now())
		}
		if got := l.Latest(); !got.At.Equal(first.At) || !got.ConfirmedAt.Equal(clock.now()) {
			t.Errorf("tick %d: Latest() at %s confirmed %s", i, got.At, got.ConfirmedAt)
		}
		if signalled(l.Ran()) {
			t.Errorf("tick %d: a skipped run signalled Ran", i)
		}
	}

	src.change()
	clock.advance(DefaultMaxInterval)
	r, ran := l.RunIfChanged(ctx)
	if !ran || src.count() != 2 || !r.At.Equal(clock.now()) || !r.ConfirmedAt.IsZero() || len(r.Results) != 4 {
		t.Errorf("after a change: ran %t, %d snapshots, run %+v; want a new run", ran, src.count(), r)
	}
	if !signalled(l.Ran()) {
		t.Error("the run after a change did not signal Ran")
	}

	// RunOnce (a poke's run) always runs.
	l.RunOnce(ctx)
	if src.count() != 3 {
		t.Errorf("RunOnce took %d snapshots in all, want 3", src.count())
	}
}

// A run that waited for a cache is never skipped, whatever the version: the next
// picture may be the first synced one.
func TestLiveNeverSkipsAfterWaiting(t *testing.T) {
	clock := &fakeClock{t: fixtureNow}
	src := fixtureSource(t, "destinationhost.yaml", clock.now)
	src.setWaiting("not synced: pods")
	l, err := NewLive(LiveConfig{}, src, clock.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		r, ran := l.RunIfChanged(ctx)
		if !ran || src.count() != i || r.Waiting != "not synced: pods" {
			t.Fatalf("waiting tick %d: ran %t, %d snapshots, waiting %q", i, ran, src.count(), r.Waiting)
		}
		clock.advance(DefaultMaxInterval)
	}
	src.setWaiting("")
	if r, ran := l.RunIfChanged(ctx); !ran || r.Waiting != "" || len(r.Results) != 4 {
		t.Fatalf("synced: ran %t, %+v", ran, r)
	}
	clock.advance(DefaultMaxInterval)
	if _, ran := l.RunIfChanged(ctx); ran {
		t.Error("ran again on an unchanged synced source")
	}
	// Waiting again (a kind's CRD installed: its informer lists) comes with a change of
	// version; the waiting run is then followed by runs until one completes.
	src.setWaiting("not synced: mesh objects")
	src.change()
	clock.advance(DefaultMaxInterval)
	if r, ran := l.RunIfChanged(ctx); !ran || r.Waiting == "" {
		t.Fatalf("after the change: ran %t, waiting %q", ran, r.Waiting)
	}
	clock.advance(DefaultMaxInterval)
	if _, ran := l.RunIfChanged(ctx); !ran {
		t.Error("skipped the tick after a waiting run")
	}
}

// MD0603 depends on the time: a route whose status lags within the grace fires once the
// grace has passed, with no write at all. The run on unchanged inputs is skipped until
// then, not after.
func TestLiveRechecksWhenALagOutlastsItsGrace(t *testing.T) {
	clock := &fakeClock{t: fixtureNow}
	src := fixtureSource(t, "routestale.yaml", clock.now)
	l, err := NewLive(LiveConfig{MaxInterval: time.Hour}, src, clock.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, _ := l.RunIfChanged(ctx)
	// HTTPRoute default/fresh had its spec written at 11:59:30 and lags: within the
	// default grace of 2 minutes at 12:00, stale after 12:01:30.
	if got := routeStaleObjects(r.Results); !slices.Equal(got, []string{"GRPCRoute default/new", "HTTPRoute default/stale"}) {
		t.Fatalf("at %s: MD0603 on %q", clock.now(), got)
	}
	if want := 90*time.Second + recheckMargin; l.idleWait() != want {
		t.Errorf("next run in %s, want %s (the grace of default/fresh passes first)", l.idleWait(), want)
	}
	clock.advance(90 * time.Second) // 12:01:30, the end of the grace: not beyond it
	if _, ran := l.RunIfChanged(ctx); ran {
		t.Error("ran at the end of the grace, before anything could change")
	}
	clock.advance(time.Second)
	r, ran := l.RunIfChanged(ctx)
	if !ran {
		t.Fatal("not run once the grace of a lagging route had passed")
	}
	if got := routeStaleObjects(r.Results); !slices.Equal(got, []string{"GRPCRoute default/new", "HTTPRoute default/fresh", "HTTPRoute default/stale"}) {
		t.Errorf("at %s: MD0603 on %q, want default/fresh too", clock.now(), got)
	}
	// Nothing left to change with time alone.
	if l.idleWait() != time.Hour {
		t.Errorf("next run in %s, want the maximum interval", l.idleWait())
	}
	clock.advance(time.Hour)
	if _, ran := l.RunIfChanged(ctx); ran {
		t.Error("ran again with nothing changed and no lag left within its grace")
	}
}

// routeStaleObjects names the objects of a run's MD0603 results.
func routeStaleObjects(rs []reconcile.CheckResult) []string {
	var out []string
	for _, r := range rs {
		if r.Code == "MD0603" {
			out = append(out, r.Object.Kind+" "+r.Object.Namespace+"/"+r.Object.Name)
		}
	}
	return out
}

// The loop on the real clock: an idle source is not read again at the maximum interval;
// a change of version is run without a poke; a route whose status lags is judged as soon
// as its grace has passed, long before the maximum interval.
func TestLiveRunLoopOnVersions(t *testing.T) {
	var mu sync.Mutex
	var created time.Time // of the lagging route; zero: no route
	src := &versionedSource{now: time.Now, build: func(now time.Time) *Snapshot {
		s := loadFixture(t, "destinationhost.yaml")
		s.Live, s.Now, s.RouteStatusGrace = true, now, time.Second
		mu.Lock()
		defer mu.Unlock()
		if !created.IsZero() {
			s.Add(laggingRoute(created), Origin{})
		}
		return s
	}}
	// loop runs l until the test ends or stop is called.
	loop := func(l *Live) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = l.Run(ctx); close(done) }()
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}
	var l *Live
	waitRan := func(what string) {
		t.Helper()
		select {
		case <-l.Ran():
		case <-time.After(10 * time.Second):
			t.Fatalf("no run within 10 s: %s", what)
		}
	}
	l, err := NewLive(LiveConfig{MinInterval: time.Millisecond, MaxInterval: 20 * time.Millisecond, Settle: time.Millisecond}, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := loop(l)
	waitRan("the first run")
	time.Sleep(300 * time.Millisecond) // 15 maximum intervals
	if n := src.count(); n != 1 {
		t.Fatalf("%d snapshots on an idle source over 15 maximum intervals, want 1", n)
	}
	if c := l.Latest().ConfirmedAt; c.IsZero() {
		t.Error("no skipped run recorded")
	}

	src.change()
	waitRan("a change of version")
	if n := src.count(); n != 2 {
		t.Errorf("%d snapshots after one change, want 2", n)
	}
	stop()

	// The maximum interval is long now: only the route's grace can bring the run.
	if l, err = NewLive(LiveConfig{MinInterval: time.Millisecond, MaxInterval: time.Hour, Settle: time.Millisecond}, src, nil, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	created = time.Now()
	mu.Unlock()
	loop(l)
	waitRan("the first run of the second loop")
	if got := routeStaleObjects(l.Latest().Results); len(got) != 0 {
		t.Fatalf("stale within the grace: %q", got)
	}
	waitRan("the route's grace passing")
	run := l.Latest()
	if got := routeStaleObjects(run.Results); !slices.Equal(got, []string{"HTTPRoute default/lagging"}) {
		t.Errorf("after the grace: MD0603 on %q", got)
	}
	if !run.At.After(created.Add(time.Second)) {
		t.Errorf("ran at %s, before the grace ended at %s", run.At, created.Add(time.Second))
	}
	if i := slices.IndexFunc(run.Results, func(r reconcile.CheckResult) bool { return r.Code == "MD0603" }); i >= 0 && strings.Contains(run.Results[i].Message, "ago") {
		t.Errorf("message depends on the time of the run: %s", run.Results[i].Message)
	}
}

// laggingRoute is an HTTPRoute created at created whose only parent has not processed it.
func laggingRoute(created time.Time) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
		"metadata": map[string]any{"name": "lagging", "namespace": "default", "generation": int64(1),
			"creationTimestamp": created.UTC().Format(time.RFC3339Nano)},
		"spec": map[string]any{"parentRefs": []any{map[string]any{"name": "web"}}},
		"status": map[string]any{"parents": []any{map[string]any{
			"parentRef": map[string]any{"name": "web"}, "controllerName": "example.com/gateway",
			"conditions": []any{map[string]any{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": int64(0)}},
		}}},
	}}
}
