package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshdrift/meshdrift/alerting/dispatch"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Integration tests against the real Alertmanager (Debian's prometheus-alertmanager). Each
// test starts its own instances, because they stop, restart, cluster or lock them.
//
// They use a 1 s resend interval (endsAt 4 s ahead) instead of the default 60 s, so that
// several resends, and the horizon after which an alert that is not re-sent would expire,
// pass within seconds; the rule they check does not depend on the length.
const testResend = time.Second

func TestMain(m *testing.M) {
	os.Exit(testbed.Main(m, func(testbed.Assets) (func(), error) {
		if _, err := testbed.AlertmanagerBinary(); err != nil {
			return nil, err
		}
		bed.started = true
		return func() {}, nil
	}))
}

var bed struct{ started bool }

// webhook stands in for what Alertmanager notifies (a pager, a chat): it records every
// webhook message the real Alertmanager sends, so that a test can see what it decided.
type webhook struct {
	srv *httptest.Server

	mu   sync.Mutex
	msgs []hookMessage
}

type hookMessage struct {
	at     time.Time
	Status string `json:"status"`
	Alerts []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func newWebhook(t *testing.T) *webhook {
	h := &webhook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m hookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("webhook: %v", err)
		}
		m.at = time.Now()
		h.mu.Lock()
		h.msgs = append(h.msgs, m)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// notifications are the alerts notified so far with the given status ("firing", "resolved")
// for finding id, and when each arrived.
func (h *webhook) notifications(id, status string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var at []time.Time
	for _, m := range h.msgs {
		for _, a := range m.Alerts {
			if a.Labels[LabelFindingID] == id && a.Status == status {
				at = append(at, m.at)
			}
		}
	}
	return at
}

// amConfig routes every alert, one group per finding, to the webhook with resolutions.
// repeat_interval is long so that any second firing notification is a duplicate.
func amConfig(hookURL string) string {
	return fmt.Sprintf(`route:
  receiver: hook
  group_by: [finding_id]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: hook
  webhook_configs:
  - url: %s
    send_resolved: true
`, hookURL)
}

func startAM(t *testing.T, opts testbed.AlertmanagerOptions) *testbed.Alertmanager {
	t.Helper()
	testbed.Need(t, bed.started)
	logDir, err := testbed.NewLogDir("meshdrift-alertmanager-")
	if err != nil {
		t.Fatal(err)
	}
	am, err := testbed.StartAlertmanagerWith(context.Background(), logDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = am.Stop() })
	return am
}

// startDispatch runs a dispatcher over the notifiers of cfg with short backoff, so that
// the delay after an outage is measured in what the test can wait for.
func startDispatch(t *testing.T, cfg Config) (*dispatch.Dispatcher, *prometheus.Registry) {
	t.Helper()
	cfg.ResendInterval = testResend
	sinks, err := Sinks(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sinks {
		sinks[i].BackoffMin, sinks[i].BackoffMax = 100*time.Millisecond, 500*time.Millisecond
		sinks[i].Timeout = 2 * time.Second
	}
	reg := prometheus.NewPedanticRegistry()
	d, err := dispatch.New(sinks, dispatch.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	testbed.RunInBackground(t, d.Run)
	return d, reg
}

// activeAlerts is GET /api/v2/alerts: the alerts Alertmanager holds as active (it never
// lists a resolved one).
func activeAlerts(t *testing.T, am *testbed.Alertmanager, user, pass string) models.GettableAlerts {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, am.URL+"/api/v2/alerts?active=true&silenced=true&inhibited=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v2/alerts: %s", resp.Status)
	}
	var alerts models.GettableAlerts
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		t.Fatal(err)
	}
	return alerts
}

func byID(alerts models.GettableAlerts, id string) []*models.GettableAlert {
	var out []*models.GettableAlert
	for _, a := range alerts {
		if a.Labels[LabelFindingID] == id {
			out = append(out, a)
		}
	}
	return out
}

