package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
	"github.com/meshdrift/meshdrift/reconcile"
)

// shopApp is one Flux app: a ServiceEntry that gives istiod a service on its own port,
// and a VirtualService routing it, whose route name is what a revision changes.
const shopApp = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  hosts: [%[2]s.%[1]s.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: %[3]d, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  hosts: [%[2]s.%[1]s.example.com]
  http:
  - name: %[4]s
    timeout: %[5]s
    route: [{destination: {host: %[2]s.%[1]s.example.com, port: {number: %[3]d}}}]
`

// Two apps change at the same time; a proxy rejects the config of one of them. The good
// app's revision propagates, the bad one's is NACKed with the proxy's text naming its
// routes, and `wait` on the good revision exits 0 while `wait` on the bad one exits 1.
func TestBlameTwoAppsOneRejected(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	a := startMeshdrift(t, 30*time.Second, bed.istiod)

	// The proxy rejects whatever carries the bad revision's route name, as Envoy rejects
	// one invalid route configuration among valid ones, and names it in its error.
	marker := "nack-me-" + ns
	const reason = "Proto constraint validation failed: invalid route"
	p := startProxy(t, bed.istiod, "shop-v1-blame", ns, xdsproxy.ModeACK)
	p.SetNACKMessage(reason)
	p.SetNACKWhenContains(marker)

	type app struct {
		name string
		port int
		key  reconcile.AppKey
	}
	good := app{"good", 8080, reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: ns, Name: "good"}}
	bad := app{"bad", 9080, reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: ns, Name: "bad"}}
	publish := func(ap app, revision, routeName, timeout string) {
		t.Helper()
		art, err := bed.flux.Artifacts.Publish(ns+"-"+ap.name+"-"+revision[len(revision)-4:], revision,
			map[string]string{"app.yaml": fmt.Sprintf(shopApp, ns, ap.name, ap.port, routeName, timeout)})
		if err != nil {
			t.Fatal(err)
		}
		if err := bed.flux.SetGitRepository(ctx, ns, ap.name, art); err != nil {
			t.Fatal(err)
		}
	}
	waitRollup := func(ap app, revision string, within time.Duration, cond func(reconcile.Rollup) bool) reconcile.Rollup {
		t.Helper()
		deadline := time.Now().Add(within)
		var last reconcile.Rollup
		for time.Now().Before(deadline) {
			s := a.store.Snapshot()
			for _, r := range s.Propagation {
				if r.App == ap.key && r.Revision == revision {
					last = r
					if cond(r) {
						return r
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s revision %s not as expected within %s; last: %s %+v\n%s", ap.key, revision, within, last.Summary(), last, bed.flux.LogTail(10))
		return last
	}

	// Revision 1 of both apps is good everywhere.
	rev1 := "main@sha1:" + strings.Repeat("1", 40)
	for _, ap := range []app{good, bad} {
		publish(ap, rev1, ap.name+"-route", "1s")
		if err := bed.flux.ApplyKustomization(ctx, ns, ap.name, ap.name, "./", false); err != nil {
			t.Fatal(err)
		}
	}
	for _, ap := range []app{good, bad} {
		waitRollup(ap, rev1, 30*time.Second, func(r reconcile.Rollup) bool { return r.State == reconcile.PropagationPropagated })
	}

	// Revision 2 of both at once: the good app changes its timeout, the bad one a route
	// the proxy rejects.
	rev2good := "main@sha1:" + strings.Repeat("2", 40)
	rev2bad := "main@sha1:" + strings.Repeat("3", 40)
	// Flux applies the two Kustomizations independently; the proxy holds its routes
	// until istiod has pushed both, so that both changes are in flight when it answers.
	p.SetTypeMode(xdsproxy.TypeRoute, xdsproxy.ModeSilent)
	publish(good, rev2good, "good-route", "2s")
	publish(bad, rev2bad, "bad-route-"+marker, "2s")
	pushedBoth := func(s xdsproxy.Snapshot) bool {
		rc := s.RouteConfigs()
		goodPushed, badPushed := false, false
		for _, vh := range rc["8080"].GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				goodPushed = goodPushed || (r.GetName() == "good-route" && r.GetRoute().GetTimeout().AsDuration() == 2*time.Second)
			}
		}
		for _, vh := range rc["9080"].GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				badPushed = badPushed || r.GetName() == "bad-route-"+marker
			}
		}
		return goodPushed && badPushed
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.WaitFor(waitCtx, pushedBoth); err != nil {
		t.Fatalf("istiod did not push both revisions: %v\n%s", err, bed.flux.LogTail(10))
	}
	p.ClearTypeMode(xdsproxy.TypeRoute)
	if err := p.AnswerPending(); err != nil {
		t.Fatal(err)
	}

	gotBad := waitRollup(bad, rev2bad, 30*time.Second, func(r reconcile.Rollup) bool { return r.State == reconcile.PropagationNACKed })
	named := false
	for _, o := range gotBad.Proxies {
		if o.Proxy == p.Name() && o.State == reconcile.PropagationNACKed && o.Named &&
			strings.Contains(o.Error, reason) && strings.Contains(o.Error, "route configuration(s) 9080") {
			named = true
		}
	}
	if !named {
		t.Errorf("bad app NACKed without the proxy naming its route: %+v", gotBad.Proxies)
	}
	gotGood := waitRollup(good, rev2good, 30*time.Second, func(r reconcile.Rollup) bool { return r.State != reconcile.PropagationPending })
	if gotGood.State != reconcile.PropagationPropagated || gotGood.ACKed < 1 {
		t.Fatalf("good app: %s %+v", gotGood.Summary(), gotGood)
	}
	concurrent := false
	for _, o := range gotGood.Concurrent {
		if o.Proxy == p.Name() && strings.Contains(o.Error, reason) && !o.Named {
			concurrent = true
		}
	}
	if !concurrent {
		t.Errorf("the bad app's NACK is not shown as concurrent with the good app: %+v", gotGood.Concurrent)
		logState(t, a, ns)
	}
	if !named {
		logState(t, a, ns)
	}
	t.Logf("good: %s; bad: %s", gotGood.Summary(), gotBad.Summary())

	// wait, as a pipeline runs it after the apply, decides the same per revision.
	cfg := writeConfig(t, bed.istiod)
	var out, errOut bytes.Buffer
	if code := run([]string{"wait", "--config", cfg, "--log.level", "error", "--app", "flux/" + ns + "/good", "--revision", rev2good, "--timeout", "60s"}, &out, &errOut); code != exitOK {
		t.Errorf("wait on the good revision: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"wait", "--config", cfg, "--log.level", "error", "--app", "flux/" + ns + "/bad", "--revision", rev2bad, "--timeout", "60s"}, &out, &errOut); code != exitProblem || !strings.Contains(out.String(), "NACKed") {
		t.Errorf("wait on the rejected revision: exit %d, want %d with NACKed\n%s\n%s", code, exitProblem, out.String(), errOut.String())
	}
}

// A proxy already rejecting config when meshdrift starts is that proxy's problem: the
// objects found at start are not NACKed for it, unless its error names them.
func TestBlameBaselineNotHeldForPreexistingNACK(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	const grace = 2 * time.Second
	p := startProxy(t, bed.istiod, "legacy-v1-broken", ns, xdsproxy.ModeACK)
	p.SetNACKMessage("Proto constraint validation failed: unknown field")
	p.SetMode(xdsproxy.ModeNACK)
	applyVS(t, ns, "legacy", "3s")
	// A proxy whose error names one object's virtual host.
	named := startProxy(t, bed.istiod, "orders-v1-broken", ns, xdsproxy.ModeACK)
	named.SetNACKMessage(fmt.Sprintf("Error adding/updating route configuration(s) 80 (virtual host orders.%s.svc.cluster.local:80): bad", ns))
	named.SetMode(xdsproxy.ModeNACK)
	applyVS(t, ns, "orders", "3s")
	waitProxyNACKs := func(px *xdsproxy.Proxy) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := px.WaitFor(ctx, func(s xdsproxy.Snapshot) bool {
			for _, ts := range s.Types {
				if ts.NACKs > 0 {
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitProxyNACKs(p)
	waitProxyNACKs(named)
	// Both objects are older than the grace period when meshdrift starts.
	time.Sleep(grace + 1100*time.Millisecond)

	a := startMeshdrift(t, grace, bed.istiod)
	legacy := waitChange(t, a, ns, "legacy", 10*time.Second, func(p reconcile.Propagation) bool {
		// Unknown until istiod's view has been read.
		return p.Change.Baseline && p.State != reconcile.PropagationPending && p.State != reconcile.PropagationUnknown
	})
	if legacy.State == reconcile.PropagationNACKed || legacy.State == reconcile.PropagationStale {
		t.Errorf("baseline object held responsible for a proxy's pre-existing error: %s %+v", legacy.State, legacy.Proxies)
	}
	shown := false
	for _, o := range legacy.Concurrent {
		if o.Proxy == p.Name() && o.State == reconcile.PropagationNACKed {
			shown = true
		}
	}
	if !shown {
		t.Errorf("the proxy's own NACK is not shown with the baseline object: %s %+v", legacy.State, legacy.Concurrent)
		logState(t, a, ns)
	}
	orders := waitChange(t, a, ns, "orders", 10*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationNACKed
	})
	for _, o := range orders.Proxies {
		if o.Proxy != named.Name() || !o.Named {
			t.Errorf("baseline object named by one proxy's error: %+v among its outcomes", o)
		}
	}
}

// logState logs what meshdrift holds of a namespace, for a failing test.
func logState(t *testing.T, a *app, ns string) {
	t.Helper()
	s := a.store.Snapshot()
	for _, c := range s.Changes {
		if c.Change.Ref.Namespace == ns {
			t.Logf("change %s gen %d observed %s: %s targeted %d proxies %+v concurrent %+v", c.Change.Ref, c.Change.Generation,
				c.Change.ObservedAt.Format(time.RFC3339Nano), c.State, c.Targeted, c.Proxies, c.Concurrent)
		}
	}
	for _, v := range s.Istiods {
		for _, px := range v.Proxies {
			if strings.HasSuffix(px.ID, "."+ns) {
				for _, ty := range px.Types {
					t.Logf("  %s %s %s sent %s %q", px.ID, reconcile.ShortType(ty.TypeURL), ty.State, ty.SentAt.Format(time.RFC3339Nano), ty.Error)
				}
			}
		}
	}
}
