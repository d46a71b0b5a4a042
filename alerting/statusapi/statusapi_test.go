package statusapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

func TestStatusAPI(t *testing.T) {
	store := reconcile.NewStore(reconcile.PropagationConfig{}, nil)
	key := reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: "payments"}
	store.ObserveApp(reconcile.App{Key: key, State: reconcile.AppFailed, Reason: "Failed", DesiredRevision: "abc"})
	store.ReportSource(reconcile.SourceStatus{Name: "istiod/istiod-0", Up: false, Error: "connection refused"})
	store.ObserveIstiod(reconcile.IstiodView{Istiod: "istiod-0", Proxies: []reconcile.ProxyStatus{{
		ID:    "reviews-v1.default",
		Types: []reconcile.XDSStatus{{TypeURL: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", State: reconcile.StateError, Error: "bad route"}},
	}}})
	h := New(store)
	h.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	var got Status
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Apps) != 1 || got.Apps[0].Name != "payments" || got.Apps[0].State != "Failed" {
		t.Errorf("apps = %+v", got.Apps)
	}
	if len(got.Sources) != 1 || got.Sources[0].Up || got.Sources[0].Error != "connection refused" {
		t.Errorf("sources = %+v", got.Sources)
	}
	if len(got.Istiods) != 1 || got.Istiods[0].Proxies[0].Types["RDS"] != "ERROR" || got.Istiods[0].Proxies[0].Error != "bad route" {
		t.Errorf("istiods = %+v", got.Istiods)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/status", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST status %d", rec.Code)
	}
}

// A restricted istiod view is shown with its reason and fix, and so is a view that could
// not be checked.
func TestStatusAPIShowsRestriction(t *testing.T) {
	store := reconcile.NewStore(reconcile.PropagationConfig{}, nil)
	store.ObserveIstiod(reconcile.IstiodView{Istiod: "istiod-0", Restriction: &reconcile.ViewRestriction{
		Reason: "istiod istiod-0 shows meshdrift 0 of the 1 proxies connected to it", Fix: "set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod",
		Visible: 0, Connected: 1,
	}})
	store.ObserveIstiod(reconcile.IstiodView{Istiod: "istiod-1", Unverified: "no monitoring address known"})
	rec := httptest.NewRecorder()
	New(store).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/status", nil))
	var got struct {
		Istiods []map[string]json.RawMessage `json:"istiods"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Istiods) != 2 {
		t.Fatalf("istiods %s", rec.Body)
	}
	want := `{"reason":"istiod istiod-0 shows meshdrift 0 of the 1 proxies connected to it","fix":"set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod","visible":0,"connected":1}`
	var compact bytes.Buffer
	if err := json.Compact(&compact, got.Istiods[0]["restriction"]); err != nil || compact.String() != want {
		t.Errorf("restriction %s, want %s", got.Istiods[0]["restriction"], want)
	}
	if string(got.Istiods[1]["unverified"]) != `"no monitoring address known"` || got.Istiods[1]["restriction"] != nil {
		t.Errorf("istiod-1 %s", rec.Body)
	}
}
