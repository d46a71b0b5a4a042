package reconcile

import (
	"slices"
	"time"
)

// IstiodView is everything one istiod instance said about its proxies in one read.
// Proxies connect to one istiod replica each, so the full picture is the union of the
// views of every replica of every revision.
type IstiodView struct {
	// Istiod names the instance (its pod name, or the address it was read from).
	Istiod string
	// Revision is the control-plane revision (the pod's istio.io/rev label), "" if unknown.
	Revision string
	// PushVersion is istiod's current push version ("<RFC3339 second>/<counter>") when the
	// transport reports it (xDS), else "".
	PushVersion string
	Proxies     []ProxyStatus
	// ObservedAt is when meshdrift had the answer (its clock).
	ObservedAt time.Time
	// ReadStartedAt is when meshdrift sent the request that ObservedAt answers (its
	// clock), zero when unknown; ServerDate is the answer's HTTP Date header (istiod's
	// clock, one-second resolution), zero over xDS. Both bound ClockOffset.
	ReadStartedAt time.Time
	ServerDate    time.Time
	// ClockOffset bounds how far this istiod's clock is ahead of meshdrift's, from every
	// read so far; the store fills it in. ClockProblem is set when the offset is beyond
	// what the verdicts tolerate (MaxClockOffset).
	ClockOffset  ClockOffset
	ClockProblem string
	// Signals is the latest read of istiod's own metrics, nil when it has none (no
	// monitoring address known, or not read yet).
	Signals *IstiodSignals
	// Restriction is set when istiod shows meshdrift fewer proxies than are connected to
	// it, or refuses to show any: debug-endpoint authorization limits a caller outside
	// istiod's namespace and its allowlist to its own namespace's proxies, without an
	// error. Propagation read through such a view is Unknown (see Propagation.Restricted).
	Restriction *ViewRestriction
	// Unverified says why Proxies could not be checked against istiod's own count of
	// connected proxies (no monitoring address, metrics unreadable); "" when it was.
	Unverified string
}

// ViewRestriction says why an istiod view is partial or empty, and how to fix it.
type ViewRestriction struct {
	// Reason says what is wrong, in a user's words; Fix what to change.
	Reason string `json:"reason"`
	Fix    string `json:"fix"`
	// Visible is how many proxies the view shows, Connected how many istiod counts as
	// connected (its pilot_xds gauge, debug clients left out); -1 when unknown.
	Visible   int `json:"visible"`
	Connected int `json:"connected"`
	// Denied: istiod refused the debug request (permission denied, unauthenticated), so
	// nothing at all could be read.
	Denied bool `json:"denied,omitempty"`
}

// restrictedIstiods names the views that show only part of istiod's proxies.
func restrictedIstiods(views map[string]IstiodView) []string {
	var out []string
	for name, v := range views {
		if v.Restriction != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// NACKEvent is one rejection streamed by istiod's istio.io/nack debug type as it happens,
// ahead of the next poll.
type NACKEvent struct {
	Istiod  string
	Proxy   string
	TypeURL string
	Error   string
	At      time.Time
}

// ProxySink receives istiod observations.
type ProxySink interface {
	// ObserveIstiod replaces everything known from view.Istiod.
	ObserveIstiod(IstiodView)
	// ForgetIstiod drops an istiod that no longer exists (pod deleted), not one that is
	// unreachable: that is a SourceStatus with Up false.
	ForgetIstiod(istiod string)
	ObserveNACK(NACKEvent)
}

// MeshChange is one observed change of a mesh object (an Istio networking or security
// kind, a Gateway API route): what istiod must turn into a push.
type MeshChange struct {
	Ref             ObjectRef
	Generation      int64
	ResourceVersion string
	// ObservedAt is when meshdrift saw the change; propagation is measured from here.
	ObservedAt time.Time
	// Manager is the field manager of the latest write (e.g. kustomize-controller,
	// argocd-controller, kubectl-edit), from managedFields.
	Manager string
	// GitOpsOwner is the app that tracks the object according to its labels or
	// annotations (Argo CD tracking, Flux kustomize labels), zero when none.
	GitOpsOwner AppKey
	Deleted     bool
	// Baseline is set for an object the mesh watcher found in its first list of the kind
	// and last written before meshdrift started: state meshdrift found, not a change it
	// saw happen (see isBaseline and settledAtStart).
	Baseline bool
	// Reach is what the object's spec says about the proxies and resources it can affect.
	Reach Reach
	// Ignore is the raw value of the object's AnnotationIgnore annotation, "" when absent.
	Ignore string
	// SpecWrites are the object's managedFields entries that own spec fields, latest
	// first, at most MaxSpecWrites: who else wrote the spec besides its GitOps owner.
	SpecWrites []SpecWrite
}

// MaxSpecWrites bounds MeshChange.SpecWrites, and MaxSpecFields each entry's Fields: a
// few managers write an object in practice, and the top-level spec fields name the edit.
const (
	MaxSpecWrites = 8
	MaxSpecFields = 8
)

// SpecWrite is one managedFields entry that owns spec fields.
type SpecWrite struct {
	Manager string
	// Operation is "Apply" (server-side apply) or "Update" (create, update, patch, edit).
	Operation string
	// At is the entry's time (one-second resolution), zero when absent.
	At time.Time
	// Fields are the top-level spec fields the entry owns ("spec.http"), sorted, at most
	// MaxSpecFields.
	Fields []string
}

// MeshSink receives mesh object changes.
type MeshSink interface {
	ObserveMeshChange(MeshChange)
}

// IstiodSignals is what istiod's own metrics say went wrong: config it rejected or
// ignored, conflicts, NACK counts per proxy, failed pushes. Counters are cumulative since
// istiod started.
type IstiodSignals struct {
	RejectedConfigs []RejectedConfig
	ProxyRejects    []ProxyReject
	// Conflicts are pilot_conflict_* and duplicate-domain gauges by name, non-zero only.
	Conflicts map[string]float64
	// PushErrors are pushes that failed to build or send, by type, non-zero only.
	PushErrors map[string]float64
	ObservedAt time.Time
}

// RejectedConfig is one config object istiod rejected or ignored.
type RejectedConfig struct {
	Type  string
	Name  string
	Count float64
}

// ProxyReject counts one proxy's NACKs of one xDS type (cds, lds, rds, eds).
type ProxyReject struct {
	Type  string
	Proxy string
	Count float64
}
