// Package argocd checks meshdrift's own Argo CD Application view (adapters/argocd/appview)
// against the upstream argo-cd/v2 types, in a module of its own because those types pin
// an older Kubernetes library set than meshdrift does.
package argocd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
	"github.com/argoproj/gitops-engine/pkg/health"
	synccommon "github.com/argoproj/gitops-engine/pkg/sync/common"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

const (
	revA = "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
	revB = "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98"
	revC = "84a516841ba77a5b4648de2cd0dfcb30ea46dbb4"
	repo = "https://git.example.com/platform/mesh-config.git"
)

// at returns a metav1.Time at second precision, the precision Argo CD's JSON keeps.
func at(t testing.TB, s string) metav1.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return metav1.NewTime(v)
}

func atp(t testing.TB, s string) *metav1.Time {
	t.Helper()
	v := at(t, s)
	return &v
}

func newApp(t testing.TB, ns, name string) v1alpha1.Application {
	return v1alpha1.Application{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "Application"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              name,
			Namespace:         ns,
			UID:               "c08a9f52-9f08-4879-bb60-5f84ae2763f8",
			ResourceVersion:   "48213",
			Generation:        27,
			CreationTimestamp: at(t, "2025-03-02T09:14:07Z"),
			Finalizers:        []string{"resources-finalizer.argocd.argoproj.io"},
		},
		Spec: v1alpha1.ApplicationSpec{
			Project:     "default",
			Source:      &v1alpha1.ApplicationSource{RepoURL: repo, Path: "apps/" + name, TargetRevision: "main"},
			Destination: v1alpha1.ApplicationDestination{Server: "https://kubernetes.default.svc", Namespace: "bookinfo"},
			SyncPolicy: &v1alpha1.SyncPolicy{
				Automated:   &v1alpha1.SyncPolicyAutomated{Prune: true, SelfHeal: true},
				SyncOptions: v1alpha1.SyncOptions{"ServerSideApply=true"},
			},
		},
	}
}

