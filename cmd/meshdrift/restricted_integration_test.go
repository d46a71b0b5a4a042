package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/adapters/istio"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
	"github.com/meshdrift/meshdrift/reconcile"
)

// istiodView waits until meshdrift holds a view of the istiod read at addr that satisfies cond.
func istiodView(t *testing.T, a *app, addr string, within time.Duration, cond func(reconcile.IstiodView) bool) reconcile.IstiodView {
	t.Helper()
	deadline := time.Now().Add(within)
	var last reconcile.IstiodView
	for time.Now().Before(deadline) {
		for _, v := range a.store.Snapshot().Istiods {
			if v.Istiod == addr {
				last = v
				if cond(v) {
					return v
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("view of istiod %s not as expected within %s; last: %+v restriction %+v", addr, within, last, last.Restriction)
	return last
}

// pilotXDS reads istiod's pilot_xds gauge, by version.
func pilotXDS(t *testing.T, i *testbed.Istiod) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sig, err := istio.FetchIstiodSignals(ctx, http.DefaultClient, i.MonitoringAddr)
	if err != nil {
		t.Fatal(err)
	}
	return sig.ConnectedProxies
}

// With debug-endpoint authorization at Istio's default, istiod shows meshdrift, whose
// token is from meshdrift-system, none of the proxies connected to it, without an error.
// That view must never read as green: the istiod is restricted, with the fix, a change's
// propagation is Unknown however long it is watched, and check fails printing the fix.
// An istiod that allows meshdrift-system shows every proxy, and the change propagates.
func TestRestrictedViewIsNeverGreen(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	const grace = 2 * time.Second
	const fix = "DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=" + testbed.MeshdriftNamespace

	// istiod as Istio ships it: auth on, no allowlist. meshdrift reads it as shipped:
	// xds-tls with a token of its ServiceAccount in meshdrift-system (startMeshdrift).
	plain, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, testbed.IstiodOptions{Name: "istiod-restricted"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Stop() })
	startProxy(t, plain, "reviews-v1-restricted", ns, xdsproxy.ModeACK)
	a := startMeshdrift(t, grace, plain)
	v := istiodView(t, a, plain.SecureGRPCAddr, 10*time.Second, func(v reconcile.IstiodView) bool { return v.Restriction != nil })
	if v.Restriction.Visible != 0 || v.Restriction.Connected != 1 || !strings.Contains(v.Restriction.Fix, fix) ||
		!strings.Contains(v.Restriction.Reason, "namespace "+testbed.MeshdriftNamespace) {
		t.Errorf("restriction %+v", v.Restriction)
	}
	// How istiod counts meshdrift's own streams (syncz, NACK subscription): under
	// version "", which the check leaves out with istioctl's "65536.65536.65536".
	gauge := pilotXDS(t, plain)
	t.Logf("pilot_xds by version with meshdrift connected: %v", gauge)
	if gauge[""] < 1 {
		t.Errorf("meshdrift's streams are not counted under version \"\": %v", gauge)
	}

	written := applyVS(t, ns, "reviews", "3s")
	// Watched for well past the grace period: never Propagated (nor NotPushed).
	var last reconcile.Propagation
	for time.Since(written) < 3*grace+2*time.Second {
		for _, p := range a.store.Snapshot().Changes {
			if p.Change.Ref.Namespace != ns || p.Change.Ref.Name != "reviews" {
				continue
			}
			last = p
			if p.State == reconcile.PropagationPropagated || p.State == reconcile.PropagationNotPushed {
				t.Fatalf("a change read through a restricted view is %s %s after the write: %+v", p.State, time.Since(written), p)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last.State != reconcile.PropagationUnknown || len(last.Restricted) != 1 {
		t.Fatalf("after %s: %s restricted %v, want Unknown through %s", time.Since(written), last.State, last.Restricted, plain.SecureGRPCAddr)
	}

	var out, errOut bytes.Buffer
	file := writeConfig(t, plain)
	if code := run([]string{"check", "--config", file, "--log.level", "error"}, &out, &errOut); code != exitProblem ||
		!strings.Contains(out.String(), "restricted view of istiod") || !strings.Contains(out.String(), fix) {
		t.Fatalf("check exit %d, want %d with the fix:\n%s\n%s", code, exitProblem, out.String(), errOut.String())
	}
	t.Logf("check says:\n%s", out.String())

	// The same reads against the bed's shared istiod, which allows meshdrift-system
	// (istiodOptions): every proxy, and the change propagates.
	allowed := bed.istiod
	px := startProxy(t, allowed, "ratings-v1-allowed", ns, xdsproxy.ModeACK)
	a = startMeshdrift(t, grace, allowed)
	istiodView(t, a, allowed.SecureGRPCAddr, 10*time.Second, func(v reconcile.IstiodView) bool {
		return v.Restriction == nil && v.Unverified == "" && len(v.Proxies) == 1 && v.Proxies[0].ID == px.Name()
	})
	applyVS(t, ns, "ratings", "4s")
	got := waitChange(t, a, ns, "ratings", 10*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationPropagated
	})
	if got.Targeted != 1 || got.ACKed != 1 || len(got.Restricted) != 0 {
		t.Errorf("propagated %+v", got)
	}
	out.Reset()
	errOut.Reset()
	run([]string{"check", "--config", writeConfig(t, allowed), "--log.level", "error"}, &out, &errOut)
	if strings.Contains(out.String(), "restricted view") || !strings.Contains(out.String(), px.Name()) {
		t.Errorf("check against the allowlisted istiod:\n%s\n%s", out.String(), errOut.String())
	}
}
