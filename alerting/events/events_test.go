package events

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/meshdrift/meshdrift/alerting/dispatch"
	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

var (
	vsGVK   = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}
	ksGVK   = schema.GroupVersionKind{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Kustomization"}
	appGVK  = schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Application"}
	vsRef   = reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "shop", Name: "reviews"}
	ksKey   = reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: "shop"}
	appKey  = reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Name: "shop"}
	started = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
)

func partial(gvk schema.GroupVersionKind, ns, name, uid string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), ResourceVersion: "7"},
	}
}

type fixture struct {
	sink   *Sink
	kube   *kubefake.Clientset
	meta   *metadatafake.FakeMetadataClient
	reg    *prometheus.Registry
	clock  *clock
	cancel context.CancelFunc
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	mapper := meta.NewDefaultRESTMapper([]schema.GroupVersion{vsGVK.GroupVersion(), ksGVK.GroupVersion(), appGVK.GroupVersion()})
	for _, gvk := range []schema.GroupVersionKind{vsGVK, ksGVK, appGVK} {
		mapper.Add(gvk, meta.RESTScopeNamespace)
	}
	sch := metadatafake.NewTestScheme()
	for _, gvk := range []schema.GroupVersionKind{vsGVK, ksGVK, appGVK} {
		sch.AddKnownTypeWithName(gvk, &metav1.PartialObjectMetadata{})
		sch.AddKnownTypeWithName(gvk.GroupVersion().WithKind(gvk.Kind+"List"), &metav1.PartialObjectMetadataList{})
	}
	md := metadatafake.NewSimpleMetadataClient(sch,
		partial(vsGVK, "shop", "reviews", "uid-vs"),
		partial(ksGVK, "flux-system", "shop", "uid-ks"),
		partial(appGVK, "argocd", "shop", "uid-app"),
	)
	kube := kubefake.NewClientset()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Clients{Events: kube.EventsV1(), Metadata: md, Mapper: mapper}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: started}
	s.now = c.now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Run marks the sink started right after the broadcaster's watcher exists.
	deadline := time.Now().Add(5 * time.Second)
	for !s.HasSynced() {
		if time.Now().After(deadline) {
			t.Fatal("sink did not start")
		}
		time.Sleep(time.Millisecond)
	}
	return &fixture{sink: s, kube: kube, meta: md, reg: reg, clock: c, cancel: cancel}
}

func finding(state findings.State) findings.Finding {
	return findings.Finding{
		ID: "f1", Code: "MD0201", Name: "ChangeNACKed", Severity: findings.SeverityCritical, State: state,
		Subject: findings.Subject{Object: vsRef, App: ksKey, Revision: "main@sha1:abc"},
		Summary: "VirtualService shop/reviews: 1 proxy NACKed %s the change", Evidence: "<script>x</script>",
	}
}

// waitEvents waits until the fake API server holds n Events in ns and returns them.
func waitEvents(t *testing.T, f *fixture, ns string, n int) []eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := f.kube.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) >= n {
			return l.Items
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Events in %s, want %d: %+v", len(l.Items), ns, n, l.Items)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func metadataGets(f *fixture) int {
	n := 0
	for _, a := range f.meta.Actions() {
		if a.GetVerb() == "get" {
			n++
		}
	}
	return n
}

