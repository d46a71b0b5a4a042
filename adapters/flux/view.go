package flux

import (
	"errors"
	"fmt"
	"strings"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshdrift/meshdrift/reconcile"
)

// The Flux kinds the watcher reads, as they appear in reconcile.AppKey.Kind.
const (
	KindKustomization = kustomizev1.KustomizationKind
	KindHelmRelease   = helmv2.HelmReleaseKind
)

// ReasonDecodeError is the App Reason when an object could not be decoded into its Flux
// API type (the Argo CD adapter uses the same); the App then says nothing but its key and
// State Unknown, and Message holds the decoding error.
const ReasonDecodeError = "DecodeError"

// errUndecodable marks decodeApp's errors for objects that did not decode at all, as
// opposed to inventory entries that did not parse.
var errUndecodable = errors.New("cannot decode")

// helmReleaseDeployed is the Helm release status of the release that is live: Helm marks
// the previous one superseded only once an upgrade succeeds, and a rollback makes a new
// deployed release.
const helmReleaseDeployed = "deployed"

// Reasons of Ready=False that mean "waiting", not "failed": see appState.
var waitingReasons = map[string]bool{
	meta.DependencyNotReadyReason:  true,
	meta.ProgressingReason:         true,
	meta.HealthCheckCanceledReason: true,
}

// appKey is the reconcile key of a Flux object.
func appKey(kind, namespace, name string) reconcile.AppKey {
	return reconcile.AppKey{Source: reconcile.SourceFlux, Kind: kind, Namespace: namespace, Name: name}
}

// KustomizationApp maps a Kustomization (kustomize.toolkit.fluxcd.io/v1) to an App.
//
//   - DesiredRevision is status.lastAttemptedRevision, AppliedRevision
//     status.lastAppliedRevision. kustomize-controller sets lastAttemptedRevision only once
//     the artifact has been fetched and verified, so after an ArtifactFailed (e.g. a digest
//     mismatch) it still names the previous attempt.
//   - AppliedAt: see kustomizationAppliedAt.
//   - State, Reason, Message: see appState.
//   - Stale: status.observedGeneration < metadata.generation. kustomize-controller only
//     advances observedGeneration on success, so a spec change that keeps failing stays
//     Stale, which is what it is: the status is about an older spec.
//   - Objects: status.inventory.entries, the objects of the last successful apply.
//
// The error reports inventory ids that could not be parsed; the App is complete otherwise
// and lists every object whose id parsed.
func KustomizationApp(ks *kustomizev1.Kustomization, observedAt time.Time) (reconcile.App, error) {
	st := ks.Status
	app := reconcile.App{
		Key:             appKey(KindKustomization, ks.Namespace, ks.Name),
		DesiredRevision: st.LastAttemptedRevision,
		AppliedRevision: st.LastAppliedRevision,
		AppliedAt:       kustomizationAppliedAt(st),
		Suspended:       ks.Spec.Suspend,
		Stale:           st.ObservedGeneration < ks.Generation,
		ObservedAt:      observedAt,
		Ignore:          ks.Annotations[reconcile.AnnotationIgnore],
	}
	app.State, app.Reason, app.Message = appState(ks.Spec.Suspend, st.Conditions)
	var err error
	if st.Inventory != nil {
		app.Objects, err = inventoryObjects(st.Inventory.Entries, func(r kustomizev1.ResourceRef) string { return r.ID })
	}
	return app, err
}

