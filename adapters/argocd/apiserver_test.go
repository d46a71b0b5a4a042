package argocd

// These tests use httptest servers that speak Argo CD's REST JSON: the Argo CD API server
// itself cannot be built on this machine kind (see TEST_BED.md).

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

const (
	oldToken = "eyJhbGciOiJIUzI1NiJ9.old-token.c2lnbmF0dXJl"
	newToken = "eyJhbGciOiJIUzI1NiJ9.new-token.c2lnbmF0dXJl"
)

func writeToken(t *testing.T, path, token string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tokenPath(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	writeToken(t, p, token)
	return p
}

func listBody(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "applications.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// argoServer answers like Argo CD's API server: the list for the accepted token, its
// grpc-gateway error JSON otherwise. Requests counts every request.
type argoServer struct {
	t        *testing.T
	token    atomic.Value // string
	requests atomic.Int32
	// next, if set, answers instead of the list (after the token check).
	next func(w http.ResponseWriter, r *http.Request, n int32) bool
}

func (s *argoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.requests.Add(1)
	if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/api/v1/applications") {
		http.Error(w, `{"error":"Not Found","code":5,"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.token.Load().(string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":"invalid session: token has invalid claims: token is expired","code":16,"message":"invalid session: token has invalid claims: token is expired"}`)
		return
	}
	if s.next != nil && s.next(w, r, n) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(listBody(s.t))
}

func newArgoServer(t *testing.T, token string) (*argoServer, *httptest.Server) {
	s := &argoServer{t: t}
	s.token.Store(token)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func newClient(t *testing.T, cfg APIServerConfig) *APIServerClient {
	t.Helper()
	if cfg.RetryWaitMin == 0 {
		cfg.RetryWaitMin, cfg.RetryWaitMax = time.Millisecond, 5*time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	c, err := NewAPIServerClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// assertNoToken fails if an error message leaks a token.
func assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, tok := range []string{oldToken, newToken, "old-token", "new-token"} {
		if strings.Contains(err.Error(), tok) {
			t.Fatalf("error leaks the token: %v", err)
		}
	}
}

func TestAPIServerListApps(t *testing.T) {
	s, srv := newArgoServer(t, newToken)
	var gotPath, gotAccept string
	s.next = func(w http.ResponseWriter, r *http.Request, _ int32) bool {
		gotPath, gotAccept = r.URL.Path, r.Header.Get("Accept")
		return false
	}
	// Argo CD served under --rootpath /argocd.
	c := newClient(t, APIServerConfig{URL: srv.URL + "/argocd/", TokenFile: tokenPath(t, newToken)})
	now := time.Date(2025, 6, 11, 9, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }

	apps, err := c.ListApps(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/argocd/api/v1/applications" || gotAccept != "application/json" {
		t.Errorf("request path %q accept %q", gotPath, gotAccept)
	}
	type summary struct {
		Key      string
		State    reconcile.AppState
		Desired  string
		Applied  string
		Observed time.Time
	}
	var got []summary
	for _, a := range apps {
		got = append(got, summary{a.Key.String(), a.State, a.DesiredRevision, a.AppliedRevision, a.ObservedAt})
	}
	want := []summary{
		{"argocd/Application/argocd/reviews", reconcile.AppSynced, "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8", "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8", now},
		{"argocd/Application/argocd/productpage", reconcile.AppFailed, "4a0a19218e082a343a1b17e5333409af9d98f0f5", "58e6b3a414a1e090dfc6029add0f3555ccba127f", now},
		{"argocd/Application/team-bookinfo/reviews", reconcile.AppSynced, "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98", "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98", now},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("apps:\n got %+v\nwant %+v", got, want)
	}
	if len(apps[0].Objects) != 4 {
		t.Errorf("objects of %s: %+v", apps[0].Key, apps[0].Objects)
	}
}

func TestAPIServerTokenRotation(t *testing.T) {
	s, srv := newArgoServer(t, newToken)
	path := tokenPath(t, oldToken)
	c := newClient(t, APIServerConfig{URL: srv.URL, TokenFile: path})

	// The server already wants the new token; the file still has the old one.
	apps, err := c.ListApps(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized || apps != nil {
		t.Fatalf("got %d apps, err %v; want a 401", len(apps), err)
	}
	const wantMsg = "rejected the bearer token from " // + the file path
	if !strings.Contains(err.Error(), wantMsg+path) || !strings.Contains(err.Error(), "token is expired") {
		t.Errorf("error does not name the file and Argo CD's reason: %v", err)
	}
	assertNoToken(t, err)
	// One request, then the re-read found the same token: no pointless retry.
	if n := s.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}

	t.Run("rotation seen by mtime", func(t *testing.T) {
		s.requests.Store(0)
		writeToken(t, path, newToken)
		future := time.Now().Add(time.Minute)
		if err := os.Chtimes(path, future, future); err != nil {
			t.Fatal(err)
		}
		apps, err := c.ListApps(context.Background())
		if err != nil || len(apps) != 3 {
			t.Fatalf("got %d apps, err %v", len(apps), err)
		}
		if n := s.requests.Load(); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})

	t.Run("rotation invisible to stat, seen after a 401", func(t *testing.T) {
		// Same length and mtime as before: only the 401 makes the client read it again.
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		const rotated = "eyJhbGciOiJIUzI1NiJ9.xyz-token.c2lnbmF0dXJl"
		writeToken(t, path, rotated)
		if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
		s.token.Store(rotated)
		s.requests.Store(0)
		apps, err := c.ListApps(context.Background())
		if err != nil || len(apps) != 3 {
			t.Fatalf("got %d apps, err %v", len(apps), err)
		}
		if n := s.requests.Load(); n != 2 {
			t.Errorf("%d requests, want 2 (401, then the re-read token)", n)
		}
	})
}

func TestAPIServerRetries5xx(t *testing.T) {
	s, srv := newArgoServer(t, newToken)
	s.next = func(w http.ResponseWriter, _ *http.Request, n int32) bool {
		switch n {
		case 1:
			http.Error(w, "upstream connect error or disconnect/reset before headers", http.StatusServiceUnavailable)
			return true
		case 2:
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `{"error":"context deadline exceeded","code":4,"message":"context deadline exceeded"}`)
			return true
		}
		return false
	}
	c := newClient(t, APIServerConfig{URL: srv.URL, TokenFile: tokenPath(t, newToken), MaxAttempts: 4})
	apps, err := c.ListApps(context.Background())
	if err != nil || len(apps) != 3 {
		t.Fatalf("got %d apps, err %v", len(apps), err)
	}
	if n := s.requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestAPIServerGivesUpOn5xx(t *testing.T) {
	s, srv := newArgoServer(t, newToken)
	s.next = func(w http.ResponseWriter, _ *http.Request, _ int32) bool {
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html><body><h1>502 Bad Gateway</h1></body></html>\n")
		return true
	}
	c := newClient(t, APIServerConfig{URL: srv.URL, TokenFile: tokenPath(t, newToken), MaxAttempts: 3})
	apps, err := c.ListApps(context.Background())
	const want = "argo cd api server answered 502 Bad Gateway after 3 attempts: <html><body><h1>502 Bad Gateway</h1></body></html>"
	if err == nil || err.Error() != want || apps != nil {
		t.Fatalf("got %d apps, err %v; want %q", len(apps), err, want)
	}
	if n := s.requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestAPIServerNoRetryOn4xx(t *testing.T) {
	tests := []struct {
		code    int
		body    string
		wantErr string
	}{
		{http.StatusForbidden,
			`{"error":"permission denied","code":7,"message":"permission denied: applications, get, mesh/productpage, sub: meshdrift, iat: 2025-06-01T00:00:00Z"}`,
			"argo cd api server answered 403 Forbidden: permission denied: applications, get, mesh/productpage, sub: meshdrift, iat: 2025-06-01T00:00:00Z"},
		{http.StatusNotFound, `404 page not found`, "argo cd api server answered 404 Not Found: 404 page not found"},
		{http.StatusTooManyRequests, ``, "argo cd api server answered 429 Too Many Requests"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.code), func(t *testing.T) {
			s, srv := newArgoServer(t, newToken)
			s.next = func(w http.ResponseWriter, _ *http.Request, _ int32) bool {
				w.WriteHeader(tt.code)
				fmt.Fprint(w, tt.body)
				return true
			}
			c := newClient(t, APIServerConfig{URL: srv.URL, TokenFile: tokenPath(t, newToken), MaxAttempts: 4})
			apps, err := c.ListApps(context.Background())
			if err == nil || err.Error() != tt.wantErr || apps != nil {
				t.Fatalf("got %d apps, err %v; want %q", len(apps), err, tt.wantErr)
			}
			if n := s.requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestAPIServerTimeout(t *testing.T) {
	s, srv := newArgoServer(t, newToken)
	s.next = func(w http.ResponseWriter, r *http.Request, _ int32) bool {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return true
	}
	c := newClient(t, APIServerConfig{
		URL: srv.URL, TokenFile: tokenPath(t, newToken), Timeout: 150 * time.Millisecond, MaxAttempts: 2,
	})
	start := time.Now()
	apps, err := c.ListApps(context.Background())
	elapsed := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || apps != nil {
		t.Fatalf("got %d apps, err %v; want a timeout", len(apps), err)
	}
	if !strings.Contains(err.Error(), "after 2 attempts") {
		t.Errorf("error does not say it retried: %v", err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("took %s; the per-attempt timeout did not hold", elapsed)
	}
	if n := s.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestAPIServerContextCancel(t *testing.T) {
	s, srv := newArgoServer(t, newToken)
	s.next = func(w http.ResponseWriter, _ *http.Request, _ int32) bool {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return true
	}
	c := newClient(t, APIServerConfig{
		URL: srv.URL, TokenFile: tokenPath(t, newToken), MaxAttempts: 10,
		RetryWaitMin: time.Second, RetryWaitMax: time.Second,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.ListApps(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestAPIServerBodyLimit(t *testing.T) {
	body := listBody(t)
	_, srv := newArgoServer(t, newToken)
	tok := tokenPath(t, newToken)

	c := newClient(t, APIServerConfig{URL: srv.URL, TokenFile: tok, MaxBodyBytes: int64(len(body))})
	if apps, err := c.ListApps(context.Background()); err != nil || len(apps) != 3 {
		t.Fatalf("body at the limit: got %d apps, err %v", len(apps), err)
	}

	c = newClient(t, APIServerConfig{URL: srv.URL, TokenFile: tok, MaxBodyBytes: int64(len(body) - 1)})
	apps, err := c.ListApps(context.Background())
	want := fmt.Sprintf("listing argo cd applications: response body exceeds the %d byte limit", len(body)-1)
	if err == nil || err.Error() != want || apps != nil {
		t.Fatalf("got %d apps, err %v; want %q", len(apps), err, want)
	}
}

func TestAPIServerMalformed(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"truncated", `{"metadata":{},"items":[{"metadata":{"name":"reviews"`,
			"decoding argo cd application list: unexpected end of JSON input"},
		{"html from a proxy", "<!doctype html><title>Sign in</title>",
			"decoding argo cd application list: invalid character '<'"},
		{"not an application list", `{"version":"v2.14.21+abcdef"}`,
			"decoding argo cd application list: no items field"},
		{"item without namespace", `{"metadata":{},"items":[{"metadata":{"name":"reviews"},"spec":{}}]}`,
			"item 0: decoding argo cd application: metadata.name and metadata.namespace are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv := newArgoServer(t, newToken)
			s.next = func(w http.ResponseWriter, _ *http.Request, _ int32) bool {
				fmt.Fprint(w, tt.body)
				return true
			}
			c := newClient(t, APIServerConfig{URL: srv.URL, TokenFile: tokenPath(t, newToken)})
			apps, err := c.ListApps(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || apps != nil {
				t.Fatalf("got %d apps, err %v; want %q", len(apps), err, tt.wantErr)
			}
			if n := s.requests.Load(); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestAPIServerConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	c := newClient(t, APIServerConfig{URL: addr, TokenFile: tokenPath(t, newToken), MaxAttempts: 3})
	_, err := c.ListApps(context.Background())
	if err == nil || !strings.Contains(err.Error(), "after 3 attempts") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err %v", err)
	}
	assertNoToken(t, err)
}

func TestAPIServerTLS(t *testing.T) {
	s := &argoServer{t: t}
	s.token.Store(newToken)
	srv := httptest.NewUnstartedServer(s)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failures below are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tok := tokenPath(t, newToken)

	tests := []struct {
		name    string
		cfg     APIServerConfig
		wantErr string
	}{
		{name: "ca file", cfg: APIServerConfig{CAFile: caFile}},
		// httptest's certificate is for example.com and 127.0.0.1.
		{name: "server name", cfg: APIServerConfig{CAFile: caFile, ServerName: "example.com"}},
		{name: "insecure", cfg: APIServerConfig{InsecureSkipVerify: true}},
		{name: "unknown authority", cfg: APIServerConfig{}, wantErr: "certificate signed by unknown authority"},
		{name: "wrong server name", cfg: APIServerConfig{CAFile: caFile, ServerName: "argocd.example.org"},
			wantErr: "x509: certificate is valid for example.com, *.example.com, not argocd.example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.requests.Store(0)
			cfg := tt.cfg
			cfg.URL, cfg.TokenFile, cfg.MaxAttempts = srv.URL, tok, 3
			c := newClient(t, cfg)
			apps, err := c.ListApps(context.Background())
			if tt.wantErr == "" {
				if err != nil || len(apps) != 3 {
					t.Fatalf("got %d apps, err %v", len(apps), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
			// A certificate problem does not heal: one attempt only.
			if strings.Contains(err.Error(), "attempts") {
				t.Errorf("certificate error was retried: %v", err)
			}
		})
	}
}

func TestAPIServerTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, wantErr string
	}{
		{"missing", "", "argo cd api server: reading token file: stat "},
		{"empty", "\n  \n", "is empty"},
		{"control characters", oldToken + "\r\nX-Injected: 1", "holds control characters"},
		{"too large", strings.Repeat("a", maxTokenBytes+1), "is larger than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv := newArgoServer(t, newToken)
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if tt.name != "missing" {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c := newClient(t, APIServerConfig{URL: srv.URL, TokenFile: path})
			_, err := c.ListApps(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
			assertNoToken(t, err)
			if n := s.requests.Load(); n != 0 {
				t.Errorf("%d requests without a usable token", n)
			}
		})
	}
}

func TestNewAPIServerClientErrors(t *testing.T) {
	emptyCA := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(emptyCA, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     APIServerConfig
		wantErr string
	}{
		{"no url", APIServerConfig{TokenFile: "t"}, "argo cd api server: url is required"},
		{"bad scheme", APIServerConfig{URL: "grpc://argocd-server:443", TokenFile: "t"},
			`argo cd api server: url scheme "grpc", want https or http`},
		{"no host", APIServerConfig{URL: "https:///argocd", TokenFile: "t"},
			`argo cd api server: url "https:///argocd" has no host`},
		{"credentials in url", APIServerConfig{URL: "https://admin:secret@argocd-server", TokenFile: "t"},
			"argo cd api server: url must not contain credentials; use the token file"},
		{"query", APIServerConfig{URL: "https://argocd-server/?projects=mesh", TokenFile: "t"},
			`argo cd api server: url "https://argocd-server/?projects=mesh" must be a base url without query or fragment`},
		{"no token file", APIServerConfig{URL: "https://argocd-server"}, "argo cd api server: token file is required"},
		{"negative timeout", APIServerConfig{URL: "https://argocd-server", TokenFile: "t", Timeout: -time.Second},
			"argo cd api server: timeout, attempts, retry waits and body limit must not be negative"},
		{"waits inverted", APIServerConfig{URL: "https://argocd-server", TokenFile: "t", RetryWaitMin: time.Minute, RetryWaitMax: time.Second},
			"argo cd api server: retry wait min 1m0s is above max 1s"},
		{"missing ca file", APIServerConfig{URL: "https://argocd-server", TokenFile: "t", CAFile: "/nonexistent/ca.pem"},
			"argo cd api server: reading ca file: open /nonexistent/ca.pem: no such file or directory"},
		{"ca file without certificates", APIServerConfig{URL: "https://argocd-server", TokenFile: "t", CAFile: emptyCA},
			"argo cd api server: ca file " + emptyCA + " holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAPIServerClient(tt.cfg)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}
