package events

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshdrift/meshdrift/alerting/dispatch"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

var bed struct {
	started bool
	assets  testbed.Assets
	kube    *testbed.Kube
}

func TestMain(m *testing.M) {
	os.Exit(testbed.MainBed(m, testbed.BedOptions{LogPrefix: "meshdrift-events-"}, func(b *testbed.Bed) error {
		bed.assets, bed.kube, bed.started = b.Assets, b.Kube, true
		return nil
	}))
}

// meshdriftUser is the identity manifests/rbac.yaml binds: the sink runs as it, so the
// test fails if the shipped RBAC does not allow what the sink does.
var meshdriftUser = rest.ImpersonationConfig{
	UserName: "system:serviceaccount:meshdrift-system:meshdrift",
	Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:meshdrift-system", "system:authenticated"},
}

// TestEventsOnRealAPIServer delivers findings about a VirtualService owned by a Flux
// Kustomization and an Argo CD Application through the sink, running with meshdrift's
// shipped RBAC, and reads back what the API server, kubectl describe and the queries of
// flux events and the Argo CD UI see.
func TestEventsOnRealAPIServer(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	k := bed.kube
	ns, name, uid := createObjects(t)

	sink := startSink(t)

	vs := reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: name}
	nacked := findings.Finding{
		ID: "nack", Code: "MD0201", Name: "ChangeNACKed", Severity: findings.SeverityCritical, State: findings.StateFiring,
		Subject: findings.Subject{Object: vs, App: reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: name}},
		Summary: "VirtualService " + ns + "/" + name + ": proxy ratings-v1.shop rejected the change: invalid regex %s <b>",
	}
	// Label tracking: the Application's namespace is unknown and defaults to argocd.
	stale := findings.Finding{
		ID: "stale", Code: "MD0202", Name: "ChangeStale", Severity: findings.SeverityWarning, State: findings.StateFiring,
		Subject: findings.Subject{Object: vs, App: reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Name: name}},
		Summary: "VirtualService " + ns + "/" + name + ": 3 proxies have not ACKed after 30s",
	}

	notPushed := findings.Finding{
		ID: "notpushed", Code: "MD0203", Name: "ChangeNotPushed", Severity: findings.SeverityWarning, State: findings.StateFiring,
		Subject: findings.Subject{Object: vs, App: reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "HelmRelease", Namespace: "flux-system", Name: name}},
		Summary: "VirtualService " + ns + "/" + name + ": istiod pushed nothing after the change",
	}
	all := []findings.Finding{nacked, stale, notPushed}

	// A resend every 50 ms stands for many resend intervals: every delivery of a firing
	// finding must land in the same Event.
	const deliveries = 40
	start := time.Now()
	for i := range deliveries {
		if retry, err := sink.Notify(ctx, all); retry || err != nil {
			t.Fatalf("delivery %d: retry %v, %v", i, retry, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)

	ev := kubernetes.NewForConfigOrDie(k.Config)
	type want struct{ ns, kind, reason string }
	wants := []want{
		{ns, "VirtualService", "ChangeNACKed"}, {ns, "VirtualService", "ChangeStale"}, {ns, "VirtualService", "ChangeNotPushed"},
		{"flux-system", "Kustomization", "ChangeNACKed"}, {"flux-system", "HelmRelease", "ChangeNotPushed"}, {"argocd", "Application", "ChangeStale"},
	}
	var listed map[want][]eventsv1.Event
	waitFor(t, 15*time.Second, "one Event per object and reason, in a series", func() (bool, string) {
		listed = map[want][]eventsv1.Event{}
		for _, n := range []string{ns, "flux-system", "argocd"} {
			l, err := ev.EventsV1().Events(n).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err.Error()
			}
			for _, e := range l.Items {
				if e.Regarding.Name == name {
					w := want{n, e.Regarding.Kind, e.Reason}
					listed[w] = append(listed[w], e)
				}
			}
		}
		for _, w := range wants {
			if es := listed[w]; len(es) != 1 || es[0].Series == nil {
				return false, fmt.Sprintf("%+v: %d Events", w, len(es))
			}
		}
		return len(listed) == len(wants), fmt.Sprintf("%d kinds of Events", len(listed))
	})
	for _, w := range wants {
		e := listed[w][0]
		if string(e.Regarding.UID) != uid[w.kind] || e.Regarding.APIVersion == "" {
			t.Errorf("%+v: regarding %+v, want UID %s", w, e.Regarding, uid[w.kind])
		}
		if e.Type != corev1.EventTypeWarning || e.Action != ActionDetected || e.ReportingController != "meshdrift" {
			t.Errorf("%+v: type %s action %s controller %s", w, e.Type, e.Action, e.ReportingController)
		}
		if e.Related == nil {
			t.Errorf("%+v: no related object", w)
		}
	}
	if n := listed[want{ns, "VirtualService", "ChangeNACKed"}][0].Note; n != nacked.Summary+" (MD0201)" {
		t.Errorf("note %q", n)
	}

	var requests float64
	for _, verb := range []string{"create", "patch", "update"} {
		for _, outcome := range []string{"ok", "error"} {
			requests += testutil.ToFloat64(sink.metrics.requests.WithLabelValues(verb, outcome))
		}
	}
	emitted := testutil.ToFloat64(sink.metrics.emitted.WithLabelValues("Warning"))
	reads := testutil.ToFloat64(sink.metrics.lookups.WithLabelValues("found"))
	var counts []string
	for _, w := range wants {
		counts = append(counts, fmt.Sprintf("%s/%s=%d", w.kind, w.reason, listed[w][0].Series.Count))
	}
	t.Logf("measured: %d deliveries of %d findings over %v → %v Events handed to the broadcaster → %v API requests → %d Event objects (series counts on the server: %s); %v metadata GETs",
		deliveries, len(all), elapsed.Round(time.Millisecond), emitted, requests, len(wants), strings.Join(counts, " "), reads)
	if emitted != float64(2*len(all)*deliveries) {
		t.Errorf("%v Events emitted, want %d", emitted, 2*len(all)*deliveries)
	}
	// One create and one series patch per Event; a patch that overtakes its create costs
	// one more request (see the unit test).
	if n := float64(len(wants)); requests < 2*n || requests > 3*n {
		t.Errorf("%v API requests for %v Events, want %v to %v", requests, n, 2*n, 3*n)
	}
	if reads != 4 {
		t.Errorf("%v metadata GETs, want 4 (one per object)", reads)
	}

	// kubectl describe finds the Events by the object's UID.
	describe := kubectl(t, "describe", "virtualservice", name, "-n", ns)
	section := describe[strings.Index(describe, "Events:"):]
	for _, s := range []string{"Warning", "ChangeNACKed", "ChangeStale", "meshdrift", "rejected the change: invalid regex %s <b> (MD0201)"} {
		if !strings.Contains(section, s) {
			t.Errorf("kubectl describe shows no %q in its Events:\n%s", s, describe)
		}
	}
	t.Logf("kubectl describe virtualservice:\n%s", section)
	for _, c := range []struct{ resource, ns, reason string }{
		{"kustomization", "flux-system", "ChangeNACKed"}, {"helmrelease", "flux-system", "ChangeNotPushed"}, {"application", "argocd", "ChangeStale"},
	} {
		if d := kubectl(t, "describe", c.resource, name, "-n", c.ns); !strings.Contains(d[strings.Index(d, "Events:"):], c.reason) {
			t.Errorf("kubectl describe %s shows no %s Event:\n%s", c.resource, c.reason, d)
		}
	}

	// The Argo CD UI lists an Application's Events by involvedObject name, namespace and
	// UID; flux events by kind and name. Both read core/v1 Events, the same objects.
	for _, q := range []struct{ ns, selector string }{
		{"argocd", "involvedObject.name=" + name + ",involvedObject.namespace=argocd,involvedObject.uid=" + uid["Application"]},
		{"flux-system", "involvedObject.kind=Kustomization,involvedObject.name=" + name},
	} {
		l, err := ev.CoreV1().Events(q.ns).List(ctx, metav1.ListOptions{FieldSelector: q.selector})
		if err != nil || len(l.Items) != 1 || l.Items[0].Type != corev1.EventTypeWarning {
			t.Errorf("core/v1 Events in %s with %s: %v %+v", q.ns, q.selector, err, l)
		}
	}

	// Resolving writes a Normal Event beside each Warning.
	for i := range all {
		all[i].State = findings.StateResolved
	}
	if _, err := sink.Notify(ctx, all); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "resolved Events", func() (bool, string) {
		normal := 0
		for _, n := range []string{ns, "flux-system", "argocd"} {
			l, err := ev.EventsV1().Events(n).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err.Error()
			}
			for _, e := range l.Items {
				if e.Regarding.Name == name && e.Type == corev1.EventTypeNormal && e.Action == ActionResolved {
					normal++
				}
			}
		}
		return normal == len(wants), fmt.Sprintf("%d Normal Events", normal)
	})
	if d := kubectl(t, "describe", "virtualservice", name, "-n", ns); !strings.Contains(d, "Normal") || !strings.Contains(d, "Resolved: VirtualService") {
		t.Errorf("kubectl describe shows no resolved Event:\n%s", d)
	}
}

