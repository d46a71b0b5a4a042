package istio

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshdrift/meshdrift/reconcile"
)

// nsToken is a service account token of namespace ns, as istiod would receive it.
func nsToken(ns string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." +
		enc([]byte(`{"aud":["istio-ca"],"kubernetes.io":{"namespace":"`+ns+`","serviceaccount":{"name":"meshdrift"}}}`)) + ".sig"
}

func TestHiddenProxies(t *testing.T) {
	proxies := func(versions ...string) []reconcile.ProxyStatus {
		var out []reconcile.ProxyStatus
		for i, v := range versions {
			out = append(out, reconcile.ProxyStatus{ID: fmt.Sprintf("p%d.ns", i), IstioVersion: v})
		}
		return out
	}
	g := func(kv ...any) map[string]float64 {
		m := map[string]float64{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = float64(kv[i+1].(int))
		}
		return m
	}
	tests := []struct {
		name              string
		before, after     map[string]float64
		visible           []reconcile.ProxyStatus
		hidden, connected int
	}{
		{"full view, meshdrift's and istioctl's streams left out",
			g("1.31.0", 2, "", 2, "65536.65536.65536", 1), g("1.31.0", 2, "", 3, "65536.65536.65536", 0),
			proxies("1.31.0", "1.31.0"), 0, 2},
		{"empty view of a connected proxy", g("1.31.0", 1, "", 1), g("1.31.0", 1, "", 1), nil, 1, 1},
		{"partial view", g("1.31.0", 3), g("1.31.0", 3), proxies("1.31.0"), 2, 3},
		{"a proxy disconnects during the read", g("1.31.0", 3), g("1.31.0", 2), proxies("1.31.0", "1.31.0"), 0, 2},
		{"a proxy connects during the read", g("1.31.0", 2), g("1.31.0", 3), proxies("1.31.0", "1.31.0", "1.31.0"), 0, 2},
		{"a version gone after the read", g("1.30.1", 1, "1.31.0", 1), g("1.31.0", 1), proxies("1.31.0"), 0, 1},
		// A surplus of one version does not make up for a version that is missing.
		{"per version", g("1.30.1", 1, "1.31.0", 1), g("1.30.1", 1, "1.31.0", 1), proxies("1.31.0", "1.31.0"), 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hidden, connected := hiddenProxies(tt.before, tt.after, tt.visible)
			if hidden != tt.hidden || connected != tt.connected {
				t.Errorf("hidden %d connected %d, want %d %d", hidden, connected, tt.hidden, tt.connected)
			}
		})
	}
}

// fakeIstiodHTTP stands in for istiod's monitoring port (15014), which serves both
// /debug/syncz and /metrics: the answers are captures from the real istiod, with the
// pilot_xds gauge rewritten per request to play connects and disconnects.
type fakeIstiodHTTP struct {
	srv *httptest.Server

	mu         sync.Mutex
	syncz      []string // answered in turn; the last one repeats
	gauges     []string // pilot_xds{version="1.31.0"} values, in turn; the last one repeats
	synczReads int
	metricsErr bool
}