// HelmReleaseApp maps a HelmRelease (helm.toolkit.fluxcd.io/v2) to an App.
//
//   - DesiredRevision is status.lastAttemptedRevision: the chart version (with the OCI
//     digest appended for OCIRepository charts). A values-only change keeps it, so for a
//     HelmRelease the revisions cannot tell a failed values change from success; State can.
//   - AppliedRevision and AppliedAt come from the live Helm release: the status.history
//     snapshot with the highest release version whose status is "deployed", its
//     chartVersion and lastDeployed. HelmRelease has no lastAppliedRevision.
//   - Objects: status.inventory.entries where helm-controller writes them (the v2 API of
//     helm-controller v1.6 has the field; older controllers leave it empty, and so is
//     Objects then: history snapshots name the release, not its objects).
//   - State, Reason, Message, Stale: as for a Kustomization.
func HelmReleaseApp(hr *helmv2.HelmRelease, observedAt time.Time) (reconcile.App, error) {
	st := hr.Status
	app := reconcile.App{
		Key:             appKey(KindHelmRelease, hr.Namespace, hr.Name),
		DesiredRevision: st.LastAttemptedRevision,
		Suspended:       hr.Spec.Suspend,
		Stale:           st.ObservedGeneration < hr.Generation,
		ObservedAt:      observedAt,
		Ignore:          hr.Annotations[reconcile.AnnotationIgnore],
	}
	if live := liveRelease(st.History); live != nil {
		app.AppliedRevision = live.ChartVersion
		app.AppliedAt = live.LastDeployed.Time
	}
	app.State, app.Reason, app.Message = appState(hr.Spec.Suspend, st.Conditions)
	var err error
	if st.Inventory != nil {
		app.Objects, err = inventoryObjects(st.Inventory.Entries, func(r helmv2.ResourceRef) string { return r.ID })
	}
	return app, err
}

// liveRelease returns the deployed snapshot with the highest release version, nil if none.
// The slice is not sorted in place: it belongs to the caller's object.
func liveRelease(h helmv2.Snapshots) *helmv2.Snapshot {
	var live *helmv2.Snapshot
	for _, s := range h {
		if s != nil && s.Status == helmReleaseDeployed && (live == nil || s.Version > live.Version) {
			live = s
		}
	}
	return live
}

// appState decides State, Reason and Message from spec.suspend and the conditions Flux
// controllers write (Ready, Reconciling, Stalled; kstatus polarity). First match wins;
// Reason and Message are those of the condition that decided.
//
//  1. suspend: Suspended, Reason "Suspended", Message the Ready message of the last
//     reconciliation before the suspension (what the cluster was left with).
//  2. No conditions at all: Unknown. The controller has not reconciled the object yet.
//  3. Stalled=True: Failed. The controller gave up until the spec changes.
//  4. Ready=False: Failed (BuildFailed, ReconciliationFailed, ArtifactFailed,
//     HealthCheckFailed, PruneFailed, Helm's InstallFailed, UpgradeFailed, TestFailed,
//     RollbackSucceeded after a failed upgrade, and any reason Flux adds later), except for
//     the waiting reasons DependencyNotReady, Progressing and HealthCheckCanceled: those are
//     Progressing. A dependency that is not ready is reported as Failed on that dependency's
//     own App; calling every dependant Failed too would repeat one fault many times, and
//     Flux itself emits DependencyNotReady as an info event. A dependency stuck for good
//     leaves its dependants Progressing: the time spent there is for reconcile to judge.
//     Ready=False wins over Reconciling=True because kustomize-controller keeps
//     Reconciling=True (ProgressingWithRetry) while it retries a failure.
//  5. Reconciling=True: Progressing. This wins over Ready=True because helm-controller keeps
//     Ready=True from the previous release while it installs the next one.
//  6. Ready=True: Synced.
//  7. Ready=Unknown: Progressing (kustomize-controller sets it at the start of every run).
//  8. Anything else (only other condition types): Unknown.
func appState(suspended bool, conds []metav1.Condition) (reconcile.AppState, string, string) {
	ready := apimeta.FindStatusCondition(conds, meta.ReadyCondition)
	if suspended {
		msg := ""
		if ready != nil {
			msg = ready.Message
		}
		return reconcile.AppSuspended, meta.SuspendedReason, msg
	}
	if len(conds) == 0 {
		return reconcile.AppUnknown, "", ""
	}
	if c := apimeta.FindStatusCondition(conds, meta.StalledCondition); c != nil && c.Status == metav1.ConditionTrue {
		return reconcile.AppFailed, c.Reason, c.Message
	}
	if ready != nil && ready.Status == metav1.ConditionFalse {
		if waitingReasons[ready.Reason] {
			return reconcile.AppProgressing, ready.Reason, ready.Message
		}
		return reconcile.AppFailed, ready.Reason, ready.Message
	}
	if c := apimeta.FindStatusCondition(conds, meta.ReconcilingCondition); c != nil && c.Status == metav1.ConditionTrue {
		return reconcile.AppProgressing, c.Reason, c.Message
	}
	if ready != nil {
		switch ready.Status {
		case metav1.ConditionTrue:
			return reconcile.AppSynced, ready.Reason, ready.Message
		case metav1.ConditionUnknown:
			return reconcile.AppProgressing, ready.Reason, ready.Message
		}
	}
	return reconcile.AppUnknown, "", ""
}

