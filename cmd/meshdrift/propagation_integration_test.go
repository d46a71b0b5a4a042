package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
	"github.com/meshdrift/meshdrift/reconcile"
)

// These tests run meshdrift as `serve` wires it against the real bed: kube-apiserver,
// istiod (one shared, more where a test needs its own), Flux, and test proxies.
var bed struct {
	started bool
	assets  testbed.Assets
	kube    *testbed.Kube
	istiod  *testbed.Istiod
	flux    *testbed.Flux
	// tokenFile is an istio-ca token of meshdrift's ServiceAccount in meshdrift-system,
	// as the shipped manifests project one.
	tokenFile string
	// kubeconfig authenticates as that ServiceAccount, bound by manifests/rbac.yaml: meshdrift
	// runs with the shipped RBAC, so a watch or write it lacks fails the test that needs it.
	kubeconfig string
}

func TestMain(m *testing.M) {
	os.Exit(testbed.MainBed(m, testbed.BedOptions{
		LogPrefix: "meshdrift-cmd-",
		Istiods:   []testbed.IstiodOptions{istiodOptions("istiod-shared")},
		Flux:      true,
	}, func(b *testbed.Bed) error {
		bed.assets, bed.kube, bed.istiod, bed.flux = b.Assets, b.Kube, b.Istiods[0], b.Flux
		var err error
		if bed.tokenFile, err = b.Kube.TokenFile(context.Background(), testbed.MeshdriftNamespace, "meshdrift"); err != nil {
			return err
		}
		if bed.kubeconfig, err = shippedRBAC(b.Kube); err != nil {
			return err
		}
		bed.started = true
		return nil
	}))
}

// shippedRBAC applies manifests/rbac.yaml and returns a kubeconfig of the ServiceAccount
// it binds.
func shippedRBAC(k *testbed.Kube) (string, error) {
	rbac, err := os.ReadFile(filepath.Join("..", "..", "manifests", "rbac.yaml"))
	if err != nil {
		return "", err
	}
	if _, err := k.Apply(context.Background(), "test", string(rbac)); err != nil {
		return "", fmt.Errorf("applying manifests/rbac.yaml: %w", err)
	}
	return k.ServiceAccountKubeconfig(context.Background(), testbed.MeshdriftNamespace, "meshdrift")
}

// istiodOptions configure an istiod as the README tells users to: debug endpoints open to
// meshdrift's namespace. TestRestrictedViewIsNeverGreen covers istiod without it.
func istiodOptions(name string) testbed.IstiodOptions {
	return testbed.IstiodOptions{Name: name, AllowedDebugNamespaces: []string{testbed.MeshdriftNamespace}}
}

// startMeshdrift wires meshdrift against the bed, reading the given istiods over TLS xDS
// with a meshdrift-system token (the shipped defaults), and runs it until the test ends.
func startMeshdrift(t *testing.T, grace time.Duration, istiods ...*testbed.Istiod) *app {
	t.Helper()
	return startMeshdriftWith(t, grace, nil, istiods...)
}

// startMeshdriftWith is startMeshdrift with the configuration changed by edit first.
func startMeshdriftWith(t *testing.T, grace time.Duration, edit func(*config.Config), istiods ...*testbed.Istiod) *app {
	t.Helper()
	a := launchMeshdrift(t, grace, edit, istiods...)
	syncCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	if err := a.waitSynced(syncCtx); err != nil {
		t.Fatal(err)
	}
	return a
}

