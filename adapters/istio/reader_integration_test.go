package istio

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
	"github.com/meshdrift/meshdrift/reconcile"
)

// Integration tests: the real istiod of the test bed, read over plaintext xDS (its
// --grpcAddr, 15010 in a cluster) and HTTP (its monitoring address, 15014).

func findProxy(v reconcile.IstiodView, id string) (reconcile.ProxyStatus, bool) {
	for _, p := range v.Proxies {
		if p.ID == id {
			return p, true
		}
	}
	return reconcile.ProxyStatus{}, false
}

func proxyIDs(v reconcile.IstiodView) []string {
	ids := make([]string, 0, len(v.Proxies))
	for _, p := range v.Proxies {
		ids = append(ids, p.ID)
	}
	return ids
}

// typeStates renders a proxy's per-type states for comparisons and messages.
func typeStates(p reconcile.ProxyStatus) map[string]reconcile.SyncState {
	m := map[string]reconcile.SyncState{}
	for _, ts := range p.Types {
		m[ts.TypeURL] = ts.State
	}
	return m
}

// fullySynced is true once CDS, EDS, LDS and RDS are all ACKed.
func fullySynced(p reconcile.ProxyStatus) bool {
	st := typeStates(p)
	for _, typ := range []string{xdsproxy.TypeCluster, xdsproxy.TypeEndpoint, xdsproxy.TypeListener, xdsproxy.TypeRoute} {
		if st[typ] != reconcile.StateSynced {
			return false
		}
	}
	return true
}

// nackedWith returns the type a proxy is in ERROR for with the given text.
func nackedWith(p reconcile.ProxyStatus, text string) (string, bool) {
	for _, ts := range p.Types {
		if ts.State == reconcile.StateError && ts.Error == text {
			return ts.TypeURL, true
		}
	}
	return "", false
}

// pushAll makes istiod push CDS, LDS and RDS to every proxy: a new Service does.
func pushAll(t *testing.T, ns string) {
	t.Helper()
	svc := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: push-%d, namespace: %s}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: ratings}