// Statuses of a kustomize-controller history snapshot whose manifests reached the cluster:
// a health check or prune runs after the apply. ReconciliationFailed is left out: the
// apply itself failed, typically in its dry run, leaving the cluster as it was.
var appliedSnapshotStatuses = map[string]bool{
	meta.ReconciliationSucceededReason: true,
	meta.HealthCheckFailedReason:       true,
	meta.PruneFailedReason:             true,
}

// kustomizationAppliedAt says since when the cluster holds what lastAppliedRevision
// describes.
//
// It reads status.history (meta.History), not the Ready condition: kustomize-controller
// sets Ready=Unknown at the start of every run, including the periodic ones that change
// nothing, so Ready's lastTransitionTime is "last reconciled", which moves every interval.
// A history snapshot is keyed by the digest of the built manifests: firstReconciled is
// when those manifests were first applied and stays put across periodic runs and across
// Git revisions that leave the manifests unchanged. That is the time that matters for
// the mesh (a revision that changes no object causes no push), so AppliedAt can predate
// the revision's own arrival; it is the snapshot whose metadata names lastAppliedRevision
// (the controller re-labels a snapshot with the newest revision of the same digest).
//
// A revert (manifests A, then B, then A again) finds A's snapshot with the firstReconciled
// of its first apply; when another applied snapshot was last reconciled after that, the
// cluster held other manifests in between, and AppliedAt is raised to that time: a lower
// bound of the re-apply, as the history records no more.
//
// Without a matching snapshot (a controller older than the history field, or one whose
// history has rolled over), AppliedAt falls back to Ready's lastTransitionTime when
// Ready=True says the last attempt applied lastAppliedRevision, and is zero otherwise.
func kustomizationAppliedAt(st kustomizev1.KustomizationStatus) time.Time {
	rev := st.LastAppliedRevision
	if rev == "" {
		return time.Time{}
	}
	var cur *meta.Snapshot
	for i := range st.History {
		s := &st.History[i]
		if s.LastReconciledStatus == meta.ReconciliationSucceededReason && s.Metadata["revision"] == rev &&
			(cur == nil || s.LastReconciled.After(cur.LastReconciled.Time)) {
			cur = s
		}
	}
	if cur != nil {
		at := cur.FirstReconciled.Time
		for i := range st.History {
			s := &st.History[i]
			if s.Digest == cur.Digest || !appliedSnapshotStatuses[s.LastReconciledStatus] {
				continue
			}
			if s.LastReconciled.After(at) && !s.LastReconciled.After(cur.LastReconciled.Time) {
				at = s.LastReconciled.Time
			}
		}
		return at
	}
	ready := apimeta.FindStatusCondition(st.Conditions, meta.ReadyCondition)
	if ready != nil && ready.Status == metav1.ConditionTrue && ready.Reason == meta.ReconciliationSucceededReason &&
		st.LastAttemptedRevision == rev {
		return ready.LastTransitionTime.Time
	}
	return time.Time{}
}

// inventoryObjects parses inventory entries, skipping (and reporting) those that do not
// parse.
func inventoryObjects[E any](entries []E, id func(E) string) ([]reconcile.OwnedObject, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	out := make([]reconcile.OwnedObject, 0, len(entries))
	var errs []error
	for _, e := range entries {
		ref, err := ParseInventoryID(id(e))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, reconcile.OwnedObject{Ref: ref})
	}
	return out, errors.Join(errs...)
}

// Inventory ids are cli-utils ObjMetadata strings: "<namespace>_<name>_<group>_<kind>".
const (
	inventoryIDSeparator = "_"
	// cli-utils writes the ':' of RBAC object names (system:controller:foo) as "__";
	// no other kind can have a ':' or a '_' in its name.
	inventoryColonEncoded = "__"
	rbacGroup             = "rbac.authorization.k8s.io"
)

var rbacKinds = map[string]bool{"Role": true, "ClusterRole": true, "RoleBinding": true, "ClusterRoleBinding": true}

