package istio

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// recorder is the ProxySink and SourceReporter of the tests: it keeps every call.
type recorder struct {
	mu        sync.Mutex
	views     []reconcile.IstiodView
	forgotten []string
	nacks     []reconcile.NACKEvent
	statuses  []reconcile.SourceStatus
}

func (r *recorder) ObserveIstiod(v reconcile.IstiodView) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.views = append(r.views, v)
}

func (r *recorder) ForgetIstiod(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgotten = append(r.forgotten, name)
}

func (r *recorder) ObserveNACK(ev reconcile.NACKEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nacks = append(r.nacks, ev)
}

func (r *recorder) ReportSource(st reconcile.SourceStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses = append(r.statuses, st)
}

// recorded is a copy of what a recorder kept.
type recorded struct {
	views     []reconcile.IstiodView
	forgotten []string
	nacks     []reconcile.NACKEvent
	statuses  []reconcile.SourceStatus
}

// instances are the statuses of istiod instances, without discovery's.
func (r recorded) instances() []reconcile.SourceStatus {
	var out []reconcile.SourceStatus
	for _, st := range r.statuses {
		if strings.HasPrefix(st.Name, "istiod/") {
			out = append(out, st)
		}
	}
	return out
}

// snapshot copies what was recorded so far.
func (r *recorder) snapshot() recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorded{
		views:     slices.Clone(r.views),
		forgotten: slices.Clone(r.forgotten),
		nacks:     slices.Clone(r.nacks),
		statuses:  slices.Clone(r.statuses),
	}
}

// lastView is the last view of one istiod, and whether there is one.
func (r *recorder) lastView(istiod string) (reconcile.IstiodView, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.views) - 1; i >= 0; i-- {
		if r.views[i].Istiod == istiod {
			return r.views[i], true
		}
	}
	return reconcile.IstiodView{}, false
}

// lastStatus is the last status reported for one istiod.
func (r *recorder) lastStatus(istiod string) (reconcile.SourceStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.statuses) - 1; i >= 0; i-- {
		if r.statuses[i].Name == "istiod/"+istiod {
			return r.statuses[i], true
		}
	}
	return reconcile.SourceStatus{}, false
}

// syncLog is a log destination safe for the reader's goroutines.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestLogger(t *testing.T) (*slog.Logger, *syncLog) {
	t.Helper()
	out := &syncLog{}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})), out
}

func newTestReader(t *testing.T, cfg ReaderConfig, targets []Target) (*Reader, *recorder, *prometheus.Registry, *syncLog) {
	t.Helper()
	src, err := StaticTargets(targets)
	if err != nil {
		t.Fatal(err)
	}
	return newTestReaderFrom(t, cfg, src)
}

