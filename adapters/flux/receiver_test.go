package flux

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	eventv1beta1 "github.com/fluxcd/pkg/apis/event/v1beta1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/meshdrift/meshdrift/reconcile"
)

// receiverTestKey is the token of the Secret the golden request was signed with.
const receiverTestKey = "s3cr3t-hmac-key"

// The golden request: what a real notification-controller v1.9.0 (generic-hmac) posted.
const (
	goldenEventBodyFile    = "testdata/event-generic-hmac.json"
	goldenEventHeadersFile = "testdata/event-generic-hmac.headers"
)

// goldenNotification is what the golden event must normalise to.
var goldenNotification = Notification{
	App: reconcile.AppKey{
		Source:    reconcile.SourceFlux,
		Kind:      "Kustomization",
		Namespace: "demo",
		Name:      "demo-ks",
	},
	Revision:   "main@sha1:be6866acc3ff62078c21430f1f2e3fd5140ca6c6",
	Severity:   "info",
	Reason:     "Progressing",
	Message:    "ConfigMap/demo/demo-cm created",
	Controller: "kustomize-controller",
	Timestamp:  time.Date(2026, 11, 25, 15, 8, 59, 0, time.UTC),
}

type requeueCall struct {
	key reconcile.AppKey
	n   Notification
}

// receiverTestRequeuer records what the receiver asks to requeue.
type receiverTestRequeuer struct {
	mu    sync.Mutex
	calls []requeueCall
}

func (q *receiverTestRequeuer) Requeue(_ context.Context, key reconcile.AppKey, n Notification) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls = append(q.calls, requeueCall{key: key, n: n})
}

func (q *receiverTestRequeuer) recorded() []requeueCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.calls)
}

// receiverTestRig is a Receiver with its own registry, requeuer and log buffer.
type receiverTestRig struct {
	receiver *Receiver
	requeuer *receiverTestRequeuer
	registry *prometheus.Registry
	logs     *bytes.Buffer
}

func newReceiverTestRig(t testing.TB, cfg ReceiverConfig) *receiverTestRig {
	t.Helper()
	rig := &receiverTestRig{
		requeuer: &receiverTestRequeuer{},
		registry: prometheus.NewRegistry(),
		logs:     &bytes.Buffer{},
	}
	log := slog.New(slog.NewJSONHandler(rig.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := NewReceiver(cfg, rig.requeuer, rig.registry, log)
	if err != nil {
		t.Fatalf("NewReceiver: %v", err)
	}
	rig.receiver = r
	return rig
}

func (rig *receiverTestRig) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	rig.receiver.ServeHTTP(rec, req)
	return rec
}

// requestCounts reads meshdrift_flux_receiver_requests_total per outcome from the registry.
func (rig *receiverTestRig) requestCounts(t testing.TB) map[string]float64 {
	t.Helper()
	families, err := rig.registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	counts := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != "meshdrift_flux_receiver_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					counts[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return counts
}

// assertRequestCounts checks every outcome: want's entries, and zero for the rest.
func (rig *receiverTestRig) assertRequestCounts(t testing.TB, want map[string]float64) {
	t.Helper()
	got := rig.requestCounts(t)
	for _, o := range receiverOutcomes {
		if got[o] != want[o] {
			t.Errorf("requests_total{outcome=%q} = %v, want %v (all: %v)", o, got[o], want[o], got)
		}
	}
	if len(got) != len(receiverOutcomes) {
		t.Errorf("outcome series = %v, want exactly %v", got, receiverOutcomes)
	}
}

// readGoldenEvent returns the golden request, parsed by net/http from the captured
// request line and headers followed by the captured body bytes.
func readGoldenEvent(t testing.TB) (http.Header, []byte) {
	t.Helper()
	head, err := os.ReadFile(goldenEventHeadersFile)
	if err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(goldenEventBodyFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(head), bytes.NewReader(body))))
	if err != nil {
		t.Fatalf("parse golden request: %v", err)
	}
	got, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("golden Content-Length does not match the body file: read %d bytes of %d", len(got), len(body))
	}
	return req.Header, body
}

// newEventRequest builds a POST of body with a copy of header; Content-Length follows body.
func newEventRequest(header http.Header, body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/flux/events", bytes.NewReader(body))
	req.Header = header.Clone()
	req.Header.Del("Content-Length")
	return req
}

