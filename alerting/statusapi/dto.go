package statusapi

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// The API's own documents. They are written as Kubernetes APIs write JSON: camelCase
// field names, times in RFC 3339 (UTC), durations as seconds in fields named ...Seconds.
// Every reconcile value is converted in one function below (xxxOf), so that a field added
// to a reconcile type is added to the API in one place. docs/api.md documents them.

// Status is GET /api/v1/status: everything meshdrift sees.
type Status struct {
	GeneratedAt time.Time `json:"generatedAt"`
	Sources     []Source  `json:"sources"`
	Apps        []App     `json:"apps"`
	Istiods     []Istiod  `json:"istiods"`
	// Propagation is per GitOps app and revision; Changes per mesh object change.
	Propagation []Rollup `json:"propagation"`
	Changes     []Change `json:"changes"`
	// Checks is the latest run of the semantic checks, when they run.
	Checks *Checks `json:"checks,omitempty"`
}

// Source is one source's reachability.
type Source struct {
	Name  string    `json:"name"`
	Up    bool      `json:"up"`
	Error string    `json:"error,omitempty"`
	Since time.Time `json:"since,omitzero"`
}

// AppRef names a GitOps app.
type AppRef struct {
	Source    string `json:"source"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ObjectRef names a Kubernetes object; group is empty for the core group, namespace for
// a cluster-scoped object.
type ObjectRef struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// Links are the paths of a resource in the API and on the page, relative to the server.
type Links struct {
	Self string `json:"self"`
	Page string `json:"page"`
}

// App is one GitOps app with its revisions.
type App struct {
	AppRef
	State           string        `json:"state"`
	Reason          string        `json:"reason,omitempty"`
	Message         string        `json:"message,omitempty"`
	DesiredRevision string        `json:"desiredRevision,omitempty"`
	AppliedRevision string        `json:"appliedRevision,omitempty"`
	AppliedAt       time.Time     `json:"appliedAt,omitzero"`
	Suspended       bool          `json:"suspended,omitempty"`
	Stale           bool          `json:"stale,omitempty"`
	ObservedAt      time.Time     `json:"observedAt,omitzero"`
	Objects         []OwnedObject `json:"objects"`
	// Revisions are the applied revision and, while it differs, the one being attempted,
	// each with the propagation of its mesh object changes where meshdrift tracked any.
	Revisions []Revision `json:"revisions"`
	Links     Links      `json:"links"`
}

// OwnedObject is an object the app manages, with what the GitOps tool says of it.
type OwnedObject struct {
	ObjectRef
	Sync   string `json:"sync,omitempty"`
	Health string `json:"health,omitempty"`
}

// Revision roles.
const (
	RoleApplied = "applied"
	RoleDesired = "desired"
)

// Revision is one Git revision of an app.
type Revision struct {
	Revision string `json:"revision"`
	// Role is "applied" (the tool applied it) or "desired" (the tool is trying to).
	Role        string    `json:"role"`
	AppliedAt   time.Time `json:"appliedAt,omitzero"`
	Propagation *Rollup   `json:"propagation,omitempty"`
}

// Rollup is the propagation of one app revision: its changed mesh objects, joined.
type Rollup struct {
	App            AppRef         `json:"app"`
	Revision       string         `json:"revision"`
	AppliedAt      time.Time      `json:"appliedAt,omitzero"`
	State          string         `json:"state"`
	Objects        int            `json:"objects"`
	Targeted       int            `json:"targeted"`
	ACKed          int            `json:"acked"`
	NACKed         int            `json:"nacked"`
	Stale          int            `json:"stale"`
	Pending        int            `json:"pending"`
	LatencySeconds *float64       `json:"latencySeconds,omitempty"`
	Since          time.Time      `json:"since,omitzero"`
	Summary        string         `json:"summary"`
	Proxies        []ProxyOutcome `json:"proxies"`
}

// ProxyOutcome is one targeted proxy that has not ACKed a change.
type ProxyOutcome struct {
	Proxy  string `json:"proxy"`
	Istiod string `json:"istiod"`
	State  string `json:"state"`
	// Error is the proxy's NACK text, as the proxy sent it.
	Error string `json:"error,omitempty"`
}

// MeshChange is one observed change of a mesh object.
type MeshChange struct {
	Object          ObjectRef `json:"object"`
	Generation      int64     `json:"generation,omitempty"`
	ResourceVersion string    `json:"resourceVersion,omitempty"`
	ObservedAt      time.Time `json:"observedAt"`
	Manager         string    `json:"manager,omitempty"`
	GitOpsOwner     *AppRef   `json:"gitopsOwner,omitempty"`
	Deleted         bool      `json:"deleted,omitempty"`
}

// Change is the propagation of one mesh object change.
type Change struct {
	Change         MeshChange     `json:"change"`
	State          string         `json:"state"`
	LatencySeconds *float64       `json:"latencySeconds,omitempty"`
	Targeted       int            `json:"targeted"`
	ACKed          int            `json:"acked"`
	NACKed         int            `json:"nacked"`
	Pending        int            `json:"pending"`
	Proxies        []ProxyOutcome `json:"proxies"`
	Unreachable    []string       `json:"unreachable,omitempty"`
	// Restricted lists istiods whose view is partial: what they hide may be a proxy that
	// has not ACKed, so the change is Unknown.
	Restricted []string  `json:"restricted,omitempty"`
	Since      time.Time `json:"since,omitzero"`
}

// Istiod is one istiod instance and the state of its proxies.
type Istiod struct {
	Name        string    `json:"name"`
	Revision    string    `json:"revision,omitempty"`
	PushVersion string    `json:"pushVersion,omitempty"`
	ObservedAt  time.Time `json:"observedAt,omitzero"`
	Proxies     []Proxy   `json:"proxies"`
	// Signals is what istiod's own metrics report, when its monitoring port is known.
	Signals *Signals `json:"signals,omitempty"`
	// Restriction is set when istiod shows meshdrift only part of its proxies, or none:
	// propagation through it is Unknown until the fix is applied.
	Restriction *Restriction `json:"restriction,omitempty"`
	// Unverified says why the proxy list could not be checked for completeness.
	Unverified string `json:"unverified,omitempty"`
}

// Restriction says why an istiod view is partial or empty, and how to fix it.
type Restriction struct {
	Reason string `json:"reason"`
	Fix    string `json:"fix"`
	// Visible is how many proxies the view shows, Connected how many istiod counts as
	// connected; -1 when unknown.
	Visible   int `json:"visible"`
	Connected int `json:"connected"`
	// Denied: istiod refused the debug request, so nothing at all could be read.
	Denied bool `json:"denied,omitempty"`
}

// Proxy is one proxy's state per xDS type (CDS, LDS, RDS, EDS, ...).
type Proxy struct {
	ID                  string            `json:"id"`
	ClusterID           string            `json:"clusterId,omitempty"`
	ProxyType           string            `json:"proxyType,omitempty"`
	IstioVersion        string            `json:"istioVersion,omitempty"`
	Revision            string            `json:"revision,omitempty"`
	ControlPlaneVersion string            `json:"controlPlaneVersion,omitempty"`
	Types               map[string]string `json:"types"`
	// Error is the proxy's last NACK text, as the proxy sent it.
	Error string `json:"error,omitempty"`
}

// Signals is istiod's own account of what went wrong; counters are cumulative since
// istiod started.
type Signals struct {
	RejectedConfigs []RejectedConfig   `json:"rejectedConfigs"`
	ProxyRejects    []ProxyReject      `json:"proxyRejects"`
	Conflicts       map[string]float64 `json:"conflicts"`
	PushErrors      map[string]float64 `json:"pushErrors"`
	ObservedAt      time.Time          `json:"observedAt,omitzero"`
}

// RejectedConfig is one config object istiod rejected or ignored.
type RejectedConfig struct {
	Type  string  `json:"type"`
	Name  string  `json:"name"`
	Count float64 `json:"count"`
}

// ProxyReject counts one proxy's NACKs of one xDS type.
type ProxyReject struct {
	Type  string  `json:"type"`
	Proxy string  `json:"proxy"`
	Count float64 `json:"count"`
}

// Finding is one coded problem (see docs/findings.md for the codes).
type Finding struct {
	ID          string    `json:"id"`
	Code        string    `json:"code"`
	Name        string    `json:"name"`
	Severity    string    `json:"severity"`
	State       string    `json:"state"`
	Subject     Subject   `json:"subject"`
	Summary     string    `json:"summary"`
	Description string    `json:"description,omitempty"`
	Evidence    string    `json:"evidence,omitempty"`
	StartsAt    time.Time `json:"startsAt,omitzero"`
	FirstSeen   time.Time `json:"firstSeen,omitzero"`
	LastSeen    time.Time `json:"lastSeen,omitzero"`
	ResolvedAt  time.Time `json:"resolvedAt,omitzero"`
	Links       Links     `json:"links"`
	// AppLinks lead to the finding's app, when it has one.
	AppLinks *Links `json:"appLinks,omitempty"`
}

// Subject is what a finding is about; fields that do not apply are left out.
type Subject struct {
	Object   *ObjectRef `json:"object,omitempty"`
	App      *AppRef    `json:"app,omitempty"`
	Revision string     `json:"revision,omitempty"`
	Istiod   string     `json:"istiod,omitempty"`
	Proxy    string     `json:"proxy,omitempty"`
	Source   string     `json:"source,omitempty"`
}

// FindingList is GET /api/v1/findings.
type FindingList struct {
	GeneratedAt time.Time `json:"generatedAt"`
	Findings    []Finding `json:"findings"`
}

// AppList is GET /api/v1/apps.
type AppList struct {
	GeneratedAt time.Time `json:"generatedAt"`
	Apps        []App     `json:"apps"`
}

// AppDetail is GET /api/v1/apps/{source}/{kind}/{namespace}/{name}: the app, the
// propagation of each of its tracked mesh object changes, and its findings.
type AppDetail struct {
	GeneratedAt time.Time `json:"generatedAt"`
	App         App       `json:"app"`
	Changes     []Change  `json:"changes"`
	Findings    []Finding `json:"findings"`
}

// Error is the body of every 4xx/5xx answer.
type Error struct {
	Error string `json:"error"`
}

// emptyNamespace stands for an app's unknown namespace in paths (Argo CD label tracking
// does not carry it); no Kubernetes namespace can be named so.
const emptyNamespace = "_"

// AppPath is an app's path below /api/v1/apps/ and /apps/.
func AppPath(k reconcile.AppKey) string {
	ns := k.Namespace
	if ns == "" {
		ns = emptyNamespace
	}
	return url.PathEscape(string(k.Source)) + "/" + url.PathEscape(k.Kind) + "/" + url.PathEscape(ns) + "/" + url.PathEscape(k.Name)
}

// FindingPath is a finding's page, "/findings/{id}": Alertmanager's generatorURL is the
// server's external URL followed by it.
func FindingPath(id string) string { return "/findings/" + url.PathEscape(id) }

func appLinks(k reconcile.AppKey) Links {
	p := AppPath(k)
	return Links{Self: "/api/v1/apps/" + p, Page: "/apps/" + p}
}

func findingLinks(id string) Links {
	return Links{Self: "/api/v1/findings/" + url.PathEscape(id), Page: FindingPath(id)}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// seconds is a duration in seconds, nil when unset.
func seconds(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	s := d.Seconds()
	return &s
}

func appRefOf(k reconcile.AppKey) AppRef {
	return AppRef{Source: string(k.Source), Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}
}

func objectRefOf(r reconcile.ObjectRef) ObjectRef {
	return ObjectRef{Group: r.Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
}

func sourceOf(s reconcile.SourceStatus) Source {
	return Source{Name: s.Name, Up: s.Up, Error: s.Error, Since: utc(s.Since)}
}

// appOf converts an app; rollups are the snapshot's, of which the app's own (if any)
// becomes the propagation of its revision.
func appOf(a reconcile.App, rollups []reconcile.Rollup) App {
	out := App{
		AppRef: appRefOf(a.Key), State: string(a.State), Reason: a.Reason, Message: a.Message,
		DesiredRevision: a.DesiredRevision, AppliedRevision: a.AppliedRevision, AppliedAt: utc(a.AppliedAt),
		Suspended: a.Suspended, Stale: a.Stale, ObservedAt: utc(a.ObservedAt),
		Objects: []OwnedObject{}, Revisions: []Revision{}, Links: appLinks(a.Key),
	}
	for _, o := range a.Objects {
		out.Objects = append(out.Objects, OwnedObject{ObjectRef: objectRefOf(o.Ref), Sync: o.Sync, Health: o.Health})
	}
	var own *Rollup
	for _, r := range rollups {
		if r.App == a.Key {
			ro := rollupOf(r)
			own = &ro
			break
		}
	}
	propagationOf := func(rev string) *Rollup {
		if own != nil && own.Revision == rev {
			return own
		}
		return nil
	}
	if a.AppliedRevision != "" {
		out.Revisions = append(out.Revisions, Revision{Revision: a.AppliedRevision, Role: RoleApplied, AppliedAt: utc(a.AppliedAt), Propagation: propagationOf(a.AppliedRevision)})
	}
	if a.DesiredRevision != "" && a.DesiredRevision != a.AppliedRevision {
		out.Revisions = append(out.Revisions, Revision{Revision: a.DesiredRevision, Role: RoleDesired, Propagation: propagationOf(a.DesiredRevision)})
	}
	return out
}

func rollupOf(r reconcile.Rollup) Rollup {
	out := Rollup{
		App: appRefOf(r.App), Revision: r.Revision, AppliedAt: utc(r.AppliedAt), State: string(r.State),
		Objects: r.Objects, Targeted: r.Targeted, ACKed: r.ACKed, NACKed: r.NACKed, Stale: r.Stale, Pending: r.Pending,
		LatencySeconds: seconds(r.Latency), Since: utc(r.Since), Summary: r.Summary(), Proxies: []ProxyOutcome{},
	}
	for _, o := range r.Proxies {
		out.Proxies = append(out.Proxies, proxyOutcomeOf(o))
	}
	return out
}

func proxyOutcomeOf(o reconcile.ProxyOutcome) ProxyOutcome {
	return ProxyOutcome{Proxy: o.Proxy, Istiod: o.Istiod, State: string(o.State), Error: o.Error}
}

func meshChangeOf(c reconcile.MeshChange) MeshChange {
	out := MeshChange{
		Object: objectRefOf(c.Ref), Generation: c.Generation, ResourceVersion: c.ResourceVersion,
		ObservedAt: utc(c.ObservedAt), Manager: c.Manager, Deleted: c.Deleted,
	}
	if c.GitOpsOwner.Name != "" {
		o := appRefOf(c.GitOpsOwner)
		out.GitOpsOwner = &o
	}
	return out
}

func changeOf(p reconcile.Propagation) Change {
	out := Change{
		Change: meshChangeOf(p.Change), State: string(p.State), LatencySeconds: seconds(p.Latency),
		Targeted: p.Targeted, ACKed: p.ACKed, NACKed: p.NACKed, Pending: p.Pending,
		Proxies: []ProxyOutcome{}, Unreachable: p.Unreachable, Restricted: p.Restricted, Since: utc(p.Since),
	}
	for _, o := range p.Proxies {
		out.Proxies = append(out.Proxies, proxyOutcomeOf(o))
	}
	return out
}

func istiodOf(v reconcile.IstiodView) Istiod {
	out := Istiod{Name: v.Istiod, Revision: v.Revision, PushVersion: v.PushVersion, ObservedAt: utc(v.ObservedAt), Proxies: []Proxy{}}
	for _, p := range v.Proxies {
		out.Proxies = append(out.Proxies, proxyOf(p))
	}
	if v.Signals != nil {
		s := signalsOf(*v.Signals)
		out.Signals = &s
	}
	if r := v.Restriction; r != nil {
		out.Restriction = &Restriction{Reason: r.Reason, Fix: r.Fix, Visible: r.Visible, Connected: r.Connected, Denied: r.Denied}
	}
	out.Unverified = v.Unverified
	return out
}

func proxyOf(p reconcile.ProxyStatus) Proxy {
	out := Proxy{
		ID: p.ID, ClusterID: p.ClusterID, ProxyType: p.ProxyType, IstioVersion: p.IstioVersion,
		Revision: p.Revision, ControlPlaneVersion: p.ControlPlaneVersion, Types: map[string]string{},
	}
	for _, t := range p.Types {
		out.Types[reconcile.ShortType(t.TypeURL)] = string(t.State)
		if t.Error != "" {
			out.Error = t.Error
		}
	}
	return out
}

func signalsOf(s reconcile.IstiodSignals) Signals {
	out := Signals{RejectedConfigs: []RejectedConfig{}, ProxyRejects: []ProxyReject{}, Conflicts: map[string]float64{}, PushErrors: map[string]float64{}, ObservedAt: utc(s.ObservedAt)}
	for _, r := range s.RejectedConfigs {
		out.RejectedConfigs = append(out.RejectedConfigs, RejectedConfig{Type: r.Type, Name: r.Name, Count: r.Count})
	}
	for _, r := range s.ProxyRejects {
		out.ProxyRejects = append(out.ProxyRejects, ProxyReject{Type: r.Type, Proxy: r.Proxy, Count: r.Count})
	}
	for k, v := range s.Conflicts {
		out.Conflicts[k] = v
	}
	for k, v := range s.PushErrors {
		out.PushErrors[k] = v
	}
	return out
}

func findingOf(f findings.Finding) Finding {
	out := Finding{
		ID: f.ID, Code: string(f.Code), Name: f.Name, Severity: string(f.Severity), State: string(f.State),
		Summary: f.Summary, Description: f.Description, Evidence: f.Evidence,
		StartsAt: utc(f.StartsAt), FirstSeen: utc(f.FirstSeen), LastSeen: utc(f.LastSeen), ResolvedAt: utc(f.ResolvedAt),
		Links: findingLinks(f.ID),
		Subject: Subject{
			Revision: f.Subject.Revision, Istiod: f.Subject.Istiod, Proxy: f.Subject.Proxy, Source: f.Subject.Source,
		},
	}
	if f.Subject.Object.Kind != "" || f.Subject.Object.Name != "" {
		o := objectRefOf(f.Subject.Object)
		out.Subject.Object = &o
	}
	if f.Subject.App.Name != "" {
		a := appRefOf(f.Subject.App)
		out.Subject.App = &a
		l := appLinks(f.Subject.App)
		out.AppLinks = &l
	}
	return out
}

// Orders for lists: what needs attention first.
var (
	stateRank    = map[findings.State]int{findings.StateFiring: 0, findings.StatePending: 1, findings.StateResolved: 2}
	severityRank = map[findings.Severity]int{findings.SeverityCritical: 0, findings.SeverityWarning: 1, findings.SeverityInfo: 2}
)

// sortFindings orders firing before pending before resolved, then by severity, code and ID.
func sortFindings(fs []findings.Finding) {
	slices.SortStableFunc(fs, func(a, b findings.Finding) int {
		if d := rank(stateRank, a.State) - rank(stateRank, b.State); d != 0 {
			return d
		}
		if d := rank(severityRank, a.Severity) - rank(severityRank, b.Severity); d != 0 {
			return d
		}
		if c := strings.Compare(string(a.Code), string(b.Code)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

func rank[K comparable](m map[K]int, k K) int {
	if r, ok := m[k]; ok {
		return r
	}
	return len(m)
}