// launchMeshdrift is startMeshdriftWith without waiting for the sources to sync.
func launchMeshdrift(t *testing.T, grace time.Duration, edit func(*config.Config), istiods ...*testbed.Istiod) *app {
	t.Helper()
	cfg := testbed.MeshdriftConfig(bed.kubeconfig, bed.tokenFile, istiods...)
	cfg.Flux.Receiver.Enabled = false
	cfg.Istio.PollInterval = config.Duration(time.Second)
	cfg.Reconcile.StaleGrace = config.Duration(grace)
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := wire(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := a.start(ctx)
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return a
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	if err := bed.kube.CreateNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

func startProxy(t *testing.T, istiod *testbed.Istiod, pod, ns string, mode xdsproxy.Mode) *xdsproxy.Proxy {
	t.Helper()
	p := xdsproxy.New(xdsproxy.Config{
		Addr: istiod.GRPCAddr, PodName: pod, Namespace: ns, IP: "10.1.0." + fmt.Sprint(len(pod)%200+1),
		Labels: map[string]string{"app": strings.SplitN(pod, "-", 2)[0]}, Mode: mode,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("starting proxy %s: %v", pod, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

const vsTemplate = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  hosts: [%[2]s.%[1]s.svc.cluster.local]
  http:
  - name: %[2]s-%[3]s
    timeout: %[3]s
    route: [{destination: {host: %[2]s.%[1]s.svc.cluster.local}}]
`

// applyVS writes a VirtualService as kubectl would and returns when the write returned.
func applyVS(t *testing.T, ns, name, timeout string) time.Time {
	t.Helper()
	if _, err := bed.kube.Apply(context.Background(), "kubectl", fmt.Sprintf(vsTemplate, ns, name, timeout)); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// waitChange waits until the change of the named VirtualService satisfies cond.
func waitChange(t *testing.T, a *app, ns, name string, within time.Duration, cond func(reconcile.Propagation) bool) reconcile.Propagation {
	t.Helper()
	deadline := time.Now().Add(within)
	var last reconcile.Propagation
	for time.Now().Before(deadline) {
		for _, p := range a.store.Snapshot().Changes {
			if p.Change.Ref.Kind == "VirtualService" && p.Change.Ref.Namespace == ns && p.Change.Ref.Name == name {
				last = p
				if cond(p) {
					return p
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("change of %s/%s not as expected within %s; last: %+v", ns, name, within, last)
	return last
}

func TestPropagationACK(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	a := startMeshdrift(t, 30*time.Second, bed.istiod)
	startProxy(t, bed.istiod, "reviews-v1-ack", ns, xdsproxy.ModeACK)
	applyVS(t, ns, "reviews", "3s")
	p := waitChange(t, a, ns, "reviews", 10*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationPropagated
	})
	if p.Targeted < 1 || p.ACKed != p.Targeted {
		t.Errorf("propagated with %d/%d ACKed", p.ACKed, p.Targeted)
	}
	// istiod debounces for 100 ms before it pushes; the push's latency must be of that
	// order, not of the poll interval.
	if p.Latency <= 0 || p.Latency > 2*time.Second {
		t.Errorf("latency %s, want about istiod's 100 ms debounce", p.Latency)
	}
	t.Logf("propagated to %d proxies in %s", p.Targeted, p.Latency)
}

func TestPropagationNACK(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	a := startMeshdrift(t, 30*time.Second, bed.istiod)
	const reason = "Proto constraint validation failed: invalid route timeout"
	p := startProxy(t, bed.istiod, "ratings-v1-nack", ns, xdsproxy.ModeACK)
	p.SetNACKMessage(reason)
	p.SetMode(xdsproxy.ModeNACK)
	written := applyVS(t, ns, "ratings", "4s")
	got := waitChange(t, a, ns, "ratings", 2*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationNACKed
	})
	t.Logf("NACK detected %s after the write", time.Since(written))
	found := false
	for _, o := range got.Proxies {
		if o.Proxy == p.Name() && strings.Contains(o.Error, reason) {
			found = true
		}
	}
	if !found {
		t.Errorf("NACK without the proxy's error text: %+v", got.Proxies)
	}
}

func TestPropagationSilentProxyGoesStale(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	const grace = 3 * time.Second
	a := startMeshdrift(t, grace, bed.istiod)
	startProxy(t, bed.istiod, "details-v1-ok", ns, xdsproxy.ModeACK)
	silent := startProxy(t, bed.istiod, "productpage-v1-silent", ns, xdsproxy.ModeACK)
	silent.SetMode(xdsproxy.ModeSilent)
	written := applyVS(t, ns, "details", "5s")
	waitChange(t, a, ns, "details", grace/2, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationPending
	})
	got := waitChange(t, a, ns, "details", grace+5*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationStale
	})
	if age := time.Since(written); age < grace {
		t.Errorf("stale after %s, before the %s grace period", age, grace)
	}
	if len(got.Proxies) != 1 || got.Proxies[0].Proxy != silent.Name() || got.Proxies[0].State != reconcile.PropagationStale {
		t.Errorf("stale proxies = %+v, want only %s", got.Proxies, silent.Name())
	}
}

func TestPropagationDisconnectIsNoAlarm(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	const grace = 4 * time.Second
	a := startMeshdrift(t, grace, bed.istiod)
	startProxy(t, bed.istiod, "reviews-v2-ok", ns, xdsproxy.ModeACK)
	silent := startProxy(t, bed.istiod, "reviews-v3-silent", ns, xdsproxy.ModeACK)
	silent.SetMode(xdsproxy.ModeSilent)
	applyVS(t, ns, "reviews", "6s")
	waitChange(t, a, ns, "reviews", 2*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationPending && p.Pending == 1
	})
	// The stuck pod goes away before the grace period ends: it vanishes from istiod.
	if err := silent.Close(); err != nil {
		t.Fatal(err)
	}
	got := waitChange(t, a, ns, "reviews", grace+3*time.Second, func(p reconcile.Propagation) bool {
		return p.State != reconcile.PropagationPending
	})
	if got.State != reconcile.PropagationPropagated {
		t.Fatalf("after the silent proxy disconnected: %s %+v", got.State, got.Proxies)
	}
}

func TestPropagationTwoReplicasMerged(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	a1, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, istiodOptions("istiod-rep-a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a1.Stop() })
	a2, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, istiodOptions("istiod-rep-b"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a2.Stop() })
	a := startMeshdrift(t, 30*time.Second, a1, a2)
	p1 := startProxy(t, a1, "orders-v1-a", ns, xdsproxy.ModeACK)
	p2 := startProxy(t, a2, "orders-v1-b", ns, xdsproxy.ModeACK)
	applyVS(t, ns, "orders", "2s")
	got := waitChange(t, a, ns, "orders", 10*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationPropagated
	})
	// Each replica knows only its own proxy; the change counts both.
	seen := map[string]string{}
	for _, v := range a.store.Snapshot().Istiods {
		for _, px := range v.Proxies {
			seen[px.ID] = v.Istiod
		}
	}
	if seen[p1.Name()] != a1.SecureGRPCAddr || seen[p2.Name()] != a2.SecureGRPCAddr {
		t.Errorf("proxies by istiod = %v, want %s on %s and %s on %s", seen, p1.Name(), a1.SecureGRPCAddr, p2.Name(), a2.SecureGRPCAddr)
	}
	if got.Targeted < 2 {
		t.Errorf("targeted %d proxies, want both replicas' proxies; change %+v", got.Targeted, got.Change)
		for _, v := range a.store.Snapshot().Istiods {
			t.Logf("istiod %s version %s observed %s", v.Istiod, v.PushVersion, v.ObservedAt.Format(time.RFC3339Nano))
			for _, px := range v.Proxies {
				for _, ty := range px.Types {
					t.Logf("  %s %s %s sent %s", px.ID, reconcile.ShortType(ty.TypeURL), ty.State, ty.SentAt.Format(time.RFC3339Nano))
				}
			}
		}
	}
}

func TestPropagationIstiodStoppedAndRestarted(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	own, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, istiodOptions("istiod-restart"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = own.Stop() })
	const grace = 5 * time.Second
	a := startMeshdrift(t, grace, own)
	startProxy(t, own, "cart-v1-ack", ns, xdsproxy.ModeACK)

	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	applyVS(t, ns, "cart", "2s")
	got := waitChange(t, a, ns, "cart", grace+5*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationUnknown
	})
	if len(got.Unreachable) != 1 {
		t.Errorf("unreachable = %v", got.Unreachable)
	}
	// Past the grace period, a dark istiod still reads as unknown, never as resolved.
	time.Sleep(grace)
	for _, p := range a.store.Snapshot().Changes {
		if p.Change.Ref.Namespace == ns && p.State != reconcile.PropagationUnknown {
			t.Fatalf("with istiod down the change reads %s", p.State)
		}
	}
	// A restarted istiod starts its push counter again; the proxy reconnects (as Envoy
	// would: a new test proxy) and the change propagates, with no false "not propagated".
	if err := own.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	startProxy(t, own, "cart-v1-reconnected", ns, xdsproxy.ModeACK)
	waitChange(t, a, ns, "cart", 15*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationPropagated
	})
}

// A Kustomization applied by the real kustomize-controller that creates a VirtualService
// is reported as propagated for its Git revision.
func TestPropagationPerFluxRevision(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	a := startMeshdrift(t, 30*time.Second, bed.istiod)
	startProxy(t, bed.istiod, "payments-v1-ack", ns, xdsproxy.ModeACK)
	revision := "main@sha1:" + strings.Repeat("d", 40)
	art, err := bed.flux.Artifacts.Publish(ns, revision, map[string]string{"vs.yaml": fmt.Sprintf(vsTemplate, ns, "payments", "9s")})
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.SetGitRepository(ctx, ns, "repo", art); err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.ApplyKustomization(ctx, ns, "payments", "repo", "./", false); err != nil {
		t.Fatal(err)
	}
	key := reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: ns, Name: "payments"}
	match, err := newRevisionMatcher(revision, "")
	if err != nil {
		t.Fatal(err)
	}
	w := &waiter{key: key, match: match, start: time.Now()}
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		state, msg := w.state(a.store.Snapshot(), time.Now())
		last = msg
		if state == reconcile.PropagationPropagated {
			if !strings.Contains(msg, revision) || !strings.Contains(msg, "proxies ACKed") {
				t.Errorf("summary %q", msg)
			}
			t.Log(msg)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("revision never reported propagated; last: %s\n%s", last, bed.flux.LogTail(10))
}
