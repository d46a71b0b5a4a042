package statusapi

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

//go:embed page/*.html page/style.css
var pageFS embed.FS

// pageCSP allows nothing but the page's own stylesheet: no script at all, no inline
// style, no frames, forms only to itself. Escaping is html/template's; the policy is the
// second wall should anything slip through.
const pageCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// parsePages parses the embedded templates; New fails if they do not parse.
func parsePages() (*template.Template, error) {
	t, err := template.New("page").Funcs(template.FuncMap{
		"ts":         formatTime,
		"secs":       formatSeconds,
		"anchor":     anchor,
		"objectName": objectName,
		"join":       strings.Join,
	}).ParseFS(pageFS, "page/*.html")
	if err != nil {
		return nil, fmt.Errorf("parsing the page templates: %w", err)
	}
	return t, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format(time.RFC3339)
}

func formatSeconds(s *float64) string {
	if s == nil {
		return "—"
	}
	return strconv.FormatFloat(*s, 'f', 3, 64) + " s"
}

// anchor is an object's element id on the app page: only [a-z0-9-], so that it needs no
// escaping in a fragment.
func anchor(r ObjectRef) string {
	var b strings.Builder
	b.WriteString("obj")
	for _, part := range []string{r.Group, r.Kind, r.Namespace, r.Name} {
		b.WriteByte('-')
		for _, c := range strings.ToLower(part) {
			if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
				b.WriteRune(c)
			} else {
				b.WriteByte('-')
			}
		}
	}
	return b.String()
}

func objectName(r ObjectRef) string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// timelineEntry is one change on a propagation timeline: applied → pushed → ACKed or
// NACKed per proxy.
type timelineEntry struct {
	MeshChange
	State          string
	Targeted       int
	ACKed          int
	LatencySeconds *float64
	Proxies        []ProxyOutcome
	Unreachable    []string
	Restricted     []string
	// PushedAt is the last first push to a targeted proxy, once the change propagated.
	PushedAt time.Time
}

func timeline(cs []Change) []timelineEntry {
	out := make([]timelineEntry, 0, len(cs))
	for _, c := range cs {
		e := timelineEntry{
			MeshChange: c.Change, State: c.State, Targeted: c.Targeted, ACKed: c.ACKed,
			LatencySeconds: c.LatencySeconds, Proxies: c.Proxies, Unreachable: c.Unreachable, Restricted: c.Restricted,
		}
		if c.LatencySeconds != nil {
			e.PushedAt = c.Change.ObservedAt.Add(time.Duration(*c.LatencySeconds * float64(time.Second)))
		}
		out = append(out, e)
	}
	return out
}

type pageHead struct {
	Title       string
	GeneratedAt time.Time
}

type indexView struct {
	pageHead
	Active, Resolved []Finding
	Apps             []App
	Sources          []Source
	// Restricted are the istiods that show meshdrift only part of their proxies.
	Restricted []Istiod
	// FindingsPerApp counts unresolved findings by app page path.
	FindingsPerApp map[string]int
	// Checks is the latest run of the semantic checks, nil when they do not run.
	Checks *Checks
}

type findingView struct {
	pageHead
	Finding  Finding
	Object   ObjectRef
	Timeline []timelineEntry
}

type appView struct {
	pageHead
	Detail   AppDetail
	Timeline []timelineEntry
	// Untracked: changes exist but belong to no revision with a propagation.
	Untracked bool
	Objects   []objectRow
}

// objectRow is one object of the app's inventory with links to its change on the
// timeline and to its findings.
type objectRow struct {
	OwnedObject
	HasChange bool
	Findings  []Finding
}