var testSignatureHashes = map[string]func() hash.Hash{
	"md5":    md5.New,
	"sha1":   sha1.New,
	"sha224": sha256.New224,
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// sign returns an X-Signature value as notification-controller computes it.
func sign(t testing.TB, alg, key string, body []byte) string {
	t.Helper()
	newHash, ok := testSignatureHashes[alg]
	if !ok {
		t.Fatalf("no test hash %q", alg)
	}
	mac := hmac.New(newHash, []byte(key))
	mac.Write(body)
	return alg + "=" + hex.EncodeToString(mac.Sum(nil))
}

func sameNotification(a, b Notification) bool {
	if !a.Timestamp.Equal(b.Timestamp) {
		return false
	}
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	return a == b
}

func TestReceiverAcceptsGoldenRequest(t *testing.T) {
	header, body := readGoldenEvent(t)
	if got := header.Get(SignatureHeader); got != sign(t, "sha256", receiverTestKey, body) {
		t.Fatalf("golden signature %q is not HMAC-SHA256 of the body under the test key", got)
	}

	check := func(t *testing.T, rig *receiverTestRig, status int) {
		t.Helper()
		if status != http.StatusAccepted {
			t.Fatalf("status = %d, want %d", status, http.StatusAccepted)
		}
		calls := rig.requeuer.recorded()
		if len(calls) != 1 {
			t.Fatalf("Requeue called %d times, want 1", len(calls))
		}
		if calls[0].key != goldenNotification.App {
			t.Errorf("Requeue key = %v, want %v", calls[0].key, goldenNotification.App)
		}
		if !sameNotification(calls[0].n, goldenNotification) {
			t.Errorf("notification = %+v\nwant %+v", calls[0].n, goldenNotification)
		}
		rig.assertRequestCounts(t, map[string]float64{receiverOutcomeAccepted: 1})
	}

	t.Run("handler", func(t *testing.T) {
		rig := newReceiverTestRig(t, ReceiverConfig{HMACKey: []byte(receiverTestKey)})
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(
			bytes.NewReader(mustReadFile(t, goldenEventHeadersFile)), bytes.NewReader(body))))
		if err != nil {
			t.Fatal(err)
		}
		check(t, rig, rig.serve(req).Code)
	})

	t.Run("server", func(t *testing.T) {
		rig := newReceiverTestRig(t, ReceiverConfig{HMACKey: []byte(receiverTestKey)})
		srv := httptest.NewServer(rig.receiver)
		defer srv.Close()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/flux/events", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"Content-Type", "Gotk-Component", "User-Agent", SignatureHeader} {
			req.Header.Set(name, header.Get(name))
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		check(t, rig, resp.StatusCode)
	})
}

func mustReadFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReceiverRejects(t *testing.T) {
	goldenHeader, goldenBody := readGoldenEvent(t)
	key := []byte(receiverTestKey)

	// signed returns the golden headers with X-Signature replaced (removed when sig is "").
	signed := func(sig string) http.Header {
		h := goldenHeader.Clone()
		h.Del(SignatureHeader)
		if sig != "" {
			h.Set(SignatureHeader, sig)
		}
		return h
	}
	tampered := bytes.Replace(goldenBody, []byte(`"demo-ks"`), []byte(`"demo-kx"`), 1)
	oversized := append(bytes.Repeat([]byte(" "), int(DefaultReceiverMaxBodyBytes)+1-len(goldenBody)), goldenBody...)
	malformed := []byte(`{"involvedObject":{"kind":"Kustomization"`)
	withTrailer := append(slices.Clone(goldenBody), []byte(` {}`)...)
	withoutObjectField := func(field string) []byte {
		var ev map[string]any
		if err := json.Unmarshal(goldenBody, &ev); err != nil {
			t.Fatal(err)
		}
		delete(ev["involvedObject"].(map[string]any), field)
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	noNamespace := withoutObjectField("namespace")
	noName := withoutObjectField("name")
	noKind := withoutObjectField("kind")
	goodSig := sign(t, "sha256", receiverTestKey, goldenBody)

	tests := []struct {
		name    string
		cfg     ReceiverConfig
		req     func() *http.Request
		code    int
		body    string
		outcome string
	}{
		{
			name: "tampered body",
			cfg:  ReceiverConfig{HMACKey: key},
			req:  func() *http.Request { return newEventRequest(goldenHeader, tampered) },
			code: http.StatusUnauthorized, body: "invalid signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "wrong key",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed(sign(t, "sha256", "not-the-key", goldenBody)), goldenBody)
			},
			code: http.StatusUnauthorized, body: "invalid signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "unknown algorithm",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed(sign(t, "md5", receiverTestKey, goldenBody)), goldenBody)
			},
			code: http.StatusUnauthorized, body: "invalid signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "oversized with content length",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed(sign(t, "sha256", receiverTestKey, oversized)), oversized)
			},
			code: http.StatusRequestEntityTooLarge, body: "request body too large", outcome: receiverOutcomeTooLarge,
		},
		{
			name: "oversized chunked",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				req := newEventRequest(signed(sign(t, "sha256", receiverTestKey, oversized)), oversized)
				req.ContentLength = -1 // unknown length: only the limited read can catch it
				return req
			},
			code: http.StatusRequestEntityTooLarge, body: "request body too large", outcome: receiverOutcomeTooLarge,
		},
		{
			name: "one byte over a configured cap",
			cfg:  ReceiverConfig{HMACKey: key, MaxBodyBytes: int64(len(goldenBody)) - 1},
			req: func() *http.Request {
				req := newEventRequest(goldenHeader, goldenBody)
				req.ContentLength = -1
				return req
			},
			code: http.StatusRequestEntityTooLarge, body: "request body too large", outcome: receiverOutcomeTooLarge,
		},
		{
			name: "malformed json",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed(sign(t, "sha256", receiverTestKey, malformed)), malformed)
			},
			code: http.StatusBadRequest, body: "malformed event", outcome: receiverOutcomeMalformed,
		},
		{
			name: "malformed json without key",
			cfg:  ReceiverConfig{InsecureNoAuth: true},
			req:  func() *http.Request { return newEventRequest(signed(""), malformed) },
			code: http.StatusBadRequest, body: "malformed event", outcome: receiverOutcomeMalformed,
		},
		{
			name: "trailing data after the event",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed(sign(t, "sha256", receiverTestKey, withTrailer)), withTrailer)
			},
			code: http.StatusBadRequest, body: "malformed event", outcome: receiverOutcomeMalformed,
		},
		{
			name: "empty body",
			cfg:  ReceiverConfig{HMACKey: key},
			req:  func() *http.Request { return newEventRequest(signed(sign(t, "sha256", receiverTestKey, nil)), nil) },
			code: http.StatusBadRequest, body: "malformed event", outcome: receiverOutcomeMalformed,
		},
		{
			name: "json null",
			cfg:  ReceiverConfig{InsecureNoAuth: true},
			req:  func() *http.Request { return newEventRequest(signed(""), []byte("null")) },
			code: http.StatusBadRequest, body: "malformed event", outcome: receiverOutcomeMalformed,
		},
		{
			name: "no involvedObject namespace",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed(sign(t, "sha256", receiverTestKey, noNamespace)), noNamespace)
			},
			code: http.StatusBadRequest, body: "malformed event", outcome: receiverOutcomeMalformed,
		},
		{
			name: "no involvedObject name",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed(sign(t, "sha256", receiverTestKey, noName)), noName)
			},
			code: http.StatusBadRequest, body: "malformed event", outcome: receiverOutcomeMalformed,
		},
		{
			name: "no involvedObject kind",
			cfg:  ReceiverConfig{InsecureNoAuth: true},
			req:  func() *http.Request { return newEventRequest(signed(""), noKind) },
			code: http.StatusBadRequest, body: "malformed event", outcome: receiverOutcomeMalformed,
		},
		{
			name: "missing signature",
			cfg:  ReceiverConfig{HMACKey: key},
			req:  func() *http.Request { return newEventRequest(signed(""), goldenBody) },
			code: http.StatusUnauthorized, body: "missing signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "empty signature header",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				h := signed("")
				h[SignatureHeader] = []string{""}
				return newEventRequest(h, goldenBody)
			},
			code: http.StatusUnauthorized, body: "missing signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "signature without algorithm",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed(strings.TrimPrefix(goodSig, "sha256=")), goldenBody)
			},
			code: http.StatusUnauthorized, body: "invalid signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "signature not hex",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed("sha256="+strings.Repeat("zz", sha256.Size)), goldenBody)
			},
			code: http.StatusUnauthorized, body: "invalid signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "signature truncated",
			cfg:  ReceiverConfig{HMACKey: key},
			req:  func() *http.Request { return newEventRequest(signed(goodSig[:len(goodSig)-2]), goldenBody) },
			code: http.StatusUnauthorized, body: "invalid signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "algorithm in upper case",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				return newEventRequest(signed("SHA256"+strings.TrimPrefix(goodSig, "sha256")), goldenBody)
			},
			code: http.StatusUnauthorized, body: "invalid signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "two signature headers",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				h := signed(goodSig)
				h.Add(SignatureHeader, goodSig)
				return newEventRequest(h, goldenBody)
			},
			code: http.StatusUnauthorized, body: "invalid signature", outcome: receiverOutcomeUnauthorized,
		},
		{
			name: "get",
			cfg:  ReceiverConfig{HMACKey: key},
			req:  func() *http.Request { return httptest.NewRequest(http.MethodGet, "/flux/events", nil) },
			code: http.StatusMethodNotAllowed, body: "method not allowed", outcome: receiverOutcomeMethodNotAllowed,
		},
		{
			name: "put with a valid event",
			cfg:  ReceiverConfig{HMACKey: key},
			req: func() *http.Request {
				req := newEventRequest(goldenHeader, goldenBody)
				req.Method = http.MethodPut
				return req
			},
			code: http.StatusMethodNotAllowed, body: "method not allowed", outcome: receiverOutcomeMethodNotAllowed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newReceiverTestRig(t, tt.cfg)
			req := tt.req()
			sent := req.Header.Values(SignatureHeader)
			rec := rig.serve(req)

			if rec.Code != tt.code {
				t.Errorf("status = %d, want %d", rec.Code, tt.code)
			}
			if got := strings.TrimSpace(rec.Body.String()); got != tt.body {
				t.Errorf("body = %q, want %q", got, tt.body)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q, want text/plain", ct)
			}
			if tt.code == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", rec.Header().Get("Allow"))
			}
			if calls := rig.requeuer.recorded(); len(calls) != 0 {
				t.Errorf("Requeue called for a rejected request: %+v", calls)
			}
			rig.assertRequestCounts(t, map[string]float64{tt.outcome: 1})
			assertNoSecrets(t, rig.logs.String()+rec.Body.String(), sent)
		})
	}
}

