package alertmanager

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Unit tests: the mapping, and the HTTP client's auth and failure classes against httptest
// servers standing in for what sits in front of Alertmanager (a bearer-token proxy). The
// real Alertmanager is in integration_test.go.

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func nacked() findings.Finding {
	return findings.Finding{
		ID: "md0201-3f9a", Code: "MD0201", Name: "ChangeNACKed", Severity: findings.SeverityCritical,
		State: findings.StateFiring,
		Subject: findings.Subject{
			Object:   reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "payments", Name: "reviews"},
			App:      reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: "payments"},
			Revision: "main@sha1:0123456789abcdef0123456789abcdef01234567",
			Istiod:   "istiod-0.istio-system",
		},
		Summary:     "2 proxies rejected VirtualService payments/reviews",
		Description: "istiod pushed the change and Envoy NACKed it.",
		Evidence:    `LDS: Proto constraint validation failed: <script>alert(1)</script>`,
		StartsAt:    now.Add(-5 * time.Minute), FirstSeen: now.Add(-4 * time.Minute), LastSeen: now,
	}
}

func TestAlertMapping(t *testing.T) {
	o := alertOptions{cluster: "prod-eu-1", externalURL: "https://meshdrift.example.com/", runbookURL: "https://docs.example.com/findings.md", endsAtAhead: 4 * time.Minute}
	a := postableAlert(nacked(), o, now)
	wantLabels := models.LabelSet{
		"alertname": "ChangeNACKed", "code": "MD0201", "severity": "critical", "finding_id": "md0201-3f9a",
		"namespace": "payments", "app": "payments", "gitops_tool": "flux",
		"revision": "main@sha1:0123456789abcdef0123456789abcdef01234567",
		"object":   "networking.istio.io/VirtualService/payments/reviews",
		"istiod":   "istiod-0.istio-system", "cluster": "prod-eu-1",
	}
	if len(a.Labels) != len(wantLabels) {
		t.Errorf("labels %v, want %v", a.Labels, wantLabels)
	}
	for k, v := range wantLabels {
		if a.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, a.Labels[k], v)
		}
	}
	if got := a.Annotations["runbook_url"]; got != "https://docs.example.com/findings.md#md0201" {
		t.Errorf("runbook_url = %q", got)
	}
	if got := a.Annotations["evidence"]; got != nacked().Evidence {
		t.Errorf("evidence = %q", got)
	}
	if a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
		t.Errorf("annotations %v", a.Annotations)
	}
	if got := string(a.GeneratorURL); got != "https://meshdrift.example.com/findings/md0201-3f9a" {
		t.Errorf("generatorURL = %q", got)
	}
	if got := time.Time(a.StartsAt); !got.Equal(now.Add(-5 * time.Minute)) {
		t.Errorf("startsAt = %s, want the evidence's start", got)
	}
	if got := time.Time(a.EndsAt); !got.Equal(now.Add(4 * time.Minute)) {
		t.Errorf("endsAt = %s, want now + 4x resend", got)
	}

	r := nacked()
	r.State, r.ResolvedAt = findings.StateResolved, now.Add(-time.Second)
	if got := time.Time(postableAlert(r, o, now).EndsAt); !got.Equal(r.ResolvedAt) {
		t.Errorf("resolved endsAt = %s, want resolvedAt", got)
	}
	// A resolution stamped before the evidence's own start must still be a valid alert.
	r.ResolvedAt = r.StartsAt.Add(-time.Hour)
	if err := postableAlerts([]findings.Finding{r}, o, now).Validate(nil); err != nil {
		t.Errorf("resolved before start: %v", err)
	}
	if got := postableAlert(r, o, now); time.Time(got.EndsAt).Before(time.Time(got.StartsAt)) {
		t.Errorf("endsAt %s before startsAt %s", time.Time(got.EndsAt), time.Time(got.StartsAt))
	}
}

func TestLabelsLeaveOutWhatIsUnboundedOrEmpty(t *testing.T) {
	f := findings.Finding{ID: "x", Code: "MD0101", Severity: findings.SeverityWarning, State: findings.StateFiring,
		Subject:  findings.Subject{Revision: strings.Repeat("r", 101), Source: "istiod/istiod-0"},
		Evidence: strings.Repeat("é", maxEvidence)}
	a := postableAlert(f, alertOptions{}, now)
	if _, ok := a.Labels["revision"]; ok {
		t.Error("a 101-character revision became a label")
	}
	for _, k := range []string{"namespace", "app", "object", "cluster", "gitops_tool"} {
		if _, ok := a.Labels[k]; ok {
			t.Errorf("empty label %s set", k)
		}
	}
	if a.Labels["alertname"] != "MD0101" || a.Labels["source"] != "istiod/istiod-0" {
		t.Errorf("labels %v", a.Labels)
	}
	if a.GeneratorURL != "" || a.Annotations["runbook_url"] != "" {
		t.Error("links set without their base URLs")
	}
	if ev := a.Annotations["evidence"]; len(ev) > maxEvidence+len("…") || !json.Valid([]byte(`"`+ev+`"`)) {
		t.Errorf("evidence not bounded or not valid UTF-8: %d bytes", len(ev))
	}
}