// eventually polls cond every 20 ms for up to timeout and returns how long it took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func nackFinding(id string) findings.Finding {
	f := nacked()
	f.ID = id
	f.StartsAt, f.FirstSeen, f.LastSeen = time.Now().Add(-time.Minute), time.Now(), time.Now()
	return f
}

func TestAlertmanagerFiringResentAndResolved(t *testing.T) {
	hook := newWebhook(t)
	am := startAM(t, testbed.AlertmanagerOptions{Config: amConfig(hook.srv.URL)})
	d, _ := startDispatch(t, Config{
		URLs: []string{am.URL}, Cluster: "bed", ExternalURL: "http://meshdrift.test:9090",
		RunbookURL: "https://github.com/meshdrift/meshdrift/blob/main/docs/findings.md",
	})

	f := nackFinding("md0201-firing")
	d.Update([]findings.Finding{f})
	var got []*models.GettableAlert
	took := eventually(t, 5*time.Second, "the alert in Alertmanager", func() bool {
		got = byID(activeAlerts(t, am, "", ""), f.ID)
		return len(got) > 0
	})
	t.Logf("measured: finding firing -> alert listed by Alertmanager: %s", took)
	if all := activeAlerts(t, am, "", ""); len(all) != 1 {
		t.Fatalf("%d alerts, want exactly one", len(all))
	}
	a := got[0]
	want := map[string]string{
		"alertname": "ChangeNACKed", "code": "MD0201", "severity": "critical", "finding_id": f.ID,
		"namespace": "payments", "app": "payments", "gitops_tool": "flux", "revision": f.Subject.Revision,
		"object": "networking.istio.io/VirtualService/payments/reviews", "istiod": "istiod-0.istio-system",
		"cluster": "bed",
	}
	if len(a.Labels) != len(want) {
		t.Errorf("labels %v, want %v", a.Labels, want)
	}
	for k, v := range want {
		if a.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, a.Labels[k], v)
		}
	}
	if a.Annotations["evidence"] != f.Evidence || a.Annotations["runbook_url"] != "https://github.com/meshdrift/meshdrift/blob/main/docs/findings.md#md0201" {
		t.Errorf("annotations %v", a.Annotations)
	}
	if string(a.GeneratorURL) != "http://meshdrift.test:9090/findings/"+f.ID {
		t.Errorf("generatorURL %q", a.GeneratorURL)
	}
	if *a.Status.State != models.AlertStatusStateActive || time.Time(*a.StartsAt).Sub(f.StartsAt).Abs() > time.Millisecond {
		t.Errorf("state %s, startsAt %s (want %s)", *a.Status.State, time.Time(*a.StartsAt), f.StartsAt)
	}
	firstEnd := time.Time(*a.EndsAt)

	// Well past the first endsAt (4 resend intervals): still active, because every resend
	// moved endsAt ahead, and notified once only.
	time.Sleep(6 * testResend)
	got = byID(activeAlerts(t, am, "", ""), f.ID)
	if len(got) != 1 || *got[0].Status.State != models.AlertStatusStateActive {
		t.Fatalf("after 6 resend intervals: %d alerts for the finding, want 1 active", len(got))
	}
	if end := time.Time(*got[0].EndsAt); !end.After(firstEnd.Add(testResend)) {
		t.Errorf("endsAt %s did not move on from %s: no resends arrived", end, firstEnd)
	}
	if time.Now().Before(firstEnd) {
		t.Fatal("the test did not wait past the first endsAt")
	}
	if n := len(hook.notifications(f.ID, "firing")); n != 1 {
		t.Errorf("%d firing notifications, want 1 (resends are not new alerts)", n)
	}

	resolvedAt := time.Now()
	r := f
	r.State, r.ResolvedAt = findings.StateResolved, resolvedAt
	d.Update([]findings.Finding{r})
	took = eventually(t, 10*time.Second, "a resolved notification", func() bool {
		return len(hook.notifications(f.ID, "resolved")) == 1
	})
	t.Logf("measured: finding resolved -> Alertmanager notified the resolution (group_interval 1s): %s", took)
	if n := len(byID(activeAlerts(t, am, "", ""), f.ID)); n != 0 {
		t.Errorf("%d active alerts for the resolved finding, want 0", n)
	}
	// Once resolved it is never sent as firing again.
	time.Sleep(3 * testResend)
	if n := len(byID(activeAlerts(t, am, "", ""), f.ID)); n != 0 {
		t.Errorf("the resolved finding came back: %d active alerts", n)
	}
}

