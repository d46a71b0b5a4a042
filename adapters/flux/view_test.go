package flux

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/meshdrift/meshdrift/reconcile"
)

// goldenDir holds Kustomizations as the real kustomize-controller v1.9.6 left them in the
// integration tests, one file per case (rewritten with -update-golden).
const goldenDir = "testdata/kustomize-controller-1.9.6"

const (
	viewRevA = "main@sha1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	viewRevB = "main@sha1:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

var viewObservedAt = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// viewTime is a minute offset from a fixed base, for readable histories.
func viewTime(min int) metav1.Time {
	return metav1.NewTime(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(min) * time.Minute))
}

func cond(typ string, status metav1.ConditionStatus, reason, msg string, at metav1.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: at}
}

func snapshot(digest, status, revision string, first, last int) meta.Snapshot {
	return meta.Snapshot{
		Digest:               digest,
		FirstReconciled:      viewTime(first),
		LastReconciled:       viewTime(last),
		LastReconciledStatus: status,
		Metadata:             map[string]string{"revision": revision},
	}
}

func inventory(ids ...string) *kustomizev1.ResourceInventory {
	inv := &kustomizev1.ResourceInventory{}
	for _, id := range ids {
		inv.Entries = append(inv.Entries, kustomizev1.ResourceRef{ID: id, Version: "v1"})
	}
	return inv
}

func owned(group, kind, ns, name string) reconcile.OwnedObject {
	return reconcile.OwnedObject{Ref: reconcile.ObjectRef{Group: group, Kind: kind, Namespace: ns, Name: name}}
}