// assertNoSecrets fails if out holds the key or any signature value (or its MAC) sent.
func assertNoSecrets(t testing.TB, out string, signatures []string) {
	t.Helper()
	if strings.Contains(out, receiverTestKey) {
		t.Errorf("output contains the hmac key:\n%s", out)
	}
	for _, sig := range signatures {
		_, mac, _ := strings.Cut(sig, "=")
		if len(mac) >= 8 && strings.Contains(out, mac) {
			t.Errorf("output contains a signature:\n%s", out)
		}
	}
}

func TestReceiverAccepts(t *testing.T) {
	goldenHeader, goldenBody := readGoldenEvent(t)
	unsigned := goldenHeader.Clone()
	unsigned.Del(SignatureHeader)
	// Posted straight by a controller (its --events-addr): group-prefixed metadata keys,
	// no Gotk-Component header, no signature.
	direct := http.Header{"Content-Type": {"application/json"}}
	kustomizeDirect := []byte(`{"involvedObject":{"kind":"Kustomization","namespace":"demo","name":"demo-ks","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},"severity":"error","timestamp":"2026-11-25T15:10:00Z","message":"kustomization path not found","reason":"BuildFailed","metadata":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:0123456789abcdef0123456789abcdef01234567","kustomize.toolkit.fluxcd.io/token":"abc"},"reportingController":"kustomize-controller"}`)
	helmDirect := []byte(`{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo","apiVersion":"helm.toolkit.fluxcd.io/v2"},"severity":"info","timestamp":"2026-11-25T15:11:00Z","message":"Helm upgrade succeeded","reason":"UpgradeSucceeded","metadata":{"helm.toolkit.fluxcd.io/revision":"6.7.1","helm.toolkit.fluxcd.io/token":"def"},"reportingController":"helm-controller"}`)
	gitRepository := []byte(`{"involvedObject":{"kind":"GitRepository","namespace":"flux-system","name":"demo","apiVersion":"source.toolkit.fluxcd.io/v1"},"severity":"info","timestamp":"2026-11-25T15:12:00Z","message":"stored artifact","reason":"NewArtifact","metadata":{"revision":"main@sha1:be6866acc3ff62078c21430f1f2e3fd5140ca6c6"},"reportingController":"source-controller"}`)
	foreignKustomization := []byte(`{"involvedObject":{"kind":"Kustomization","namespace":"demo","name":"x","apiVersion":"kustomize.config.k8s.io/v1beta1"},"severity":"info","timestamp":"2026-11-25T15:12:00Z","message":"m","reason":"r","reportingController":"other"}`)

	tests := []struct {
		name    string
		cfg     ReceiverConfig
		header  http.Header
		body    []byte
		want    *Notification // nil: accepted but ignored
		outcome string
	}{
		{
			name:    "generic provider without key",
			cfg:     ReceiverConfig{InsecureNoAuth: true},
			header:  unsigned,
			body:    goldenBody,
			want:    &goldenNotification,
			outcome: receiverOutcomeAccepted,
		},
		{
			name:    "signature present but no key configured",
			cfg:     ReceiverConfig{InsecureNoAuth: true},
			header:  goldenHeader,
			body:    goldenBody,
			want:    &goldenNotification,
			outcome: receiverOutcomeAccepted,
		},
		{
			name:    "body of exactly the configured cap",
			cfg:     ReceiverConfig{HMACKey: []byte(receiverTestKey), MaxBodyBytes: int64(len(goldenBody))},
			header:  goldenHeader,
			body:    goldenBody,
			want:    &goldenNotification,
			outcome: receiverOutcomeAccepted,
		},
		{
			name:   "kustomize-controller direct",
			cfg:    ReceiverConfig{InsecureNoAuth: true},
			header: direct,
			body:   kustomizeDirect,
			want: &Notification{
				App:        reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "demo", Name: "demo-ks"},
				Revision:   "main@sha1:0123456789abcdef0123456789abcdef01234567",
				Severity:   "error",
				Reason:     "BuildFailed",
				Message:    "kustomization path not found",
				Controller: "kustomize-controller",
				Timestamp:  time.Date(2026, 11, 25, 15, 10, 0, 0, time.UTC),
			},
			outcome: receiverOutcomeAccepted,
		},
		{
			name:   "helm-controller direct",
			cfg:    ReceiverConfig{InsecureNoAuth: true},
			header: direct,
			body:   helmDirect,
			want: &Notification{
				App:        reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "HelmRelease", Namespace: "apps", Name: "podinfo"},
				Revision:   "6.7.1",
				Severity:   "info",
				Reason:     "UpgradeSucceeded",
				Message:    "Helm upgrade succeeded",
				Controller: "helm-controller",
				Timestamp:  time.Date(2026, 11, 25, 15, 11, 0, 0, time.UTC),
			},
			outcome: receiverOutcomeAccepted,
		},
		{
			name:    "other kind is ignored",
			cfg:     ReceiverConfig{InsecureNoAuth: true},
			header:  direct,
			body:    gitRepository,
			outcome: receiverOutcomeIgnored,
		},
		{
			name:    "kind of another group is ignored",
			cfg:     ReceiverConfig{InsecureNoAuth: true},
			header:  direct,
			body:    foreignKustomization,
			outcome: receiverOutcomeIgnored,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rig := newReceiverTestRig(t, tt.cfg)
			rec := rig.serve(newEventRequest(tt.header, tt.body))
			if rec.Code != http.StatusAccepted {
				t.Fatalf("status = %d (%q), want %d", rec.Code, rec.Body.String(), http.StatusAccepted)
			}
			calls := rig.requeuer.recorded()
			switch {
			case tt.want == nil && len(calls) != 0:
				t.Errorf("Requeue called for an ignored event: %+v", calls)
			case tt.want != nil && len(calls) != 1:
				t.Errorf("Requeue called %d times, want 1", len(calls))
			case tt.want != nil:
				if calls[0].key != tt.want.App {
					t.Errorf("key = %v, want %v", calls[0].key, tt.want.App)
				}
				if !sameNotification(calls[0].n, *tt.want) {
					t.Errorf("notification = %+v\nwant %+v", calls[0].n, *tt.want)
				}
			}
			rig.assertRequestCounts(t, map[string]float64{tt.outcome: 1})
		})
	}
}