func TestAlertmanagerOutageLosesNothing(t *testing.T) {
	hook := newWebhook(t)
	am := startAM(t, testbed.AlertmanagerOptions{Config: amConfig(hook.srv.URL)})
	d, reg := startDispatch(t, Config{URLs: []string{am.URL}})

	a, b := nackFinding("md0201-before"), nackFinding("md0201-during")
	d.Update([]findings.Finding{a})
	eventually(t, 5*time.Second, "a in Alertmanager", func() bool { return len(byID(activeAlerts(t, am, "", ""), a.ID)) == 1 })
	eventually(t, 5*time.Second, "a notified", func() bool { return len(hook.notifications(a.ID, "firing")) == 1 })

	if err := am.Stop(); err != nil {
		t.Fatal(err)
	}
	// While it is down: a resolves, b fires.
	ra := a
	ra.State, ra.ResolvedAt = findings.StateResolved, time.Now()
	d.Update([]findings.Finding{ra, b})
	down := 5 * time.Second
	time.Sleep(down)
	retries := metric(t, reg, "meshdrift_notifications_total", dispatch.OutcomeRetry)
	if retries < 3 {
		t.Errorf("%v retries during a %s outage, want several", retries, down)
	}
	if q := metric(t, reg, "meshdrift_notification_queue_length", ""); q != 2 {
		t.Errorf("queue length %v during the outage, want 2 (a resolved, b firing)", q)
	}

	restart := time.Now()
	if err := am.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	took := eventually(t, 10*time.Second, "b in Alertmanager after the outage", func() bool {
		return len(byID(activeAlerts(t, am, "", ""), b.ID)) == 1
	})
	t.Logf("measured: after %s down, restart -> ready %s, -> queued alert listed %s after restart (backoff capped at 500ms in this test, 10s by default)",
		down, back.Sub(restart).Round(time.Millisecond), (back.Sub(restart) + took).Round(time.Millisecond))
	eventually(t, 10*time.Second, "b notified", func() bool { return len(hook.notifications(b.ID, "firing")) == 1 })
	// Alertmanager keeps no alerts across a restart, but it keeps its notification log: the
	// resolution of a, posted after the restart, is notified as a resolution.
	eventually(t, 10*time.Second, "a's resolution notified", func() bool { return len(hook.notifications(a.ID, "resolved")) == 1 })
	t.Logf("measured: restart -> a's resolution notified: %s", time.Since(restart).Round(time.Millisecond))
	if n := len(byID(activeAlerts(t, am, "", ""), a.ID)); n != 0 {
		t.Errorf("a is active after its resolution was delivered")
	}
	if dropped := metric(t, reg, "meshdrift_notifications_dropped_total", ""); dropped != 0 {
		t.Errorf("%v findings dropped", dropped)
	}
}

