package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
)

// shopService gives the VirtualService's host a Service, so istiod builds an outbound
// HTTP listener whose routes the test proxy takes over RDS.
const shopService = `apiVersion: v1
kind: Service
metadata: {name: shop, namespace: %[1]s}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 80, targetPort: 8080}]
`

// runInBackground runs `meshdrift wait` with args and reports its exit code.
func runInBackground(args []string) (<-chan int, *syncBuffer) {
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(args, out, out) }()
	return done, out
}

// wait started before Flux applies a new revision does not exit 0 while a proxy has not
// ACKed the new VirtualService, although the app's previous revision has propagated and
// Flux reports the new one applied; it exits 0 once the proxy ACKs.
func TestWaitHoldsUntilTheNewRevisionIsACKed(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	own, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, istiodOptions("istiod-wait-holds"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = own.Stop() })
	cfg := writeConfigGrace(t, own, 2*time.Minute)
	proxy := startProxy(t, own, "shop-v1-holds", ns, xdsproxy.ModeACK)

	shaA, shaB := strings.Repeat("a1", 20), strings.Repeat("b2", 20)
	revA, revB := "main@sha1:"+shaA, "main@sha1:"+shaB
	publish := func(rev, timeout string) {
		t.Helper()
		art, err := bed.flux.Artifacts.Publish(ns+"-"+rev[len(rev)-4:], rev, map[string]string{
			"svc.yaml": fmt.Sprintf(shopService, ns),
			"vs.yaml":  fmt.Sprintf(vsTemplate, ns, "shop", timeout),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := bed.flux.SetGitRepository(ctx, ns, "repo", art); err != nil {
			t.Fatal(err)
		}
	}
	app := "flux/" + ns + "/shop"
	waitArgs := func(extra ...string) []string {
		return append([]string{"wait", "--config", cfg, "--log.level", "error", "--app", app}, extra...)
	}

	// Revision A is applied and propagated.
	publish(revA, "2s")
	if err := bed.flux.ApplyKustomization(ctx, ns, "shop", "repo", "./", false); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	if code := run(waitArgs("--revision", revA, "--timeout", "60s"), &out, &out); code != exitOK {
		t.Fatalf("wait for revision A: exit %d\n%s\n%s", code, out.String(), bed.flux.LogTail(10))
	}
	if routes := proxy.Snapshot().Type(xdsproxy.TypeRoute); len(routes.Subscribed) == 0 || routes.ACKs == 0 {
		t.Fatalf("the proxy takes no routes over RDS, so holding RDS proves nothing: %+v", routes)
	}

	// The proxy holds its RDS answers; wait for B (as a bare SHA) starts before Flux has B.
	proxy.SetTypeMode(xdsproxy.TypeRoute, xdsproxy.ModeSilent)
	rdsBefore := proxy.Snapshot().Type(xdsproxy.TypeRoute).Responses
	done, waitOut := runInBackground(waitArgs("--revision", shaB, "--timeout", "90s"))
	t.Cleanup(func() {
		// Never leave the command running past the test: release the proxy, let it end.
		_ = proxy.AnswerPending()
	})
	// Let wait read the app at revision A first, so the test covers the switch.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(waitOut.String(), "applied revision "+revA) {
		if time.Now().After(deadline) {
			t.Fatalf("wait never reported revision A applied:\n%s", waitOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	publish(revB, "7s")

	// istiod pushes B's route; the proxy leaves it unanswered.
	deadline = time.Now().Add(30 * time.Second)
	for {
		r := proxy.Snapshot().Type(xdsproxy.TypeRoute)
		if r.Pending && r.Responses > rdsBefore {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("istiod never pushed revision B's route: %+v\n%s", r, waitOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	held := time.Now()
	// Flux reports B applied within a second; give wait that plus its settle period and
	// more: it must still be waiting, on B's VirtualService.
	time.Sleep(defaultSettle + 3*time.Second)
	select {
	case code := <-done:
		t.Fatalf("wait exited %d while the proxy had not ACKed revision B's route:\n%s", code, waitOut.String())
	default:
	}
	if got := waitOut.String(); !strings.Contains(got, "revision "+revB) || !strings.Contains(got, "VirtualService "+ns+"/shop Pending") {
		t.Errorf("wait output does not show revision B applied and its VirtualService pending:\n%s", got)
	}

	// The proxy ACKs what it held: wait succeeds.
	proxy.ClearTypeMode(xdsproxy.TypeRoute)
	if err := proxy.AnswerPending(); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("wait exited %d after the proxy ACKed:\n%s", code, waitOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("wait did not exit after the proxy ACKed:\n%s", waitOut.String())
	}
	if got := waitOut.String(); !strings.Contains(got, revB) || !strings.Contains(got, "Propagated") {
		t.Errorf("wait output:\n%s", got)
	}
	t.Logf("held %s; wait exited %s after the ACK", released.Sub(held).Round(time.Millisecond), time.Since(released).Round(time.Millisecond))

	// An old revision's abbreviated SHA is a usage error without --revision-prefix ...
	out = syncBuffer{}
	if code := run(waitArgs("--revision", shaA[:7], "--timeout", "5s"), &out, &out); code != exitUsage ||
		!strings.Contains(out.String(), "looks like an abbreviated commit SHA") {
		t.Errorf("wait --revision <short SHA of A>: exit %d, want %d:\n%s", code, exitUsage, out.String())
	}
	// ... and with it, it matches no applied revision: B is applied, A is not.
	out = syncBuffer{}
	if code := run(waitArgs("--revision-prefix", shaA[:7], "--timeout", "5s"), &out, &out); code != exitProblem ||
		!strings.Contains(out.String(), "timed out") || !strings.Contains(out.String(), "applied revision "+revB+", waiting for commit "+shaA[:7]) {
		t.Errorf("wait --revision-prefix <A>: exit %d, want %d after a timeout:\n%s", code, exitProblem, out.String())
	}
	out = syncBuffer{}
	if code := run(waitArgs("--revision-prefix", shaB[:7], "--timeout", "30s"), &out, &out); code != exitOK {
		t.Errorf("wait --revision-prefix <B>: exit %d, want %d:\n%s", code, exitOK, out.String())
	}
}