func resources(vsSync v1alpha1.SyncStatusCode, deployHealth *v1alpha1.HealthStatus) []v1alpha1.ResourceStatus {
	return []v1alpha1.ResourceStatus{
		{Version: "v1", Kind: "Service", Namespace: "bookinfo", Name: "reviews", Status: v1alpha1.SyncStatusCodeSynced,
			Health: &v1alpha1.HealthStatus{Status: health.HealthStatusHealthy}},
		{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "bookinfo", Name: "reviews-v2", Status: v1alpha1.SyncStatusCodeSynced,
			Health: deployHealth},
		// No health: Argo CD has no health check for Istio kinds.
		{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService", Namespace: "bookinfo", Name: "reviews", Status: vsSync},
	}
}

func syncResult(rev string, vsResult synccommon.ResultCode, vsMessage string, vsHook synccommon.OperationPhase) *v1alpha1.SyncOperationResult {
	return &v1alpha1.SyncOperationResult{
		Revision: rev,
		Source:   v1alpha1.ApplicationSource{RepoURL: repo, Path: "apps/reviews", TargetRevision: "main"},
		Resources: v1alpha1.ResourceResults{
			{Version: "v1", Kind: "Service", Namespace: "bookinfo", Name: "reviews", Status: synccommon.ResultCodeSynced,
				Message: "service/reviews serverside-applied", HookPhase: synccommon.OperationRunning, SyncPhase: synccommon.SyncPhaseSync},
			{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService", Namespace: "bookinfo", Name: "reviews",
				Status: vsResult, Message: vsMessage, HookPhase: vsHook, SyncPhase: synccommon.SyncPhaseSync},
		},
	}
}

func history(entries ...v1alpha1.RevisionHistory) v1alpha1.RevisionHistories { return entries }

func deployed(t testing.TB, id int64, rev, when string) v1alpha1.RevisionHistory {
	return v1alpha1.RevisionHistory{
		ID: id, Revision: rev, DeployedAt: at(t, when), DeployStartedAt: atp(t, when),
		Source:      v1alpha1.ApplicationSource{RepoURL: repo, Path: "apps/reviews", TargetRevision: "main"},
		InitiatedBy: v1alpha1.OperationInitiator{Automated: true},
	}
}

func operation(t testing.TB, phase synccommon.OperationPhase, msg, started string, finished *metav1.Time, res *v1alpha1.SyncOperationResult) *v1alpha1.OperationState {
	op := &v1alpha1.OperationState{
		Operation: v1alpha1.Operation{
			InitiatedBy: v1alpha1.OperationInitiator{Automated: true},
			Retry:       v1alpha1.RetryStrategy{Limit: 5},
		},
		Phase: phase, Message: msg, StartedAt: at(t, started), FinishedAt: finished, SyncResult: res,
	}
	if res != nil {
		op.Operation.Sync = &v1alpha1.SyncOperation{Revision: res.Revision, Revisions: res.Revisions, Prune: true}
	}
	return op
}

const rejected = `admission webhook "validation.istio.io" denied the request: configuration is invalid: http match uri prefix cannot be empty`

// statusCases builds Applications with upstream types for each status shape meshdrift
// maps, together with the reconcile.App expected from them.
func statusCases(t testing.TB) []struct {
	name string
	app  v1alpha1.Application
	want reconcile.App
} {
	type tc = struct {
		name string
		app  v1alpha1.Application
		want reconcile.App
	}
	key := func(ns, name string) reconcile.AppKey {
		return reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: ns, Name: name}
	}
	var cases []tc

	a := newApp(t, "argocd", "reviews")
	a.Status = v1alpha1.ApplicationStatus{
		Resources: resources(v1alpha1.SyncStatusCodeSynced, &v1alpha1.HealthStatus{Status: health.HealthStatusHealthy}),
		Sync: v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeSynced, Revision: revA,
			ComparedTo: v1alpha1.ComparedTo{Source: *a.Spec.Source, Destination: a.Spec.Destination}},
		Health:              v1alpha1.HealthStatus{Status: health.HealthStatusHealthy, LastTransitionTime: atp(t, "2025-06-11T08:21:44Z")},
		History:             history(deployed(t, 11, revB, "2025-06-10T16:02:10Z"), deployed(t, 12, revA, "2025-06-11T08:21:40Z")),
		ReconciledAt:        atp(t, "2025-06-11T08:24:02Z"),
		OperationState:      operation(t, synccommon.OperationSucceeded, "successfully synced (all tasks run)", "2025-06-11T08:21:37Z", atp(t, "2025-06-11T08:21:40Z"), syncResult(revA, synccommon.ResultCodeSynced, "virtualservice.networking.istio.io/reviews serverside-applied", synccommon.OperationRunning)),
		SourceType:          v1alpha1.ApplicationSourceTypeDirectory,
		Summary:             v1alpha1.ApplicationSummary{Images: []string{"docker.io/istio/examples-bookinfo-reviews-v2:1.20.2"}},
		ControllerNamespace: "argocd",
	}
	cases = append(cases, tc{"synced healthy", a, reconcile.App{
		Key: key("argocd", "reviews"), DesiredRevision: revA, AppliedRevision: revA, AppliedAt: at(t, "2025-06-11T08:21:40Z").Time,
		State: reconcile.AppSynced, Reason: "Synced",
	}})

	a = newApp(t, "argocd", "reviews")
	a.Spec.SyncPolicy = nil // manual sync
	a.Status = v1alpha1.ApplicationStatus{
		Resources:      resources(v1alpha1.SyncStatusCodeOutOfSync, &v1alpha1.HealthStatus{Status: health.HealthStatusHealthy}),
		Sync:           v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeOutOfSync, Revision: revC},
		Health:         v1alpha1.HealthStatus{Status: health.HealthStatusHealthy},
		History:        history(deployed(t, 4, revA, "2025-05-20T11:00:01Z")),
		ReconciledAt:   atp(t, "2025-06-11T08:25:13Z"),
		OperationState: operation(t, synccommon.OperationSucceeded, "successfully synced (all tasks run)", "2025-05-20T10:59:58Z", atp(t, "2025-05-20T11:00:01Z"), syncResult(revA, synccommon.ResultCodeSynced, "virtualservice.networking.istio.io/reviews created", synccommon.OperationRunning)),
	}
	cases = append(cases, tc{"out of sync, auto-sync off", a, reconcile.App{
		Key: key("argocd", "reviews"), DesiredRevision: revC, AppliedRevision: revA, AppliedAt: at(t, "2025-05-20T11:00:01Z").Time,
		State: reconcile.AppOutOfSync, Reason: "OutOfSync", Suspended: true,
	}})

	a = newApp(t, "argocd", "reviews")
	a.Spec.SyncPolicy = &v1alpha1.SyncPolicy{Automated: &v1alpha1.SyncPolicyAutomated{}} // `automated: {}` is on in v2
	failMsg := "one or more objects failed to apply, reason: " + rejected + " (retried 5 times)."
	a.Status = v1alpha1.ApplicationStatus{
		Resources: resources(v1alpha1.SyncStatusCodeOutOfSync, &v1alpha1.HealthStatus{Status: health.HealthStatusHealthy}),
		Sync:      v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeOutOfSync, Revision: revC},
		Health:    v1alpha1.HealthStatus{Status: health.HealthStatusHealthy},
		History:   history(deployed(t, 19, revB, "2025-06-01T07:40:10Z")),
		Conditions: []v1alpha1.ApplicationCondition{{
			Type: v1alpha1.ApplicationConditionSyncError, Message: "Failed sync attempt to " + revC + ": one or more objects failed to apply, reason: " + rejected,
			LastTransitionTime: atp(t, "2025-06-11T08:30:55Z"),
		}},
		OperationState: operation(t, synccommon.OperationFailed, failMsg, "2025-06-11T08:29:01Z", atp(t, "2025-06-11T08:30:55Z"), syncResult(revC, synccommon.ResultCodeSyncFailed, rejected, synccommon.OperationFailed)),
	}
	a.Status.OperationState.RetryCount = 5
	cases = append(cases, tc{"operation failed", a, reconcile.App{
		Key: key("argocd", "reviews"), DesiredRevision: revC, AppliedRevision: revB, AppliedAt: at(t, "2025-06-01T07:40:10Z").Time,
		State: reconcile.AppFailed, Reason: "Failed", Message: failMsg,
	}})

	a = newApp(t, "argocd", "reviews")
	a.Status = v1alpha1.ApplicationStatus{
		Resources:      resources(v1alpha1.SyncStatusCodeSynced, &v1alpha1.HealthStatus{Status: health.HealthStatusDegraded, Message: `Deployment "reviews-v2" exceeded its progress deadline`}),
		Sync:           v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeSynced, Revision: revA},
		Health:         v1alpha1.HealthStatus{Status: health.HealthStatusDegraded},
		History:        history(deployed(t, 12, revA, "2025-06-11T08:30:17Z")),
		OperationState: operation(t, synccommon.OperationSucceeded, "successfully synced (all tasks run)", "2025-06-11T08:30:15Z", atp(t, "2025-06-11T08:30:17Z"), syncResult(revA, synccommon.ResultCodeSynced, "virtualservice.networking.istio.io/reviews configured", synccommon.OperationRunning)),
	}
	cases = append(cases, tc{"degraded", a, reconcile.App{
		Key: key("argocd", "reviews"), DesiredRevision: revA, AppliedRevision: revA, AppliedAt: at(t, "2025-06-11T08:30:17Z").Time,
		State: reconcile.AppFailed, Reason: "Degraded",
		Message: `Deployment bookinfo/reviews-v2: Deployment "reviews-v2" exceeded its progress deadline`,
	}})

	a = newApp(t, "argocd", "reviews")
	a.Annotations = map[string]string{"argocd.argoproj.io/refresh": "normal"}
	a.Status = v1alpha1.ApplicationStatus{
		Resources:      resources(v1alpha1.SyncStatusCodeOutOfSync, &v1alpha1.HealthStatus{Status: health.HealthStatusHealthy}),
		Sync:           v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeOutOfSync, Revision: revC},
		Health:         v1alpha1.HealthStatus{Status: health.HealthStatusHealthy},
		History:        history(deployed(t, 12, revA, "2025-06-11T08:21:40Z")),
		OperationState: operation(t, synccommon.OperationRunning, "waiting for completion of hook /Pod/istio-config-check", "2025-06-11T09:02:43Z", nil, &v1alpha1.SyncOperationResult{Revision: revC}),
	}
	cases = append(cases, tc{"operation running", a, reconcile.App{
		Key: key("argocd", "reviews"), DesiredRevision: revC, AppliedRevision: revA, AppliedAt: at(t, "2025-06-11T08:21:40Z").Time,
		State: reconcile.AppProgressing, Reason: "Running", Message: "waiting for completion of hook /Pod/istio-config-check", Stale: true,
	}})

	a = newApp(t, "argocd", "reviews")
	a.Status = v1alpha1.ApplicationStatus{
		Sync:           v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeSynced, Revision: revA},
		Health:         v1alpha1.HealthStatus{Status: health.HealthStatusHealthy},
		History:        history(deployed(t, 12, revB, "2025-06-11T08:21:40Z")),
		OperationState: operation(t, synccommon.OperationError, "rpc error: code = Unknown desc = Manifest generation error (cached)", "2025-06-11T09:02:43Z", atp(t, "2025-06-11T09:02:44Z"), nil),
	}
	cases = append(cases, tc{"operation error", a, reconcile.App{
		Key: key("argocd", "reviews"), DesiredRevision: revA, AppliedRevision: revB, AppliedAt: at(t, "2025-06-11T08:21:40Z").Time,
		State: reconcile.AppFailed, Reason: "Error", Message: "rpc error: code = Unknown desc = Manifest generation error (cached)",
	}})

	a = newApp(t, "argocd", "istio-ingress")
	a.Spec.Source = nil
	a.Spec.Sources = v1alpha1.ApplicationSources{
		{RepoURL: "https://istio-release.storage.googleapis.com/charts", Chart: "gateway", TargetRevision: "1.26.2",
			Helm: &v1alpha1.ApplicationSourceHelm{ReleaseName: "istio-ingress", ValueFiles: []string{"$values/gateways/ingress/values.yaml"}}},
		{RepoURL: repo, TargetRevision: "main", Ref: "values"},
		{RepoURL: repo, Path: "gateways/ingress/routes", TargetRevision: "main", Name: "routes"},
	}
	revs := []string{"1.26.2", revB, revB}
	a.Status = v1alpha1.ApplicationStatus{
		Sync:   v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeSynced, Revisions: revs, ComparedTo: v1alpha1.ComparedTo{Sources: a.Spec.Sources, Destination: a.Spec.Destination}},
		Health: v1alpha1.HealthStatus{Status: health.HealthStatusHealthy},
		History: history(v1alpha1.RevisionHistory{
			ID: 3, Revisions: revs, Sources: a.Spec.Sources, DeployedAt: at(t, "2025-06-09T14:05:29Z"), DeployStartedAt: atp(t, "2025-06-09T14:05:25Z"),
		}),
		OperationState: operation(t, synccommon.OperationSucceeded, "successfully synced (all tasks run)", "2025-06-09T14:05:25Z", atp(t, "2025-06-09T14:05:29Z"),
			&v1alpha1.SyncOperationResult{Revisions: revs, Sources: a.Spec.Sources}),
		SourceTypes: []v1alpha1.ApplicationSourceType{v1alpha1.ApplicationSourceTypeHelm, v1alpha1.ApplicationSourceTypeDirectory},
	}
	joined := strings.Join(revs, ",")
	cases = append(cases, tc{"multi-source", a, reconcile.App{
		Key: key("argocd", "istio-ingress"), DesiredRevision: joined, AppliedRevision: joined, AppliedAt: at(t, "2025-06-09T14:05:29Z").Time,
		State: reconcile.AppSynced, Reason: "Synced",
	}})

	a = newApp(t, "argocd", "reviews")
	cases = append(cases, tc{"no status", a, reconcile.App{Key: key("argocd", "reviews"), State: reconcile.AppUnknown}})

	a = newApp(t, "team-bookinfo", "reviews")
	a.Spec.SyncPolicy = &v1alpha1.SyncPolicy{SyncOptions: v1alpha1.SyncOptions{"CreateNamespace=true"}} // policy without automated: off
	a.Status = v1alpha1.ApplicationStatus{
		Sync:    v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeSynced, Revision: revB},
		Health:  v1alpha1.HealthStatus{Status: health.HealthStatusHealthy},
		History: history(deployed(t, 0, revB, "2025-05-30T15:45:08Z")),
	}
	cases = append(cases, tc{"other namespace, auto-sync off", a, reconcile.App{
		Key: key("team-bookinfo", "reviews"), DesiredRevision: revB, AppliedRevision: revB, AppliedAt: at(t, "2025-05-30T15:45:08Z").Time,
		State: reconcile.AppSynced, Reason: "Synced", Suspended: true,
	}})

	a = newApp(t, "argocd", "reviews-canary")
	a.Status = v1alpha1.ApplicationStatus{
		Resources: []v1alpha1.ResourceStatus{{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout", Namespace: "bookinfo", Name: "reviews",
			Status: v1alpha1.SyncStatusCodeSynced, Health: &v1alpha1.HealthStatus{Status: health.HealthStatusSuspended, Message: "Rollout is paused"}}},
		Sync:   v1alpha1.SyncStatus{Status: v1alpha1.SyncStatusCodeSynced, Revision: revC},
		Health: v1alpha1.HealthStatus{Status: health.HealthStatusSuspended},
	}
	cases = append(cases, tc{"health suspended", a, reconcile.App{
		Key: key("argocd", "reviews-canary"), DesiredRevision: revC, State: reconcile.AppProgressing, Reason: "Suspended",
		Message: "Rollout bookinfo/reviews: Rollout is paused",
	}})

	for i := range cases {
		cases[i].want.Objects = expectObjects(&cases[i].app)
	}
	return cases
}

