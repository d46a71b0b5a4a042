package appview

import (
	"fmt"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Key identifies the Application among all GitOps apps. Apps can live outside the argocd
// namespace (apps-in-any-namespace), so the namespace is always part of the key.
func (a *Application) Key() reconcile.AppKey {
	return reconcile.AppKey{
		Source:    reconcile.SourceArgoCD,
		Kind:      Kind,
		Namespace: a.Metadata.Namespace,
		Name:      a.Metadata.Name,
	}
}

// ToApp maps the view to meshdrift's source-agnostic App.
//
//   - DesiredRevision is status.sync.revision, the revision the controller last compared
//     against. A multi-source app has one revision per source in status.sync.revisions;
//     they are joined with "," in spec.sources order, so that a change in any source makes
//     DesiredRevision and AppliedRevision differ. The view keeps them separate.
//   - AppliedRevision/AppliedAt come from the last operation if it Succeeded
//     (syncResult.revision(s), finishedAt), else from the newest status.history entry:
//     Argo CD only adds history for successful syncs, so it holds the last good deploy
//     while an operation is running or has failed.
//   - State: see appState.
//   - Suspended means automated sync is off. Argo CD then still compares but applies
//     nothing until someone syncs, so drift from Git is expected to persist, as with a
//     suspended Flux object. State is still derived from the status, so a manual app that
//     differs from Git reads OutOfSync.
//   - Stale is set while a refresh requested through the refresh annotation is pending.
//     Argo CD has no observedGeneration to compare with generation.
//   - Objects are status.resources with their sync and health status; health is empty for
//     kinds Argo CD has no health check for, Istio's among them.
func ToApp(a Application, observedAt time.Time) reconcile.App {
	app := reconcile.App{
		Key:             a.Key(),
		DesiredRevision: joinRevisions(a.Status.Sync.Revision, a.Status.Sync.Revisions),
		Suspended:       !a.AutoSync(),
		Stale:           a.Metadata.Annotations[AnnotationRefresh] != "",
		Objects:         objects(a.Status.Resources),
		ObservedAt:      observedAt,
		Ignore:          a.Metadata.Annotations[reconcile.AnnotationIgnore],
	}
	app.AppliedRevision, app.AppliedAt = applied(a.Status)
	app.State, app.Reason, app.Message = appState(a.Status)
	return app
}

// appState decides the App state, first match wins. Reason is the Argo CD code that
// decided it (an operation phase, a health or sync status, or a condition type).
//
//  1. No status at all: Unknown. The controller has not processed the app yet.
//  2. Operation Running or Terminating: Progressing, with the operation message (it says
//     which retry attempt a failing auto-sync is on).
//  3. Operation Failed or Error: Failed, with the operation message. operationState is
//     the last operation, so this holds until the next sync, as in Argo CD's UI.
//  4. Health Degraded: Failed, with the health message (see healthMessage).
//  5. Health Progressing: Progressing.
//  6. Health Suspended: Progressing. Argo CD uses it for a paused workload (an Argo
//     Rollouts pause step, a suspended Deployment, Job or CronJob), not for switched-off
//     reconciliation, which is what reconcile.AppSuspended means.
//  7. Sync OutOfSync, or health Missing (objects Git declares are absent): OutOfSync.
//     An error condition (e.g. SyncError "auto-sync will not be attempted...") gives
//     Reason and Message.
//  8. Sync Synced and health Healthy: Synced.
//  9. Anything else (sync Unknown after a ComparisonError, health Unknown): Unknown,
//     with the first error condition if there is one.
func appState(s ApplicationStatus) (reconcile.AppState, string, string) {
	if !reported(s) {
		return reconcile.AppUnknown, "", ""
	}
	if op := s.OperationState; op != nil {
		switch op.Phase {
		case PhaseRunning, PhaseTerminating:
			return reconcile.AppProgressing, op.Phase, op.Message
		case PhaseFailed, PhaseError:
			return reconcile.AppFailed, op.Phase, op.Message
		}
	}
	switch s.Health.Status {
	case HealthDegraded:
		return reconcile.AppFailed, HealthDegraded, healthMessage(s)
	case HealthProgressing, HealthSuspended:
		return reconcile.AppProgressing, s.Health.Status, healthMessage(s)
	}
	cond, hasErr := errorCondition(s.Conditions)
	switch {
	case s.Sync.Status == SyncOutOfSync || s.Health.Status == HealthMissing:
		if hasErr {
			return reconcile.AppOutOfSync, cond.Type, cond.Message
		}
		if s.Sync.Status == SyncOutOfSync {
			return reconcile.AppOutOfSync, SyncOutOfSync, s.Health.Message
		}
		return reconcile.AppOutOfSync, HealthMissing, s.Health.Message
	case s.Sync.Status == SyncSynced && s.Health.Status == HealthHealthy:
		return reconcile.AppSynced, SyncSynced, s.Health.Message
	}
	if hasErr {
		return reconcile.AppUnknown, cond.Type, cond.Message
	}
	reason := s.Sync.Status
	if reason == "" || reason == SyncSynced {
		reason = s.Health.Status
	}
	return reconcile.AppUnknown, reason, s.Health.Message
}

// healthMessage returns the app's health message or, as Argo CD usually leaves that empty,
// the message of the first resource whose health made the app's, e.g.
// `Deployment bookinfo/details-v1: Deployment "details-v1" exceeded its progress deadline`.
func healthMessage(s ApplicationStatus) string {
	if s.Health.Message != "" {
		return s.Health.Message
	}
	for _, r := range s.Resources {
		if r.Health != nil && r.Health.Status == s.Health.Status && r.Health.Message != "" {
			name := r.Name
			if r.Namespace != "" {
				name = r.Namespace + "/" + r.Name
			}
			return fmt.Sprintf("%s %s: %s", r.Kind, name, r.Health.Message)
		}
	}
	return ""
}

// reported tells a status the controller wrote from an absent or empty one.
func reported(s ApplicationStatus) bool {
	return s.Sync.Status != "" || s.Health.Status != "" || s.OperationState != nil ||
		s.ReconciledAt != nil || len(s.Resources) > 0 || len(s.History) > 0 || len(s.Conditions) > 0
}

// errorCondition returns the first condition of an error type. Argo CD's error types end
// in "Error" (ComparisonError, InvalidSpecError, SyncError, ...); the others are warnings
// that do not change the state.
func errorCondition(conds []ApplicationCondition) (ApplicationCondition, bool) {
	for _, c := range conds {
		if strings.HasSuffix(c.Type, "Error") {
			return c, true
		}
	}
	return ApplicationCondition{}, false
}

func applied(s ApplicationStatus) (string, time.Time) {
	hist, hasHist := latestHistory(s.History)
	if op := s.OperationState; op != nil && op.Phase == PhaseSucceeded && op.SyncResult != nil {
		if rev := joinRevisions(op.SyncResult.Revision, op.SyncResult.Revisions); rev != "" {
			var at time.Time
			if op.FinishedAt != nil {
				at = *op.FinishedAt
			} else if hasHist && joinRevisions(hist.Revision, hist.Revisions) == rev {
				at = hist.DeployedAt
			}
			return rev, at
		}
	}
	if hasHist {
		return joinRevisions(hist.Revision, hist.Revisions), hist.DeployedAt
	}
	return "", time.Time{}
}

// latestHistory returns the entry with the highest ID: IDs grow with every deploy, while
// the order of the list is Argo CD's implementation detail.
func latestHistory(h []RevisionHistory) (RevisionHistory, bool) {
	if len(h) == 0 {
		return RevisionHistory{}, false
	}
	latest := h[0]
	for _, e := range h[1:] {
		if e.ID >= latest.ID {
			latest = e
		}
	}
	return latest, true
}

// joinRevisions prefers the per-source list: Argo CD fills it, and leaves the single
// revision empty, for multi-source apps.
func joinRevisions(rev string, revs []string) string {
	if len(revs) > 0 {
		return strings.Join(revs, ",")
	}
	return rev
}

func objects(rs []ResourceStatus) []reconcile.OwnedObject {
	if len(rs) == 0 {
		return nil
	}
	out := make([]reconcile.OwnedObject, 0, len(rs))
	for _, r := range rs {
		o := reconcile.OwnedObject{
			Ref:  reconcile.ObjectRef{Group: r.Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name},
			Sync: r.Status,
		}
		if r.Health != nil {
			o.Health = r.Health.Status
		}
		out = append(out, o)
	}
	return out
}
