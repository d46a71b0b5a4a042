package istio

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// The real istiod with debug-endpoint authorization at its defaults: what each caller
// gets is told apart from a full view by the count check, and refusals carry their fix.
func TestRestrictionOnRealIstiod(t *testing.T) {
	needBed(t)
	ctx := context.Background()
	strict, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, testbed.IstiodOptions{Name: "istiod-restrict", Revision: "restrict"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = strict.Stop() })
	ns := newNamespace(t)
	startProxy(t, strict, "reviews-v1-restrict", ns, "10.1.0.93")
	startProxy(t, bed.istiodA, "reviews-v1-full", ns, "10.1.0.94")
	systemToken, err := bed.kube.TokenFile(ctx, testbed.IstioNamespace, "reader")
	if err != nil {
		t.Fatal(err)
	}
	read := func(t *testing.T, cfg ReaderConfig, target Target) (reconcile.IstiodView, error) {
		t.Helper()
		cfg.CAFile, cfg.DisableNACKStream = strict.RootCertFile, true
		r, rec, _, _ := newTestReader(t, cfg, []Target{target})
		err := r.ReadOnce(ctx)
		v, _ := rec.lastView(target.Name)
		return v, err
	}
	strictTLS := transportsOf(strict)[TransportXDSTLS]

	t.Run("meshdrift-system token: restricted, with the fix", func(t *testing.T) {
		var v reconcile.IstiodView
		testbed.Eventually(t, 10*time.Second, "restricted view of the connected proxy", func() (bool, string) {
			var err error
			v, err = read(t, ReaderConfig{Transport: TransportXDSTLS, TokenFile: bed.tokenFile}, strictTLS)
			if err != nil {
				return false, err.Error()
			}
			return v.Restriction != nil, "no restriction"
		})
		rs := v.Restriction
		if rs.Denied || rs.Visible != 0 || rs.Connected < 1 || len(v.Proxies) != 0 ||
			!strings.Contains(rs.Reason, "namespace "+testbed.MeshdriftNamespace) ||
			!strings.Contains(rs.Fix, "DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES="+testbed.MeshdriftNamespace) {
			t.Errorf("restriction %+v, %d proxies", rs, len(v.Proxies))
		}
	})
	for _, tc := range []struct {
		name      string
		istiod    *testbed.Istiod
		tokenFile string
	}{
		{"istio-system token: full view", strict, systemToken},
		{"meshdrift-system token on an istiod that allows it: full view", bed.istiodA, bed.tokenFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testbed.Eventually(t, 10*time.Second, "full, checked view with the proxy", func() (bool, string) {
				v, err := read(t, ReaderConfig{Transport: TransportXDSTLS, TokenFile: tc.tokenFile}, transportsOf(tc.istiod)[TransportXDSTLS])
				if err != nil {
					return false, err.Error()
				}
				found := false
				for _, p := range v.Proxies {
					found = found || inNamespace(p.ID, ns)
				}
				return found && v.Restriction == nil && v.Unverified == "", "restriction " + restrictionText(v.Restriction) + " unverified " + v.Unverified
			})
		})
	}
	t.Run("plaintext xDS: refused, with the fix", func(t *testing.T) {
		target := Target{Name: strict.Name, Addr: strict.GRPCAddr, MonitoringAddr: strict.MonitoringAddr}
		v, err := read(t, ReaderConfig{Transport: TransportXDSPlaintext}, target)
		if err == nil || v.Restriction == nil || !v.Restriction.Denied || !strings.Contains(v.Restriction.Fix, "use istio.transport xds-tls") ||
			v.Restriction.Connected < 1 {
			t.Fatalf("err %v restriction %+v", err, v.Restriction)
		}
	})
}

func restrictionText(rs *reconcile.ViewRestriction) string {
	if rs == nil {
		return "none"
	}
	return rs.Reason
}

// Debug clients are in istiod's pilot_xds gauge but not in syncz: meshdrift's own streams
// (under version "", open for as long as meshdrift runs) and the real istioctl's (under
// "65536.65536.65536", open for one request) must never make a full view read as
// restricted. Measured here, with istioctl run over and over while meshdrift polls fast.
// Without the "" exclusion every read would be restricted; istioctl's streams are so
// short that the smaller-of-two-reads rule and the second read already absorb them.
func TestDebugClientsAreNotHiddenProxies(t *testing.T) {
	needBed(t)
	ctx := context.Background()
	ns := newNamespace(t)
	startProxy(t, bed.istiodA, "reviews-v1-debugclients", ns, "10.1.0.95")
	gauge := func() map[string]float64 {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		sig, err := FetchIstiodSignals(sctx, http.DefaultClient, bed.istiodA.MonitoringAddr)
		if err != nil {
			t.Fatal(err)
		}
		return sig.ConnectedProxies
	}
	before := gauge()
	target := transportsOf(bed.istiodA)[TransportXDSTLS]
	r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: TransportXDSTLS, Interval: MinInterval}, []Target{target})
	runReader(t, r)
	testbed.Eventually(t, 10*time.Second, "first full view", func() (bool, string) {
		v, ok := rec.lastView(target.Name)
		return ok && len(v.Proxies) > 0, ""
	})
	during := gauge()
	t.Logf("pilot_xds by version before meshdrift: %v; with meshdrift reading (syncz and NACK streams): %v", before, during)
	if own := during[""] - before[""]; own < 1 {
		t.Errorf("meshdrift's streams add %g to pilot_xds{version=\"\"}, want at least 1", own)
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		maxCtl  float64
		stop    = make(chan struct{})
		ctlRuns int
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := runIstioctl(bed.istiodA); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ctlRuns++
			mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if n := gauge()["65536.65536.65536"]; n > 0 {
				mu.Lock()
				maxCtl = max(maxCtl, n)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	views := rec.snapshot().views
	restricted := 0
	for _, v := range views {
		if v.Istiod == target.Name && v.Restriction != nil {
			restricted++
			t.Errorf("restricted while istioctl ran: %s", v.Restriction.Reason)
		}
	}
	t.Logf("%d istioctl runs, up to %g istioctl streams seen in pilot_xds; %d reads, %d restricted", ctlRuns, maxCtl, len(views), restricted)
	if ctlRuns == 0 {
		t.Error("istioctl never ran")
	}
}