// TestViewMatchesUpstream marshals upstream Applications as the API server stores them
// and checks that meshdrift's view decodes every field it has to the upstream value, and
// maps it as documented.
func TestViewMatchesUpstream(t *testing.T) {
	observed := time.Date(2025, 6, 11, 9, 15, 0, 0, time.UTC)
	for _, tc := range statusCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(&tc.app)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appview.FromJSON(data)
			if err != nil {
				t.Fatalf("decoding %s: %v", data, err)
			}
			if want := expectView(&tc.app); !reflect.DeepEqual(got, want) {
				t.Errorf("view differs from upstream:\n got %s\nwant %s", dump(got), dump(want))
			}
			if gotAuto, want := got.AutoSync(), tc.app.Spec.SyncPolicy != nil && tc.app.Spec.SyncPolicy.Automated != nil; gotAuto != want {
				t.Errorf("AutoSync() = %v, upstream automated set = %v", gotAuto, want)
			}
			app := appview.ToApp(got, observed)
			tc.want.ObservedAt = observed
			if !reflect.DeepEqual(app, tc.want) {
				t.Errorf("ToApp:\n got %+v\nwant %+v", app, tc.want)
			}
			assertTagsKnownUpstream(t, got)
		})
	}
}

// TestListMatchesUpstream decodes an upstream ApplicationList the way Argo CD's API server
// serves it: grpc-gateway with encoding/json, items without apiVersion/kind.
func TestListMatchesUpstream(t *testing.T) {
	var list v1alpha1.ApplicationList
	list.ResourceVersion = "91004"
	for _, tc := range statusCases(t) {
		item := tc.app
		item.TypeMeta = metav1.TypeMeta{}
		list.Items = append(list.Items, item)
	}
	data, err := json.Marshal(&list)
	if err != nil {
		t.Fatal(err)
	}
	got, err := appview.FromListJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(list.Items) {
		t.Fatalf("%d items, want %d", len(got), len(list.Items))
	}
	for i := range got {
		if want := expectView(&list.Items[i]); !reflect.DeepEqual(got[i], want) {
			t.Errorf("item %d:\n got %s\nwant %s", i, dump(got[i]), dump(want))
		}
	}

	empty, err := json.Marshal(&v1alpha1.ApplicationList{})
	if err != nil {
		t.Fatal(err)
	}
	if apps, err := appview.FromListJSON(empty); err != nil || len(apps) != 0 {
		t.Errorf("empty upstream list %s: %d apps, err %v", empty, len(apps), err)
	}
}