func TestReceiverEveryAlgorithm(t *testing.T) {
	header, body := readGoldenEvent(t)
	for _, tt := range []struct {
		alg       string
		allowSHA1 bool
		code      int
		body      string
		outcome   string
	}{
		{alg: "sha1", code: http.StatusUnauthorized, body: "sha1 signatures are not accepted", outcome: receiverOutcomeUnauthorized},
		{alg: "sha1", allowSHA1: true, code: http.StatusAccepted, outcome: receiverOutcomeAccepted},
		{alg: "sha224", code: http.StatusAccepted, outcome: receiverOutcomeAccepted},
		{alg: "sha256", code: http.StatusAccepted, outcome: receiverOutcomeAccepted},
		{alg: "sha384", code: http.StatusAccepted, outcome: receiverOutcomeAccepted},
		{alg: "sha512", code: http.StatusAccepted, outcome: receiverOutcomeAccepted},
	} {
		t.Run(fmt.Sprintf("%s allowSHA1=%t", tt.alg, tt.allowSHA1), func(t *testing.T) {
			rig := newReceiverTestRig(t, ReceiverConfig{HMACKey: []byte(receiverTestKey), AllowSHA1: tt.allowSHA1})
			h := header.Clone()
			h.Set(SignatureHeader, sign(t, tt.alg, receiverTestKey, body))
			rec := rig.serve(newEventRequest(h, body))
			if rec.Code != tt.code {
				t.Fatalf("status = %d (%q), want %d", rec.Code, rec.Body.String(), tt.code)
			}
			if tt.body != "" && strings.TrimSpace(rec.Body.String()) != tt.body {
				t.Errorf("body = %q, want %q", rec.Body.String(), tt.body)
			}
			want := 0
			if tt.code == http.StatusAccepted {
				want = 1
			}
			if n := len(rig.requeuer.recorded()); n != want {
				t.Errorf("Requeue called %d times, want %d", n, want)
			}
			rig.assertRequestCounts(t, map[string]float64{tt.outcome: 1})
			assertNoSecrets(t, rig.logs.String()+rec.Body.String(), h.Values(SignatureHeader))
		})
	}
}