func newFakeIstiodHTTP(t *testing.T) *fakeIstiodHTTP {
	t.Helper()
	metrics := string(readGolden(t, "metrics.txt"))
	f := &fakeIstiodHTTP{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		next := func(seq *[]string) string {
			v := (*seq)[0]
			if len(*seq) > 1 {
				*seq = (*seq)[1:]
			}
			return v
		}
		switch r.URL.Path {
		case "/debug/syncz":
			f.synczReads++
			_, _ = io.WriteString(w, next(&f.syncz))
		case "/metrics":
			if f.metricsErr {
				http.Error(w, "scrape failed", http.StatusInternalServerError)
				return
			}
			// meshdrift's and istioctl's own streams are in the gauge, as they are in istiod's.
			page := strings.Replace(metrics, `pilot_xds{version=""} 0`, `pilot_xds{version=""} 2`, 1)
			page = strings.Replace(page, `pilot_xds{version="65536.65536.65536"} 0`, `pilot_xds{version="65536.65536.65536"} 1`, 1)
			_, _ = io.WriteString(w, strings.Replace(page, `pilot_xds{version="1.31.0"} 3`, `pilot_xds{version="1.31.0"} `+next(&f.gauges), 1))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIstiodHTTP) set(syncz, gauges []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncz, f.gauges, f.synczReads = syncz, gauges, 0
}

func (f *fakeIstiodHTTP) reads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.synczReads
}

func (f *fakeIstiodHTTP) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// Every read is checked against istiod's count of connected proxies: a view that lacks
// some is restricted, with the reason and the fix naming meshdrift's namespace; proxies
// that connect or disconnect during the read, and debug clients, are not hidden proxies;
// a mismatch seen once is read again before it is believed.
func TestReaderFlagsRestrictedView(t *testing.T) {
	f := newFakeIstiodHTTP(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, nsToken("meshdrift-system"))
	r, rec, _, logs := newTestReader(t, ReaderConfig{Transport: TransportHTTP, TokenFile: tokenFile},
		[]Target{{Name: "istiod-0", Addr: f.addr(), MonitoringAddr: f.addr()}})
	c := r.newTargetClient(Target{Name: "istiod-0", Revision: "default", Addr: f.addr(), MonitoringAddr: f.addr()})
	read := func() reconcile.IstiodView {
		t.Helper()
		if err := r.readTarget(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		v, _ := rec.lastView("istiod-0")
		return v
	}
	four, three := string(readGolden(t, "syncz-http-1-initial.json")), string(readGolden(t, "syncz-http-4-after-disconnect.json"))

	f.set([]string{three}, []string{"3"})
	if v := read(); v.Restriction != nil || v.Unverified != "" || len(v.Proxies) != 3 || v.Signals == nil {
		t.Fatalf("full view: restriction %+v unverified %q, %d proxies", v.Restriction, v.Unverified, len(v.Proxies))
	}
	f.set([]string{four}, []string{"3", "4"}) // one connects during the read
	if v := read(); v.Restriction != nil {
		t.Fatalf("a proxy connecting during the read: %+v", v.Restriction)
	}
	f.set([]string{three}, []string{"4", "3"}) // one disconnects during the read
	if v := read(); v.Restriction != nil {
		t.Fatalf("a proxy disconnecting during the read: %+v", v.Restriction)
	}
	// Two opposite changes in one read look like a hidden proxy; the second read is full.
	f.set([]string{three}, []string{"4", "4", "3"})
	if v := read(); v.Restriction != nil || f.reads() != 2 {
		t.Fatalf("after one unlucky read: %+v, %d syncz reads (want 2)", v.Restriction, f.reads())
	}

	// What istiod answers a caller from meshdrift-system: nothing, with one proxy connected.
	f.set([]string{"[]"}, []string{"1"})
	v := read()
	rs := v.Restriction
	if rs == nil || rs.Denied || rs.Visible != 0 || rs.Connected != 1 {
		t.Fatalf("empty view of 1 connected proxy: %+v", rs)
	}
	if want := "istiod istiod-0 shows meshdrift (namespace meshdrift-system) 0 of the 1 proxies connected to it"; !strings.HasPrefix(rs.Reason, want) {
		t.Errorf("reason %q, want it to start %q", rs.Reason, want)
	}
	for _, want := range []string{"DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod", "env.DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES", "run meshdrift in istio-system"} {
		if !strings.Contains(rs.Fix, want) {
			t.Errorf("fix %q lacks %q", rs.Fix, want)
		}
	}
	if !strings.Contains(logs.String(), "istiod view restricted") {
		t.Errorf("restriction not logged:\n%s", logs)
	}
	// Once restricted, a partial view needs no second read; a failed metrics read keeps
	// the restriction rather than forgetting it.
	f.set([]string{three}, []string{"4"})
	if v := read(); v.Restriction == nil || v.Restriction.Visible != 3 || v.Restriction.Connected != 4 || f.reads() != 1 {
		t.Fatalf("partial view while restricted: %+v, %d reads", v.Restriction, f.reads())
	}
	f.mu.Lock()
	f.metricsErr = true
	f.mu.Unlock()
	if v := read(); v.Restriction == nil || !strings.HasPrefix(v.Unverified, "istiod's metrics could not be read: ") {
		t.Fatalf("metrics unreadable: restriction %+v unverified %q", v.Restriction, v.Unverified)
	}
	f.mu.Lock()
	f.metricsErr = false
	f.mu.Unlock()
	f.set([]string{three}, []string{"3"})
	if v := read(); v.Restriction != nil {
		t.Fatalf("full again: %+v", v.Restriction)
	}
	if !strings.Contains(logs.String(), "istiod view complete again") {
		t.Errorf("recovery not logged:\n%s", logs)
	}
	if st, _ := rec.lastStatus("istiod-0"); !st.Up {
		t.Errorf("a restricted view is readable, not down: %+v", st)
	}
}

// Without a monitoring address the check cannot run: the view says so, and so does the log.
func TestReaderUnverifiedWithoutMonitoringAddress(t *testing.T) {
	f := newFakeIstiodHTTP(t)
	f.set([]string{"[]"}, []string{"1"})
	r, rec, _, logs := newTestReader(t, ReaderConfig{Transport: TransportHTTP}, []Target{{Name: "istiod-0", Addr: f.addr()}})
	if err := r.ReadOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, _ := rec.lastView("istiod-0")
	if v.Restriction != nil || !strings.HasPrefix(v.Unverified, "no monitoring address known") {
		t.Errorf("restriction %+v unverified %q", v.Restriction, v.Unverified)
	}
	if !strings.Contains(logs.String(), "cannot check that istiod shows meshdrift every connected proxy: no monitoring address") {
		t.Errorf("log:\n%s", logs)
	}
}

// A debug request istiod refuses is a restriction that says what to fix, and the istiod
// is down (nothing can be read), not merely unreachable.
func TestReaderRefusedDebugRequest(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, nsToken("meshdrift-system"))
	check := func(t *testing.T, r *Reader, rec *recorder, wantReason, wantFix string) {
		t.Helper()
		err := r.ReadOnce(context.Background())
		if err == nil {
			t.Fatal("read succeeded")
		}
		v, ok := rec.lastView("istiod-0")
		if !ok || v.Restriction == nil || !v.Restriction.Denied || len(v.Proxies) != 0 {
			t.Fatalf("view %+v, want a denied restriction", v)
		}
		if !regexp.MustCompile(wantReason).MatchString(v.Restriction.Reason) || !strings.Contains(v.Restriction.Fix, wantFix) {
			t.Errorf("reason %q fix %q, want %q and %q", v.Restriction.Reason, v.Restriction.Fix, wantReason, wantFix)
		}
		st, _ := rec.lastStatus("istiod-0")
		if st.Up || !strings.Contains(st.Error, v.Restriction.Fix) || st.Error != err.Error() {
			t.Errorf("status %+v, want down with the fix", st)
		}
	}
	t.Run("http 403", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }))
		defer srv.Close()
		r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: TransportHTTP, TokenFile: tokenFile},
			[]Target{{Name: "istiod-0", Addr: strings.TrimPrefix(srv.URL, "http://")}})
		check(t, r, rec, "^istiod istiod-0: istiod refused meshdrift's debug request", "DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system")
	})
	t.Run("http 401 with a token", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
		defer srv.Close()
		r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: TransportHTTP, TokenFile: tokenFile},
			[]Target{{Name: "istiod-0", Addr: strings.TrimPrefix(srv.URL, "http://")}})
		check(t, r, rec, "did not accept meshdrift's token", "audience istio-ca")
	})
	for _, tt := range []struct {
		name      string
		transport Transport
		code      codes.Code
		reason    string
		fix       string
	}{
		{"xds permission denied", TransportXDSPlaintext, codes.PermissionDenied, "refused meshdrift's debug request", "DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=<meshdrift's namespace>"},
		{"xds plaintext unauthenticated", TransportXDSPlaintext, codes.Unauthenticated, "unauthenticated callers", "use istio.transport xds-tls"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newADSServer(t, nil, nil)
			srv.synczErr = status.Error(tt.code, "authentication required")
			r, rec, _, _ := newTestReader(t, ReaderConfig{Transport: tt.transport, DisableNACKStream: true},
				[]Target{{Name: "istiod-0", Addr: srv.addr}})
			check(t, r, rec, tt.reason, tt.fix)
		})
	}
}