// v3Only lists fixtures that use fields Argo CD v2.14 does not have.
var v3Only = map[string]bool{"autosync-disabled-v3.json": true}

// TestFixturesAreUpstreamJSON checks meshdrift's hand-written fixtures: each must decode
// strictly (no unknown field) into the upstream type, and our view of it must equal the
// upstream values.
func TestFixturesAreUpstreamJSON(t *testing.T) {
	root := filepath.Join("..", "..", "..", "adapters", "argocd")
	names, err := filepath.Glob(filepath.Join(root, "appview", "testdata", "*.json"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no fixtures under %s: %v", root, err)
	}
	for _, name := range names {
		t.Run(filepath.Base(name), func(t *testing.T) {
			if v3Only[filepath.Base(name)] {
				t.Skip("uses Argo CD v3 fields")
			}
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var up v1alpha1.Application
			if err := strictDecode(data, &up); err != nil {
				t.Fatalf("not v2.14 Application JSON: %v", err)
			}
			got, err := appview.FromJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			if want := expectView(&up); !reflect.DeepEqual(got, want) {
				t.Errorf("view differs from upstream:\n got %s\nwant %s", dump(got), dump(want))
			}
		})
	}

	t.Run("api server list", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(root, "testdata", "applications.json"))
		if err != nil {
			t.Fatal(err)
		}
		var up v1alpha1.ApplicationList
		if err := strictDecode(data, &up); err != nil {
			t.Fatalf("not v2.14 ApplicationList JSON: %v", err)
		}
		got, err := appview.FromListJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(up.Items) {
			t.Fatalf("%d items, want %d", len(got), len(up.Items))
		}
		for i := range got {
			if want := expectView(&up.Items[i]); !reflect.DeepEqual(got[i], want) {
				t.Errorf("item %d:\n got %s\nwant %s", i, dump(got[i]), dump(want))
			}
		}
	})
}

