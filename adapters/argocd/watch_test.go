package argocd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	discoveryfake "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// These tests drive the Watcher with client-go's fake clients to reach failure paths a real
// API server does not produce on demand; watch_integration_test.go runs it against one.

// sinkEvent is one call on recordingSink.
type sinkEvent struct {
	at     time.Time
	forget bool
	key    reconcile.AppKey
	app    reconcile.App // ObserveApp only
}

// recordingSink records every call with the time it arrived.
type recordingSink struct {
	mu      sync.Mutex
	events  []sinkEvent
	changed chan struct{}
}

func newRecordingSink() *recordingSink { return &recordingSink{changed: make(chan struct{})} }

func (s *recordingSink) ObserveApp(a reconcile.App) {
	s.add(sinkEvent{at: time.Now(), key: a.Key, app: a})
}

func (s *recordingSink) ForgetApp(k reconcile.AppKey) {
	s.add(sinkEvent{at: time.Now(), forget: true, key: k})
}

func (s *recordingSink) add(e sinkEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
	close(s.changed)
	s.changed = make(chan struct{})
}

// mark returns the index the next event will have.
func (s *recordingSink) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// wait returns the first event from index from on that matches, failing after timeout.
func (s *recordingSink) wait(t *testing.T, timeout time.Duration, from int, what string, match func(sinkEvent) bool) sinkEvent {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for _, e := range s.events[min(from, len(s.events)):] {
			if match(e) {
				s.mu.Unlock()
				return e
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s: not within %s; events: %s", what, timeout, s.describe())
			return sinkEvent{}
		}
	}
}

func (s *recordingSink) waitApp(t *testing.T, timeout time.Duration, from int, key reconcile.AppKey, state reconcile.AppState) sinkEvent {
	t.Helper()
	return s.wait(t, timeout, from, key.String()+" observed "+string(state), func(e sinkEvent) bool {
		return !e.forget && e.key == key && e.app.State == state
	})
}

func (s *recordingSink) waitForget(t *testing.T, timeout time.Duration, from int, key reconcile.AppKey) sinkEvent {
	t.Helper()
	return s.wait(t, timeout, from, key.String()+" forgotten", func(e sinkEvent) bool { return e.forget && e.key == key })
}

// current replays the events: the last observation of every app not forgotten since.
func (s *recordingSink) current() map[reconcile.AppKey]reconcile.App {
	s.mu.Lock()
	defer s.mu.Unlock()
	apps := map[reconcile.AppKey]reconcile.App{}
	for _, e := range s.events {
		if e.forget {
			delete(apps, e.key)
		} else {
			apps[e.key] = e.app
		}
	}
	return apps
}

func (s *recordingSink) forgotten(from int) []reconcile.AppKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []reconcile.AppKey
	for _, e := range s.events[min(from, len(s.events)):] {
		if e.forget {
			keys = append(keys, e.key)
		}
	}
	return keys
}

func (s *recordingSink) describe() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, e := range s.events {
		if e.forget {
			b.WriteString("\n  forget " + e.key.String())
		} else {
			b.WriteString("\n  observe " + e.key.String() + " " + string(e.app.State) + " " + e.app.Reason)
		}
	}
	return b.String()
}

// recordingSources records every source status report.
type recordingSources struct {
	mu       sync.Mutex
	statuses []reconcile.SourceStatus
	changed  chan struct{}
}

func newRecordingSources() *recordingSources { return &recordingSources{changed: make(chan struct{})} }

func (r *recordingSources) ReportSource(s reconcile.SourceStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = append(r.statuses, s)
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recordingSources) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.statuses)
}

func (r *recordingSources) all() []reconcile.SourceStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.statuses)
}

func (r *recordingSources) wait(t *testing.T, timeout time.Duration, from int, what string, match func(reconcile.SourceStatus) bool) reconcile.SourceStatus {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for _, s := range r.statuses[min(from, len(r.statuses)):] {
			if match(s) {
				r.mu.Unlock()
				return s
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s: not within %s; statuses: %+v", what, timeout, r.all())
			return reconcile.SourceStatus{}
		}
	}
}

func (r *recordingSources) waitUp(t *testing.T, timeout time.Duration, from int) reconcile.SourceStatus {
	t.Helper()
	return r.wait(t, timeout, from, "source up", func(s reconcile.SourceStatus) bool { return s.Up })
}