// roundTripFunc records what the http transport would send, for addresses no test can
// listen on.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The istio-ca token never goes in clear text to a non-loopback address unless the
// configuration says so; the startup log says which.
func TestHTTPTokenOnlyToLoopback(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, nsToken("meshdrift-system"))
	for _, tt := range []struct {
		addr          string
		allowInsecure bool
		wantToken     bool
		wantLog       string
	}{
		{"10.0.0.7:15014", false, false, "sends the istio-ca token to loopback istiods only"},
		{"istiod.istio-system.svc:15014", false, false, "loopback istiods only"},
		{"127.0.0.1:15014", false, true, "loopback istiods only"},
		{"[::1]:15014", false, true, "loopback istiods only"},
		{"localhost:15014", false, true, "loopback istiods only"},
		{"10.0.0.7:15014", true, true, "sends the istio-ca token in clear text to every istiod"},
	} {
		t.Run(fmt.Sprintf("%s allow=%v", tt.addr, tt.allowInsecure), func(t *testing.T) {
			r, rec, _, logs := newTestReader(t, ReaderConfig{Transport: TransportHTTP, TokenFile: tokenFile, AllowInsecureTokenOverHTTP: tt.allowInsecure},
				[]Target{{Name: "istiod-0", Addr: tt.addr}})
			var mu sync.Mutex
			var auth []string
			r.http = &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
				mu.Lock()
				auth = append(auth, req.Header.Get("Authorization"))
				mu.Unlock()
				// What istiod answers a non-loopback caller without a token.
				code, body := http.StatusUnauthorized, ""
				if req.Header.Get("Authorization") != "" {
					code, body = http.StatusOK, "[]"
				}
				return &http.Response{StatusCode: code, Status: http.StatusText(code), Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
			})}
			err := r.ReadOnce(context.Background())
			mu.Lock()
			defer mu.Unlock()
			if len(auth) != 1 || (auth[0] != "") == !tt.wantToken {
				t.Fatalf("authorization headers %q, want token sent: %v", auth, tt.wantToken)
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("startup log lacks %q:\n%s", tt.wantLog, logs)
			}
			if tt.wantToken {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			v, _ := rec.lastView("istiod-0")
			if v.Restriction == nil || !strings.Contains(v.Restriction.Reason, "does not send its token in clear text") ||
				!strings.Contains(v.Restriction.Fix, "istio.allowInsecureTokenOverHTTP: true") {
				t.Errorf("restriction %+v", v.Restriction)
			}
		})
	}
}

