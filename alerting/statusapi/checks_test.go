package statusapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// checkedStore is a store whose snapshot carries a check run, as serve's wiring adds it.
type checkedStore struct {
	*reconcile.Store
	run *reconcile.CheckRun
}

func (s checkedStore) Snapshot() reconcile.Snapshot {
	snap := s.Store.Snapshot()
	snap.Checks = s.run
	return snap
}

func TestStatusChecksSection(t *testing.T) {
	run := &reconcile.CheckRun{
		At: t0, Duration: 1500 * time.Microsecond, ConfirmedAt: t0.Add(time.Minute),
		Checks: []reconcile.CheckStatus{
			{Name: "virtualservice.destinationhost", Code: "MD0501"},
			{Name: "destinationrule.subsetpods", Code: "MD0505"},
			{Name: "gatewayapi.routeaccepted", Code: "MD0601", Skipped: "kinds not served: HTTPRoute.gateway.networking.k8s.io"},
		},
		Results: []reconcile.CheckResult{
			{Code: "MD0501", Object: reconcile.ObjectRef{Kind: "VirtualService", Namespace: "shop", Name: "a"}},
			{Code: "MD0501", Object: reconcile.ObjectRef{Kind: "VirtualService", Namespace: "shop", Name: "b"}},
			{Code: "MD0505", Object: reconcile.ObjectRef{Kind: "DestinationRule", Namespace: "shop", Name: "a"}},
		},
	}
	h, err := New(checkedStore{reconcile.NewStore(reconcile.PropagationConfig{}, nil), run}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Checks json.RawMessage `json:"checks"`
	}
	rec := get(t, h, "/api/v1/status")
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := `{"lastRunAt":"2026-12-03T12:00:00Z","durationSeconds":0.0015,"confirmedAt":"2026-12-03T12:01:00Z",` +
		`"ran":[{"name":"virtualservice.destinationhost","code":"MD0501"},{"name":"destinationrule.subsetpods","code":"MD0505"}],` +
		`"skipped":[{"name":"gatewayapi.routeaccepted","code":"MD0601","reason":"kinds not served: HTTPRoute.gateway.networking.k8s.io"}],` +
		`"results":{"MD0501":2,"MD0505":1}}`
	var compact bytes.Buffer
	if err := json.Compact(&compact, got.Checks); err != nil || compact.String() != want {
		t.Errorf("checks %s\nwant %s", got.Checks, want)
	}
	page := get(t, h, "/").Body.String()
	if !strings.Contains(page, `<section id="checks">`) || !strings.Contains(page, "kinds not served: HTTPRoute.gateway.networking.k8s.io") ||
		!strings.Contains(page, "nothing they read had changed at") {
		t.Errorf("the page does not show the skipped check and why:\n%s", page)
	}

	// Waiting: no run time, the reason on the page.
	h, err = New(checkedStore{reconcile.NewStore(reconcile.PropagationConfig{}, nil), &reconcile.CheckRun{Waiting: "not synced: services"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec = get(t, h, "/api/v1/status")
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	compact.Reset()
	want = `{"waiting":"not synced: services","durationSeconds":0,"ran":[],"skipped":[],"results":{}}`
	if err := json.Compact(&compact, got.Checks); err != nil || compact.String() != want {
		t.Errorf("waiting checks %s\nwant %s", got.Checks, want)
	}
	if page := get(t, h, "/").Body.String(); !strings.Contains(page, "Not run: not synced: services") {
		t.Errorf("the page does not say the checks wait:\n%s", page)
	}

	// Without checks (a store alone), no section.
	h, err = New(reconcile.NewStore(reconcile.PropagationConfig{}, nil), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := get(t, h, "/api/v1/status").Body.String(); strings.Contains(body, `"checks"`) {
		t.Errorf("a checks section without checks: %s", body)
	}
}