func TestNotifyWritesEventsOnObjectAndApp(t *testing.T) {
	f := newFixture(t, Config{})
	retry, err := f.sink.Notify(context.Background(), []findings.Finding{finding(findings.StateFiring)})
	if retry || err != nil {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	vs := waitEvents(t, f, "shop", 1)[0]
	ks := waitEvents(t, f, "flux-system", 1)[0]
	wantNote := "VirtualService shop/reviews: 1 proxy NACKed %s the change (MD0201)"
	for _, c := range []struct {
		e            eventsv1.Event
		regarding    corev1.ObjectReference
		relatedUID   types.UID
		relatedKind  string
		relatedGroup string
	}{
		{vs, corev1.ObjectReference{APIVersion: "networking.istio.io/v1", Kind: "VirtualService", Namespace: "shop", Name: "reviews", UID: "uid-vs"}, "uid-ks", "Kustomization", "kustomize.toolkit.fluxcd.io/v1"},
		{ks, corev1.ObjectReference{APIVersion: "kustomize.toolkit.fluxcd.io/v1", Kind: "Kustomization", Namespace: "flux-system", Name: "shop", UID: "uid-ks"}, "uid-vs", "VirtualService", "networking.istio.io/v1"},
	} {
		e := c.e
		if e.Regarding != c.regarding {
			t.Errorf("regarding = %+v, want %+v", e.Regarding, c.regarding)
		}
		if e.Related == nil || e.Related.UID != c.relatedUID || e.Related.Kind != c.relatedKind || e.Related.APIVersion != c.relatedGroup {
			t.Errorf("related = %+v", e.Related)
		}
		if e.Type != corev1.EventTypeWarning || e.Reason != "ChangeNACKed" || e.Action != ActionDetected || e.Note != wantNote {
			t.Errorf("event = type %q reason %q action %q note %q", e.Type, e.Reason, e.Action, e.Note)
		}
		if e.ReportingController != "meshdrift" || !strings.HasPrefix(e.ReportingInstance, "meshdrift-") {
			t.Errorf("reporting = %q %q", e.ReportingController, e.ReportingInstance)
		}
	}

	// Resolved: a Normal Event beside the Warning on each object.
	if _, err := f.sink.Notify(context.Background(), []findings.Finding{finding(findings.StateResolved)}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"shop", "flux-system"} {
		var normal int
		for _, e := range waitEvents(t, f, ns, 2) {
			if e.Type == corev1.EventTypeNormal && e.Action == ActionResolved && strings.HasPrefix(e.Note, "Resolved: ") {
				normal++
			}
		}
		if normal != 1 {
			t.Errorf("%s: %d resolved Events, want 1", ns, normal)
		}
	}
}

func TestNotifyAggregatesAndCachesMetadata(t *testing.T) {
	f := newFixture(t, Config{})
	const deliveries = 10
	for range deliveries {
		if _, err := f.sink.Notify(context.Background(), []findings.Finding{finding(findings.StateFiring)}); err != nil {
			t.Fatal(err)
		}
	}
	// The broadcaster writes the first delivery and the second (series count 2); the rest
	// only count in its cache.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(f.sink.metrics.requests.WithLabelValues("patch", "ok")) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	for _, ns := range []string{"shop", "flux-system"} {
		evs := waitEvents(t, f, ns, 1)
		if len(evs) != 1 {
			t.Fatalf("%s: %d Events after %d deliveries, want 1", ns, len(evs), deliveries)
		}
		if evs[0].Series == nil || evs[0].Series.Count < 2 {
			t.Errorf("%s: series = %+v, want a series", ns, evs[0].Series)
		}
	}
	if got := testutil.ToFloat64(f.sink.metrics.emitted.WithLabelValues("Warning")); got != 2*deliveries {
		t.Errorf("emitted = %v, want %d", got, 2*deliveries)
	}
	// Usually one create and one patch per object. The broadcaster sends each delivery from
	// its own goroutine, so the series patch may overtake the create: it then finds no
	// Event, creates one, and the first create fails as already existing (3 requests).
	var requests float64
	for _, verb := range []string{"create", "patch"} {
		for _, outcome := range []string{"ok", "error"} {
			requests += testutil.ToFloat64(f.sink.metrics.requests.WithLabelValues(verb, outcome))
		}
	}
	if requests < 4 || requests > 6 {
		t.Errorf("%v API requests for 2 objects × %d deliveries, want 4 to 6", requests, deliveries)
	}
	if n := metadataGets(f); n != 2 {
		t.Errorf("%d metadata GETs for %d deliveries, want 2 (one per object)", n, deliveries)
	}
	// After the TTL, each object is read once more.
	f.clock.add(10*time.Minute + time.Second)
	if _, err := f.sink.Notify(context.Background(), []findings.Finding{finding(findings.StateFiring)}); err != nil {
		t.Fatal(err)
	}
	if n := metadataGets(f); n != 4 {
		t.Errorf("%d metadata GETs after the TTL, want 4", n)
	}
}