func newTestReaderFrom(t *testing.T, cfg ReaderConfig, src TargetSource) (*Reader, *recorder, *prometheus.Registry, *syncLog) {
	t.Helper()
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	log, out := newTestLogger(t)
	if cfg.Transport == TransportXDSTLS && cfg.CAFile == "" && bed.started {
		// Read the bed's istiods as the deployed meshdrift does.
		cfg.CAFile, cfg.TokenFile = bed.istiodA.RootCertFile, bed.tokenFile
	}
	r, err := NewReader(cfg, src, rec, rec, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	return r, rec, reg, out
}

// runReader runs r until the test ends.
func runReader(t *testing.T, r *Reader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// exposition gathers reg in the text format, keeping the lines of the named families.
func exposition(t *testing.T, reg *prometheus.Registry, families ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if !slices.Contains(families, mf.GetName()) {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	var lines []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if l != "" && !strings.HasPrefix(l, "# HELP") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func TestNewReaderValidates(t *testing.T) {
	src, _ := StaticTargets(nil)
	rec := &recorder{}
	tests := []struct {
		name    string
		cfg     ReaderConfig
		wantErr string
	}{
		{"tls without files", ReaderConfig{}, "istiod reader: xds-tls needs a CA file\nxds-tls needs a token file"},
		{"unknown transport", ReaderConfig{Transport: "grpc"}, `istiod reader: transport "grpc": must be one of xds-tls, xds-plaintext, http`},
		{"interval too short", ReaderConfig{Transport: TransportHTTP, Interval: time.Millisecond}, "istiod reader: interval 1ms: must be at least 100ms"},
		{"negative timeout", ReaderConfig{Transport: TransportHTTP, ReadTimeout: -time.Second}, "istiod reader: read timeout -1s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(tt.cfg, src, rec, rec, nil, nil)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error %q, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := NewReader(ReaderConfig{Transport: TransportHTTP}, nil, nil, nil, nil, nil); err == nil ||
		err.Error() != "istiod reader: target source is nil\nistiod reader: proxy sink is nil\nistiod reader: source reporter is nil" {
		t.Fatalf("nil dependencies: %v", err)
	}
	// Two readers in one process need their own registries: a shared one is an error.
	reg := prometheus.NewRegistry()
	if _, err := NewReader(ReaderConfig{Transport: TransportHTTP}, src, rec, rec, reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := NewReader(ReaderConfig{Transport: TransportHTTP}, src, rec, rec, reg, nil); err == nil ||
		!strings.HasPrefix(err.Error(), "istiod reader: register metrics: ") {
		t.Fatalf("second registration: %v", err)
	}
}

func TestStaticTargets(t *testing.T) {
	src, err := StaticTargets([]Target{{Addr: "10.0.0.2:15010"}, {Name: "istiod-a", Revision: "canary", Addr: "10.0.0.1:15010"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := src.Targets(context.Background())
	want := []Target{
		{Name: "10.0.0.2:15010", Revision: "default", Addr: "10.0.0.2:15010"},
		{Name: "istiod-a", Revision: "canary", Addr: "10.0.0.1:15010"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("targets %+v, want %+v", got, want)
	}
	_, err = StaticTargets([]Target{{Name: "a", Addr: "10.0.0.1"}, {Name: "a", Addr: "10.0.0.2:1"}, {}})
	wantErr := "target 0: address \"10.0.0.1\": address 10.0.0.1: missing port in address\n" +
		"target 1: duplicate name \"a\"\ntarget 2: address is required"
	if err == nil || err.Error() != wantErr {
		t.Errorf("error %q, want %q", err, wantErr)
	}
}

// An istiod that cannot be reached is reported down with the error, and the sink gets no
// view at all: never an empty one that would read as "no proxies, nothing wrong".
func TestUnreachableIstiodIsDownNotEmpty(t *testing.T) {
	for _, transport := range []Transport{TransportXDSPlaintext, TransportHTTP} {
		t.Run(string(transport), func(t *testing.T) {
			addr := closedAddr(t)
			r, rec, reg, _ := newTestReader(t, ReaderConfig{Transport: transport}, []Target{{Name: "istiod-gone", Addr: addr}})
			err := r.ReadOnce(context.Background())
			if err == nil || !strings.Contains(err.Error(), "connection refused") {
				t.Fatalf("ReadOnce error %v, want connection refused", err)
			}
			got := rec.snapshot()
			if len(got.views) != 0 {
				t.Errorf("views %+v, want none", got.views)
			}
			if len(got.instances()) != 1 || got.instances()[0].Up || got.instances()[0].Name != "istiod/istiod-gone" ||
				!strings.HasPrefix(got.instances()[0].Error, "read istiod istiod-gone at "+addr+": ") || got.instances()[0].Since.IsZero() {
				t.Errorf("statuses %+v", got.instances())
			}
			want := fmt.Sprintf(`# TYPE meshdrift_istiod_instances gauge
meshdrift_istiod_instances{state="down"} 1
meshdrift_istiod_instances{state="up"} 0
# TYPE meshdrift_istiod_reads_total counter
meshdrift_istiod_reads_total{outcome="error",transport="%[1]s"} 1
meshdrift_istiod_reads_total{outcome="ok",transport="%[1]s"} 0
meshdrift_istiod_reads_total{outcome="timeout",transport="%[1]s"} 0`, transport)
			if got := exposition(t, reg, "meshdrift_istiod_instances", "meshdrift_istiod_reads_total"); got != want {
				t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// A peer that accepts connections and never answers (a hung istiod) fails the read within
// the read timeout, as a timeout.
func TestHungIstiodTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	for _, transport := range []Transport{TransportXDSPlaintext, TransportHTTP} {
		t.Run(string(transport), func(t *testing.T) {
			r, rec, reg, _ := newTestReader(t, ReaderConfig{Transport: transport, ReadTimeout: 300 * time.Millisecond},
				[]Target{{Name: "istiod-hung", Addr: l.Addr().String()}})
			start := time.Now()
			err := r.ReadOnce(context.Background())
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("read took %s", elapsed)
			}
			if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
				t.Fatalf("error %v", err)
			}
			if got := rec.snapshot(); len(got.views) != 0 || len(got.instances()) != 1 || got.instances()[0].Up {
				t.Errorf("recorded %+v", got)
			}
			if got := exposition(t, reg, "meshdrift_istiod_reads_total"); !strings.Contains(got, `outcome="timeout",transport="`+string(transport)+`"} 1`) {
				t.Errorf("metrics:\n%s", got)
			}
		})
	}
}

// An answer istiod would not give (an error status, a body that is not syncz) is a failed
// read too. No real istiod answers like this, so an httptest server stands in for one.
func TestBadSynczAnswerIsDown(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		// 401 and 403 are refusals, with a fix: TestReaderRefusedDebugRequest.
		{"status 500", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "push context not ready", http.StatusInternalServerError)
		}, "500 Internal Server Error: push context not ready"},
		{"not json", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "<html>") }, "decode syncz body: "},
		{"proxy without id", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `[{"proxy":""}]`) }, "syncz entry 0: proxy has no id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			addr := strings.TrimPrefix(srv.URL, "http://")
			r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: TransportHTTP}, []Target{{Name: "istiod-odd", Addr: addr}})
			err := r.ReadOnce(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if got := rec.snapshot(); len(got.views) != 0 || len(got.instances()) != 1 || got.instances()[0].Up || got.instances()[0].Error != err.Error() {
				t.Errorf("recorded %+v", got)
			}
		})
	}
}

func TestHTTPSendsTokenFromFile(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		fmt.Fprint(w, "[]")
	}))
	defer srv.Close()
	tokenFile := t.TempDir() + "/token"
	writeFile(t, tokenFile, "first-token\n")
	r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: TransportHTTP, TokenFile: tokenFile},
		[]Target{{Name: "istiod-0", Addr: strings.TrimPrefix(srv.URL, "http://")}})
	if err := r.ReadOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeFile(t, tokenFile, "rotated-token")
	if err := r.ReadOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"Bearer first-token", "Bearer rotated-token"}; !slices.Equal(auth, want) {
		t.Errorf("authorization %q, want %q", auth, want)
	}
	// An istiod with no proxies is a view with none: that is an answer, not a failure.
	if v, ok := rec.lastView("istiod-0"); !ok || len(v.Proxies) != 0 || v.Revision != "default" || v.ObservedAt.IsZero() {
		t.Errorf("view %+v", v)
	}
}

