// Package findings turns what the store observed (apps, sources, istiod views, propagation
// of every change) into findings: one coded problem per subject, with a lifecycle from
// pending to firing to resolved. Sinks in alerting/ deliver them.
//
// The codes are data in catalog.go, which also generates docs/findings.md. Derive is a pure
// function from a reconcile.Snapshot to the current problems; the Engine runs the lifecycle
// on an injected clock. The evaluator feeds the engine one snapshot per pass (on every
// store change and periodically):
//
//	store.Evaluate(now)
//	transitions := engine.Evaluate(store.Snapshot())
//
// and hands the transitions to the sinks; engine.Active() is what is pending or firing
// now (for resends and the status API), engine.Findings() adds the recently resolved.
package findings

import (
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Code is a finding's stable code from the catalog, "MD" and four digits (MD0201). A
// retired code is never reused: codes become alert labels and doc anchors.
type Code string

// Severity is a finding's default severity, as Alertmanager routes see it.
type Severity string

const (
	SeverityCritical Severity = "critical"
	SeverityWarning  Severity = "warning"
	SeverityInfo     Severity = "info"
)

// State is where a finding stands in its lifecycle.
type State string

const (
	// StatePending: the problem is seen but has not lasted its code's `for` duration yet.
	StatePending State = "pending"
	// StateFiring: the problem has lasted; sinks deliver it.
	StateFiring State = "firing"
	// StateResolved: the problem is gone (never because its source went dark).
	StateResolved State = "resolved"
)

// Subject is what a finding is about. Fields that do not apply stay empty; two findings
// with the same code and subject are one finding.
type Subject struct {
	// Object is the mesh object (or other Kubernetes object) concerned, if one.
	Object reconcile.ObjectRef
	// App and Revision are the GitOps app and the Git revision concerned, if any.
	// Revision is set only where the problem is one revision's (MD0101 sync failed,
	// MD0104 not applied); a change's findings name the app's revision in their evidence,
	// so that the app moving to a new revision does not make the same NACK a new finding.
	// Without an App, Revision is an Istio control-plane revision (MD0703).
	App      reconcile.AppKey
	Revision string
	// Istiod and Proxy name an istiod instance and one of its proxies ("<pod>.<ns>").
	Istiod string
	Proxy  string
	// Source names a source (e.g. "argocd", "istiod/istiod-0") for source findings.
	Source string
}

// Finding is one problem. It is a plain comparable value so that sinks and tests can
// compare findings directly.
type Finding struct {
	// ID is stable for a (code, subject): a restarted meshdrift derives the same ID.
	ID       string
	Code     Code
	Name     string
	Severity Severity
	State    State
	Subject  Subject
	// Summary is one line for people (alert summary, Event note); Description says more.
	Summary     string
	Description string
	// Evidence is what proves it, as the source said it: the proxy's NACK text, the app's
	// message. It comes from the cluster and must be escaped wherever it is shown.
	Evidence string
	// StartsAt is when the problem began according to the evidence's own time (the
	// change's observation, the app's condition), so that it survives a restart.
	StartsAt time.Time
	// FirstSeen and LastSeen are when this meshdrift first and last saw the problem.
	FirstSeen time.Time
	LastSeen  time.Time
	// ResolvedAt is set once the finding is resolved.
	ResolvedAt time.Time
}