// TestReceiverMetricsExposition compares the exact exposition text after a mix of requests.
func TestReceiverMetricsExposition(t *testing.T) {
	header, body := readGoldenEvent(t)
	rig := newReceiverTestRig(t, ReceiverConfig{HMACKey: []byte(receiverTestKey)})
	unsigned := header.Clone()
	unsigned.Del(SignatureHeader)
	for _, req := range []*http.Request{
		newEventRequest(header, body),
		newEventRequest(header, body),
		newEventRequest(unsigned, body),
		httptest.NewRequest(http.MethodGet, "/flux/events", nil),
	} {
		rig.serve(req)
	}

	families, err := rig.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	enc := expfmt.NewEncoder(&got, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	want := `# HELP meshdrift_flux_receiver_requests_total Flux notification webhook requests received, by outcome.
# TYPE meshdrift_flux_receiver_requests_total counter
meshdrift_flux_receiver_requests_total{outcome="accepted"} 2
meshdrift_flux_receiver_requests_total{outcome="ignored"} 0
meshdrift_flux_receiver_requests_total{outcome="malformed"} 0
meshdrift_flux_receiver_requests_total{outcome="method_not_allowed"} 1
meshdrift_flux_receiver_requests_total{outcome="too_large"} 0
meshdrift_flux_receiver_requests_total{outcome="unauthorized"} 1
`
	if got.String() != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got.String(), want)
	}
}