func (r *recordingSources) waitDown(t *testing.T, timeout time.Duration, from int, errPart string) reconcile.SourceStatus {
	t.Helper()
	return r.wait(t, timeout, from, "source down with "+errPart, func(s reconcile.SourceStatus) bool {
		return !s.Up && strings.Contains(s.Error, errPart)
	})
}

// syncBuffer is a log destination written by informer goroutines and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func testLogger(t *testing.T) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("watcher log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// fixture reads one of appview's Application fixtures as namespace/name.
func fixture(t *testing.T, file, namespace, name string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("appview", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetResourceVersion("")
	return u
}

// wantApp is what the watcher must report for u: appview's mapping of the same object.
func wantApp(t *testing.T, u *unstructured.Unstructured) reconcile.App {
	t.Helper()
	a, err := appview.FromUnstructured(u)
	if err != nil {
		t.Fatal(err)
	}
	return appview.ToApp(a, time.Time{})
}

func sameApp(got, want reconcile.App) bool {
	got.ObservedAt, want.ObservedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(got, want)
}

func argoDiscovery() *discoveryfake.FakeDiscovery {
	return &discoveryfake.FakeDiscovery{
		Fake: &clienttesting.Fake{Resources: []*metav1.APIResourceList{{
			GroupVersion: appview.APIVersion,
			APIResources: []metav1.APIResource{
				{Name: "applications", SingularName: "application", Namespaced: true, Kind: "Application", ShortNames: []string{"app", "apps"}},
				{Name: "appprojects", SingularName: "appproject", Namespaced: true, Kind: "AppProject"},
			},
		}}},
	}
}

func fakeDynamic(objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{applicationsGVR: "ApplicationList"}, objs...)
}

// runWatcher runs w until the test ends and checks that Run then returns nil.
func runWatcher(t *testing.T, w *Watcher) {
	t.Helper()
	testbed.RunInBackground(t, w.Run)
}

