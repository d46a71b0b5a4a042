package flux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdrift/meshdrift/adapters/adaptermetrics"
	"github.com/meshdrift/meshdrift/reconcile"
)

// watchTestSink is an AppSink that records every call in order.
type watchTestSink struct {
	mu     sync.Mutex
	events []watchTestEvent
}

type watchTestEvent struct {
	key    reconcile.AppKey
	app    reconcile.App // zero for a ForgetApp
	forget bool
}

func (s *watchTestSink) ObserveApp(a reconcile.App) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, watchTestEvent{key: a.Key, app: a})
}

func (s *watchTestSink) ForgetApp(k reconcile.AppKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, watchTestEvent{key: k, forget: true})
}

// latest returns the last call about key.
func (s *watchTestSink) latest(key reconcile.AppKey) (watchTestEvent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.events) - 1; i >= 0; i-- {
		if s.events[i].key == key {
			return s.events[i], true
		}
	}
	return watchTestEvent{}, false
}

// observations returns every app observed for key, oldest first.
func (s *watchTestSink) observations(key reconcile.AppKey) []reconcile.App {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []reconcile.App
	for _, e := range s.events {
		if e.key == key && !e.forget {
			out = append(out, e.app)
		}
	}
	return out
}

// calls describes the calls about key, e.g. "observe 5, forget", for failure messages.
func (s *watchTestSink) calls(key reconcile.AppKey) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		if e.key != key {
			continue
		}
		if e.forget {
			out = append(out, "forget")
		} else {
			out = append(out, fmt.Sprintf("observe %s %s/%s desired=%s applied=%s", e.app.State, e.app.Reason, e.app.Message, e.app.DesiredRevision, e.app.AppliedRevision))
		}
	}
	return strings.Join(out, "; ")
}

// watchTestSources is a SourceReporter that records every report in order.
type watchTestSources struct {
	mu      sync.Mutex
	reports []reconcile.SourceStatus
}

func (s *watchTestSources) ReportSource(st reconcile.SourceStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports = append(s.reports, st)
}

func (s *watchTestSources) latest(name string) (reconcile.SourceStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.reports) - 1; i >= 0; i-- {
		if s.reports[i].Name == name {
			return s.reports[i], true
		}
	}
	return reconcile.SourceStatus{}, false
}

func (s *watchTestSources) all() []reconcile.SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]reconcile.SourceStatus(nil), s.reports...)
}

// newOfflineWatcher builds a Watcher whose clients point at a port nobody listens on: for
// tests of what happens without an API server, and of the parts that never call one.
func newOfflineWatcher(t *testing.T, reg prometheus.Registerer) (*Watcher, *watchTestSink, *watchTestSources) {
	t.Helper()
	cfg := &rest.Config{Host: "http://127.0.0.1:1", Timeout: time.Second}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sink, sources := &watchTestSink{}, &watchTestSources{}
	w, err := New(WatcherConfig{DiscoveryInterval: 200 * time.Millisecond}, dc, disc, sink, sources, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w, sink, sources
}

func TestWatcherConfigDefaults(t *testing.T) {
	got, err := WatcherConfig{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := WatcherConfig{DiscoveryInterval: DefaultDiscoveryInterval, RequeueTimeout: DefaultRequeueTimeout}
	if got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	set := WatcherConfig{ResyncPeriod: time.Hour, DiscoveryInterval: time.Second, RequeueTimeout: time.Second}
	if got, _ := set.withDefaults(); got != set {
		t.Errorf("withDefaults changed set values: %+v", got)
	}
}

func TestNewErrors(t *testing.T) {
	cfg := &rest.Config{Host: "http://127.0.0.1:1"}
	dc, _ := dynamic.NewForConfig(cfg)
	disc, _ := discovery.NewDiscoveryClientForConfig(cfg)
	sink, sources := &watchTestSink{}, &watchTestSources{}
	tests := []struct {
		name    string
		build   func() (*Watcher, error)
		wantErr string // the error, or its prefix when it ends in "…"
	}{
		{"negative durations", func() (*Watcher, error) {
			return New(WatcherConfig{ResyncPeriod: -1, RequeueTimeout: -time.Second}, dc, disc, sink, sources, nil, nil)
		}, "flux watcher: requeue timeout -1s is negative\nresync period -1ns is negative"},
		{"nil client", func() (*Watcher, error) { return New(WatcherConfig{}, nil, disc, sink, sources, nil, nil) },
			"flux watcher: nil dynamic client"},
		{"nil discovery", func() (*Watcher, error) { return New(WatcherConfig{}, dc, nil, sink, sources, nil, nil) },
			"flux watcher: nil discovery client"},
		{"nil sink", func() (*Watcher, error) { return New(WatcherConfig{}, dc, disc, nil, sources, nil, nil) },
			"flux watcher: nil app sink"},
		{"nil sources", func() (*Watcher, error) { return New(WatcherConfig{}, dc, disc, sink, nil, nil, nil) },
			"flux watcher: nil source reporter"},
		{"metrics family defined differently", func() (*Watcher, error) {
			reg := prometheus.NewRegistry()
			reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshdrift_adapter_objects", Help: "something else"}))
			return New(WatcherConfig{}, dc, disc, sink, sources, reg, nil)
		}, "flux watcher: registering adapter metrics: " +
			`a previously registered descriptor with the same fully-qualified name as Desc{fqName: "meshdrift_adapter_objects"…`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := tt.build()
			if err == nil {
				t.Fatalf("New = %v, want error", w)
			}
			if prefix, ok := strings.CutSuffix(tt.wantErr, "…"); ok {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error = %q, want prefix %q", err, prefix)
				}
				return
			}
			// The order of joined config errors follows map iteration; compare as a set.
			got := strings.Split(err.Error(), "\n")
			want := strings.Split(tt.wantErr, "\n")
			if len(got) != len(want) || !sameLines(got, want) {
				t.Errorf("error = %q, want %q", err, tt.wantErr)
			}
		})
	}
}