// TestEventsThroughDispatch runs the sink behind alerting/dispatch as serve would: a
// firing finding re-sent every 100 ms stays one Event, and a finding that leaves the
// engine's set is resolved with a Normal Event.
func TestEventsThroughDispatch(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	ns, name, uid := createObjects(t)
	sink := startSink(t)
	d, err := dispatch.New([]dispatch.Sink{{Notifier: sink, ResendInterval: 100 * time.Millisecond}}, dispatch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testbed.RunInBackground(t, d.Run)
	f := findings.Finding{
		ID: "nack", Code: "MD0201", Name: "ChangeNACKed", Severity: findings.SeverityCritical, State: findings.StateFiring,
		Subject: findings.Subject{
			Object: reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: name},
			App:    reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: name},
		},
		Summary: "proxy ratings-v1.shop rejected the change",
	}
	d.Update([]findings.Finding{f})
	waitFor(t, 15*time.Second, "20 deliveries", func() (bool, string) {
		n := testutil.ToFloat64(sink.metrics.emitted.WithLabelValues("Warning"))
		return n >= 40, fmt.Sprintf("%v Events emitted", n)
	})
	ev := kubernetes.NewForConfigOrDie(bed.kube.Config)
	count := func(n, kind, eventType string) int {
		l, err := ev.EventsV1().Events(n).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := 0
		for _, e := range l.Items {
			if e.Regarding.Name == name && e.Regarding.Kind == kind && e.Type == eventType && string(e.Regarding.UID) == uid[kind] {
				c++
			}
		}
		return c
	}
	if vs, ks := count(ns, "VirtualService", corev1.EventTypeWarning), count("flux-system", "Kustomization", corev1.EventTypeWarning); vs != 1 || ks != 1 {
		t.Errorf("after %v deliveries: %d Warning Events on the VirtualService and %d on the Kustomization, want 1 each",
			testutil.ToFloat64(sink.metrics.emitted.WithLabelValues("Warning"))/2, vs, ks)
	}
	d.Update(nil)
	waitFor(t, 15*time.Second, "the resolved Events", func() (bool, string) {
		vs, ks := count(ns, "VirtualService", corev1.EventTypeNormal), count("flux-system", "Kustomization", corev1.EventTypeNormal)
		return vs == 1 && ks == 1, fmt.Sprintf("%d and %d Normal Events", vs, ks)
	})
}