func TestNotificationFromEvent(t *testing.T) {
	ts := time.Date(2026, 11, 25, 15, 8, 59, 0, time.UTC)
	event := func(kind, apiVersion string, metadata map[string]string) *eventv1beta1.Event {
		ev := &eventv1beta1.Event{
			Severity:            "info",
			Reason:              "ReconciliationSucceeded",
			Message:             "applied",
			Metadata:            metadata,
			ReportingController: "kustomize-controller",
		}
		ev.InvolvedObject.Kind = kind
		ev.InvolvedObject.APIVersion = apiVersion
		ev.InvolvedObject.Namespace = "demo"
		ev.InvolvedObject.Name = "app"
		ev.Timestamp.Time = ts.In(time.FixedZone("CET", 3600))
		return ev
	}
	const ks, ksAPI, hr, hrAPI = "Kustomization", "kustomize.toolkit.fluxcd.io/v1", "HelmRelease", "helm.toolkit.fluxcd.io/v2"

	tests := []struct {
		name         string
		ev           *eventv1beta1.Event
		controller   string
		wantRevision string
		wantCtrl     string
		wantErr      error
	}{
		{name: "via notification-controller", ev: event(ks, ksAPI, map[string]string{"revision": "main@sha1:aaa"}),
			controller: "kustomize-controller", wantRevision: "main@sha1:aaa", wantCtrl: "kustomize-controller"},
		{name: "kustomize-controller direct", ev: event(ks, ksAPI, map[string]string{"kustomize.toolkit.fluxcd.io/revision": "main@sha1:bbb"}),
			wantRevision: "main@sha1:bbb", wantCtrl: "kustomize-controller"},
		{name: "helm-controller direct", ev: event(hr, hrAPI, map[string]string{"helm.toolkit.fluxcd.io/revision": "1.2.3"}),
			wantRevision: "1.2.3", wantCtrl: "kustomize-controller"},
		{name: "plain key wins", ev: event(ks, ksAPI, map[string]string{"revision": "plain", "kustomize.toolkit.fluxcd.io/revision": "prefixed"}),
			wantRevision: "plain", wantCtrl: "kustomize-controller"},
		{name: "empty plain key falls back", ev: event(ks, ksAPI, map[string]string{"revision": "", "kustomize.toolkit.fluxcd.io/revision": "prefixed"}),
			wantRevision: "prefixed", wantCtrl: "kustomize-controller"},
		{name: "other group's key is not ours", ev: event(hr, hrAPI, map[string]string{"kustomize.toolkit.fluxcd.io/revision": "x"}),
			wantRevision: "", wantCtrl: "kustomize-controller"},
		{name: "commit and originRevision are not the applied revision", ev: event(ks, ksAPI, map[string]string{"commit": "c", "originRevision": "o", "revision": "r"}),
			wantRevision: "r", wantCtrl: "kustomize-controller"},
		{name: "no metadata", ev: event(ks, ksAPI, nil), wantRevision: "", wantCtrl: "kustomize-controller"},
		{name: "no apiVersion", ev: event(ks, "", nil), controller: "custom", wantCtrl: "custom"},
		{name: "nil event", ev: nil, wantErr: ErrEventIncomplete},
		{name: "no kind", ev: event("", ksAPI, nil), wantErr: ErrEventIncomplete},
		{name: "other kind", ev: event("GitRepository", "source.toolkit.fluxcd.io/v1", nil), wantErr: ErrEventKindUnsupported},
		{name: "other group", ev: event(hr, "helm.example.com/v1", nil), wantErr: ErrEventKindUnsupported},
		{name: "core group", ev: event(ks, "v1", nil), wantErr: ErrEventKindUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NotificationFromEvent(tt.ev, tt.controller)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if n != (Notification{}) {
					t.Errorf("notification on error = %+v, want zero", n)
				}
				return
			}
			want := Notification{
				App:        reconcile.AppKey{Source: reconcile.SourceFlux, Kind: tt.ev.InvolvedObject.Kind, Namespace: "demo", Name: "app"},
				Revision:   tt.wantRevision,
				Severity:   "info",
				Reason:     "ReconciliationSucceeded",
				Message:    "applied",
				Controller: tt.wantCtrl,
				Timestamp:  ts,
			}
			if n != want {
				t.Errorf("notification = %+v\nwant %+v", n, want)
			}
			if n.Timestamp.Location() != time.UTC {
				t.Errorf("timestamp location = %v, want UTC", n.Timestamp.Location())
			}
		})
	}

	t.Run("namespace and name required", func(t *testing.T) {
		for _, clear := range []func(*eventv1beta1.Event){
			func(ev *eventv1beta1.Event) { ev.InvolvedObject.Namespace = "" },
			func(ev *eventv1beta1.Event) { ev.InvolvedObject.Name = "" },
		} {
			ev := event(ks, ksAPI, nil)
			clear(ev)
			if _, err := NotificationFromEvent(ev, ""); !errors.Is(err, ErrEventIncomplete) {
				t.Errorf("err = %v, want %v", err, ErrEventIncomplete)
			}
		}
	})
}