func TestKustomizationApp(t *testing.T) {
	key := appKey(KindKustomization, "apps", "mesh")
	meta0 := metav1.ObjectMeta{Namespace: "apps", Name: "mesh", Generation: 2}
	succeeded := cond(meta.ReadyCondition, metav1.ConditionTrue, meta.ReconciliationSucceededReason, "Applied revision: "+viewRevA, viewTime(30))
	tests := []struct {
		name    string
		ks      kustomizev1.Kustomization
		want    reconcile.App
		wantErr bool
	}{{
		name: "no status at all",
		ks:   kustomizev1.Kustomization{ObjectMeta: meta0},
		want: reconcile.App{Key: key, State: reconcile.AppUnknown, Stale: true, ObservedAt: viewObservedAt},
	}, {
		name: "synced, applied at first reconcile of its manifests",
		ks: kustomizev1.Kustomization{ObjectMeta: meta0, Status: kustomizev1.KustomizationStatus{
			ObservedGeneration:    2,
			LastAttemptedRevision: viewRevA,
			LastAppliedRevision:   viewRevA,
			Conditions:            []metav1.Condition{succeeded},
			History:               meta.History{snapshot("sha256:a", meta.ReconciliationSucceededReason, viewRevA, 10, 30)},
			Inventory:             inventory("apps_settings__ConfigMap", "apps_reviews_networking.istio.io_VirtualService", "_apps__Namespace"),
		}},
		want: reconcile.App{
			Key: key, DesiredRevision: viewRevA, AppliedRevision: viewRevA, AppliedAt: viewTime(10).Time,
			State: reconcile.AppSynced, Reason: meta.ReconciliationSucceededReason, Message: "Applied revision: " + viewRevA,
			Objects: []reconcile.OwnedObject{
				owned("", "ConfigMap", "apps", "settings"),
				owned("networking.istio.io", "VirtualService", "apps", "reviews"),
				owned("", "Namespace", "", "apps"),
			},
			ObservedAt: viewObservedAt,
		},
	}, {
		name: "build failed keeps the applied revision",
		ks: kustomizev1.Kustomization{ObjectMeta: meta0, Status: kustomizev1.KustomizationStatus{
			ObservedGeneration:    2,
			LastAttemptedRevision: viewRevB,
			LastAppliedRevision:   viewRevA,
			Conditions: []metav1.Condition{
				cond(meta.ReadyCondition, metav1.ConditionFalse, meta.BuildFailedReason, "kustomize build failed: yaml: line 3", viewTime(40)),
				cond(meta.ReconcilingCondition, metav1.ConditionTrue, meta.ProgressingWithRetryReason, "Detecting drift", viewTime(40)),
			},
			History: meta.History{snapshot("sha256:a", meta.ReconciliationSucceededReason, viewRevA, 10, 30)},
		}},
		want: reconcile.App{
			Key: key, DesiredRevision: viewRevB, AppliedRevision: viewRevA, AppliedAt: viewTime(10).Time,
			State: reconcile.AppFailed, Reason: meta.BuildFailedReason, Message: "kustomize build failed: yaml: line 3",
			ObservedAt: viewObservedAt,
		},
	}, {
		name: "suspended keeps the last message",
		ks: kustomizev1.Kustomization{ObjectMeta: meta0, Spec: kustomizev1.KustomizationSpec{Suspend: true}, Status: kustomizev1.KustomizationStatus{
			ObservedGeneration:    1,
			LastAttemptedRevision: viewRevA,
			LastAppliedRevision:   viewRevA,
			Conditions:            []metav1.Condition{succeeded},
		}},
		want: reconcile.App{
			Key: key, DesiredRevision: viewRevA, AppliedRevision: viewRevA, AppliedAt: viewTime(30).Time,
			State: reconcile.AppSuspended, Reason: meta.SuspendedReason, Message: "Applied revision: " + viewRevA,
			Suspended: true, Stale: true, ObservedAt: viewObservedAt,
		},
	}, {
		name: "bad inventory id is reported, the others kept",
		ks: kustomizev1.Kustomization{ObjectMeta: meta0, Status: kustomizev1.KustomizationStatus{
			ObservedGeneration: 2,
			Inventory:          inventory("apps_settings__ConfigMap", "garbage"),
		}},
		want: reconcile.App{
			Key: key, State: reconcile.AppUnknown, ObservedAt: viewObservedAt,
			Objects: []reconcile.OwnedObject{owned("", "ConfigMap", "apps", "settings")},
		},
		wantErr: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := KustomizationApp(&tt.ks, viewObservedAt)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInventoryID) {
				t.Errorf("error %v does not wrap ErrInventoryID", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestAppState(t *testing.T) {
	at := viewTime(0)
	ready := func(s metav1.ConditionStatus, reason string) metav1.Condition {
		return cond(meta.ReadyCondition, s, reason, "ready: "+reason, at)
	}
	reconciling := cond(meta.ReconcilingCondition, metav1.ConditionTrue, meta.ProgressingReason, "reconciling", at)
	retrying := cond(meta.ReconcilingCondition, metav1.ConditionTrue, meta.ProgressingWithRetryReason, "retrying", at)
	stalled := cond(meta.StalledCondition, metav1.ConditionTrue, meta.InvalidCELExpressionReason, "stalled", at)
	tests := []struct {
		name       string
		suspended  bool
		conds      []metav1.Condition
		want       reconcile.AppState
		wantReason string
		wantMsg    string
	}{
		{"no conditions", false, nil, reconcile.AppUnknown, "", ""},
		{"suspended without status", true, nil, reconcile.AppSuspended, meta.SuspendedReason, ""},
		{"suspended wins over failure", true, []metav1.Condition{ready(metav1.ConditionFalse, meta.BuildFailedReason)},
			reconcile.AppSuspended, meta.SuspendedReason, "ready: BuildFailed"},
		{"ready", false, []metav1.Condition{ready(metav1.ConditionTrue, meta.ReconciliationSucceededReason)},
			reconcile.AppSynced, meta.ReconciliationSucceededReason, "ready: ReconciliationSucceeded"},
		{"build failed while retrying", false, []metav1.Condition{ready(metav1.ConditionFalse, meta.BuildFailedReason), retrying},
			reconcile.AppFailed, meta.BuildFailedReason, "ready: BuildFailed"},
		{"artifact failed", false, []metav1.Condition{ready(metav1.ConditionFalse, meta.ArtifactFailedReason)},
			reconcile.AppFailed, meta.ArtifactFailedReason, "ready: ArtifactFailed"},
		{"reconciliation failed", false, []metav1.Condition{ready(metav1.ConditionFalse, meta.ReconciliationFailedReason)},
			reconcile.AppFailed, meta.ReconciliationFailedReason, "ready: ReconciliationFailed"},
		{"health check failed", false, []metav1.Condition{ready(metav1.ConditionFalse, meta.HealthCheckFailedReason)},
			reconcile.AppFailed, meta.HealthCheckFailedReason, "ready: HealthCheckFailed"},
		{"prune failed", false, []metav1.Condition{ready(metav1.ConditionFalse, meta.PruneFailedReason)},
			reconcile.AppFailed, meta.PruneFailedReason, "ready: PruneFailed"},
		{"unknown failure reason", false, []metav1.Condition{ready(metav1.ConditionFalse, "SomethingNew")},
			reconcile.AppFailed, "SomethingNew", "ready: SomethingNew"},
		{"dependency not ready waits", false, []metav1.Condition{ready(metav1.ConditionFalse, meta.DependencyNotReadyReason)},
			reconcile.AppProgressing, meta.DependencyNotReadyReason, "ready: DependencyNotReady"},
		{"health check canceled waits", false, []metav1.Condition{ready(metav1.ConditionFalse, meta.HealthCheckCanceledReason)},
			reconcile.AppProgressing, meta.HealthCheckCanceledReason, "ready: HealthCheckCanceled"},
		{"stalled", false, []metav1.Condition{ready(metav1.ConditionFalse, meta.InvalidCELExpressionReason), stalled},
			reconcile.AppFailed, meta.InvalidCELExpressionReason, "stalled"},
		{"stalled is false", false, []metav1.Condition{cond(meta.StalledCondition, metav1.ConditionFalse, "x", "x", at),
			ready(metav1.ConditionTrue, meta.ReconciliationSucceededReason)},
			reconcile.AppSynced, meta.ReconciliationSucceededReason, "ready: ReconciliationSucceeded"},
		{"run under way", false, []metav1.Condition{ready(metav1.ConditionUnknown, meta.ProgressingReason), reconciling},
			reconcile.AppProgressing, meta.ProgressingReason, "reconciling"},
		{"ready unknown alone", false, []metav1.Condition{ready(metav1.ConditionUnknown, meta.ProgressingReason)},
			reconcile.AppProgressing, meta.ProgressingReason, "ready: Progressing"},
		{"helm upgrade under way while still ready", false, []metav1.Condition{ready(metav1.ConditionTrue, helmv2.UpgradeSucceededReason), reconciling},
			reconcile.AppProgressing, meta.ProgressingReason, "reconciling"},
		{"helm upgrade failed, rolled back", false, []metav1.Condition{ready(metav1.ConditionFalse, helmv2.RollbackSucceededReason),
			cond(helmv2.RemediatedCondition, metav1.ConditionTrue, helmv2.RollbackSucceededReason, "rolled back", at)},
			reconcile.AppFailed, helmv2.RollbackSucceededReason, "ready: RollbackSucceeded"},
		{"helm install failed", false, []metav1.Condition{ready(metav1.ConditionFalse, helmv2.InstallFailedReason)},
			reconcile.AppFailed, helmv2.InstallFailedReason, "ready: InstallFailed"},
		{"only other conditions", false, []metav1.Condition{cond(meta.HealthyCondition, metav1.ConditionTrue, "Succeeded", "healthy", at)},
			reconcile.AppUnknown, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, reason, msg := appState(tt.suspended, tt.conds)
			if state != tt.want || reason != tt.wantReason || msg != tt.wantMsg {
				t.Errorf("appState = %s, %q, %q; want %s, %q, %q", state, reason, msg, tt.want, tt.wantReason, tt.wantMsg)
			}
		})
	}
}

func TestKustomizationAppliedAt(t *testing.T) {
	readyA := cond(meta.ReadyCondition, metav1.ConditionTrue, meta.ReconciliationSucceededReason, "Applied revision: "+viewRevA, viewTime(50))
	failedB := cond(meta.ReadyCondition, metav1.ConditionFalse, meta.BuildFailedReason, "bad", viewTime(50))
	tests := []struct {
		name string
		st   kustomizev1.KustomizationStatus
		want time.Time
	}{
		{"nothing applied", kustomizev1.KustomizationStatus{}, time.Time{}},
		{"periodic runs keep the first apply", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevA, LastAppliedRevision: viewRevA, Conditions: []metav1.Condition{readyA},
			History: meta.History{snapshot("sha256:a", meta.ReconciliationSucceededReason, viewRevA, 10, 50)},
		}, viewTime(10).Time},
		{"newest success of the revision wins", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevA, LastAppliedRevision: viewRevA,
			History: meta.History{
				snapshot("sha256:old", meta.ReconciliationSucceededReason, viewRevA, 1, 2),
				snapshot("sha256:a", meta.ReconciliationSucceededReason, viewRevA, 10, 50),
			},
		}, viewTime(10).Time},
		{"failed snapshots of the revision are not the apply", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevB, LastAppliedRevision: viewRevA, Conditions: []metav1.Condition{failedB},
			History: meta.History{
				snapshot("sha256:b", meta.ReconciliationFailedReason, viewRevB, 40, 45),
				snapshot("sha256:a", meta.ReconciliationSucceededReason, viewRevA, 10, 30),
			},
		}, viewTime(10).Time},
		{"revert dates from after the other manifests", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevA, LastAppliedRevision: viewRevA,
			History: meta.History{
				snapshot("sha256:a", meta.ReconciliationSucceededReason, viewRevA, 10, 60),
				snapshot("sha256:b", meta.ReconciliationSucceededReason, viewRevB, 20, 40),
			},
		}, viewTime(40).Time},
		{"unhealthy other manifests were applied too", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevA, LastAppliedRevision: viewRevA,
			History: meta.History{
				snapshot("sha256:a", meta.ReconciliationSucceededReason, viewRevA, 10, 60),
				snapshot("sha256:b", meta.HealthCheckFailedReason, viewRevB, 20, 45),
			},
		}, viewTime(45).Time},
		{"a rejected apply changed nothing", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevA, LastAppliedRevision: viewRevA,
			History: meta.History{
				snapshot("sha256:a", meta.ReconciliationSucceededReason, viewRevA, 10, 60),
				snapshot("sha256:b", meta.ReconciliationFailedReason, viewRevB, 20, 45),
			},
		}, viewTime(10).Time},
		{"no history: Ready's transition", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevA, LastAppliedRevision: viewRevA, Conditions: []metav1.Condition{readyA},
		}, viewTime(50).Time},
		{"no history, failing: unknown", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevB, LastAppliedRevision: viewRevA, Conditions: []metav1.Condition{failedB},
		}, time.Time{}},
		{"history of other revisions only: Ready's transition", kustomizev1.KustomizationStatus{
			LastAttemptedRevision: viewRevA, LastAppliedRevision: viewRevA, Conditions: []metav1.Condition{readyA},
			History: meta.History{snapshot("sha256:b", meta.ReconciliationSucceededReason, viewRevB, 1, 2)},
		}, viewTime(50).Time},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kustomizationAppliedAt(tt.st); !got.Equal(tt.want) {
				t.Errorf("kustomizationAppliedAt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHelmReleaseApp(t *testing.T) {
	key := appKey(KindHelmRelease, "apps", "podinfo")
	meta0 := metav1.ObjectMeta{Namespace: "apps", Name: "podinfo", Generation: 3}
	release := func(version int, status, chart string, deployed int) *helmv2.Snapshot {
		return &helmv2.Snapshot{
			Name: "podinfo", Namespace: "apps", Version: version, Status: status, ChartName: "podinfo",
			ChartVersion: chart, FirstDeployed: viewTime(0), LastDeployed: viewTime(deployed),
		}
	}
	tests := []struct {
		name    string
		hr      helmv2.HelmRelease
		want    reconcile.App
		wantErr bool
	}{{
		name: "no status at all",
		hr:   helmv2.HelmRelease{ObjectMeta: meta0},
		want: reconcile.App{Key: key, State: reconcile.AppUnknown, Stale: true, ObservedAt: viewObservedAt},
	}, {
		name: "upgraded",
		hr: helmv2.HelmRelease{ObjectMeta: meta0, Status: helmv2.HelmReleaseStatus{
			ObservedGeneration:    3,
			LastAttemptedRevision: "6.7.1",
			Conditions: []metav1.Condition{
				cond(meta.ReadyCondition, metav1.ConditionTrue, helmv2.UpgradeSucceededReason, "Helm upgrade succeeded", viewTime(20)),
				cond(helmv2.ReleasedCondition, metav1.ConditionTrue, helmv2.UpgradeSucceededReason, "Helm upgrade succeeded", viewTime(20)),
			},
			// Not sorted: the live release is found by version, not position.
			History: helmv2.Snapshots{release(1, "superseded", "6.7.0", 5), release(2, "deployed", "6.7.1", 19)},
			Inventory: &helmv2.ResourceInventory{Entries: []helmv2.ResourceRef{
				{ID: "apps_podinfo_apps_Deployment", Version: "v1"},
				{ID: "apps_podinfo_networking.istio.io_VirtualService", Version: "v1"},
			}},
		}},
		want: reconcile.App{
			Key: key, DesiredRevision: "6.7.1", AppliedRevision: "6.7.1", AppliedAt: viewTime(19).Time,
			State: reconcile.AppSynced, Reason: helmv2.UpgradeSucceededReason, Message: "Helm upgrade succeeded",
			Objects: []reconcile.OwnedObject{
				owned("apps", "Deployment", "apps", "podinfo"),
				owned("networking.istio.io", "VirtualService", "apps", "podinfo"),
			},
			ObservedAt: viewObservedAt,
		},
	}, {
		name: "failed upgrade keeps the deployed release",
		hr: helmv2.HelmRelease{ObjectMeta: meta0, Status: helmv2.HelmReleaseStatus{
			ObservedGeneration:    2,
			LastAttemptedRevision: "6.8.0",
			Conditions: []metav1.Condition{
				cond(meta.ReadyCondition, metav1.ConditionFalse, helmv2.UpgradeFailedReason, "Helm upgrade failed: timed out", viewTime(40)),
			},
			History: helmv2.Snapshots{release(3, "failed", "6.8.0", 39), release(2, "deployed", "6.7.1", 19)},
		}},
		want: reconcile.App{
			Key: key, DesiredRevision: "6.8.0", AppliedRevision: "6.7.1", AppliedAt: viewTime(19).Time,
			State: reconcile.AppFailed, Reason: helmv2.UpgradeFailedReason, Message: "Helm upgrade failed: timed out",
			Stale: true, ObservedAt: viewObservedAt,
		},
	}, {
		name: "nothing deployed",
		hr: helmv2.HelmRelease{ObjectMeta: meta0, Status: helmv2.HelmReleaseStatus{
			ObservedGeneration:    3,
			LastAttemptedRevision: "6.7.1",
			Conditions: []metav1.Condition{
				cond(meta.ReadyCondition, metav1.ConditionFalse, helmv2.InstallFailedReason, "install failed", viewTime(40)),
			},
			History: helmv2.Snapshots{release(1, "failed", "6.7.1", 39), nil},
		}},
		want: reconcile.App{
			Key: key, DesiredRevision: "6.7.1",
			State: reconcile.AppFailed, Reason: helmv2.InstallFailedReason, Message: "install failed",
			ObservedAt: viewObservedAt,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HelmReleaseApp(&tt.hr, viewObservedAt)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// decodeApp is the path the watcher takes: the dynamic client's unstructured object into
// the Flux API types.
func TestDecodeApp(t *testing.T) {
	tests := []struct {
		name       string
		kind       string
		yaml       string
		wantState  reconcile.AppState
		wantReason string
		wantErr    bool
	}{{
		name: "kustomization without status",
		kind: KindKustomization,
		yaml: `apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: mesh, namespace: apps, generation: 1}
spec: {interval: 10m, path: ./, prune: true, sourceRef: {kind: GitRepository, name: repo}}`,
		wantState: reconcile.AppUnknown,
	}, {
		name: "helmrelease without status",
		kind: KindHelmRelease,
		yaml: `apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: mesh, namespace: apps, generation: 1}
spec: {interval: 10m, chart: {spec: {chart: podinfo, sourceRef: {kind: HelmRepository, name: podinfo}}}}`,
		wantState: reconcile.AppUnknown,
	}, {
		name: "kustomization with a status of the wrong shape",
		kind: KindKustomization,
		yaml: `apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: mesh, namespace: apps}
status: {conditions: "not a list"}`,
		wantState:  reconcile.AppUnknown,
		wantReason: ReasonDecodeError,
		wantErr:    true,
	}, {
		name:       "kind not read",
		kind:       "GitRepository",
		yaml:       `{apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, metadata: {name: mesh, namespace: apps}}`,
		wantState:  reconcile.AppUnknown,
		wantReason: ReasonDecodeError,
		wantErr:    true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(tt.yaml), &u.Object); err != nil {
				t.Fatal(err)
			}
			app, err := decodeApp(tt.kind, u, viewObservedAt)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, errUndecodable)) {
				t.Fatalf("error = %v, want error %v wrapping errUndecodable", err, tt.wantErr)
			}
			want := appKey(tt.kind, "apps", "mesh")
			if app.Key != want || app.State != tt.wantState || app.Reason != tt.wantReason || !app.ObservedAt.Equal(viewObservedAt) {
				t.Errorf("got key %v state %s reason %q observed %v; want %v %s %q", app.Key, app.State, app.Reason, app.ObservedAt, want, tt.wantState, tt.wantReason)
			}
		})
	}
}

func TestParseInventoryID(t *testing.T) {
	tests := []struct {
		id   string
		want reconcile.ObjectRef
	}{
		{"default_foo__ConfigMap", reconcile.ObjectRef{Kind: "ConfigMap", Namespace: "default", Name: "foo"}},
		{"apps_reviews_networking.istio.io_VirtualService", reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "apps", Name: "reviews"}},
		{"_istio-system__Namespace", reconcile.ObjectRef{Kind: "Namespace", Name: "istio-system"}},
		{"_gateways.gateway.networking.k8s.io_apiextensions.k8s.io_CustomResourceDefinition",
			reconcile.ObjectRef{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition", Name: "gateways.gateway.networking.k8s.io"}},
		{"_system__controller__flux_rbac.authorization.k8s.io_ClusterRole",
			reconcile.ObjectRef{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:controller:flux"}},
		{"apps_app.v1_apps_Deployment", reconcile.ObjectRef{Group: "apps", Kind: "Deployment", Namespace: "apps", Name: "app.v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := ParseInventoryID(tt.id)
			if err != nil {
				t.Fatalf("ParseInventoryID: %v", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if back := inventoryID(got); back != tt.id {
				t.Errorf("inventoryID(%+v) = %q, want %q", got, back, tt.id)
			}
		})
	}
}

func TestParseInventoryIDErrors(t *testing.T) {
	for _, id := range []string{
		"",
		"default",
		"default_foo",
		"default_foo_",
		"default__ConfigMap",                    // empty name
		"default___ConfigMap",                   // empty name
		"default_a__b__ConfigMap",               // '_' in a name that is not RBAC
		"default_a:b__ConfigMap",                // ':' in a name
		"_a___b_rbac.authorization.k8s.io_Role", // odd '_' run in an RBAC name
		"_a:b_rbac.authorization.k8s.io_Role",   // ':' must be encoded
		"default_foo_apps_",                     // empty kind
	} {
		t.Run(id, func(t *testing.T) {
			ref, err := ParseInventoryID(id)
			if !errors.Is(err, ErrInventoryID) {
				t.Fatalf("ParseInventoryID(%q) = %+v, %v; want ErrInventoryID", id, ref, err)
			}
			if !strings.Contains(err.Error(), `"`+id+`"`) {
				t.Errorf("error %q does not quote the id", err)
			}
		})
	}
}

// The Kustomizations the real kustomize-controller v1.9.6 left in the integration tests
// (view_golden_test.go; recapture with go test ./adapters/flux/ -run TestWatchKustomization
// -args -update-golden).
func TestKustomizationAppGolden(t *testing.T) {
	tests := []struct {
		name       string
		state      reconcile.AppState
		reason     string
		desired    string
		applied    string
		appliedAt  bool // AppliedAt is the firstReconciled of the (single) history snapshot
		objects    bool // the artifact's ConfigMap and VirtualService
		stale      bool
		suspended  bool
		msgPattern string
	}{
		{"synced", reconcile.AppSynced, "ReconciliationSucceeded", viewRevA, viewRevA, true, true, false, false,
			"Applied revision: " + viewRevA},
		{"build-failed", reconcile.AppFailed, "BuildFailed", viewRevB, viewRevA, true, true, false, false,
			"MalformedYAMLError"},
		{"artifact-failed", reconcile.AppFailed, "ArtifactFailed", viewRevA, viewRevA, true, true, false, false,
			"computed digest doesn't match"},
		{"suspended", reconcile.AppSuspended, "Suspended", viewRevA, viewRevA, true, true, false, true,
			"Applied revision: " + viewRevA},
		// kustomize-controller initialises observedGeneration to -1 and stops there.
		{"suspended-new", reconcile.AppSuspended, "Suspended", "", "", false, false, true, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := os.ReadFile(filepath.Join(goldenDir, tt.name+".yaml"))
			if err != nil {
				t.Fatalf("golden case: %v", err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatal(err)
			}
			app, err := decodeApp(KindKustomization, u, viewObservedAt)
			if err != nil {
				t.Fatal(err)
			}
			ns := u.GetNamespace()
			if app.Key != appKey(KindKustomization, ns, u.GetName()) || app.State != tt.state || app.Reason != tt.reason ||
				app.DesiredRevision != tt.desired || app.AppliedRevision != tt.applied || app.Stale != tt.stale || app.Suspended != tt.suspended {
				t.Errorf("got %+v", app)
			}
			if !strings.Contains(app.Message, tt.msgPattern) {
				t.Errorf("message %q does not contain %q", app.Message, tt.msgPattern)
			}
			var wantAt time.Time
			if tt.appliedAt {
				hist, _, _ := unstructured.NestedSlice(u.Object, "status", "history")
				first, _ := hist[0].(map[string]any)["firstReconciled"].(string)
				if wantAt, err = time.Parse(time.RFC3339, first); err != nil {
					t.Fatal(err)
				}
			}
			if !app.AppliedAt.Equal(wantAt) {
				t.Errorf("AppliedAt = %v, want %v", app.AppliedAt, wantAt)
			}
			var wantObjects []reconcile.OwnedObject
			if tt.objects {
				wantObjects = []reconcile.OwnedObject{
					owned("", "ConfigMap", ns, "settings"),
					owned("networking.istio.io", "VirtualService", ns, "reviews"),
				}
			}
			if !reflect.DeepEqual(app.Objects, wantObjects) {
				t.Errorf("Objects = %+v, want %+v", app.Objects, wantObjects)
			}
		})
	}
}

func TestIgnoreAnnotation(t *testing.T) {
	m := metav1.ObjectMeta{Namespace: "apps", Name: "mesh", Annotations: map[string]string{reconcile.AnnotationIgnore: "MD0203,MD0301"}}
	ks, err := KustomizationApp(&kustomizev1.Kustomization{ObjectMeta: m}, time.Time{})
	if err != nil || ks.Ignore != "MD0203,MD0301" {
		t.Fatalf("Kustomization: Ignore %q, err %v", ks.Ignore, err)
	}
	hr, err := HelmReleaseApp(&helmv2.HelmRelease{ObjectMeta: m}, time.Time{})
	if err != nil || hr.Ignore != "MD0203,MD0301" {
		t.Fatalf("HelmRelease: Ignore %q, err %v", hr.Ignore, err)
	}
}