func (h *Handler) pageIndex(w http.ResponseWriter, _ *http.Request) {
	s := h.store.Snapshot()
	now := h.now().UTC()
	v := indexView{pageHead: pageHead{Title: "Findings and apps", GeneratedAt: now}, FindingsPerApp: map[string]int{}}
	for _, f := range h.currentFindings() {
		fd := findingOf(f)
		if f.State == findings.StateResolved {
			v.Resolved = append(v.Resolved, fd)
			continue
		}
		v.Active = append(v.Active, fd)
	}
	for _, a := range s.Apps {
		app := appOf(a, s.Propagation)
		v.Apps = append(v.Apps, app)
		for _, f := range v.Active {
			if f.Subject.App != nil && sameApp(reconcile.AppKey{Source: reconcile.Source(f.Subject.App.Source), Kind: f.Subject.App.Kind, Namespace: f.Subject.App.Namespace, Name: f.Subject.App.Name}, a.Key) {
				v.FindingsPerApp[app.Links.Page]++
			}
		}
	}
	for _, src := range s.Sources {
		v.Sources = append(v.Sources, sourceOf(src))
	}
	for _, iv := range s.Istiods {
		if iv.Restriction != nil {
			v.Restricted = append(v.Restricted, istiodOf(iv))
		}
	}
	v.Checks = checksOf(s.Checks)
	h.render(w, http.StatusOK, "index", v)
}

func (h *Handler) pageFinding(w http.ResponseWriter, r *http.Request) {
	f, ok := h.finding(r.PathValue("id"))
	if !ok {
		h.notFound(w, "No finding with this id: it may have been resolved and forgotten.")
		return
	}
	v := findingView{pageHead: pageHead{Title: string(f.Code) + " " + f.Name, GeneratedAt: h.now().UTC()}, Finding: findingOf(f)}
	if f.Subject.Object.Name != "" {
		v.Object = objectRefOf(f.Subject.Object)
		var cs []Change
		for _, p := range h.store.Snapshot().Changes {
			if p.Change.Ref == f.Subject.Object {
				cs = append(cs, changeOf(p))
			}
		}
		v.Timeline = timeline(cs)
	}
	h.render(w, http.StatusOK, "finding", v)
}

func (h *Handler) pageApp(w http.ResponseWriter, r *http.Request) {
	d, ok := h.appDetail(r)
	if !ok {
		h.notFound(w, "No such app.")
		return
	}
	v := appView{pageHead: pageHead{Title: d.App.Source + "/" + d.App.Kind + "/" + d.App.Namespace + "/" + d.App.Name, GeneratedAt: d.GeneratedAt}, Detail: d, Timeline: timeline(d.Changes)}
	tracked := false
	for _, rev := range d.App.Revisions {
		if rev.Propagation != nil {
			tracked = true
		}
	}
	v.Untracked = !tracked && len(d.Changes) > 0
	for _, o := range d.App.Objects {
		row := objectRow{OwnedObject: o}
		for _, c := range d.Changes {
			if c.Change.Object == o.ObjectRef {
				row.HasChange = true
			}
		}
		for _, f := range d.Findings {
			if f.Subject.Object != nil && *f.Subject.Object == o.ObjectRef {
				row.Findings = append(row.Findings, f)
			}
		}
		v.Objects = append(v.Objects, row)
	}
	h.render(w, http.StatusOK, "app", v)
}

func (h *Handler) notFound(w http.ResponseWriter, msg string) {
	var b bytes.Buffer
	b.WriteString("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found · meshdrift</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main><h1>Not found</h1><p>")
	template.HTMLEscape(&b, []byte(msg))
	b.WriteString("</p><p><a href=\"/\">All findings and apps</a></p></main></body></html>\n")
	setPageHeaders(w)
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(b.Bytes())
}

// render executes a page into a buffer first, so that a template error is a clean 500
// rather than half a page.
func (h *Handler) render(w http.ResponseWriter, code int, name string, data any) {
	var b bytes.Buffer
	if err := h.pages.ExecuteTemplate(&b, name, data); err != nil {
		h.log.Error("rendering page", "page", name, "err", err)
		http.Error(w, fmt.Sprintf("rendering the %s page failed", name), http.StatusInternalServerError)
		return
	}
	setPageHeaders(w)
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func serveStyle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "max-age=300")
	b, err := pageFS.ReadFile("page/style.css")
	if err != nil {
		http.Error(w, "no stylesheet", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(b)
}
