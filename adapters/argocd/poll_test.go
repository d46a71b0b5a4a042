package argocd

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshdrift/meshdrift/reconcile"
)

// The Poller against an httptest server speaking Argo CD's REST JSON (the API server cannot
// be built here, see TEST_BED.md); the client itself is tested in apiserver_test.go.

// listOf returns the body of testdata/applications.json with only the items named
// namespace/name.
func listOf(t *testing.T, keys ...string) []byte {
	t.Helper()
	var list struct {
		Metadata json.RawMessage  `json:"metadata"`
		Items    []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(listBody(t), &list); err != nil {
		t.Fatal(err)
	}
	items := []map[string]any{}
	for _, it := range list.Items {
		md := it["metadata"].(map[string]any)
		if slices.Contains(keys, fmt.Sprintf("%s/%s", md["namespace"], md["name"])) {
			items = append(items, it)
		}
	}
	list.Items = items
	b, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pollServer answers each list with whatever answer holds: a body, or an HTTP error.
type pollServer struct {
	body   atomic.Value // []byte
	status atomic.Int32 // non-zero: answer this status with Argo CD's error JSON
}

func newPollServer(t *testing.T) (*pollServer, *APIServerClient) {
	t.Helper()
	p := &pollServer{}
	s, srv := newArgoServer(t, newToken)
	s.next = func(w http.ResponseWriter, _ *http.Request, _ int32) bool {
		w.Header().Set("Content-Type", "application/json")
		if code := int(p.status.Load()); code != 0 {
			w.WriteHeader(code)
			// gRPC Unavailable (code 14), which Argo CD's grpc-gateway answers with 503.
			msg := `connection error: desc = "transport: Error while dialing: dial tcp 10.96.0.12:8081: connect: connection refused"`
			body, _ := json.Marshal(map[string]any{"error": msg, "code": 14, "message": msg})
			w.Write(body)
			return true
		}
		w.Write(p.body.Load().([]byte))
		return true
	}
	return p, newClient(t, APIServerConfig{URL: srv.URL, TokenFile: tokenPath(t, newToken), MaxAttempts: 2})
}

func keysOf(apps map[reconcile.AppKey]reconcile.App) []string {
	var keys []string
	for k := range apps {
		keys = append(keys, k.String())
	}
	slices.Sort(keys)
	return keys
}

func TestPollerForgetsOnlyAfterASuccessfulList(t *testing.T) {
	srv, client := newPollServer(t)
	sink, sources := newRecordingSink(), newRecordingSources()
	reg := prometheus.NewPedanticRegistry()
	log, _ := testLogger(t)
	p, err := NewPoller(PollerConfig{}, client, sink, sources, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	all := []string{"argocd/reviews", "argocd/productpage", "team-bookinfo/reviews"}
	allKeys := []string{"argocd/Application/argocd/productpage", "argocd/Application/argocd/reviews", "argocd/Application/team-bookinfo/reviews"}

	if p.HasSynced() {
		t.Fatal("synced before any list")
	}
	srv.body.Store(listOf(t, all...))
	if err := p.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if !p.HasSynced() {
		t.Fatal("not synced after a successful list")
	}
	if got := keysOf(sink.current()); !reflect.DeepEqual(got, allKeys) {
		t.Fatalf("apps %v", got)
	}
	if got := sink.current()[appKey("argocd", "productpage")]; got.State != reconcile.AppFailed {
		t.Errorf("productpage %+v", got)
	}
	up := sources.all()
	if len(up) != 1 || up[0].Name != "argocd-api" || !up[0].Up {
		t.Fatalf("statuses %+v", up)
	}

	// The server goes dark: down, and every app kept.
	mark := sink.mark()
	srv.status.Store(http.StatusServiceUnavailable)
	if err := p.poll(ctx); err == nil {
		t.Fatal("poll against a failing server succeeded")
	}
	if got := sink.forgotten(mark); len(got) != 0 {
		t.Fatalf("forgot %v because the source went dark", got)
	}
	if got := keysOf(sink.current()); !reflect.DeepEqual(got, allKeys) {
		t.Errorf("apps after the failure %v", got)
	}
	st := sources.all()
	down := st[len(st)-1]
	const wantErr = `argo cd api server answered 503 Service Unavailable after 2 attempts: connection error: desc = "transport: Error while dialing: dial tcp 10.96.0.12:8081: connect: connection refused"`
	if down.Up || down.Error != wantErr || down.Name != "argocd-api" {
		t.Errorf("status %+v\nwant error %s", down, wantErr)
	}
	// Still down on the next failure: no new report, the same Since.
	if err := p.poll(ctx); err == nil {
		t.Fatal("poll succeeded")
	}
	if n := len(sources.all()); n != 2 {
		t.Errorf("%d reports, want 2: %+v", n, sources.all())
	}

	// Back, with productpage deleted meanwhile: up, and only productpage forgotten.
	srv.status.Store(0)
	srv.body.Store(listOf(t, "argocd/reviews", "team-bookinfo/reviews"))
	if err := p.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sink.forgotten(mark); !reflect.DeepEqual(got, []reconcile.AppKey{appKey("argocd", "productpage")}) {
		t.Errorf("forgotten %v", got)
	}
	st = sources.all()
	if last := st[len(st)-1]; !last.Up || !last.Since.After(down.Since) {
		t.Errorf("status after recovery %+v", last)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP meshdrift_adapter_objects Objects an adapter currently reports, by adapter and kind.
# TYPE meshdrift_adapter_objects gauge
meshdrift_adapter_objects{adapter="argocd",kind="Application"} 2
`), "meshdrift_adapter_objects"); err != nil {
		t.Error(err)
	}

	// A body that is not a list is an error too, not "no applications".
	mark = sink.mark()
	srv.body.Store([]byte(`{"metadata":{}}`))
	if err := p.poll(ctx); err == nil || !strings.Contains(err.Error(), "no items field") {
		t.Fatalf("poll of a body without items: %v", err)
	}
	if got := sink.forgotten(mark); len(got) != 0 {
		t.Fatalf("forgot %v after an unreadable answer", got)
	}

	// An empty list that is a list: every app is gone.
	srv.body.Store([]byte(`{"metadata":{"resourceVersion":"91500"},"items":null}`))
	if err := p.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sink.current(); len(got) != 0 {
		t.Errorf("apps left after an empty list: %v", keysOf(got))
	}
}

func TestPollerRun(t *testing.T) {
	srv, client := newPollServer(t)
	srv.body.Store(listOf(t, "argocd/reviews"))
	sink, sources := newRecordingSink(), newRecordingSources()
	p, err := NewPoller(PollerConfig{Interval: 20 * time.Millisecond, SourceName: "argocd-api/prod"}, client, sink, sources, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	key := appKey("argocd", "reviews")
	// The first list runs at once, then every interval.
	first := sink.waitApp(t, 5*time.Second, 0, key, reconcile.AppSynced)
	second := sink.waitApp(t, 5*time.Second, sink.mark(), key, reconcile.AppSynced)
	if !second.app.ObservedAt.After(first.app.ObservedAt) {
		t.Errorf("observed at %s, then %s", first.app.ObservedAt, second.app.ObservedAt)
	}
	if st := sources.waitUp(t, time.Second, 0); st.Name != "argocd-api/prod" {
		t.Errorf("status %+v", st)
	}
	if err := p.Run(ctx); err == nil || err.Error() != "argo cd poller: already running" {
		t.Errorf("second Run: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	// A list cut short by shutdown is not the source failing.
	for _, s := range sources.all() {
		if !s.Up {
			t.Errorf("reported down on shutdown: %+v", s)
		}
	}
}

func TestNewPollerErrors(t *testing.T) {
	sink, sources := newRecordingSink(), newRecordingSources()
	if _, err := NewPoller(PollerConfig{}, nil, sink, sources, nil, nil); err == nil ||
		err.Error() != "argo cd poller: a lister, an app sink and a source reporter are required" {
		t.Errorf("nil lister: %v", err)
	}
	_, client := newPollServer(t)
	if _, err := NewPoller(PollerConfig{Interval: -time.Second}, client, sink, sources, nil, nil); err == nil ||
		err.Error() != "argo cd poller: interval -1s is negative" {
		t.Errorf("negative interval: %v", err)
	}
}
