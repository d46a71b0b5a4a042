package reconcile

import (
	"time"
)

// Source names the GitOps system an app is read from.
type Source string

const (
	SourceArgoCD Source = "argocd"
	SourceFlux   Source = "flux"
)

// AppKey identifies one GitOps app: an Argo CD Application, a Flux Kustomization or a Flux
// HelmRelease. Kind keeps a Kustomization and a HelmRelease of the same name apart.
type AppKey struct {
	Source    Source
	Kind      string
	Namespace string
	Name      string
}

// String is "<source>/<kind>/<namespace>/<name>". It is a sort key at fleet scale, hence
// concatenation rather than fmt.
func (k AppKey) String() string {
	return string(k.Source) + "/" + k.Kind + "/" + k.Namespace + "/" + k.Name
}

// AppState is the source-agnostic summary of what the GitOps tool says about an app.
type AppState string

const (
	// AppSynced: the tool applied the desired revision and reports it ready.
	AppSynced AppState = "Synced"
	// AppProgressing: an apply or rollout is under way.
	AppProgressing AppState = "Progressing"
	// AppOutOfSync: the cluster differs from Git and nothing is applying it.
	AppOutOfSync AppState = "OutOfSync"
	// AppFailed: the last apply or build failed, or the app is degraded.
	AppFailed AppState = "Failed"
	// AppSuspended: reconciliation is switched off for the app.
	AppSuspended AppState = "Suspended"
	// AppUnknown: the tool has not reported a status (yet), or reports Unknown.
	AppUnknown AppState = "Unknown"
)

// ObjectRef names one Kubernetes object. Group is empty for the core group.
type ObjectRef struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
}

// String is "<group>/<kind>/[<namespace>/]<name>", group "core" for the core group. It
// is a sort key at fleet scale, hence concatenation rather than fmt.
func (r ObjectRef) String() string {
	g := r.Group
	if g == "" {
		g = "core"
	}
	if r.Namespace == "" {
		return g + "/" + r.Kind + "/" + r.Name
	}
	return g + "/" + r.Kind + "/" + r.Namespace + "/" + r.Name
}

// OwnedObject is an object an app manages, with what the tool says of it where it says
// anything (Argo CD reports sync and health per resource; Flux only lists the inventory).
type OwnedObject struct {
	Ref    ObjectRef
	Sync   string
	Health string
}

// App is the normalised view of one GitOps app. Both the Argo CD and the Flux adapter
// produce it, so that reconcile can join either with istiod's view per Git revision.
type App struct {
	Key AppKey
	// DesiredRevision is the revision the tool is trying to apply (Argo CD's sync revision,
	// Flux's lastAttemptedRevision). AppliedRevision is the one last applied successfully
	// (Argo CD's last successful operation, Flux's lastAppliedRevision); they differ while an
	// apply is failing or in progress.
	DesiredRevision string
	AppliedRevision string
	// AppliedAt is when AppliedRevision was applied, zero when unknown.
	AppliedAt time.Time
	State     AppState
	// Reason is a short machine-readable cause (a Flux condition reason, an Argo CD
	// operation phase); Message is the tool's own text.
	Reason    string
	Message   string
	Suspended bool
	// Stale is set when the tool has not yet observed the app's latest spec
	// (Flux observedGeneration behind generation), so its status may be outdated.
	Stale   bool
	Objects []OwnedObject
	// ObservedAt is when the adapter read this state; the store keeps the first read of
	// a state that later reads repeat.
	ObservedAt time.Time
	// Ignore is the raw value of the app's AnnotationIgnore annotation, "" when absent.
	Ignore string
}

// Owns reports whether the app manages the changed object, by the rule the store's
// per-app roll-up uses: the app lists the object, or the object's tracking label or
// annotation names the app.
func (a App) Owns(c MeshChange) bool { return ownedBy(c, a) }

// AnnotationIgnore on a mesh object or a GitOps app lists finding codes not to report
// about it, e.g. "MD0203,MD0301".
const AnnotationIgnore = "meshdrift.io/ignore"

// AppSink receives app observations from an adapter. Adapters call it from their watch
// handlers; implementations must be safe for concurrent use and must not block for long.
type AppSink interface {
	ObserveApp(App)
	// ForgetApp says the app no longer exists (deleted). A source that cannot be read is
	// different: that is a SourceStatus with Up false, and its apps are kept as last seen.
	ForgetApp(AppKey)
}

// SourceStatus says whether an adapter can currently read its source (an API server
// watch, istiod, an Argo CD API server). Consumers must never read a source that is down
// as "nothing wrong".
type SourceStatus struct {
	// Name identifies the source, e.g. "argocd", "flux", "istiod/istiod-7d9f-abc".
	Name  string
	Up    bool
	Error string
	// NotInstalled: the API server does not serve the source's CRD, so there is nothing
	// to read. Argo CD and Flux report it alike (with Error saying which CRD).
	NotInstalled bool
	// Since is when the source entered this state.
	Since time.Time
}

// SourceReporter receives source reachability changes.
type SourceReporter interface {
	ReportSource(SourceStatus)
}