// assertTagsKnownUpstream re-encodes our view and decodes it strictly into the upstream
// type: a JSON tag of ours that upstream does not have (a typo) fails here.
func assertTagsKnownUpstream(t *testing.T, v appview.Application) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var up v1alpha1.Application
	if err := strictDecode(data, &up); err != nil {
		t.Errorf("our view's JSON is not upstream's: %v\n%s", err, data)
	}
}

func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// expectView is the view meshdrift should decode, built field by field from upstream.
func expectView(up *v1alpha1.Application) appview.Application {
	v := appview.Application{
		APIVersion: up.APIVersion,
		Kind:       up.Kind,
		Metadata: appview.ObjectMeta{
			Name: up.Name, Namespace: up.Namespace, ResourceVersion: up.ResourceVersion,
			Generation: up.Generation, Annotations: up.Annotations,
		},
	}
	if len(v.Metadata.Annotations) == 0 {
		v.Metadata.Annotations = nil
	}
	if up.Spec.Source != nil {
		s := source(*up.Spec.Source)
		v.Spec.Source = &s
	}
	for _, s := range up.Spec.Sources {
		v.Spec.Sources = append(v.Spec.Sources, source(s))
	}
	if p := up.Spec.SyncPolicy; p != nil {
		v.Spec.SyncPolicy = &appview.SyncPolicy{}
		if a := p.Automated; a != nil {
			v.Spec.SyncPolicy.Automated = &appview.SyncPolicyAutomated{Prune: a.Prune, SelfHeal: a.SelfHeal}
		}
	}

	st := &up.Status
	for _, r := range st.Resources {
		rs := appview.ResourceStatus{Group: r.Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Status: string(r.Status)}
		if r.Health != nil {
			rs.Health = &appview.HealthStatus{Status: string(r.Health.Status), Message: r.Health.Message}
		}
		v.Status.Resources = append(v.Status.Resources, rs)
	}
	v.Status.Sync = appview.SyncStatus{Status: string(st.Sync.Status), Revision: st.Sync.Revision, Revisions: strs(st.Sync.Revisions)}
	v.Status.Health = appview.HealthStatus{Status: string(st.Health.Status), Message: st.Health.Message}
	for _, h := range st.History {
		v.Status.History = append(v.Status.History, appview.RevisionHistory{
			ID: h.ID, Revision: h.Revision, Revisions: strs(h.Revisions), DeployedAt: tm(h.DeployedAt),
		})
	}
	for _, c := range st.Conditions {
		v.Status.Conditions = append(v.Status.Conditions, appview.ApplicationCondition{
			Type: c.Type, Message: c.Message, LastTransitionTime: tmp(c.LastTransitionTime),
		})
	}
	v.Status.ReconciledAt = tmp(st.ReconciledAt)
	if op := st.OperationState; op != nil {
		vo := &appview.OperationState{
			Phase: string(op.Phase), Message: op.Message, StartedAt: tm(op.StartedAt), FinishedAt: tmp(op.FinishedAt),
		}
		if sr := op.SyncResult; sr != nil {
			vo.SyncResult = &appview.SyncOperationResult{Revision: sr.Revision, Revisions: strs(sr.Revisions)}
			for _, r := range sr.Resources {
				vo.SyncResult.Resources = append(vo.SyncResult.Resources, appview.ResourceResult{
					Group: r.Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Status: string(r.Status),
					Message: r.Message, HookPhase: string(r.HookPhase), SyncPhase: string(r.SyncPhase),
				})
			}
		}
		v.Status.OperationState = vo
	}
	return v
}

func expectObjects(up *v1alpha1.Application) []reconcile.OwnedObject {
	var out []reconcile.OwnedObject
	for _, r := range up.Status.Resources {
		o := reconcile.OwnedObject{
			Ref:  reconcile.ObjectRef{Group: r.Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name},
			Sync: string(r.Status),
		}
		if r.Health != nil {
			o.Health = string(r.Health.Status)
		}
		out = append(out, o)
	}
	return out
}

func source(s v1alpha1.ApplicationSource) appview.ApplicationSource {
	return appview.ApplicationSource{
		RepoURL: s.RepoURL, Path: s.Path, TargetRevision: s.TargetRevision, Chart: s.Chart, Ref: s.Ref, Name: s.Name,
	}
}

func strs(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

// tm converts as JSON does: a zero metav1.Time is encoded as null, which leaves the
// time.Time zero.
func tm(t metav1.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func tmp(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := tm(*t)
	return &v
}

func dump(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}
