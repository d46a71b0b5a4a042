package appview

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

const (
	revA = "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
	revB = "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98"
	revC = "84a516841ba77a5b4648de2cd0dfcb30ea46dbb4"
	revD = "3c363836cf4e16666669a25da280a1865c2d2874"
	revE = "58e6b3a414a1e090dfc6029add0f3555ccba127f"
	revF = "4a0a19218e082a343a1b17e5333409af9d98f0f5"
	revG = "54fd1711209fb1c0781092374132c66e79e2241b"
	revH = "27d5482eebd075de44389774fce28c69f45c8a75"
)

func ts(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func key(ns, name string) reconcile.AppKey {
	return reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: ns, Name: name}
}

func obj(group, kind, ns, name, sync, health string) reconcile.OwnedObject {
	return reconcile.OwnedObject{
		Ref:  reconcile.ObjectRef{Group: group, Kind: kind, Namespace: ns, Name: name},
		Sync: sync, Health: health,
	}
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestToApp(t *testing.T) {
	observed := time.Date(2025, 6, 11, 9, 15, 0, 0, time.UTC)
	tests := []struct {
		fixture string
		want    reconcile.App
	}{
		{
			fixture: "synced-healthy.json",
			want: reconcile.App{
				Key:             key("argocd", "reviews"),
				DesiredRevision: revA,
				AppliedRevision: revA,
				AppliedAt:       ts(t, "2025-06-11T08:21:40Z"),
				State:           reconcile.AppSynced,
				Reason:          "Synced",
				Objects: []reconcile.OwnedObject{
					obj("", "Service", "bookinfo", "reviews", "Synced", "Healthy"),
					obj("apps", "Deployment", "bookinfo", "reviews-v2", "Synced", "Healthy"),
					// Argo CD has no health check for Istio kinds.
					obj("networking.istio.io", "DestinationRule", "bookinfo", "reviews", "Synced", ""),
					obj("networking.istio.io", "VirtualService", "bookinfo", "reviews", "Synced", ""),
				},
			},
		},
		{
			// Manual sync (no syncPolicy): Git moved on, nobody synced.
			fixture: "out-of-sync.json",
			want: reconcile.App{
				Key:             key("argocd", "ratings"),
				DesiredRevision: revC,
				AppliedRevision: revD,
				AppliedAt:       ts(t, "2025-05-20T11:00:01Z"),
				State:           reconcile.AppOutOfSync,
				Reason:          "OutOfSync",
				Suspended:       true,
				Objects: []reconcile.OwnedObject{
					obj("", "Service", "bookinfo", "ratings", "Synced", "Healthy"),
					obj("networking.istio.io", "VirtualService", "bookinfo", "ratings", "OutOfSync", ""),
				},
			},
		},
		{
			// istiod's webhook rejected the VirtualService: the last good deploy is in history.
			fixture: "operation-failed.json",
			want: reconcile.App{
				Key:             key("argocd", "productpage"),
				DesiredRevision: revF,
				AppliedRevision: revE,
				AppliedAt:       ts(t, "2025-06-01T07:40:10Z"),
				State:           reconcile.AppFailed,
				Reason:          "Failed",
				Message:         `one or more objects failed to apply, reason: admission webhook "validation.istio.io" denied the request: configuration is invalid: http match uri prefix cannot be empty (retried 5 times).`,
				Objects: []reconcile.OwnedObject{
					obj("", "Service", "bookinfo", "productpage", "Synced", "Healthy"),
					obj("networking.istio.io", "VirtualService", "bookinfo", "productpage", "OutOfSync", ""),
				},
			},
		},
		{
			fixture: "degraded.json",
			want: reconcile.App{
				Key:             key("argocd", "details"),
				DesiredRevision: revG,
				AppliedRevision: revG,
				AppliedAt:       ts(t, "2025-06-11T08:30:17Z"),
				State:           reconcile.AppFailed,
				Reason:          "Degraded",
				Message:         `Deployment bookinfo/details-v1: Deployment "details-v1" exceeded its progress deadline`,
				Objects: []reconcile.OwnedObject{
					obj("apps", "Deployment", "bookinfo", "details-v1", "Synced", "Degraded"),
					obj("networking.istio.io", "DestinationRule", "bookinfo", "details", "Synced", ""),
				},
			},
		},
		{
			// A hook is running for revH; revA is still what was applied last. The refresh
			// annotation marks the status as about to be recomputed.
			fixture: "operation-running.json",
			want: reconcile.App{
				Key:             key("argocd", "reviews"),
				DesiredRevision: revH,
				AppliedRevision: revA,
				AppliedAt:       ts(t, "2025-06-11T08:21:40Z"),
				State:           reconcile.AppProgressing,
				Reason:          "Running",
				Message:         "waiting for completion of hook /Pod/istio-config-check and 1 more resources",
				Stale:           true,
				Objects: []reconcile.OwnedObject{
					obj("networking.istio.io", "VirtualService", "bookinfo", "reviews", "OutOfSync", ""),
				},
			},
		},
		{
			// One revision per source, joined in spec.sources order.
			fixture: "multi-source.json",
			want: reconcile.App{
				Key:             key("argocd", "istio-ingress"),
				DesiredRevision: "1.26.2," + revB + "," + revB,
				AppliedRevision: "1.26.2," + revB + "," + revB,
				AppliedAt:       ts(t, "2025-06-09T14:05:29Z"),
				State:           reconcile.AppSynced,
				Reason:          "Synced",
				Objects: []reconcile.OwnedObject{
					obj("", "Service", "istio-ingress", "istio-ingress", "Synced", "Healthy"),
					obj("apps", "Deployment", "istio-ingress", "istio-ingress", "Synced", "Healthy"),
					obj("networking.istio.io", "Gateway", "istio-ingress", "public", "Synced", ""),
				},
			},
		},
		{
			// Just created; the controller has not written a status yet.
			fixture: "no-status.json",
			want: reconcile.App{
				Key:   key("argocd", "reviews"),
				State: reconcile.AppUnknown,
			},
		},
		{
			// Apps in any namespace: the namespace is part of the key.
			fixture: "other-namespace.json",
			want: reconcile.App{
				Key:             key("team-bookinfo", "reviews"),
				DesiredRevision: revB,
				AppliedRevision: revB,
				AppliedAt:       ts(t, "2025-05-30T15:45:08Z"),
				State:           reconcile.AppSynced,
				Reason:          "Synced",
				Objects: []reconcile.OwnedObject{
					obj("security.istio.io", "AuthorizationPolicy", "bookinfo", "reviews-viewer", "Synced", ""),
				},
			},
		},
		{
			// A paused Argo Rollout: a workload pause, not switched-off reconciliation.
			fixture: "health-suspended.json",
			want: reconcile.App{
				Key:             key("argocd", "reviews-canary"),
				DesiredRevision: revC,
				AppliedRevision: revC,
				AppliedAt:       ts(t, "2025-06-11T08:50:00Z"),
				State:           reconcile.AppProgressing,
				Reason:          "Suspended",
				Message:         "Rollout bookinfo/reviews: Rollout is paused",
				Objects: []reconcile.OwnedObject{
					obj("argoproj.io", "Rollout", "bookinfo", "reviews", "Synced", "Suspended"),
					obj("networking.istio.io", "VirtualService", "bookinfo", "reviews-canary", "Synced", ""),
				},
			},
		},
		{
			fixture: "comparison-error.json",
			want: reconcile.App{
				Key:     key("argocd", "mesh-policies"),
				State:   reconcile.AppUnknown,
				Reason:  "ComparisonError",
				Message: "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = failed to list refs: authentication required: Repository not found.",
			},
		},
		{
			// Argo CD v3.1+: automated.enabled=false switches auto-sync off.
			fixture: "autosync-disabled-v3.json",
			want: reconcile.App{
				Key:             key("argocd", "ratings"),
				DesiredRevision: revC,
				AppliedRevision: revC,
				AppliedAt:       ts(t, "2025-06-02T10:00:04Z"),
				State:           reconcile.AppSynced,
				Reason:          "Synced",
				Suspended:       true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			a, err := FromJSON(readFixture(t, tt.fixture))
			if err != nil {
				t.Fatal(err)
			}
			tt.want.ObservedAt = observed
			got := ToApp(a, observed)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ToApp:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestAppState covers the precedence rules on status shapes the fixtures do not.
func TestAppState(t *testing.T) {
	tests := []struct {
		name       string
		status     string
		wantState  reconcile.AppState
		wantReason string
		wantMsg    string
	}{
		{"empty status object", `{}`, reconcile.AppUnknown, "", ""},
		{"null status", `null`, reconcile.AppUnknown, "", ""},
		{"operation error beats healthy",
			`{"sync":{"status":"Synced"},"health":{"status":"Healthy"},"operationState":{"phase":"Error","message":"rpc error: manifest generation failed","startedAt":"2025-06-11T08:00:00Z"}}`,
			reconcile.AppFailed, "Error", "rpc error: manifest generation failed"},
		{"terminating operation",
			`{"sync":{"status":"OutOfSync"},"health":{"status":"Healthy"},"operationState":{"phase":"Terminating","startedAt":"2025-06-11T08:00:00Z"}}`,
			reconcile.AppProgressing, "Terminating", ""},
		{"running operation beats degraded",
			`{"sync":{"status":"OutOfSync"},"health":{"status":"Degraded"},"operationState":{"phase":"Running","message":"waiting for healthy state of apps/Deployment/reviews-v3","startedAt":"2025-06-11T08:00:00Z"}}`,
			reconcile.AppProgressing, "Running", "waiting for healthy state of apps/Deployment/reviews-v3"},
		{"degraded beats out of sync",
			`{"sync":{"status":"OutOfSync"},"health":{"status":"Degraded","message":"pods crash looping"}}`,
			reconcile.AppFailed, "Degraded", "pods crash looping"},
		{"health progressing",
			`{"sync":{"status":"Synced"},"health":{"status":"Progressing"},"resources":[{"group":"apps","kind":"Deployment","namespace":"bookinfo","name":"reviews-v3","status":"Synced","health":{"status":"Progressing","message":"Waiting for rollout to finish: 1 old replicas are pending termination..."}}]}`,
			reconcile.AppProgressing, "Progressing", "Deployment bookinfo/reviews-v3: Waiting for rollout to finish: 1 old replicas are pending termination..."},
		{"missing health",
			`{"sync":{"status":"Synced"},"health":{"status":"Missing"}}`,
			reconcile.AppOutOfSync, "Missing", ""},
		{"out of sync with sync error condition",
			`{"sync":{"status":"OutOfSync"},"health":{"status":"Healthy"},"conditions":[{"type":"SharedResourceWarning","message":"VirtualService/reviews is part of applications argocd/reviews and argocd/reviews-canary"},{"type":"SyncError","message":"auto-sync will not be attempted because ..."}]}`,
			reconcile.AppOutOfSync, "SyncError", "auto-sync will not be attempted because ..."},
		{"warning conditions do not change synced",
			`{"sync":{"status":"Synced"},"health":{"status":"Healthy"},"conditions":[{"type":"OrphanedResourceWarning","message":"Application has 1 orphaned resources"}]}`,
			reconcile.AppSynced, "Synced", ""},
		{"health unknown",
			`{"sync":{"status":"Synced"},"health":{"status":"Unknown"}}`,
			reconcile.AppUnknown, "Unknown", ""},
		{"sync unknown without condition",
			`{"sync":{"status":"Unknown"},"health":{"status":"Healthy"}}`,
			reconcile.AppUnknown, "Unknown", ""},
		{"only reconciledAt",
			`{"reconciledAt":"2025-06-11T08:00:00Z"}`,
			reconcile.AppUnknown, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := []byte(`{"metadata":{"name":"a","namespace":"argocd"},"spec":{},"status":` + tt.status + `}`)
			a, err := FromJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			got := ToApp(a, time.Time{})
			if got.State != tt.wantState || got.Reason != tt.wantReason || got.Message != tt.wantMsg {
				t.Errorf("got (%s, %q, %q), want (%s, %q, %q)",
					got.State, got.Reason, got.Message, tt.wantState, tt.wantReason, tt.wantMsg)
			}
		})
	}
}

func TestAppliedRevision(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		wantRev string
		wantAt  string
	}{
		{"no history, no operation", `{"sync":{"status":"OutOfSync","revision":"` + revA + `"}}`, "", ""},
		{"newest history entry by id, not by position",
			`{"history":[{"id":12,"revision":"` + revA + `","deployedAt":"2025-06-11T08:21:40Z"},{"id":11,"revision":"` + revB + `","deployedAt":"2025-06-10T16:02:10Z"}]}`,
			revA, "2025-06-11T08:21:40Z"},
		{"succeeded operation without finishedAt takes the matching history time",
			`{"operationState":{"phase":"Succeeded","startedAt":"2025-06-11T08:21:37Z","syncResult":{"revision":"` + revA + `"}},"history":[{"id":12,"revision":"` + revA + `","deployedAt":"2025-06-11T08:21:40Z"}]}`,
			revA, "2025-06-11T08:21:40Z"},
		{"succeeded operation without sync result falls back to history",
			`{"operationState":{"phase":"Succeeded","startedAt":"2025-06-11T08:21:37Z"},"history":[{"id":3,"revision":"` + revB + `","deployedAt":"2025-06-10T16:02:10Z"}]}`,
			revB, "2025-06-10T16:02:10Z"},
		{"error operation falls back to history",
			`{"operationState":{"phase":"Error","startedAt":"2025-06-11T08:21:37Z","finishedAt":"2025-06-11T08:21:39Z","syncResult":{"revision":"` + revA + `"}},"history":[{"id":3,"revision":"` + revB + `","deployedAt":"2025-06-10T16:02:10Z"}]}`,
			revB, "2025-06-10T16:02:10Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := FromJSON([]byte(`{"metadata":{"name":"a","namespace":"argocd"},"spec":{},"status":` + tt.status + `}`))
			if err != nil {
				t.Fatal(err)
			}
			var wantAt time.Time
			if tt.wantAt != "" {
				wantAt = ts(t, tt.wantAt)
			}
			got := ToApp(a, time.Time{})
			if got.AppliedRevision != tt.wantRev || !got.AppliedAt.Equal(wantAt) {
				t.Errorf("got (%q, %s), want (%q, %s)", got.AppliedRevision, got.AppliedAt, tt.wantRev, wantAt)
			}
		})
	}
}

func TestAutoSync(t *testing.T) {
	tests := []struct {
		spec string
		want bool
	}{
		{`{}`, false},
		{`{"syncPolicy":{}}`, false},
		{`{"syncPolicy":{"automated":null}}`, false},
		{`{"syncPolicy":{"syncOptions":["CreateNamespace=true"]}}`, false},
		// Argo CD v2: presence switches it on.
		{`{"syncPolicy":{"automated":{}}}`, true},
		{`{"syncPolicy":{"automated":{"prune":true,"selfHeal":true}}}`, true},
		// Argo CD v3.1+: enabled only switches it off when false.
		{`{"syncPolicy":{"automated":{"enabled":true}}}`, true},
		{`{"syncPolicy":{"automated":{"enabled":false,"prune":true}}}`, false},
	}
	for _, tt := range tests {
		a, err := FromJSON([]byte(`{"metadata":{"name":"a","namespace":"argocd"},"spec":` + tt.spec + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := a.AutoSync(); got != tt.want {
			t.Errorf("AutoSync() for spec %s = %v, want %v", tt.spec, got, tt.want)
		}
		if got := ToApp(a, time.Time{}).Suspended; got != !tt.want {
			t.Errorf("Suspended for spec %s = %v, want %v", tt.spec, got, !tt.want)
		}
	}
}

// TestViewFields pins the decoded view itself for the richest fixture, so that a JSON tag
// typo cannot hide behind the mapping.
func TestViewFields(t *testing.T) {
	a, err := FromJSON(readFixture(t, "operation-failed.json"))
	if err != nil {
		t.Fatal(err)
	}
	finished := ts(t, "2025-06-11T08:30:55Z")
	condAt := ts(t, "2025-06-11T08:30:55Z")
	reconciled := ts(t, "2025-06-11T08:31:20Z")
	want := Application{
		APIVersion: "argoproj.io/v1alpha1",
		Kind:       "Application",
		Metadata:   ObjectMeta{Name: "productpage", Namespace: "argocd", ResourceVersion: "60114", Generation: 41},
		Spec: ApplicationSpec{
			Source: &ApplicationSource{
				RepoURL: "https://git.example.com/platform/mesh-config.git", Path: "apps/productpage", TargetRevision: "main",
			},
			SyncPolicy: &SyncPolicy{Automated: &SyncPolicyAutomated{}},
		},
		Status: ApplicationStatus{
			Resources: []ResourceStatus{
				{Kind: "Service", Namespace: "bookinfo", Name: "productpage", Status: "Synced", Health: &HealthStatus{Status: "Healthy"}},
				{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "bookinfo", Name: "productpage", Status: "OutOfSync"},
			},
			Sync:   SyncStatus{Status: "OutOfSync", Revision: revF},
			Health: HealthStatus{Status: "Healthy"},
			History: []RevisionHistory{
				{ID: 19, Revision: revE, DeployedAt: ts(t, "2025-06-01T07:40:10Z")},
			},
			Conditions: []ApplicationCondition{{
				Type:               "SyncError",
				Message:            `Failed sync attempt to 4a0a19218e082a343a1b17e5333409af9d98f0f5: one or more objects failed to apply, reason: admission webhook "validation.istio.io" denied the request: configuration is invalid: http match uri prefix cannot be empty`,
				LastTransitionTime: &condAt,
			}},
			ReconciledAt: &reconciled,
			OperationState: &OperationState{
				Phase:   "Failed",
				Message: `one or more objects failed to apply, reason: admission webhook "validation.istio.io" denied the request: configuration is invalid: http match uri prefix cannot be empty (retried 5 times).`,
				SyncResult: &SyncOperationResult{
					Resources: []ResourceResult{
						{Kind: "Service", Namespace: "bookinfo", Name: "productpage", Status: "Synced", Message: "service/productpage unchanged", HookPhase: "Running", SyncPhase: "Sync"},
						{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "bookinfo", Name: "productpage", Status: "SyncFailed", Message: `admission webhook "validation.istio.io" denied the request: configuration is invalid: http match uri prefix cannot be empty`, HookPhase: "Failed", SyncPhase: "Sync"},
					},
					Revision: revF,
				},
				StartedAt:  ts(t, "2025-06-11T08:29:01Z"),
				FinishedAt: &finished,
			},
		},
	}
	if !reflect.DeepEqual(a, want) {
		gotJSON, _ := json.MarshalIndent(a, "", "  ")
		wantJSON, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("decoded view:\n%s\nwant:\n%s", gotJSON, wantJSON)
	}
}

func TestToAppIgnoreAnnotation(t *testing.T) {
	var a Application
	a.Metadata.Namespace, a.Metadata.Name = "argocd", "reviews"
	a.Metadata.Annotations = map[string]string{reconcile.AnnotationIgnore: "MD0103"}
	if got := ToApp(a, time.Time{}).Ignore; got != "MD0103" {
		t.Fatalf("Ignore = %q", got)
	}
}