`, time.Now().UnixNano(), ns)
	if _, err := bed.kube.Apply(context.Background(), "kubectl", svc); err != nil {
		t.Fatal(err)
	}
}

// transportsOf are the two ways the bed's istiod can be read, as targets: TLS xDS with a
// meshdrift-system token (the default), and HTTP on the monitoring port, which loopback
// callers read without a token.
func transportsOf(i *testbed.Istiod) map[Transport]Target {
	return map[Transport]Target{
		TransportXDSTLS: {Name: i.Name, Revision: i.Revision, Addr: i.SecureGRPCAddr, MonitoringAddr: i.MonitoringAddr},
		TransportHTTP:   {Name: i.Name, Revision: i.Revision, Addr: i.MonitoringAddr, MonitoringAddr: i.MonitoringAddr},
	}
}

// An ACKing proxy reads as SYNCED on every type, over xDS and over HTTP alike.
func TestReadACKingProxySynced(t *testing.T) {
	needBed(t)
	ns := newNamespace(t)
	pushAll(t, ns) // a Service gives the proxy a route to ask RDS for
	p := startProxy(t, bed.istiodA, "reviews-v1-abc", ns, "10.1.0.11")
	views := map[Transport]reconcile.IstiodView{}
	for transport, target := range transportsOf(bed.istiodA) {
		r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: transport}, []Target{target})
		testbed.Eventually(t, 15*time.Second, string(transport)+": proxy synced", func() (bool, string) {
			if err := r.ReadOnce(context.Background()); err != nil {
				return false, err.Error()
			}
			v, _ := rec.lastView("istiod-a")
			got, ok := findProxy(v, p.Name())
			return ok && fullySynced(got), fmt.Sprintf("%v in %v", typeStates(got), proxyIDs(v))
		})
		v, _ := rec.lastView("istiod-a")
		views[transport] = v
		got, _ := findProxy(v, p.Name())
		if v.Revision != "default" || got.Revision != "default" || got.Istiod != "istiod-a" || got.ClusterID != "Kubernetes" || got.IstioVersion != "1.31.0" {
			t.Errorf("%s: view %s/%s, proxy %+v", transport, v.Istiod, v.Revision, got)
		}
		if st, ok := rec.lastStatus("istiod-a"); !ok || !st.Up {
			t.Errorf("%s: status %+v", transport, st)
		}
	}
	x, h := views[TransportXDSTLS], views[TransportHTTP]
	// The read's send time and istiod's Date header bound istiod's clock offset; on one
	// machine the clocks agree, so the Date is the answer's second.
	for transport, v := range views {
		if v.ReadStartedAt.IsZero() || v.ReadStartedAt.After(v.ObservedAt) {
			t.Errorf("%s: read started %s, answered %s", transport, v.ReadStartedAt, v.ObservedAt)
		}
	}
	if d := h.ServerDate; d.IsZero() || d.Before(h.ReadStartedAt.Truncate(time.Second)) || d.After(h.ObservedAt) {
		t.Errorf("http: Date %s, read from %s to %s", d, h.ReadStartedAt, h.ObservedAt)
	}
	if !x.ServerDate.IsZero() {
		t.Errorf("xds: Date %s: the xDS answer has none", x.ServerDate)
	}
	if err := checkPushVersion(x.PushVersion); err != nil {
		t.Errorf("xds push version: %v", err)
	}
	if h.PushVersion != "" {
		t.Errorf("http push version %q: the HTTP form has none", h.PushVersion)
	}
	xp, _ := findProxy(x, p.Name())
	hp, _ := findProxy(h, p.Name())
	if xp.ControlPlaneVersion == "" {
		t.Errorf("xds: no control plane version: %+v", xp)
	}
	for _, ts := range hp.Types {
		if ts.SentVersion == "" || ts.AckedVersion != ts.SentVersion {
			t.Errorf("http: %s sent %q acked %q", ts.TypeURL, ts.SentVersion, ts.AckedVersion)
		}
	}
	if !maps.Equal(typeStates(xp), typeStates(hp)) {
		t.Errorf("the transports disagree: xds %v, http %v", typeStates(xp), typeStates(hp))
	}
}

// A NACKing proxy reads as ERROR with its NACK text. The pinned istiod does not stream
// istio.io/nack: the NACK shows at the next poll, and Run says once at info that the
// stream is of no use. The test measures NACK -> view with Poke, as the propagation
// tracker would poll.
func TestNACKingProxyReadsError(t *testing.T) {
	needBed(t)
	ns := newNamespace(t)
	good := startProxy(t, bed.istiodA, "productpage-v1-ok", ns, "10.1.0.21")
	bad := startProxy(t, bed.istiodA, "ratings-v1-nack", ns, "10.1.0.22")
	const reason = "route_config: invalid regex in virtual host ratings"

	targets := transportsOf(bed.istiodA)
	r, rec, _, logs := newTestReader(t, ReaderConfig{Transport: TransportXDSTLS, Interval: time.Hour}, []Target{targets[TransportXDSTLS]})
	runReader(t, r)
	testbed.Eventually(t, 10*time.Second, "first view", func() (bool, string) {
		v, ok := rec.lastView("istiod-a")
		_, found := findProxy(v, bad.Name())
		return ok && found, fmt.Sprint(proxyIDs(v))
	})

	bad.SetNACKMessage(reason)
	bad.SetMode(xdsproxy.ModeNACK)
	pushAll(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := bad.WaitFor(ctx, func(s xdsproxy.Snapshot) bool { return s.Type(xdsproxy.TypeCluster).NACKs > 0 }); err != nil {
		t.Fatalf("proxy never NACKed: %v", err)
	}
	nackAt := bad.Snapshot().Type(xdsproxy.TypeCluster).LastNACK.At
	var seenAt time.Time
	testbed.Eventually(t, 5*time.Second, "ERROR in the view", func() (bool, string) {
		// istiod records the NACK a moment after the proxy sends it: poll until it shows.
		r.Poke()
		v, _ := rec.lastView("istiod-a")
		p, _ := findProxy(v, bad.Name())
		_, ok := nackedWith(p, reason)
		seenAt = v.ObservedAt
		return ok, fmt.Sprint(typeStates(p))
	})
	t.Logf("NACK sent by the proxy -> ERROR in the view (polling every 20 ms): %s", seenAt.Sub(nackAt))
	testbed.Eventually(t, 5*time.Second, "the ACKing proxy synced", func() (bool, string) {
		r.Poke()
		v, _ := rec.lastView("istiod-a")
		p, _ := findProxy(v, good.Name())
		return fullySynced(p), fmt.Sprint(typeStates(p))
	})
	if n := len(rec.snapshot().nacks); n != 0 {
		t.Errorf("%d NACK events from an istiod that does not stream them", n)
	}
	// The pinned istiod answers the subscription, empty, and never streams the NACK: the
	// polls find that out.
	testbed.Eventually(t, 10*time.Second, "fallback logged", func() (bool, string) {
		r.Poke()
		return strings.Contains(logs.String(), "istiod does not stream NACKs"), logs.String()
	})
	if out := logs.String(); strings.Count(out, "istiod does not stream NACKs") != 1 || !strings.Contains(out, "no event for the NACK of") {
		t.Errorf("fallback:\n%s", out)
	}

	// The HTTP form says the same, with the versions.
	rh, rech, _, _ := newTestReader(t, ReaderConfig{Transport: TransportHTTP}, []Target{targets[TransportHTTP]})
	if err := rh.ReadOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	vh, _ := rech.lastView("istiod-a")
	p, _ := findProxy(vh, bad.Name())
	typ, ok := nackedWith(p, reason)
	if !ok {
		t.Fatalf("http: %+v", p)
	}
	for _, ts := range p.Types {
		if ts.TypeURL == typ && (ts.SentVersion == ts.AckedVersion || ts.SentAt.IsZero()) {
			t.Errorf("http: a NACK keeps the old ack: %+v", ts)
		}
	}
}

// Proxies connect to one istiod each: with two istiods of two revisions, each view holds
// its own proxies, with its own revision.
func TestTwoIstiodsEachWithItsProxies(t *testing.T) {
	needBed(t)
	ns := newNamespace(t)
	a1 := startProxy(t, bed.istiodA, "reviews-v1-a1", ns, "10.1.0.31")
	a2 := startProxy(t, bed.istiodA, "reviews-v2-a2", ns, "10.1.0.32")
	b1 := startProxy(t, bed.istiodB, "ratings-v1-b1", ns, "10.1.0.33")
	for _, transport := range []Transport{TransportXDSTLS, TransportHTTP} {
		t.Run(string(transport), func(t *testing.T) {
			targets := []Target{transportsOf(bed.istiodA)[transport], transportsOf(bed.istiodB)[transport]}
			r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: transport}, targets)
			if err := r.ReadOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				istiod, revision string
				has, hasNot      []*xdsproxy.Proxy
			}{
				{"istiod-a", "default", []*xdsproxy.Proxy{a1, a2}, []*xdsproxy.Proxy{b1}},
				{"istiod-b", "canary", []*xdsproxy.Proxy{b1}, []*xdsproxy.Proxy{a1, a2}},
			} {
				v, ok := rec.lastView(c.istiod)
				if !ok || v.Revision != c.revision {
					t.Errorf("%s: view %v revision %q", c.istiod, ok, v.Revision)
				}
				for _, p := range c.has {
					got, ok := findProxy(v, p.Name())
					if !ok || got.Istiod != c.istiod || got.Revision != c.revision {
						t.Errorf("%s: %s missing or wrong: %+v (proxies %v)", c.istiod, p.Name(), got, proxyIDs(v))
					}
				}
				for _, p := range c.hasNot {
					if _, ok := findProxy(v, p.Name()); ok {
						t.Errorf("%s lists %s, connected to the other istiod", c.istiod, p.Name())
					}
				}
			}
		})
	}
}

// A stopped istiod is reported down with the error and no view at all while it is down;
// restarted on the same address, it is read again.
func TestIstiodStoppedThenRestarted(t *testing.T) {
	needBed(t)
	ctx := context.Background()
	istiod, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, testbed.IstiodOptions{Name: "istiod-c", AllowedDebugNamespaces: []string{testbed.MeshdriftNamespace}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = istiod.Stop() })
	ns := newNamespace(t)
	startProxy(t, istiod, "details-v1-c", ns, "10.1.0.41")

	type run struct {
		r   *Reader
		rec *recorder
	}
	runs := map[Transport]run{}
	for transport, target := range transportsOf(istiod) {
		r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: transport, Interval: 200 * time.Millisecond, ReadTimeout: time.Second}, []Target{target})
		runReader(t, r)
		runs[transport] = run{r, rec}
	}
	for transport, ru := range runs {
		testbed.Eventually(t, 10*time.Second, string(transport)+": up with the proxy", func() (bool, string) {
			v, _ := ru.rec.lastView("istiod-c")
			st, _ := ru.rec.lastStatus("istiod-c")
			return st.Up && len(v.Proxies) == 1, fmt.Sprintf("%+v %v", st, proxyIDs(v))
		})
	}

	stoppedAt := time.Now()
	if err := istiod.Stop(); err != nil {
		t.Fatal(err)
	}
	viewsAtDown := map[Transport]int{}
	for transport, ru := range runs {
		testbed.Eventually(t, 10*time.Second, string(transport)+": reported down", func() (bool, string) {
			st, _ := ru.rec.lastStatus("istiod-c")
			return !st.Up && st.Error != "", fmt.Sprintf("%+v", st)
		})
		st, _ := ru.rec.lastStatus("istiod-c")
		t.Logf("%s: istiod stopped -> reported down after %s: %s", transport, time.Since(stoppedAt).Round(time.Millisecond), st.Error)
		viewsAtDown[transport] = len(ru.rec.snapshot().views)
	}
	time.Sleep(time.Second) // five more polls of a stopped istiod
	for transport, ru := range runs {
		if n := len(ru.rec.snapshot().views); n != viewsAtDown[transport] {
			t.Errorf("%s: %d views of a stopped istiod", transport, n-viewsAtDown[transport])
		}
		if st, _ := ru.rec.lastStatus("istiod-c"); st.Up {
			t.Errorf("%s: up while stopped", transport)
		}
	}

	restartedAt := time.Now()
	if err := istiod.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("istiod restart until ready: %s", time.Since(restartedAt).Round(time.Millisecond))
	for transport, ru := range runs {
		testbed.Eventually(t, 15*time.Second, string(transport)+": up again", func() (bool, string) {
			st, _ := ru.rec.lastStatus("istiod-c")
			return st.Up, fmt.Sprintf("%+v", st)
		})
		t.Logf("%s: istiod restarted -> reported up after %s", transport, time.Since(restartedAt).Round(time.Millisecond))
		if n := len(ru.rec.snapshot().views); n <= viewsAtDown[transport] {
			t.Errorf("%s: up but no new view", transport)
		}
		// Up, then down (the error text may change while down), then up.
		statuses := ru.rec.snapshot().instances()
		n := len(statuses)
		if n < 3 || !statuses[0].Up || !statuses[n-1].Up || slices.ContainsFunc(statuses[1:n-1], func(s reconcile.SourceStatus) bool { return s.Up }) {
			t.Errorf("%s: statuses %+v", transport, statuses)
		}
	}
}

// istiod's own metrics, from its real /metrics.
func TestSignalsFromRealIstiod(t *testing.T) {
	needBed(t)
	ns := newNamespace(t)
	bad := startProxy(t, bed.istiodB, "ratings-v1-rej", ns, "10.1.0.51")
	bad.SetMode(xdsproxy.ModeNACK)
	pushAll(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := bad.WaitFor(ctx, func(s xdsproxy.Snapshot) bool { return s.Type(xdsproxy.TypeCluster).NACKs > 0 }); err != nil {
		t.Fatalf("proxy never NACKed: %v", err)
	}
	target := transportsOf(bed.istiodB)[TransportXDSTLS]
	r, _, _, _ := newTestReader(t, ReaderConfig{Transport: TransportXDSTLS}, []Target{target})
	var s IstiodSignals
	testbed.Eventually(t, 10*time.Second, "reject counted", func() (bool, string) {
		var err error
		if s, err = r.ReadSignals(context.Background(), target); err != nil {
			return false, err.Error()
		}
		return slices.ContainsFunc(s.ProxyRejects, func(pr ProxyReject) bool {
			return pr.Proxy == bad.Name() && pr.Type == "cds" && pr.Code == "Internal" && pr.Count >= 1
		}), fmt.Sprintf("%+v", s.ProxyRejects)
	})
	if !strings.HasPrefix(s.Version, "1.31-dev") || s.XDSRejects["cds"] < 1 || s.Pushes["cds"] < 1 || s.ConnectedProxies["1.31.0"] < 1 {
		t.Errorf("signals %+v", s)
	}
	if _, err := r.ReadSignals(context.Background(), Target{Name: "x"}); err == nil || err.Error() != "istiod x: no monitoring address" {
		t.Errorf("no monitoring address: %v", err)
	}

	// A read of the istiod carries the signals in its view, as observations.
	r2, rec, _, _ := newTestReader(t, ReaderConfig{Transport: TransportXDSTLS}, []Target{target})
	if err := r2.ReadOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, ok := rec.lastView(target.Name)
	if !ok || v.Signals == nil {
		t.Fatalf("view without signals: %+v", v)
	}
	if !slices.ContainsFunc(v.Signals.ProxyRejects, func(pr reconcile.ProxyReject) bool {
		return pr.Proxy == bad.Name() && pr.Type == "cds" && pr.Count >= 1
	}) {
		t.Errorf("view signals lack the proxy's rejects: %+v", v.Signals.ProxyRejects)
	}
}

// Keeping the syncz stream open against reconnecting for every read, on the real istiod.
func TestMeasureXDSStreamReuse(t *testing.T) {
	needBed(t)
	target := transportsOf(bed.istiodA)[TransportXDSTLS]
	cfg := ReaderConfig{Transport: TransportXDSTLS, CAFile: bed.istiodA.RootCertFile, TokenFile: bed.tokenFile}.withDefaults()
	const n = 30
	measure := func(reuse bool) time.Duration {
		persistent := &xdsSynczClient{target: target, cfg: cfg}
		defer persistent.close()
		var total time.Duration
		for range n {
			c := persistent
			if !reuse {
				c = &xdsSynczClient{target: target, cfg: cfg}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			start := time.Now()
			_, _, err := c.read(ctx)
			total += time.Since(start)
			cancel()
			if !reuse {
				c.close()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return total / n
	}
	measure(true) // warm up
	open := measure(true)
	fresh := measure(false)
	t.Logf("syncz over xDS, mean of %d reads: open stream %s, new connection per read %s", n, open, fresh)
	if open > fresh {
		t.Errorf("an open stream (%s) is slower than reconnecting (%s)", open, fresh)
	}
}

// What istiod shows a syncz caller with Istio's default debug-endpoint authorization, by the
// namespace of the caller's token: this is what a deployed meshdrift gets.
func TestIstiodAuthorizesDebugCallers(t *testing.T) {
	needBed(t)
	ctx := context.Background()
	// An istiod without DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES, as installed by default.
	strict, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, testbed.IstiodOptions{Name: "istiod-strict", Revision: "strict"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = strict.Stop() })
	ns := newNamespace(t)
	pushAll(t, ns)
	p := startProxy(t, strict, "reviews-v1-auth", ns, "10.1.0.91")
	allowed := transportsOf(bed.istiodA)[TransportXDSTLS]
	startProxy(t, bed.istiodA, "reviews-v1-allowed", ns, "10.1.0.92")

	token := func(namespace string) string {
		f, err := bed.kube.TokenFile(ctx, namespace, "reader")
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	read := func(target Target, transport Transport, tokenFile string) ([]string, error) {
		r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: transport, CAFile: strict.RootCertFile, TokenFile: tokenFile, DisableNACKStream: true}, []Target{target})
		if err := r.ReadOnce(ctx); err != nil {
			return nil, err
		}
		v, _ := rec.lastView(target.Name)
		var ids []string
		for _, px := range v.Proxies {
			ids = append(ids, px.ID)
		}
		return ids, nil
	}
	strictTLS := Target{Name: strict.Name, Revision: strict.Revision, Addr: strict.SecureGRPCAddr}
	cases := []struct {
		name      string
		target    Target
		tokenFile string
		want      []string // nil: sees nothing
	}{
		{"istio-system token sees every proxy", strictTLS, token(testbed.IstioNamespace), []string{p.Name()}},
		{"token of the proxies' own namespace sees them", strictTLS, token(ns), []string{p.Name()}},
		{"meshdrift-system token sees nothing, and no error says so", strictTLS, token(testbed.MeshdriftNamespace), nil},
		{"meshdrift-system token on an istiod that allows it sees every proxy", allowed, bed.tokenFile, []string{"reviews-v1-allowed." + ns}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			// The proxy may still be connecting: wait for what the caller may see.
			testbed.Eventually(t, 10*time.Second, "syncz shows what the caller may see", func() (bool, string) {
				ids, err := read(tc.target, TransportXDSTLS, tc.tokenFile)
				if err != nil {
					return false, err.Error()
				}
				got = nil
				for _, id := range ids {
					if strings.HasSuffix(id, "."+ns) {
						got = append(got, id)
					}
				}
				return slices.Equal(got, tc.want) || (tc.want == nil && len(got) == 0), fmt.Sprint(got)
			})
		})
	}
	t.Run("plaintext xDS refuses debug types", func(t *testing.T) {
		target := Target{Name: strict.Name, Addr: strict.GRPCAddr}
		_, err := read(target, TransportXDSPlaintext, "")
		if err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
			t.Fatalf("syncz over plaintext xDS: err = %v, want Unauthenticated", err)
		}
	})
}