// Source statuses are reported when the state or its error changes; Since is when the
// state began.
func TestSourceStatusReportedOnChange(t *testing.T) {
	r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: TransportHTTP}, nil)
	now := time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	step := func(err error) {
		r.setStatus("istiod/istiod-0", err)
		now = now.Add(time.Second)
	}
	step(nil)
	step(nil)
	step(errors.New("refused"))
	step(errors.New("refused"))
	step(errors.New("timeout"))
	step(nil)
	t0 := time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)
	want := []reconcile.SourceStatus{
		{Name: "istiod/istiod-0", Up: true, Since: t0},
		{Name: "istiod/istiod-0", Error: "refused", Since: t0.Add(2 * time.Second)},
		{Name: "istiod/istiod-0", Error: "timeout", Since: t0.Add(2 * time.Second)},
		{Name: "istiod/istiod-0", Up: true, Since: t0.Add(5 * time.Second)},
	}
	if got := rec.snapshot().instances(); !slices.Equal(got, want) {
		t.Errorf("statuses\n got %+v\nwant %+v", got, want)
	}
}

// manualTargets is a TargetSource a test drives.
type manualTargets struct {
	updates chan []Target
	fails   chan error
}

func newManualTargets() *manualTargets {
	return &manualTargets{updates: make(chan []Target), fails: make(chan error)}
}

func (m *manualTargets) Targets(context.Context) ([]Target, error) { return nil, nil }

func (m *manualTargets) Watch(ctx context.Context, update func([]Target), fail func(error)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ts := <-m.updates:
			update(ts)
		case err := <-m.fails:
			fail(err)
		}
	}
}

// Targets that disappear are forgotten; Poke reads at once; SetInterval speeds polling up.
func TestRunFollowsTargetsPokeAndInterval(t *testing.T) {
	src := newManualTargets()
	r, rec, reg, _ := newTestReaderFrom(t, ReaderConfig{Transport: TransportHTTP, Interval: time.Hour}, src)
	runReader(t, r)
	a := Target{Name: "istiod-a", Addr: closedAddr(t)}
	b := Target{Name: "istiod-b", Addr: closedAddr(t)}
	src.updates <- []Target{a, b}
	reads := func() string { return exposition(t, reg, "meshdrift_istiod_reads_total") }
	testbed.Eventually(t, 5*time.Second, "both read on discovery", func() (bool, string) {
		return strings.Contains(reads(), `outcome="error",transport="http"} 2`), reads()
	})
	r.Poke()
	testbed.Eventually(t, 5*time.Second, "both read again on Poke", func() (bool, string) {
		return strings.Contains(reads(), `outcome="error",transport="http"} 4`), reads()
	})
	src.updates <- []Target{b}
	testbed.Eventually(t, 5*time.Second, "istiod-a forgotten", func() (bool, string) {
		got := rec.snapshot()
		return slices.Equal(got.forgotten, []string{"istiod-a"}), fmt.Sprint(got.forgotten)
	})
	if got := exposition(t, reg, "meshdrift_istiod_instances"); !strings.Contains(got, `{state="down"} 1`) {
		t.Errorf("instances after forgetting:\n%s", got)
	}
	r.SetInterval(time.Millisecond) // raised to MinInterval
	start := time.Now()
	testbed.Eventually(t, 5*time.Second, "polled at the short interval", func() (bool, string) {
		return strings.Contains(reads(), `outcome="error",transport="http"} 8`), reads()
	})
	if elapsed := time.Since(start); elapsed < 2*MinInterval-10*time.Millisecond {
		t.Errorf("3 reads in %s: faster than MinInterval allows", elapsed)
	}
}