func TestNotifySkipsWhatHasNoEvent(t *testing.T) {
	f := newFixture(t, Config{})
	pending := finding(findings.StatePending)
	gone := finding(findings.StateFiring)
	gone.Subject = findings.Subject{Object: reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "shop", Name: "gone"}}
	noKind := finding(findings.StateFiring)
	noKind.Subject = findings.Subject{Object: reconcile.ObjectRef{Group: "example.com", Kind: "Widget", Namespace: "shop", Name: "w"}}
	source := finding(findings.StateFiring)
	source.Subject = findings.Subject{Source: "istiod/istiod-0"}
	retry, err := f.sink.Notify(context.Background(), []findings.Finding{pending, gone, noKind, source})
	if retry || err != nil {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	if got := testutil.ToFloat64(f.sink.metrics.skipped); got != 3 {
		t.Errorf("skipped = %v, want 3 (gone, unknown kind, no object)", got)
	}
	if got := testutil.ToFloat64(f.sink.metrics.emitted.WithLabelValues("Warning")); got != 0 {
		t.Errorf("emitted = %v, want 0", got)
	}
	// A missing object is read again only after the shorter MissingTTL.
	_, _ = f.sink.Notify(context.Background(), []findings.Finding{gone})
	if n := metadataGets(f); n != 1 {
		t.Errorf("%d GETs, want 1 (cached miss)", n)
	}
	f.clock.add(time.Minute)
	_, _ = f.sink.Notify(context.Background(), []findings.Finding{gone})
	if n := metadataGets(f); n != 2 {
		t.Errorf("%d GETs, want 2 after MissingTTL", n)
	}
}

func TestNotifyArgoCDAppWithoutNamespace(t *testing.T) {
	f := newFixture(t, Config{})
	fd := finding(findings.StateFiring)
	fd.Subject = findings.Subject{App: appKey}
	if _, err := f.sink.Notify(context.Background(), []findings.Finding{fd}); err != nil {
		t.Fatal(err)
	}
	e := waitEvents(t, f, "argocd", 1)[0]
	if e.Regarding.UID != "uid-app" || e.Related != nil {
		t.Errorf("regarding %+v related %+v", e.Regarding, e.Related)
	}
}

func TestNotifyRetriesWhenMetadataCannotBeRead(t *testing.T) {
	f := newFixture(t, Config{})
	f.meta.PrependReactor("get", "*", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	retry, err := f.sink.Notify(context.Background(), []findings.Finding{finding(findings.StateFiring)})
	if !retry || err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Notify = %v, %v; want a retry", retry, err)
	}
}

func TestNotifyBeforeRun(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	s, err := New(Config{}, Clients{Events: kubefake.NewClientset().EventsV1(), Metadata: metadatafake.NewSimpleMetadataClient(metadatafake.NewTestScheme()), Mapper: mapper}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := s.Notify(context.Background(), []findings.Finding{finding(findings.StateFiring)}); !retry || err == nil {
		t.Errorf("Notify before Run = %v, %v; want a retry", retry, err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	f := newFixture(t, Config{MaxObjects: 2})
	for i, name := range []string{"a", "b", "c"} {
		f.clock.add(time.Second)
		fd := finding(findings.StateFiring)
		fd.Subject = findings.Subject{Object: reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "shop", Name: name}}
		_, _ = f.sink.Notify(context.Background(), []findings.Finding{fd})
		if want := min(i+1, 2); len(f.sink.cache) != want {
			t.Errorf("after %d objects the cache holds %d, want %d", i+1, len(f.sink.cache), want)
		}
	}
	if _, ok := f.sink.cache[objectKey{"networking.istio.io", "VirtualService", "shop", "a"}]; ok {
		t.Error("the oldest entry was kept")
	}
}

func TestEventNote(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes
	for _, c := range []struct{ summary, want string }{
		{"short", "short (MD0201)"},
		{"", " (MD0201)"},
	} {
		if got := eventNote(c.summary, "MD0201"); got != c.want {
			t.Errorf("eventNote(%q) = %q, want %q", c.summary, got, c.want)
		}
	}
	got := eventNote(long, "MD0201")
	if len(got) > noteLimit || !utf8.ValidString(got) || !strings.HasSuffix(got, "… (MD0201)") {
		t.Errorf("eventNote(long) = %d bytes, valid %v, suffix %q", len(got), utf8.ValidString(got), got[len(got)-15:])
	}
	if got := truncate(strings.Repeat("x", 200), reasonLimit); len(got) != reasonLimit {
		t.Errorf("truncate to %d gave %d bytes", reasonLimit, len(got))
	}
}

// The sink is one of dispatch's notifiers; production code does not import dispatch.
var _ dispatch.Notifier = (*Sink)(nil)