// recorder is an httptest server that records requests and answers with status.
type recorder struct {
	mu     sync.Mutex
	status int
	auth   []string
	bodies [][]byte
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	r.bodies = append(r.bodies, b)
	if req.URL.Path != "/am/api/v2/alerts" || req.Method != http.MethodPost {
		http.NotFound(w, req)
		return
	}
	w.WriteHeader(r.status)
	_, _ = io.WriteString(w, "answer\x00body")
}

func (r *recorder) setStatus(s int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func one(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	ns, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ns[0]
}

func TestBearerTokenIsReadAgainWhenItChanges(t *testing.T) {
	rec := &recorder{status: http.StatusOK}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	tok := filepath.Join(t.TempDir(), "token")
	writeFile(t, tok, "first-token\n")
	n := one(t, Config{URLs: []string{srv.URL + "/am/"}, BearerTokenFile: tok, Now: func() time.Time { return now }})
	if n.Name() != "alertmanager/"+strings.TrimPrefix(srv.URL, "http://")+"/am" {
		t.Errorf("name %q", n.Name())
	}
	if _, err := n.Notify(context.Background(), []findings.Finding{nacked()}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tok, "second-token-longer\n")
	if _, err := n.Notify(context.Background(), []findings.Finding{nacked()}); err != nil {
		t.Fatal(err)
	}
	if rec.auth[0] != "Bearer first-token" || rec.auth[1] != "Bearer second-token-longer" {
		t.Errorf("authorization headers %q", rec.auth)
	}
	var sent models.PostableAlerts
	if err := json.Unmarshal(rec.bodies[0], &sent); err != nil || len(sent) != 1 || sent[0].Labels["code"] != "MD0201" {
		t.Errorf("body %s: %v", rec.bodies[0], err)
	}
}

func TestFailureClasses(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	pw := filepath.Join(t.TempDir(), "password")
	writeFile(t, pw, "s3cret-pw")
	n := one(t, Config{URLs: []string{srv.URL + "/am"}, BasicAuth: &BasicAuth{Username: "meshdrift", PasswordFile: pw}})
	cases := []struct {
		status int
		retry  bool
	}{
		{http.StatusOK, false}, {http.StatusBadRequest, false}, {http.StatusNotFound, false},
		{http.StatusUnauthorized, true}, {http.StatusTooManyRequests, true},
		{http.StatusInternalServerError, true}, {http.StatusServiceUnavailable, true}, {http.StatusNotImplemented, false},
	}
	for _, c := range cases {
		rec.setStatus(c.status)
		retry, err := n.Notify(context.Background(), []findings.Finding{nacked()})
		if (err == nil) != (c.status == http.StatusOK) || retry != c.retry {
			t.Errorf("status %d: retry=%v err=%v, want retry=%v", c.status, retry, err, c.retry)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error carries the password: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), "\x00") {
			t.Errorf("error carries raw body bytes: %q", err)
		}
	}
	if user, pass, ok := (&http.Request{Header: http.Header{"Authorization": {rec.auth[0]}}}).BasicAuth(); !ok || user != "meshdrift" || pass != "s3cret-pw" {
		t.Errorf("basic auth %q", rec.auth[0])
	}

	// Nothing listening: retry. A missing credentials file: retry (the Secret may come).
	srv.Close()
	if retry, err := n.Notify(context.Background(), []findings.Finding{nacked()}); err == nil || !retry {
		t.Errorf("connection refused: retry=%v err=%v", retry, err)
	}
	os.Remove(pw)
	if retry, err := n.Notify(context.Background(), []findings.Finding{nacked()}); err == nil || !retry {
		t.Errorf("missing password file: retry=%v err=%v", retry, err)
	}
}

func TestNewRejects(t *testing.T) {
	cases := map[string]Config{
		"no url":        {},
		"credentials":   {URLs: []string{"http://u:p@am:9093"}},
		"scheme":        {URLs: []string{"am:9093"}},
		"twice":         {URLs: []string{"http://am:9093", "http://am:9093/"}},
		"two auths":     {URLs: []string{"http://am:9093"}, BasicAuth: &BasicAuth{Username: "u", PasswordFile: "p"}, BearerTokenFile: "t"},
		"cert, no key":  {URLs: []string{"http://am:9093"}, TLS: TLSConfig{CertFile: "c"}},
		"relative link": {URLs: []string{"http://am:9093"}, ExternalURL: "/meshdrift"},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg); err == nil {
				t.Fatal("New succeeded")
			} else if strings.Contains(err.Error(), ":p@") {
				t.Fatalf("error carries the password: %v", err)
			}
		})
	}
}

func TestCAFileIsReadAgainWhenItChanges(t *testing.T) {
	rec := &recorder{status: http.StatusOK}
	srv := httptest.NewUnstartedServer(rec)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, ca, otherCA(t))
	n := one(t, Config{URLs: []string{srv.URL + "/am"}, TLS: TLSConfig{CAFile: ca}})

	retry, err := n.Notify(context.Background(), []findings.Finding{nacked()})
	if err == nil || !retry || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("wrong CA: retry=%v err=%v, want a retryable certificate error", retry, err)
	}
	writeFile(t, ca, certPEM(srv)+"\n") // the renewed bundle (another size: a new stat)
	if _, err := n.Notify(context.Background(), []findings.Finding{nacked()}); err != nil {
		t.Fatalf("after the CA file changed: %v", err)
	}
}

func certPEM(s *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}))
}

// otherCA is a fresh self-signed certificate that signed nothing srv presents.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