func waitSynced(t *testing.T, w *Watcher, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !w.HasSynced() {
		if time.Now().After(deadline) {
			t.Fatalf("watcher not synced within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatcherReportsApplications(t *testing.T) {
	objs := []*unstructured.Unstructured{
		fixture(t, "synced-healthy.json", "argocd", "reviews"),
		fixture(t, "out-of-sync.json", "argocd", "ratings"),
		fixture(t, "operation-failed.json", "argocd", "productpage"),
		fixture(t, "degraded.json", "argocd", "details"),
		fixture(t, "operation-running.json", "argocd", "reviews-canary"),
		fixture(t, "other-namespace.json", "team-bookinfo", "reviews"),
		fixture(t, "no-status.json", "argocd", "new-app"),
	}
	wantStates := []struct {
		state  reconcile.AppState
		reason string
	}{
		{reconcile.AppSynced, "Synced"},
		{reconcile.AppOutOfSync, "OutOfSync"},
		{reconcile.AppFailed, "Failed"},
		{reconcile.AppFailed, "Degraded"},
		{reconcile.AppProgressing, "Running"},
		{reconcile.AppSynced, "Synced"},
		{reconcile.AppUnknown, ""},
	}
	var initial []runtime.Object
	for _, o := range objs {
		initial = append(initial, o.DeepCopy())
	}
	client := fakeDynamic(initial...)
	sink, sources := newRecordingSink(), newRecordingSources()
	reg := prometheus.NewPedanticRegistry()
	log, _ := testLogger(t)
	w, err := New(WatcherConfig{}, client, argoDiscovery(), sink, sources, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	observedAt := time.Date(2025, 6, 11, 9, 0, 0, 0, time.UTC)
	w.now = func() time.Time { return observedAt }
	if w.HasSynced() {
		t.Fatal("HasSynced before Run")
	}
	runWatcher(t, w)
	waitSynced(t, w, 10*time.Second)
	up := sources.waitUp(t, 5*time.Second, 0)
	if up.Name != "argocd" || up.Error != "" || !up.Since.Equal(observedAt) {
		t.Errorf("source status %+v", up)
	}

	got := sink.current()
	if len(got) != len(objs) {
		t.Fatalf("%d apps reported, want %d:%s", len(got), len(objs), sink.describe())
	}
	for i, o := range objs {
		key := appKey(o.GetNamespace(), o.GetName())
		app, ok := got[key]
		if !ok {
			t.Errorf("%s not reported", key)
			continue
		}
		if app.State != wantStates[i].state || app.Reason != wantStates[i].reason || !app.ObservedAt.Equal(observedAt) {
			t.Errorf("%s: state %s reason %q observed %s, want %s %q", key, app.State, app.Reason, app.ObservedAt,
				wantStates[i].state, wantStates[i].reason)
		}
		if !sameApp(app, wantApp(t, o)) {
			t.Errorf("%s:\n got %+v\nwant %+v", key, app, wantApp(t, o))
		}
	}

	// The controller's first status write on the new app, then a delete.
	ctx := context.Background()
	ri := client.Resource(applicationsGVR).Namespace("argocd")
	updated := fixture(t, "operation-failed.json", "argocd", "new-app")
	mark := sink.mark()
	if _, err := ri.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := sink.waitApp(t, 5*time.Second, mark, appKey("argocd", "new-app"), reconcile.AppFailed)
	if !strings.Contains(e.app.Message, `admission webhook "validation.istio.io" denied the request`) {
		t.Errorf("message %q", e.app.Message)
	}
	mark = sink.mark()
	if err := ri.Delete(ctx, "ratings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	sink.waitForget(t, 5*time.Second, mark, appKey("argocd", "ratings"))

	const want = `
# HELP meshdrift_adapter_objects Objects an adapter currently reports, by adapter and kind.
# TYPE meshdrift_adapter_objects gauge
meshdrift_adapter_objects{adapter="argocd",kind="Application"} 6
# HELP meshdrift_adapter_decode_errors_total Objects an adapter read but could not decode.
# TYPE meshdrift_adapter_decode_errors_total counter
meshdrift_adapter_decode_errors_total{adapter="argocd"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshdrift_adapter_objects", "meshdrift_adapter_decode_errors_total"); err != nil {
		t.Error(err)
	}
	if n := len(sources.all()); n != 1 {
		t.Errorf("%d source reports, want only the first up: %+v", n, sources.all())
	}
}

// A delete the watch missed reaches the informer as a tombstone when the relist no longer
// lists the object.
func TestWatcherForgetsTombstone(t *testing.T) {
	sink := newRecordingSink()
	w, err := New(WatcherConfig{}, fakeDynamic(), argoDiscovery(), sink, newRecordingSources(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.observe(fixture(t, "synced-healthy.json", "team-a", "reviews"))
	w.forget(cache.DeletedFinalStateUnknown{Key: "team-a/reviews", Obj: nil})
	w.forget(cache.DeletedFinalStateUnknown{Key: "a/b/c"}) // unreadable: logged, nothing forgotten
	if got := sink.forgotten(0); !reflect.DeepEqual(got, []reconcile.AppKey{appKey("team-a", "reviews")}) {
		t.Errorf("forgotten %v", got)
	}
	if v := testutil.ToFloat64(w.objects); v != 0 {
		t.Errorf("objects gauge %v, want 0", v)
	}
}

// A CR the view cannot decode is counted, logged with the reason, and reported as Unknown
// rather than dropped; the watch goes on.
func TestWatcherDecodeError(t *testing.T) {
	bad := fixture(t, "synced-healthy.json", "argocd", "broken")
	// A status the controller would never write, e.g. from a hand-made object.
	if err := unstructured.SetNestedField(bad.Object, "Synced", "status", "sync"); err != nil {
		t.Fatal(err)
	}
	good := fixture(t, "synced-healthy.json", "argocd", "reviews")
	sink, sources := newRecordingSink(), newRecordingSources()
	reg := prometheus.NewPedanticRegistry()
	log, logs := testLogger(t)
	w, err := New(WatcherConfig{}, fakeDynamic(bad, good), argoDiscovery(), sink, sources, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitSynced(t, w, 10*time.Second)

	got := sink.current()
	broken := got[appKey("argocd", "broken")]
	if broken.State != reconcile.AppUnknown || broken.Reason != ReasonDecodeError ||
		!strings.Contains(broken.Message, "cannot unmarshal string") {
		t.Errorf("undecodable app reported as %+v", broken)
	}
	if got[appKey("argocd", "reviews")].State != reconcile.AppSynced {
		t.Errorf("the decodable app: %+v", got[appKey("argocd", "reviews")])
	}
	if v := testutil.ToFloat64(w.decodeErrors); v != 1 {
		t.Errorf("decode errors %v, want 1", v)
	}
	if v := testutil.ToFloat64(w.objects); v != 2 {
		t.Errorf("objects %v, want 2", v)
	}
	l := logs.String()
	if !strings.Contains(l, "cannot decode argo cd application") || !strings.Contains(l, "name=broken") ||
		!strings.Contains(l, "cannot unmarshal string") {
		t.Errorf("log does not say which object failed and why:\n%s", l)
	}
}

func TestWatcherCRDMissing(t *testing.T) {
	t.Run("group not served, then installed", func(t *testing.T) {
		disco := argoDiscovery()
		var missing atomic.Bool
		missing.Store(true)
		disco.PrependReactor("get", "resource", func(clienttesting.Action) (bool, runtime.Object, error) {
			if missing.Load() {
				return true, nil, apierrors.NewNotFound(schema.GroupResource{}, "")
			}
			return false, nil, nil
		})
		sink, sources := newRecordingSink(), newRecordingSources()
		w, err := New(WatcherConfig{DiscoveryInterval: 20 * time.Millisecond},
			fakeDynamic(fixture(t, "synced-healthy.json", "argocd", "reviews")), disco, sink, sources, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		runWatcher(t, w)
		down := sources.waitDown(t, 5*time.Second, 0, "")
		const want = "argo cd application crd is not installed: the api server does not serve applications.argoproj.io/v1alpha1; checking again every 20ms"
		if down.Name != "argocd" || down.Error != want || !down.NotInstalled {
			t.Errorf("status %+v\nwant error %q and NotInstalled", down, want)
		}
		time.Sleep(100 * time.Millisecond) // several retries
		if w.HasSynced() || len(sink.current()) != 0 {
			t.Fatal("synced or reported apps without the CRD")
		}
		if n := len(sources.all()); n != 1 {
			t.Errorf("retries reported %d statuses, want one: %+v", n, sources.all())
		}
		missing.Store(false)
		sources.waitUp(t, 5*time.Second, 0)
		waitSynced(t, w, 5*time.Second)
		if _, ok := sink.current()[appKey("argocd", "reviews")]; !ok {
			t.Errorf("app not reported after the CRD appeared")
		}
	})
	t.Run("group served without applications", func(t *testing.T) {
		disco := argoDiscovery()
		disco.Resources[0].APIResources = disco.Resources[0].APIResources[1:] // AppProject only
		sources := newRecordingSources()
		w, err := New(WatcherConfig{}, fakeDynamic(), disco, newRecordingSink(), sources, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		runWatcher(t, w)
		sources.waitDown(t, 5*time.Second, 0, "argo cd application crd is not installed")
	})
	t.Run("discovery fails", func(t *testing.T) {
		disco := argoDiscovery()
		disco.PrependReactor("get", "resource", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewServiceUnavailable("etcd leader changed")
		})
		sources := newRecordingSources()
		w, err := New(WatcherConfig{}, fakeDynamic(), disco, newRecordingSink(), sources, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		runWatcher(t, w)
		down := sources.waitDown(t, 5*time.Second, 0, "")
		const want = "discovering argo cd applications (argoproj.io/v1alpha1): etcd leader changed; checking again every 30s"
		if down.Error != want || down.NotInstalled {
			t.Errorf("error %q (NotInstalled %t)\nwant  %q, a discovery failure is an outage", down.Error, down.NotInstalled, want)
		}
	})
}

// fakeWatches hands out the fake client's watches so that a test can end them.
type fakeWatches struct {
	mu      sync.Mutex
	watches []*watch.FakeWatcher
	// refuse, when set, fails new watch requests as an API server that is down does.
	refuse atomic.Bool
}

var errConnRefused = &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/apis/argoproj.io/v1alpha1/applications?watch=true",
	Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}

func (f *fakeWatches) react(clienttesting.Action) (bool, watch.Interface, error) {
	if f.refuse.Load() {
		return true, nil, errConnRefused
	}
	fw := watch.NewFakeWithChanSize(10, false)
	f.mu.Lock()
	f.watches = append(f.watches, fw)
	f.mu.Unlock()
	return true, fw, nil
}

func (f *fakeWatches) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watches)
}

func (f *fakeWatches) last() *watch.FakeWatcher {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watches[len(f.watches)-1]
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A failing relist reports the source down and keeps every app; the relist that succeeds
// reports it up and forgets only the app deleted meanwhile.
func TestWatcherListErrorKeepsAppsUntilRelist(t *testing.T) {
	client := fakeDynamic(
		fixture(t, "synced-healthy.json", "argocd", "reviews"),
		fixture(t, "out-of-sync.json", "argocd", "ratings"),
	)
	watches := &fakeWatches{}
	client.PrependWatchReactor("applications", watches.react)
	var failList atomic.Bool
	client.PrependReactor("list", "applications", func(clienttesting.Action) (bool, runtime.Object, error) {
		if failList.Load() {
			return true, nil, apierrors.NewForbidden(applicationsGVR.GroupResource(), "", errors.New("RBAC: access denied"))
		}
		return false, nil, nil
	})
	sink, sources := newRecordingSink(), newRecordingSources()
	log, _ := testLogger(t)
	w, err := New(WatcherConfig{}, client, argoDiscovery(), sink, sources, prometheus.NewPedanticRegistry(), log)
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitSynced(t, w, 10*time.Second)
	sources.waitUp(t, 5*time.Second, 0)
	waitFor(t, 5*time.Second, "watch opened", func() bool { return watches.count() == 1 })

	// The watch ends with 410 Gone, the informer relists, and the list is refused.
	failList.Store(true)
	mark, statusMark := sink.mark(), sources.mark()
	watches.last().Error(&apierrors.NewResourceExpired("too old resource version: 1 (2)").ErrStatus)
	down := sources.waitDown(t, 10*time.Second, statusMark, "")
	const want = `watching argo cd applications in all namespaces: failed to list argoproj.io/v1alpha1 Application: ` +
		`applications.argoproj.io is forbidden: RBAC: access denied (meshdrift needs list and watch on applications.argoproj.io)`
	if down.Error != want {
		t.Errorf("down with\n %q\nwant\n %q", down.Error, want)
	}
	if v := testutil.ToFloat64(w.restarts); v < 1 {
		t.Errorf("watch restarts %v, want >= 1", v)
	}
	// Deleted while the source is dark: nothing may be forgotten until a list says so.
	if err := client.Tracker().Delete(applicationsGVR, "argocd", "ratings"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := sink.forgotten(mark); len(got) != 0 {
		t.Fatalf("forgot %v while the source was down", got)
	}

	failList.Store(false)
	sources.waitUp(t, 30*time.Second, statusMark)
	sink.waitForget(t, 5*time.Second, mark, appKey("argocd", "ratings"))
	if got := sink.forgotten(mark); !reflect.DeepEqual(got, []reconcile.AppKey{appKey("argocd", "ratings")}) {
		t.Errorf("forgotten %v, want only the deleted app", got)
	}
	if _, ok := sink.current()[appKey("argocd", "reviews")]; !ok {
		t.Error("the remaining app was forgotten")
	}
	if v := testutil.ToFloat64(w.objects); v != 1 {
		t.Errorf("objects %v, want 1", v)
	}
}

// An API server that refuses connections never reaches the informer's watch error handler
// (the reflector retries the watch in place), yet must show as down.
func TestWatcherWatchRefused(t *testing.T) {
	client := fakeDynamic(fixture(t, "synced-healthy.json", "argocd", "reviews"))
	watches := &fakeWatches{}
	client.PrependWatchReactor("applications", watches.react)
	sink, sources := newRecordingSink(), newRecordingSources()
	log, _ := testLogger(t)
	w, err := New(WatcherConfig{}, client, argoDiscovery(), sink, sources, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitSynced(t, w, 10*time.Second)
	waitFor(t, 5*time.Second, "watch opened", func() bool { return watches.count() == 1 })
	statusMark, mark := sources.mark(), sink.mark()

	watches.refuse.Store(true)
	// Closed after more than a second, as a dying API server's stream ends.
	time.Sleep(1100 * time.Millisecond)
	watches.last().Stop()
	down := sources.waitDown(t, 10*time.Second, statusMark, "connection refused")
	if !strings.HasPrefix(down.Error, "watching argo cd applications in all namespaces: Get ") {
		t.Errorf("error %q", down.Error)
	}
	if v := testutil.ToFloat64(w.restarts); v < 1 {
		t.Errorf("watch restarts %v, want >= 1", v)
	}
	watches.refuse.Store(false)
	up := sources.waitUp(t, 30*time.Second, statusMark)
	if !up.Since.After(down.Since) {
		t.Errorf("up since %s, down since %s", up.Since, down.Since)
	}
	if got := sink.forgotten(mark); len(got) != 0 {
		t.Errorf("forgot %v across the outage", got)
	}
}

func TestWatcherNamespaces(t *testing.T) {
	client := fakeDynamic(
		fixture(t, "synced-healthy.json", "argocd", "reviews"),
		fixture(t, "other-namespace.json", "team-a", "reviews"),
		fixture(t, "other-namespace.json", "team-b", "reviews"),
	)
	sink, sources := newRecordingSink(), newRecordingSources()
	w, err := New(WatcherConfig{Namespaces: []string{"team-a", "team-b", "team-a"}}, client, argoDiscovery(), sink, sources, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitSynced(t, w, 10*time.Second)
	sources.waitUp(t, 5*time.Second, 0)
	var keys []string
	for k := range sink.current() {
		keys = append(keys, k.String())
	}
	slices.Sort(keys)
	want := []string{"argocd/Application/team-a/reviews", "argocd/Application/team-b/reviews"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("reported %v, want %v", keys, want)
	}
}

func TestNewErrors(t *testing.T) {
	sink, sources := newRecordingSink(), newRecordingSources()
	for _, tt := range []struct {
		name string
		new  func() error
		want string
	}{
		{"no clients", func() error {
			_, err := New(WatcherConfig{}, nil, nil, sink, sources, nil, nil)
			return err
		}, "argo cd watcher: a dynamic client and a discovery client are required"},
		{"no sink", func() error {
			_, err := New(WatcherConfig{}, fakeDynamic(), argoDiscovery(), nil, sources, nil, nil)
			return err
		}, "argo cd watcher: an app sink and a source reporter are required"},
		{"negative retry", func() error {
			_, err := New(WatcherConfig{DiscoveryInterval: -time.Second}, fakeDynamic(), argoDiscovery(), sink, sources, nil, nil)
			return err
		}, "argo cd watcher: discovery interval -1s is negative"},
		{"bad namespaces", func() error {
			_, err := New(WatcherConfig{Namespaces: []string{"ok", "", "Team_A"}}, fakeDynamic(), argoDiscovery(), sink, sources, nil, nil)
			return err
		}, "argo cd watcher: namespace \"\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')\n" +
			"argo cd watcher: namespace \"Team_A\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"},
		{"metric clash", func() error {
			reg := prometheus.NewRegistry()
			reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshdrift_adapter_objects", Help: "other"}))
			_, err := New(WatcherConfig{}, fakeDynamic(), argoDiscovery(), sink, sources, reg, nil)
			return err
		}, "argo cd watcher: registering adapter metrics: a previously registered descriptor with the same fully-qualified name as Desc{fqName: \"meshdrift_adapter_objects\", help: \"Objects an adapter currently reports, by adapter and kind.\", unit: \"\", constLabels: {}, variableLabels: {adapter,kind}} has different label names or a different help string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.new()
			if err == nil || err.Error() != tt.want {
				t.Errorf("error\n %v\nwant\n %s", err, tt.want)
			}
		})
	}
}

func TestWatcherRunTwice(t *testing.T) {
	w, err := New(WatcherConfig{}, fakeDynamic(), argoDiscovery(), newRecordingSink(), newRecordingSources(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	runWatcher(t, w)
	waitSynced(t, w, 10*time.Second)
	if err := w.Run(context.Background()); err == nil || err.Error() != "argo cd watcher: already running" {
		t.Errorf("second Run: %v", err)
	}
}

// The streaming list passes every event through and is complete at its end bookmark.
func TestInitialEventsWatch(t *testing.T) {
	inner := watch.NewFakeWithChanSize(4, false)
	var done atomic.Int32
	w := newInitialEventsWatch(inner, func() { done.Add(1) })

	app := fixture(t, "synced-healthy.json", "argocd", "reviews")
	plain := &unstructured.Unstructured{Object: map[string]any{"apiVersion": appview.APIVersion, "kind": appview.Kind}}
	plain.SetResourceVersion("10")
	end := plain.DeepCopy()
	end.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	inner.Add(app)
	inner.Action(watch.Bookmark, plain)
	inner.Action(watch.Bookmark, end)
	inner.Action(watch.Bookmark, end)

	var types []watch.EventType
	for range 4 {
		ev := <-w.ResultChan()
		types = append(types, ev.Type)
	}
	if want := []watch.EventType{watch.Added, watch.Bookmark, watch.Bookmark, watch.Bookmark}; !reflect.DeepEqual(types, want) {
		t.Errorf("events %v, want %v", types, want)
	}
	if n := done.Load(); n != 1 {
		t.Errorf("done called %d times, want 1", n)
	}
	w.Stop()
	w.Stop()
	if _, ok := <-w.ResultChan(); ok {
		t.Error("result channel open after Stop")
	}
	if !inner.IsStopped() {
		t.Error("inner watch not stopped")
	}
}
