package statusapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/meshdrift/meshdrift/reconcile"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current responses")

// TestGoldenResponses compares every JSON endpoint's response with its golden file.
func TestGoldenResponses(t *testing.T) {
	h := newFixtureHandler(t)
	for _, c := range []struct {
		name, target string
		code         int
	}{
		{"status", "/api/v1/status", http.StatusOK},
		{"findings", "/api/v1/findings", http.StatusOK},
		{"findings_filtered", "/api/v1/findings?severity=critical,warning&namespace=shop&state=firing", http.StatusOK},
		{"findings_by_app", "/api/v1/findings?app=argocd/Application/argocd/payments", http.StatusOK},
		{"finding", "/api/v1/findings/4f1c2a9e0b7d", http.StatusOK},
		{"finding_missing", "/api/v1/findings/nope", http.StatusNotFound},
		{"findings_bad_filter", "/api/v1/findings?severity=urgent&code=MD201&colour=red", http.StatusBadRequest},
		{"apps", "/api/v1/apps", http.StatusOK},
		{"app_flux", "/api/v1/apps/flux/Kustomization/flux-system/shop", http.StatusOK},
		{"app_argocd", "/api/v1/apps/argocd/Application/argocd/payments", http.StatusOK},
		{"app_missing", "/api/v1/apps/flux/Kustomization/flux-system/nope", http.StatusNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := get(t, h, c.target)
			if rec.Code != c.code {
				t.Errorf("status %d, want %d: %s", rec.Code, c.code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			golden := filepath.Join("testdata", c.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, rec.Body.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(rec.Body.Bytes(), want) {
				t.Errorf("response differs from %s (go test -update rewrites it):\n%s", golden, rec.Body)
			}
		})
	}
}

// goFieldName matches a JSON key that starts with an upper-case letter: a Go field name
// leaking through (the old API wrote "Source" beside "source").
var goFieldName = regexp.MustCompile(`"[A-Z][A-Za-z]*":`)

// TestOneJSONStyle checks every golden response for the style docs/api.md promises:
// camelCase keys, RFC 3339 UTC times, durations in seconds.
func TestOneJSONStyle(t *testing.T) {
	files, err := filepath.Glob("testdata/*.golden.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	timeKey := regexp.MustCompile(`"(\w*(At|Seen|Since|since))": "([^"]*)"`)
	rfc3339UTC := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Errorf("%s: not JSON", f)
		}
		for _, line := range strings.Split(string(b), "\n") {
			key := strings.TrimSpace(line)
			if goFieldName.MatchString(key) && !strings.HasPrefix(key, `"CDS"`) && !strings.HasPrefix(key, `"RDS"`) &&
				!strings.HasPrefix(key, `"LDS"`) && !strings.HasPrefix(key, `"EDS"`) {
				t.Errorf("%s: Go field name as a key: %s", f, key)
			}
			if strings.Contains(key, `"latency"`) {
				t.Errorf("%s: a duration without its unit: %s", f, key)
			}
		}
		for _, m := range timeKey.FindAllStringSubmatch(string(b), -1) {
			if !rfc3339UTC.MatchString(m[3]) {
				t.Errorf("%s: %s = %q is not RFC 3339 UTC", f, m[1], m[3])
			}
		}
	}
}

func TestLatencyInSeconds(t *testing.T) {
	h := newFixtureHandler(t)
	var st Status
	if err := json.Unmarshal(get(t, h, "/api/v1/status").Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range st.Changes {
		if c.Change.Object.Name == "pay" {
			found = true
			if c.State != "Propagated" || c.LatencySeconds == nil || *c.LatencySeconds != 0.02 {
				t.Errorf("pay change: state %s latency %v, want Propagated 0.02", c.State, c.LatencySeconds)
			}
		}
	}
	if !found {
		t.Error("no change of payments/pay")
	}
}

func TestFindingFilters(t *testing.T) {
	h := newFixtureHandler(t)
	for _, c := range []struct {
		query string
		ids   []string
		err   string
	}{
		{"", []string{"4f1c2a9e0b7d", "9a8b7c6d5e4f", "0011aabbccdd"}, ""},
		{"code=MD0201", []string{"4f1c2a9e0b7d"}, ""},
		{"code=MD0201&code=MD0301", []string{"4f1c2a9e0b7d", "0011aabbccdd"}, ""},
		{"severity=warning", []string{"9a8b7c6d5e4f"}, ""},
		{"state=resolved", []string{"0011aabbccdd"}, ""},
		{"namespace=shop", []string{"4f1c2a9e0b7d"}, ""},
		{"namespace=argocd", []string{}, ""},
		{"namespace=flux-system", []string{"4f1c2a9e0b7d"}, ""},
		{"app=flux/Kustomization/flux-system/shop", []string{"4f1c2a9e0b7d"}, ""},
		// The finding's app has no namespace (label tracking): it matches any.
		{"app=argocd/Application/argocd/payments", []string{"9a8b7c6d5e4f"}, ""},
		{"app=argocd/Application/_/payments", []string{"9a8b7c6d5e4f"}, ""},
		{"severity=critical&state=firing", []string{"4f1c2a9e0b7d"}, ""},
		{"severity=urgent", nil, `severity "urgent": want critical, warning or info`},
		{"code=md0201", nil, `code "md0201": want MD and four digits, e.g. MD0201`},
		{"state=open", nil, `state "open": want pending, firing or resolved`},
		{"namespace=Shop_1", nil, `namespace "Shop_1": a lowercase RFC 1123 label`},
		{"app=payments", nil, `app "payments": want source/kind/namespace/name`},
		{"app=gitlab/App/ns/x", nil, `app "gitlab/App/ns/x": source must be argocd or flux`},
		{"sev=critical", nil, `unknown query parameter "sev" (known: app, code, namespace, severity, state)`},
	} {
		t.Run(c.query, func(t *testing.T) {
			rec := get(t, h, "/api/v1/findings?"+c.query)
			if c.err != "" {
				var e Error
				if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, c.err) {
					t.Errorf("got %d %s, want 400 with %q", rec.Code, rec.Body, c.err)
				}
				return
			}
			var l FindingList
			if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || rec.Code != http.StatusOK {
				t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
			}
			ids := []string{}
			for _, f := range l.Findings {
				ids = append(ids, f.ID)
			}
			if strings.Join(ids, ",") != strings.Join(c.ids, ",") {
				t.Errorf("ids %v, want %v", ids, c.ids)
			}
		})
	}
}

func FuzzParseFilter(f *testing.F) {
	// ParseFilter reads outside bytes: it must never panic, and reject what it cannot read.
	for _, s := range []string{"code=MD0201", "app=flux/Kustomization/flux-system/shop", "namespace=shop&severity=critical,info", "state=firing",
		"app=////", "app=flux/K//", "code=MD0201,,", "namespace="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		flt, err := ParseFilter(v)
		if err != nil {
			return
		}
		for _, c := range flt.Codes {
			if len(c) != 6 {
				t.Errorf("accepted code %q", c)
			}
		}
		for _, a := range flt.Apps {
			if a.Name == "" || a.Kind == "" {
				t.Errorf("accepted app %+v", a)
			}
		}
	})
}

func TestMethodsAndRoutes(t *testing.T) {
	h := newFixtureHandler(t)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/status", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/status: %d", rec.Code)
	}
	// An app whose namespace is unknown is reachable under "_" when its name is unique.
	if rec := get(t, h, "/api/v1/apps/argocd/Application/_/payments"); rec.Code != http.StatusOK {
		t.Errorf("app under _: %d", rec.Code)
	}
	// Without a findings engine the API lists none instead of failing.
	bare, err := New(fixtureStore(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var l FindingList
	if rec := get(t, bare, "/api/v1/findings"); rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &l) != nil || l.Findings == nil || len(l.Findings) != 0 {
		t.Errorf("no engine: %d %s", rec.Code, rec.Body)
	}
}

// TestRegisterBesideServeRoutes: the routes live in serve's mux beside its own (a
// conflicting pattern would panic at registration), and the page's "/" catches nothing
// but the index.
func TestRegisterBesideServeRoutes(t *testing.T) {
	h := newFixtureHandler(t)
	mux := http.NewServeMux()
	for _, p := range []string{"GET /metrics", "GET /healthz", "GET /readyz", "/flux/events"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("other")) })
	}
	h.Register(mux)
	for target, want := range map[string]int{"/": 200, "/healthz": 200, "/flux/events": 200, "/nope": 404, "/api/v1/findings": 200, "/findings/4f1c2a9e0b7d": 200} {
		if rec := get(t, mux, target); rec.Code != want {
			t.Errorf("%s: %d, want %d", target, rec.Code, want)
		}
	}
	if rec := get(t, mux, "/flux/events"); rec.Body.String() != "other" {
		t.Errorf("/flux/events answered by the status API: %s", rec.Body)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/api/v1/status", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("HEAD /api/v1/status: %d", rec.Code)
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
	h, err := New(store, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := get(t, h, "/api/v1/status")
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
	page := get(t, h, "/").Body.String()
	if !strings.Contains(page, "shows meshdrift 0 of the 1 proxies connected to it") || !strings.Contains(page, "set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=meshdrift-system on istiod") {
		t.Errorf("the page does not show the restriction and its fix:\n%s", page)
	}
}