func TestNewReceiverErrors(t *testing.T) {
	q := &receiverTestRequeuer{}
	tests := []struct {
		name     string
		cfg      ReceiverConfig
		requeuer Requeuer
		wantErr  string
	}{
		{name: "nil requeuer", requeuer: nil, wantErr: "flux receiver: nil requeuer"},
		{name: "no key and no insecureNoAuth", cfg: ReceiverConfig{}, requeuer: q,
			wantErr: "flux receiver: no HMAC key; give the generic-hmac Provider's token, or set insecureNoAuth: true to accept unsigned events"},
		{name: "empty key and no insecureNoAuth", cfg: ReceiverConfig{HMACKey: []byte{}, AllowSHA1: true}, requeuer: q,
			wantErr: "flux receiver: no HMAC key; give the generic-hmac Provider's token, or set insecureNoAuth: true to accept unsigned events"},
		{name: "key and insecureNoAuth", cfg: ReceiverConfig{HMACKey: []byte(receiverTestKey), InsecureNoAuth: true}, requeuer: q,
			wantErr: "flux receiver: an HMAC key and insecureNoAuth: true contradict each other; set one"},
		{name: "negative cap", cfg: ReceiverConfig{InsecureNoAuth: true, MaxBodyBytes: -1}, requeuer: q, wantErr: "flux receiver: max body bytes -1 out of range [1, 1073741824]"},
		{name: "cap beyond the bound", cfg: ReceiverConfig{InsecureNoAuth: true, MaxBodyBytes: 1<<30 + 1}, requeuer: q, wantErr: "flux receiver: max body bytes 1073741825 out of range [1, 1073741824]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReceiver(tt.cfg, tt.requeuer, nil, nil)
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}

	t.Run("registered twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := NewReceiver(ReceiverConfig{InsecureNoAuth: true}, q, reg, nil); err != nil {
			t.Fatal(err)
		}
		_, err := NewReceiver(ReceiverConfig{InsecureNoAuth: true}, q, reg, nil)
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			t.Errorf("err = %v, want a wrapped AlreadyRegisteredError", err)
		}
	})

	t.Run("nil registerer and logger", func(t *testing.T) {
		r, err := NewReceiver(ReceiverConfig{InsecureNoAuth: true}, q, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("status = %d, want %d", rec.Code, http.StatusMethodNotAllowed)
		}
	})
}

// TestReceiverKeyNeverEscapes checks the key does not leak through formatting or logging
// the config, and that the receiver keeps its own copy of the key.
func TestReceiverKeyNeverEscapes(t *testing.T) {
	key := []byte(receiverTestKey)
	cfg := ReceiverConfig{HMACKey: key, MaxBodyBytes: 4096}

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", slog.Any("cfg", cfg))
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", cfg)
	out := logs.String() + fmt.Sprintf("%v %+v %s", cfg, cfg, cfg)
	assertNoSecrets(t, out, nil)
	if !strings.Contains(out, "redacted") {
		t.Errorf("config output does not say the key is redacted:\n%s", out)
	}

	header, body := readGoldenEvent(t)
	rig := newReceiverTestRig(t, cfg)
	copy(key, "XXXX") // the caller reusing its buffer must not change the receiver's key
	if rec := rig.serve(newEventRequest(header, body)); rec.Code != http.StatusAccepted {
		t.Errorf("status after the caller changed its key slice = %d, want %d", rec.Code, http.StatusAccepted)
	}
}

func TestLoadHMACKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := dir + "/" + name
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr string
	}{
		{name: "plain", path: write("plain", receiverTestKey), want: receiverTestKey},
		{name: "trailing newline", path: write("newline", receiverTestKey+"\n"), want: receiverTestKey},
		{name: "surrounding white space", path: write("spaces", " \t"+receiverTestKey+"\r\n"), want: receiverTestKey},
		{name: "empty", path: write("empty", ""), wantErr: "flux receiver: HMAC key file " + dir + "/empty is empty"},
		{name: "white space only", path: write("blank", " \n\t\r\n"), wantErr: "flux receiver: HMAC key file " + dir + "/blank is empty"},
		{name: "too large", path: write("large", strings.Repeat("k", maxHMACKeyFileBytes+1)),
			wantErr: "flux receiver: HMAC key file " + dir + "/large is larger than 65536 bytes"},
		{name: "missing", path: dir + "/missing", wantErr: "flux receiver: reading the HMAC key: open " + dir + "/missing: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadHMACKey(tt.path)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.name != "too large" && strings.Contains(err.Error(), receiverTestKey) {
					t.Errorf("error holds the key: %v", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("LoadHMACKey = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := LoadHMACKey(dir + "/blank"); !errors.Is(err, ErrHMACKeyEmpty) {
		t.Errorf("err = %v, want ErrHMACKeyEmpty", err)
	}
}
