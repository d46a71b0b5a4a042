// Package statusapi serves meshdrift's view: a JSON API (every GitOps app with its
// revisions and their propagation, every source, every istiod's proxies, and the
// findings) and a small server-rendered page over the same documents. docs/api.md
// documents the JSON; the page needs no JavaScript and runs under a strict
// Content-Security-Policy, and everything on it that came from the cluster is escaped by
// html/template.
package statusapi

import (
	"bytes"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Snapshotter is what the API reads; reconcile.Store satisfies it.
type Snapshotter interface {
	Snapshot() reconcile.Snapshot
}

// FindingSource yields the current findings (pending, firing and recently resolved); the
// findings engine satisfies it.
type FindingSource interface {
	Findings() []findings.Finding
}

// Handler serves the API and the page.
type Handler struct {
	store    Snapshotter
	findings FindingSource
	now      func() time.Time
	log      *slog.Logger
	pages    *template.Template
	mux      *http.ServeMux
}

// New returns the handler. fs may be nil while no findings engine runs: the API then
// lists no findings.
func New(store Snapshotter, fs FindingSource, log *slog.Logger) (*Handler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	h := &Handler{store: store, findings: fs, now: time.Now, log: log, pages: pages, mux: http.NewServeMux()}
	h.Register(h.mux)
	return h, nil
}

// Register adds every route to mux:
//
//	GET /api/v1/status, /api/v1/findings, /api/v1/findings/{id}, /api/v1/apps,
//	    /api/v1/apps/{source}/{kind}/{namespace}/{name}   (JSON)
//	GET /, /findings/{id}, /apps/{source}/{kind}/{namespace}/{name}, /static/style.css   (page)
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/status", h.serveStatus)
	mux.HandleFunc("GET /api/v1/findings", h.serveFindings)
	mux.HandleFunc("GET /api/v1/findings/{id}", h.serveFinding)
	mux.HandleFunc("GET /api/v1/apps", h.serveApps)
	mux.HandleFunc("GET /api/v1/apps/{source}/{kind}/{namespace}/{name}", h.serveApp)
	mux.HandleFunc("GET /{$}", h.pageIndex)
	mux.HandleFunc("GET /findings/{id}", h.pageFinding)
	mux.HandleFunc("GET /apps/{source}/{kind}/{namespace}/{name}", h.pageApp)
	mux.HandleFunc("GET /static/style.css", serveStyle)
}

// ServeHTTP serves every route, for use as one http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) currentFindings() []findings.Finding {
	if h.findings == nil {
		return nil
	}
	// Sorted in a copy: the engine may hand out a slice it still owns.
	fs := slices.Clone(h.findings.Findings())
	sortFindings(fs)
	return fs
}

func (h *Handler) serveStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Build(h.store.Snapshot(), h.now()))
}

func (h *Handler) serveFindings(w http.ResponseWriter, r *http.Request) {
	filter, err := ParseFilter(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Error{Error: err.Error()})
		return
	}
	list := FindingList{GeneratedAt: h.now().UTC(), Findings: []Finding{}}
	for _, f := range h.currentFindings() {
		if filter.Match(f) {
			list.Findings = append(list.Findings, findingOf(f))
		}
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *Handler) serveFinding(w http.ResponseWriter, r *http.Request) {
	f, ok := h.finding(r.PathValue("id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, Error{Error: "no finding with this id"})
		return
	}
	writeJSON(w, http.StatusOK, findingOf(f))
}

func (h *Handler) finding(id string) (findings.Finding, bool) {
	for _, f := range h.currentFindings() {
		if f.ID == id {
			return f, true
		}
	}
	return findings.Finding{}, false
}

func (h *Handler) serveApps(w http.ResponseWriter, _ *http.Request) {
	s := h.store.Snapshot()
	list := AppList{GeneratedAt: h.now().UTC(), Apps: []App{}}
	for _, a := range s.Apps {
		list.Apps = append(list.Apps, appOf(a, s.Propagation))
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *Handler) serveApp(w http.ResponseWriter, r *http.Request) {
	d, ok := h.appDetail(r)
	if !ok {
		writeJSON(w, http.StatusNotFound, Error{Error: "no such app"})
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// appDetail finds the app a path names. "_" stands for an unknown namespace and matches
// the one app of that source, kind and name, if there is exactly one.
func (h *Handler) appDetail(r *http.Request) (AppDetail, bool) {
	want := reconcile.AppKey{
		Source: reconcile.Source(r.PathValue("source")), Kind: r.PathValue("kind"),
		Namespace: r.PathValue("namespace"), Name: r.PathValue("name"),
	}
	s := h.store.Snapshot()
	var app *reconcile.App
	var byName []*reconcile.App
	for i, a := range s.Apps {
		k := a.Key
		if k.Source != want.Source || k.Kind != want.Kind || k.Name != want.Name {
			continue
		}
		if k.Namespace == want.Namespace {
			app = &s.Apps[i]
			break
		}
		byName = append(byName, &s.Apps[i])
	}
	if app == nil && want.Namespace == emptyNamespace && len(byName) == 1 {
		app = byName[0]
	}
	if app == nil {
		return AppDetail{}, false
	}
	d := AppDetail{GeneratedAt: h.now().UTC(), App: appOf(*app, s.Propagation), Changes: []Change{}, Findings: []Finding{}}
	for _, p := range s.Changes {
		if app.Owns(p.Change) {
			d.Changes = append(d.Changes, changeOf(p))
		}
	}
	for _, f := range h.currentFindings() {
		if sameApp(f.Subject.App, app.Key) {
			d.Findings = append(d.Findings, findingOf(f))
		}
	}
	return d, true
}

// sameApp matches a finding's app to a store app; a finding's app without a namespace
// (Argo CD label tracking) matches by name.
func sameApp(f, a reconcile.AppKey) bool {
	return f.Name != "" && f.Source == a.Source && f.Kind == a.Kind && f.Name == a.Name &&
		(f.Namespace == "" || f.Namespace == a.Namespace)
}

// Build turns a snapshot into the status document.
func Build(s reconcile.Snapshot, now time.Time) Status {
	st := Status{GeneratedAt: now.UTC(), Sources: []Source{}, Apps: []App{}, Istiods: []Istiod{}, Propagation: []Rollup{}, Changes: []Change{}}
	for _, src := range s.Sources {
		st.Sources = append(st.Sources, sourceOf(src))
	}
	for _, a := range s.Apps {
		st.Apps = append(st.Apps, appOf(a, s.Propagation))
	}
	for _, v := range s.Istiods {
		st.Istiods = append(st.Istiods, istiodOf(v))
	}
	for _, r := range s.Propagation {
		st.Propagation = append(st.Propagation, rollupOf(r))
	}
	for _, p := range s.Changes {
		st.Changes = append(st.Changes, changeOf(p))
	}
	st.Checks = checksOf(s.Checks)
	return st
}

// writeJSON writes v indented; encoding first means a failure is a clean 500.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, "encoding the response failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}
