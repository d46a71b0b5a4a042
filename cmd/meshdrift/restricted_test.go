package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshdrift/meshdrift/reconcile"
)

func restrictedSnapshot() reconcile.Snapshot {
	return reconcile.Snapshot{
		Sources: []reconcile.SourceStatus{
			{Name: "istiod/istiod-a", Up: true},
			{Name: "istiod/istiod-b", Error: "istiod istiod-b: istiod refused meshdrift's debug request (fix: ...): rpc error"},
		},
		Istiods: []reconcile.IstiodView{
			{Istiod: "istiod-a", Restriction: &reconcile.ViewRestriction{Reason: "istiod istiod-a shows meshdrift 0 of the 1 proxies", Fix: "set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod", Connected: 1}},
			{Istiod: "istiod-b", Restriction: &reconcile.ViewRestriction{Reason: "istiod istiod-b: istiod refused meshdrift's debug request", Fix: "set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod", Denied: true, Connected: -1}},
		},
	}
}

// check fails on a restricted view and says what to fix; an istiod that refused outright
// is said once, with the fix, not again as "unreachable".
func TestCheckProblemsRestrictedView(t *testing.T) {
	got := snapshotProblems(restrictedSnapshot())
	want := []string{
		"restricted view of istiod istiod-a, propagation Unknown: istiod istiod-a shows meshdrift 0 of the 1 proxies\n    fix: set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod",
		"restricted view of istiod istiod-b, propagation Unknown: istiod istiod-b: istiod refused meshdrift's debug request\n    fix: set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// /readyz stays 200 with a restricted view (the status API and metrics must stay behind
// the Service to say what to fix) and lists it.
func TestReadyzShowsRestriction(t *testing.T) {
	store := reconcile.NewStore(reconcile.PropagationConfig{}, nil)
	for _, v := range restrictedSnapshot().Istiods {
		store.ObserveIstiod(v)
	}
	a := &app{store: store}
	rec := httptest.NewRecorder()
	a.ready(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(body, "ok\n") ||
		!strings.Contains(body, "restricted istiod view, propagation Unknown: istiod istiod-a shows meshdrift 0 of the 1 proxies\n  fix: set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod\n") {
		t.Errorf("readyz %d:\n%s", rec.Code, body)
	}
}