func TestFetchConnectedProxies(t *testing.T) {
	page := string(readGolden(t, "metrics.txt"))
	for _, tt := range []struct {
		name, page, want, wantErr string
	}{
		{"istiod's page", page, "map[:0 1.31.0:3 65536.65536.65536:0]", ""},
		{"nothing connected yet", "# TYPE pilot_info gauge\npilot_info{version=\"1.31\"} 1\n", "map[]", ""},
		{"not istiod's page", "<html>", "", "not istiod's metrics"},
		{"broken pilot_xds", "# TYPE pilot_xds gauge\npilot_xds{version=\"1\"} x\n", "", "parse metrics"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, tt.page) }))
			defer srv.Close()
			got, err := FetchConnectedProxies(context.Background(), srv.Client(), strings.TrimPrefix(srv.URL, "http://"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != tt.want {
				t.Fatalf("got %v %v, want %s", got, err, tt.want)
			}
		})
	}
}

// The count check costs two reads of istiod's /metrics per syncz read: this is the scan
// and parse of both, on the real istiod's page (the full parse, for the signals, runs
// every SignalsInterval only).
func BenchmarkCountCheck(b *testing.B) {
	page := readGolden(b, "metrics.txt")
	proxies := parseGoldenHTTP(b, "4-after-disconnect")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(page) }))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	b.SetBytes(int64(2 * len(page)))
	for b.Loop() {
		before, err := FetchConnectedProxies(context.Background(), srv.Client(), addr)
		if err != nil {
			b.Fatal(err)
		}
		after, err := FetchConnectedProxies(context.Background(), srv.Client(), addr)
		if err != nil {
			b.Fatal(err)
		}
		if hidden, _ := hiddenProxies(before, after, proxies); hidden != 0 {
			b.Fatalf("hidden %d", hidden)
		}
	}
}

// parseConnectedProxies reads bytes from istiod's monitoring port: it must not panic, and
// it agrees with the full parse of a page that parses.
func FuzzParseConnectedProxies(f *testing.F) {
	f.Add(readGolden(f, "metrics.txt"))
	f.Add([]byte("# TYPE pilot_info gauge\npilot_info{version=\"1\"} 1\n"))
	f.Add([]byte("pilot_xds{version=\"1.31.0\"} 3\npilot_xds_pushes{type=\"cds\"} 1\n"))
	f.Fuzz(func(t *testing.T, page []byte) {
		got, err := parseConnectedProxies(page)
		if err != nil {
			return
		}
		full, ferr := ParseIstiodMetrics(bytes.NewReader(page))
		if ferr == nil && fmt.Sprint(full.ConnectedProxies) != fmt.Sprint(got) {
			t.Errorf("pilot_xds alone %v, full page %v", got, full.ConnectedProxies)
		}
	})
}