func TestAlertmanagerClusteredPairDedupes(t *testing.T) {
	testbed.Need(t, bed.started)
	hook := newWebhook(t)
	logDir, err := testbed.NewLogDir("meshdrift-alertmanager-ha-")
	if err != nil {
		t.Fatal(err)
	}
	// peer-timeout is how long the second member waits for the first one's notification
	// log entry before notifying itself; 5s instead of 15s keeps the test short and is
	// still 25 gossip intervals, margin for a loaded machine.
	const peerTimeout = 5 * time.Second
	ams, err := testbed.StartAlertmanagerCluster(context.Background(), logDir, amConfig(hook.srv.URL), 2,
		"--cluster.peer-timeout="+peerTimeout.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, am := range ams {
		t.Cleanup(func() { _ = am.Stop() })
	}
	formed := eventually(t, 30*time.Second, "the cluster of two", func() bool {
		for _, am := range ams {
			if peers(t, am) != 2 {
				return false
			}
		}
		return true
	})
	t.Logf("measured: cluster of two formed in %s", formed)

	d, _ := startDispatch(t, Config{URLs: []string{ams[0].URL, ams[1].URL}})
	f := nackFinding("md0201-ha")
	d.Update([]findings.Finding{f})
	for i, am := range ams {
		took := eventually(t, 5*time.Second, fmt.Sprintf("the alert in alertmanager-%d", i), func() bool {
			return len(byID(activeAlerts(t, am, "", ""), f.ID)) == 1
		})
		t.Logf("measured: alertmanager-%d lists the alert after %s", i, took)
	}
	took := eventually(t, 30*time.Second, "a notification", func() bool { return len(hook.notifications(f.ID, "firing")) > 0 })
	t.Logf("measured: first notification from the pair after %s (each member waits for the cluster to settle before its first notification)", took)
	// Past the second member's wait: had it not seen the first one's notification through
	// gossip, it would have notified too.
	time.Sleep(peerTimeout + 3*time.Second)
	if n := len(hook.notifications(f.ID, "firing")); n != 1 {
		t.Errorf("%d firing notifications from the pair, want 1 after dedupe", n)
	}
	for i, am := range ams {
		if got := activeAlerts(t, am, "", ""); len(got) != 1 {
			t.Errorf("alertmanager-%d lists %d alerts, want 1", i, len(got))
		}
	}
}

// peers is the number of cluster members Alertmanager sees (GET /api/v2/status).
func peers(t *testing.T, am *testbed.Alertmanager) int {
	t.Helper()
	resp, err := http.Get(am.URL + "/api/v2/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s models.AlertmanagerStatus
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.Cluster == nil {
		return 0
	}
	return len(s.Cluster.Peers)
}

// basicAuthHash is bcrypt("s3cret-pw") at cost 4, for Alertmanager's --web.config.file.
const basicAuthHash = "$2b$04$x0bTDB3RIu1qtbAXYxTs6.yrGIgexNYPpT1TMhUIV5cQ60ZbXm4Ne"

func TestAlertmanagerBasicAuth(t *testing.T) {
	am := startAM(t, testbed.AlertmanagerOptions{
		WebConfig: "basic_auth_users:\n  meshdrift: " + basicAuthHash + "\n",
	})
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	writeFile(t, pw, "wrong-pw\n")
	n := one(t, Config{URLs: []string{am.URL}, ResendInterval: testResend, BasicAuth: &BasicAuth{Username: "meshdrift", PasswordFile: pw}})
	f := nackFinding("md0201-auth")

	retry, err := n.Notify(context.Background(), []findings.Finding{f})
	if err == nil || !retry {
		t.Fatalf("wrong password: retry=%v err=%v, want a retryable 401", retry, err)
	}
	t.Logf("wrong password: %v", err)

	// The Secret is rotated in place: the next call reads the new password.
	writeFile(t, pw, "s3cret-pw\n")
	if _, err := n.Notify(context.Background(), []findings.Finding{f}); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if got := byID(activeAlerts(t, am, "meshdrift", "s3cret-pw"), f.ID); len(got) != 1 {
		t.Fatalf("%d alerts behind basic auth, want 1", len(got))
	}
}

// metric sums the series of one family in reg (of one outcome, when given).
func metric(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := outcome == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == "outcome" && l.GetValue() == outcome
			}
			if match {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