// createObjects applies meshdrift's RBAC and creates a VirtualService, and a Kustomization,
// a HelmRelease and an Application of the same name; it returns their namespace, name and
// UIDs by kind.
func createObjects(t *testing.T) (ns, name string, uid map[string]string) {
	t.Helper()
	ctx := context.Background()
	k := bed.kube
	rbac, err := os.ReadFile(filepath.Join("..", "..", "manifests", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Apply(ctx, "test", string(rbac)); err != nil {
		t.Fatal(err)
	}
	ns = "events-" + rand.String(5)
	name = "reviews-" + rand.String(5)
	if err := k.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	objs, err := k.Apply(ctx, "test", fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: %[1]s, namespace: flux-system}
spec:
  interval: 10m
  path: ./shop
  prune: true
  sourceRef: {kind: GitRepository, name: shop}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: %[1]s, namespace: flux-system}
spec:
  interval: 10m
  chart: {spec: {chart: shop, sourceRef: {kind: HelmRepository, name: shop}}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: %[1]s, namespace: argocd}
spec:
  project: default
  source: {repoURL: "https://git.example.com/shop.git", path: shop, targetRevision: main}
  destination: {server: "https://kubernetes.default.svc", namespace: %[2]s}
`, name, ns))
	if err != nil {
		t.Fatal(err)
	}
	uid = map[string]string{}
	for _, o := range objs {
		uid[o.GetKind()] = string(o.GetUID())
	}

	return ns, name, uid
}

// startSink runs a sink as meshdrift's service account until the test ends.
func startSink(t *testing.T) *Sink {
	t.Helper()
	cfg := rest.CopyConfig(bed.kube.Config)
	cfg.Impersonate = meshdriftUser
	reg := prometheus.NewRegistry()
	sink, err := NewForConfig(Config{}, cfg, reg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	testbed.RunInBackground(t, sink.Run)
	waitFor(t, 10*time.Second, "the sink to run", func() (bool, string) { return sink.HasSynced(), "" })

	return sink
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bed.assets.Bin("kubectl"), append([]string{"--kubeconfig", bed.kube.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: %s", what, last)
}