func sameLines(a, b []string) bool {
	seen := map[string]int{}
	for _, s := range a {
		seen[strings.TrimPrefix(s, "flux watcher: ")]++
	}
	for _, s := range b {
		seen[strings.TrimPrefix(s, "flux watcher: ")]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// The watcher fills in the shared adapter families; every series exists from the start,
// so that rates and absent() work. A second adapter on the same registry (here the
// Argo CD one's families, as adaptermetrics registers them) is no conflict.
func TestWatcherMetricsExposition(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := adaptermetrics.New(reg); err != nil {
		t.Fatal(err)
	}
	newOfflineWatcher(t, reg)
	const want = `
# HELP meshdrift_adapter_decode_errors_total Objects an adapter read but could not decode.
# TYPE meshdrift_adapter_decode_errors_total counter
meshdrift_adapter_decode_errors_total{adapter="flux"} 0
# HELP meshdrift_adapter_objects Objects an adapter currently reports, by adapter and kind.
# TYPE meshdrift_adapter_objects gauge
meshdrift_adapter_objects{adapter="flux",kind="HelmRelease"} 0
meshdrift_adapter_objects{adapter="flux",kind="Kustomization"} 0
# HELP meshdrift_adapter_watch_restarts_total Failed list or watch attempts of an adapter's watch, each followed by a retry.
# TYPE meshdrift_adapter_watch_restarts_total counter
meshdrift_adapter_watch_restarts_total{adapter="flux",kind="HelmRelease"} 0
meshdrift_adapter_watch_restarts_total{adapter="flux",kind="Kustomization"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// The objects gauge counts the apps reported and not forgotten; a decode failure is
// counted and still reported.
func TestWatcherCountsObjects(t *testing.T) {
	w, sink, _ := newOfflineWatcher(t, nil)
	ks, hr := w.kindWatch(KindKustomization), w.kindWatch(KindHelmRelease)
	w.onObject(ks, watchTestObject(KindKustomization, "apps", "a", "5"))
	w.onObject(ks, watchTestObject(KindKustomization, "apps", "a", "6"))
	w.onObject(ks, watchTestObject(KindKustomization, "apps", "b", "7"))
	w.onObject(hr, watchTestObject(KindHelmRelease, "apps", "a", "8"))
	w.onDelete(ks, watchTestObject(KindKustomization, "apps", "b", "9"))
	w.onDelete(ks, watchTestObject(KindKustomization, "apps", "never-seen", "10"))
	broken := watchTestObject(KindHelmRelease, "apps", "broken", "11")
	broken.Object["status"] = "not an object"
	w.onObject(hr, broken)
	if got := testutil.ToFloat64(ks.objects); got != 1 {
		t.Errorf("Kustomization objects = %v, want 1", got)
	}
	if got := testutil.ToFloat64(hr.objects); got != 2 {
		t.Errorf("HelmRelease objects = %v, want 2", got)
	}
	if got := testutil.ToFloat64(w.decodeErrors); got != 1 {
		t.Errorf("decode errors = %v, want 1", got)
	}
	e, ok := sink.latest(appKey(KindHelmRelease, "apps", "broken"))
	if !ok || e.app.State != reconcile.AppUnknown || e.app.Reason != ReasonDecodeError {
		t.Errorf("broken HelmRelease reported as %+v", e)
	}
}

func TestWatcherRunTwice(t *testing.T) {
	w, _, _ := newOfflineWatcher(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	if err := w.Run(ctx); err == nil || err.Error() != "flux watcher: already run" {
		t.Errorf("second Run = %v, want already run", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// Without an API server, discovery fails: both kinds are reported down, retried, never
// synced, and Run keeps going until cancelled.
func TestWatcherReportsUnreachableAPIServer(t *testing.T) {
	w, _, sources := newOfflineWatcher(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		k, okK := sources.latest(SourceName(KindKustomization))
		h, okH := sources.latest(SourceName(KindHelmRelease))
		if okK && okH {
			for _, st := range []reconcile.SourceStatus{k, h} {
				if st.Up || !strings.Contains(st.Error, "connection refused") || st.Since.IsZero() {
					t.Errorf("status = %+v, want down with the connection error", st)
				}
			}
			if w.HasSynced() {
				t.Error("HasSynced without an API server")
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no down status for both kinds; reports: %+v", sources.all())
}

func TestRequeueFiltersKeys(t *testing.T) {
	w, _, _ := newOfflineWatcher(t, nil)
	ctx := context.Background()
	for _, key := range []reconcile.AppKey{
		{Source: reconcile.SourceArgoCD, Kind: KindKustomization, Namespace: "apps", Name: "a"},
		{Source: reconcile.SourceFlux, Kind: "GitRepository", Namespace: "apps", Name: "a"},
		{Source: reconcile.SourceFlux, Kind: KindKustomization, Name: "a"},
		{Source: reconcile.SourceFlux, Kind: KindHelmRelease, Namespace: "apps"},
	} {
		w.Requeue(ctx, key, Notification{App: key})
	}
	if n := w.queue.Len(); n != 0 {
		t.Errorf("%d foreign keys queued", n)
	}
	key := appKey(KindKustomization, "apps", "a")
	w.Requeue(ctx, key, Notification{App: key})
	w.Requeue(ctx, key, Notification{App: key})
	if n := w.queue.Len(); n != 1 {
		t.Errorf("queue length %d after requeueing one app twice, want 1", n)
	}
}

func watchTestObject(kind, ns, name, rv string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("kustomize.toolkit.fluxcd.io/v1")
	if kind == KindHelmRelease {
		u.SetAPIVersion("helm.toolkit.fluxcd.io/v2")
	}
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetResourceVersion(rv)
	return u
}

// The sink sees each app's versions in order, whatever order the watch and requeue GETs
// deliver them in, and a GET that raced a delete does not bring the app back.
func TestWatcherEmissionOrder(t *testing.T) {
	type step struct {
		op        string // "watch", "get", "delete"
		rv        string
		wantEmits bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{"watch", "5", true}, {"watch", "6", true}, {"get", "7", true}}},
		{"resync repeats the version", []step{{"watch", "5", true}, {"watch", "5", true}}},
		{"get overtakes the watch", []step{{"watch", "5", true}, {"get", "8", true}, {"watch", "6", false}, {"watch", "8", true}}},
		{"get raced the delete", []step{{"watch", "5", true}, {"delete", "9", true}, {"get", "8", false}, {"get", "9", false}}},
		{"re-created after delete", []step{{"watch", "5", true}, {"delete", "9", true}, {"watch", "12", true}}},
		{"versions that do not compare", []step{{"watch", "a", true}, {"get", "b", true}, {"delete", "c", true}, {"get", "d", false}, {"watch", "e", true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, sink, _ := newOfflineWatcher(t, nil)
			key := appKey(KindKustomization, "apps", "a")
			for i, s := range tt.steps {
				before := len(sink.events)
				switch s.op {
				case "watch":
					w.onObject(w.kindWatch(KindKustomization), watchTestObject(KindKustomization, "apps", "a", s.rv))
				case "get":
					w.observe(KindKustomization, watchTestObject(KindKustomization, "apps", "a", s.rv), false)
				case "delete":
					w.onDelete(w.kindWatch(KindKustomization), watchTestObject(KindKustomization, "apps", "a", s.rv))
				}
				if emitted := len(sink.events) > before; emitted != s.wantEmits {
					t.Fatalf("step %d (%s %s): emitted %v, want %v; calls: %s", i, s.op, s.rv, emitted, s.wantEmits, sink.calls(key))
				}
			}
		})
	}
}

func TestWatcherForgetsOnTombstone(t *testing.T) {
	w, sink, _ := newOfflineWatcher(t, nil)
	k := w.kindWatch(KindHelmRelease)
	w.onObject(k, watchTestObject(KindHelmRelease, "apps", "podinfo", "3"))
	w.onDelete(k, cache.DeletedFinalStateUnknown{Key: "apps/podinfo", Obj: watchTestObject(KindHelmRelease, "apps", "podinfo", "3")})
	e, ok := sink.latest(appKey(KindHelmRelease, "apps", "podinfo"))
	if !ok || !e.forget {
		t.Fatalf("latest call = %+v, want ForgetApp", e)
	}
}

func TestRoutineWatchEnd(t *testing.T) {
	gr := schema.GroupResource{Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations"}
	tests := []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("watch: %w", io.EOF), true},
		{apierrors.NewResourceExpired("too old resource version: 1 (20)"), true},
		{apierrors.NewForbidden(gr, "", errors.New("rbac")), false},
		{apierrors.NewNotFound(gr, ""), false},
		{errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), false},
	}
	for _, tt := range tests {
		if got := routineWatchEnd(tt.err); got != tt.want {
			t.Errorf("routineWatchEnd(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRequestCause(t *testing.T) {
	refused := errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	watchURL := &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/apis/x?timeoutSeconds=331&watch=true", Err: refused}
	tests := []struct {
		err, want error
	}{
		{watchURL, refused},
		{fmt.Errorf("failed to list kustomizations: %w", watchURL), refused},
		{refused, refused},
	}
	for _, tt := range tests {
		if got := requestCause(tt.err); got != tt.want {
			t.Errorf("requestCause(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestSourceStateReportsChangesOnly(t *testing.T) {
	sources := &watchTestSources{}
	clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s := &sourceState{name: "flux/Kustomization", reporter: sources, now: func() time.Time {
		clock = clock.Add(time.Second)
		return clock
	}}
	s.requestSucceeded() // before the initial sync: says nothing yet
	s.markDown(errors.New("list: refused"))
	s.markDown(errors.New("list: refused"))
	s.markDown(errors.New("watch: refused"))
	s.requestSucceeded() // still not synced
	s.markSynced()
	s.requestSucceeded()
	s.markUp()
	s.markNotInstalled("crd not installed")
	s.markNotInstalled("crd not installed")
	s.markSynced()
	got := sources.all()
	want := []struct {
		up           bool
		err          string
		notInstalled bool
		since        time.Time
	}{
		{false, "list: refused", false, time.Date(2026, 12, 1, 0, 0, 1, 0, time.UTC)},
		{false, "watch: refused", false, time.Date(2026, 12, 1, 0, 0, 1, 0, time.UTC)},
		{true, "", false, time.Date(2026, 12, 1, 0, 0, 2, 0, time.UTC)},
		{true, "crd not installed", true, time.Date(2026, 12, 1, 0, 0, 2, 0, time.UTC)},
		{true, "", false, time.Date(2026, 12, 1, 0, 0, 2, 0, time.UTC)},
	}
	if len(got) != len(want) {
		t.Fatalf("reports %+v, want %d", got, len(want))
	}
	for i := range want {
		if got[i].Name != "flux/Kustomization" || got[i].Up != want[i].up || got[i].Error != want[i].err ||
			got[i].NotInstalled != want[i].notInstalled || !got[i].Since.Equal(want[i].since) {
			t.Errorf("report %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
