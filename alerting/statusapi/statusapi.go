// Package statusapi serves meshdrift's current view as JSON: every GitOps app with its
// revisions and state, every source with its reachability, and every istiod's proxies.
package statusapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Snapshotter is what the API reads; reconcile.Store satisfies it.
type Snapshotter interface {
	Snapshot() reconcile.Snapshot
}

// Handler serves GET /api/v1/status.
type Handler struct {
	store Snapshotter
	now   func() time.Time
}

// New returns the status API handler.
func New(store Snapshotter) *Handler {
	return &Handler{store: store, now: time.Now}
}

// Status is the JSON document.
type Status struct {
	GeneratedAt time.Time `json:"generatedAt"`
	Sources     []Source  `json:"sources"`
	Apps        []App     `json:"apps"`
	Istiods     []Istiod  `json:"istiods"`
	// Propagation is per GitOps app and revision; Changes per mesh object change.
	Propagation []reconcile.Rollup      `json:"propagation"`
	Changes     []reconcile.Propagation `json:"changes"`
}

// Source is one source's reachability.
type Source struct {
	Name  string    `json:"name"`
	Up    bool      `json:"up"`
	Error string    `json:"error,omitempty"`
	Since time.Time `json:"since"`
}

// App is one GitOps app.
type App struct {
	Source          string    `json:"source"`
	Kind            string    `json:"kind"`
	Namespace       string    `json:"namespace"`
	Name            string    `json:"name"`
	State           string    `json:"state"`
	Reason          string    `json:"reason,omitempty"`
	Message         string    `json:"message,omitempty"`
	DesiredRevision string    `json:"desiredRevision,omitempty"`
	AppliedRevision string    `json:"appliedRevision,omitempty"`
	AppliedAt       time.Time `json:"appliedAt,omitzero"`
	Suspended       bool      `json:"suspended,omitempty"`
	Objects         []string  `json:"objects,omitempty"`
}

// Istiod is one istiod instance and the state of its proxies.
type Istiod struct {
	Name        string    `json:"name"`
	Revision    string    `json:"revision,omitempty"`
	PushVersion string    `json:"pushVersion,omitempty"`
	ObservedAt  time.Time `json:"observedAt"`
	Proxies     []Proxy   `json:"proxies"`
	// Signals is what istiod's own metrics report (rejected configs, NACKs per proxy,
	// conflicts, push errors), when its monitoring port is known.
	Signals *reconcile.IstiodSignals `json:"signals,omitempty"`
	// Restriction is set when istiod shows meshdrift only part of its proxies, or none:
	// propagation through it is Unknown until the fix is applied.
	Restriction *reconcile.ViewRestriction `json:"restriction,omitempty"`
	// Unverified says why the proxy list could not be checked for completeness.
	Unverified string `json:"unverified,omitempty"`
}

// Proxy is one proxy's per-type state.
type Proxy struct {
	ID    string            `json:"id"`
	Types map[string]string `json:"types"`
	Error string            `json:"error,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(Build(h.store.Snapshot(), h.now()))
}

// Build turns a snapshot into the API document.
func Build(s reconcile.Snapshot, now time.Time) Status {
	st := Status{GeneratedAt: now.UTC(), Sources: []Source{}, Apps: []App{}, Istiods: []Istiod{},
		Propagation: s.Propagation, Changes: s.Changes}
	if st.Propagation == nil {
		st.Propagation = []reconcile.Rollup{}
	}
	if st.Changes == nil {
		st.Changes = []reconcile.Propagation{}
	}
	for _, src := range s.Sources {
		st.Sources = append(st.Sources, Source{Name: src.Name, Up: src.Up, Error: src.Error, Since: src.Since.UTC()})
	}
	for _, a := range s.Apps {
		app := App{
			Source: string(a.Key.Source), Kind: a.Key.Kind, Namespace: a.Key.Namespace, Name: a.Key.Name,
			State: string(a.State), Reason: a.Reason, Message: a.Message,
			DesiredRevision: a.DesiredRevision, AppliedRevision: a.AppliedRevision, AppliedAt: a.AppliedAt,
			Suspended: a.Suspended,
		}
		for _, o := range a.Objects {
			app.Objects = append(app.Objects, o.Ref.String())
		}
		st.Apps = append(st.Apps, app)
	}
	for _, v := range s.Istiods {
		is := Istiod{Name: v.Istiod, Revision: v.Revision, PushVersion: v.PushVersion, ObservedAt: v.ObservedAt.UTC(), Proxies: []Proxy{}, Signals: v.Signals,
			Restriction: v.Restriction, Unverified: v.Unverified}
		for _, p := range v.Proxies {
			px := Proxy{ID: p.ID, Types: map[string]string{}}
			for _, t := range p.Types {
				px.Types[reconcile.ShortType(t.TypeURL)] = string(t.State)
				if t.Error != "" {
					px.Error = t.Error
				}
			}
			is.Proxies = append(is.Proxies, px)
		}
		st.Istiods = append(st.Istiods, is)
	}
	return st
}
