package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// amAlert is the part of Alertmanager's GET /api/v2/alerts the test reads.
type amAlert struct {
	Labels map[string]string `json:"labels"`
	Status struct {
		State string `json:"state"`
	} `json:"status"`
}

// activeAlerts lists the active alerts of one code in Alertmanager.
func activeAlerts(t *testing.T, am *testbed.Alertmanager, code string) []amAlert {
	t.Helper()
	q := url.Values{"filter": {`code="` + code + `"`}, "active": {"true"}, "silenced": {"false"}, "inhibited": {"false"}}
	resp, err := http.Get(am.URL + "/api/v2/alerts?" + q.Encode())
	if err != nil {
		t.Fatalf("listing alerts: %v", err)
	}
	defer resp.Body.Close()
	var out []amAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decoding alerts: %v", err)
	}
	return out
}

// The whole loop as serve wires it, on the real programs: a proxy rejects a
// VirtualService change → one MD0201 finding → exactly one alert in Alertmanager and
// Events on the object; it stays one alert across resends; fixing the config resolves it.
func TestNACKedChangeFiresOneAlertAndResolves(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	am, err := testbed.StartAlertmanager(ctx, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = am.Stop() })
	ns := newNamespace(t)
	// Resends every second and a one-second flap delay, so that several resends and the
	// resolution happen within the test; the defaults (60 s, 5 min) only stretch time.
	a := startMeshdriftWith(t, 30*time.Second, func(c *config.Config) {
		c.Alerting.Alertmanager.URLs = []string{am.URL}
		c.Alerting.Alertmanager.ResendInterval = config.Duration(time.Second)
		c.Alerting.Alertmanager.Timeout = config.Duration(time.Second)
		c.Alerting.Alertmanager.ExternalURL = "http://meshdrift.example"
		c.Alerting.Events.ResendInterval = config.Duration(time.Second)
		c.Findings.ResolveAfter = config.Duration(time.Second)
	}, bed.istiod)

	p := startProxy(t, bed.istiod, "ratings-v1-alert", ns, xdsproxy.ModeACK)
	applyVS(t, ns, "ratings", "2s") // the baseline the proxy accepted
	waitChange(t, a, ns, "ratings", 10*time.Second, func(p reconcile.Propagation) bool {
		return p.State == reconcile.PropagationPropagated
	})
	const reason = "Proto constraint validation failed: invalid route timeout"
	p.SetNACKMessage(reason)
	p.SetMode(xdsproxy.ModeNACK)
	written := applyVS(t, ns, "ratings", "4s")

	var alerts []amAlert
	testbed.Eventually(t, 10*time.Second, "one MD0201 alert in Alertmanager", func() (bool, string) {
		alerts = activeAlerts(t, am, "MD0201")
		return len(alerts) == 1, fmt.Sprint(alerts)
	})
	t.Logf("NACK → alert in Alertmanager %s after the write", time.Since(written))
	want := map[string]string{
		"alertname": "MeshChangeNACKed", "code": "MD0201", "severity": "critical",
		"namespace": ns, "object": "networking.istio.io/VirtualService/" + ns + "/ratings",
	}
	for k, v := range want {
		if alerts[0].Labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, alerts[0].Labels[k], v, alerts[0].Labels)
		}
	}
	if alerts[0].Labels["finding_id"] == "" {
		t.Errorf("no finding_id label: %v", alerts[0].Labels)
	}

	// Resends keep it one alert.
	time.Sleep(4 * time.Second)
	if got := activeAlerts(t, am, "MD0201"); len(got) != 1 {
		t.Fatalf("after resends: %d MD0201 alerts, want 1: %v", len(got), got)
	}

	// Events on the VirtualService, as kubectl describe shows them.
	testbed.Eventually(t, 10*time.Second, "an Event on the VirtualService", func() (bool, string) {
		evs, err := bed.kube.Clientset.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			seen = append(seen, e.Regarding.Kind+"/"+e.Regarding.Name+":"+e.Reason)
			if e.Regarding.Kind == "VirtualService" && e.Regarding.Name == "ratings" && e.Reason == "MeshChangeNACKed" && e.Type == "Warning" {
				return true, ""
			}
		}
		return false, fmt.Sprint(seen)
	})

	// Fix: the proxy accepts again and Git's next revision reaches it.
	p.SetMode(xdsproxy.ModeACK)
	applyVS(t, ns, "ratings", "5s")
	testbed.Eventually(t, 15*time.Second, "MD0201 resolved in meshdrift and gone from Alertmanager", func() (bool, string) {
		resolved := false
		for _, f := range a.engine.Findings() {
			if f.Code == findings.CodeChangeNACKed && f.Subject.Object.Namespace == ns {
				resolved = f.State == findings.StateResolved
			}
		}
		n := len(activeAlerts(t, am, "MD0201"))
		return resolved && n == 0, fmt.Sprintf("resolved=%v active alerts=%d", resolved, n)
	})
}