// ErrInventoryID is wrapped by every error of ParseInventoryID.
var ErrInventoryID = errors.New("malformed inventory id")

// ParseInventoryID parses the id of a Flux inventory entry, "<namespace>_<name>_<group>_<kind>"
// (cli-utils' ObjMetadata format). The namespace is empty for cluster-scoped objects
// ("_istio-system__Namespace") and the group for the core group ("default_foo__ConfigMap").
// Namespaces, groups and kinds never contain '_', object names neither, except that the
// names of RBAC objects have their ':' written as "__". The split is therefore: namespace
// up to the first '_', kind after the last, group after the last of the rest, name in
// between. Anything that does not fit, such as an empty name or kind or a '_' or ':'
// left in the name, is an error wrapping ErrInventoryID.
func ParseInventoryID(id string) (reconcile.ObjectRef, error) {
	namespace, rest, ok := strings.Cut(id, inventoryIDSeparator)
	if !ok {
		return reconcile.ObjectRef{}, fmt.Errorf("%w %q: want <namespace>_<name>_<group>_<kind>", ErrInventoryID, id)
	}
	i := strings.LastIndex(rest, inventoryIDSeparator)
	if i < 0 {
		return reconcile.ObjectRef{}, fmt.Errorf("%w %q: want <namespace>_<name>_<group>_<kind>", ErrInventoryID, id)
	}
	rest, kind := rest[:i], rest[i+1:]
	i = strings.LastIndex(rest, inventoryIDSeparator)
	if i < 0 {
		return reconcile.ObjectRef{}, fmt.Errorf("%w %q: want <namespace>_<name>_<group>_<kind>", ErrInventoryID, id)
	}
	name, group := rest[:i], rest[i+1:]
	if kind == "" {
		return reconcile.ObjectRef{}, fmt.Errorf("%w %q: empty kind", ErrInventoryID, id)
	}
	if strings.Contains(name, ":") {
		return reconcile.ObjectRef{}, fmt.Errorf("%w %q: ':' in name", ErrInventoryID, id)
	}
	if group == rbacGroup && rbacKinds[kind] {
		name = strings.ReplaceAll(name, inventoryColonEncoded, ":")
	}
	if name == "" || strings.Contains(name, inventoryIDSeparator) {
		return reconcile.ObjectRef{}, fmt.Errorf("%w %q: bad name", ErrInventoryID, id)
	}
	return reconcile.ObjectRef{Group: group, Kind: kind, Namespace: namespace, Name: name}, nil
}

// inventoryID formats ref the way cli-utils does; the inverse of ParseInventoryID.
func inventoryID(ref reconcile.ObjectRef) string {
	name := ref.Name
	if ref.Group == rbacGroup && rbacKinds[ref.Kind] {
		name = strings.ReplaceAll(name, ":", inventoryColonEncoded)
	}
	return strings.Join([]string{ref.Namespace, name, ref.Group, ref.Kind}, inventoryIDSeparator)
}

// decodeApp converts a watched object, as the dynamic client returns it, into its Flux
// API type and then into an App. An object that does not decode still yields an App, with
// State Unknown and Reason ReasonDecodeError, together with an error wrapping
// errUndecodable: the app exists, and what Flux says of it is unknown.
func decodeApp(kind string, u *unstructured.Unstructured, observedAt time.Time) (reconcile.App, error) {
	var err error
	switch kind {
	case KindKustomization:
		var ks kustomizev1.Kustomization
		if err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ks); err == nil {
			return KustomizationApp(&ks, observedAt)
		}
	case KindHelmRelease:
		var hr helmv2.HelmRelease
		if err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &hr); err == nil {
			return HelmReleaseApp(&hr, observedAt)
		}
	default:
		err = fmt.Errorf("kind %q is not a flux kind meshdrift reads", kind)
	}
	app := reconcile.App{
		Key:        appKey(kind, u.GetNamespace(), u.GetName()),
		State:      reconcile.AppUnknown,
		Reason:     ReasonDecodeError,
		Message:    err.Error(),
		ObservedAt: observedAt,
	}
	return app, fmt.Errorf("%w %s %s/%s: %w", errUndecodable, kind, u.GetNamespace(), u.GetName(), err)
}