// Discovery is a source too: failing, or finding no istiod, it is down, so that a mesh
// meshdrift cannot see never reads as a mesh with nothing wrong.
func TestDiscoveryStatus(t *testing.T) {
	src := newManualTargets()
	r, rec, _, _ := newTestReaderFrom(t, ReaderConfig{Transport: TransportHTTP, Interval: time.Hour}, src)
	runReader(t, r)
	discovery := func() []string {
		var out []string
		for _, st := range rec.snapshot().statuses {
			if st.Name == DiscoverySource {
				out = append(out, fmt.Sprintf("up=%v %s", st.Up, st.Error))
			}
		}
		return out
	}
	src.fails <- errors.New(`pods is forbidden: User "system:serviceaccount:istio-system:meshdrift" cannot list resource "pods"`)
	src.updates <- []Target{{Name: "istiod-a", Addr: closedAddr(t)}}
	src.updates <- nil
	want := []string{
		`up=false istiod discovery: pods is forbidden: User "system:serviceaccount:istio-system:meshdrift" cannot list resource "pods"`,
		"up=true ",
		"up=false no istiod found",
	}
	testbed.Eventually(t, 5*time.Second, "discovery statuses", func() (bool, string) {
		return slices.Equal(discovery(), want), fmt.Sprintf("%q", discovery())
	})

	empty, _ := StaticTargets(nil)
	r2, rec2, _, _ := newTestReaderFrom(t, ReaderConfig{Transport: TransportHTTP}, empty)
	if err := r2.ReadOnce(context.Background()); !errors.Is(err, ErrNoIstiod) {
		t.Fatalf("ReadOnce without istiod: %v", err)
	}
	if got := rec2.snapshot().statuses; len(got) != 1 || got[0].Name != DiscoverySource || got[0].Up {
		t.Errorf("statuses %+v", got)
	}
}

func TestTokenIdentity(t *testing.T) {
	jwt := func(claims string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(claims)) + ".c2ln"
	}
	tests := []struct {
		name, token, ns, sa string
	}{
		{"projected token", jwt(`{"aud":["istio-ca"],"kubernetes.io":{"namespace":"istio-system","serviceaccount":{"name":"meshdrift","uid":"x"}},"sub":"system:serviceaccount:istio-system:meshdrift"}`), "istio-system", "meshdrift"},
		{"legacy token", jwt(`{"sub":"system:serviceaccount:ops:meshdrift"}`), "ops", "meshdrift"},
		{"not a jwt", "opaque-token", "", ""},
		{"bad payload", "a.!!!.c", "", ""},
		{"no identity", jwt(`{"sub":"user"}`), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, sa := tokenIdentity(tt.token)
			if ns != tt.ns || sa != tt.sa {
				t.Errorf("identity %q %q, want %q %q", ns, sa, tt.ns, tt.sa)
			}
		})
	}
}

func TestXDSNode(t *testing.T) {
	cfg := ReaderConfig{NodeServiceAccount: "explicit"}.withDefaults()
	token := base64.RawURLEncoding.EncodeToString([]byte("{}")) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"kubernetes.io":{"namespace":"istio-system","serviceaccount":{"name":"from-token"}}}`)) + ".x"
	n := cfg.xdsNode(token)
	if n.GetId() != "sidecar~127.0.0.1~meshdrift.istio-system~istio-system.svc.cluster.local" {
		t.Errorf("node id %q", n.GetId())
	}
	md := n.GetMetadata().GetFields()
	if md["NAMESPACE"].GetStringValue() != "istio-system" || md["SERVICE_ACCOUNT"].GetStringValue() != "explicit" ||
		md["GENERATOR"].GetStringValue() != "event" || md["PROXY_CONFIG"] != nil {
		t.Errorf("metadata %v", md)
	}
	if n := cfg.xdsNode(""); n.GetId() != "sidecar~127.0.0.1~meshdrift.default~default.svc.cluster.local" {
		t.Errorf("node without token %q", n.GetId())
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
