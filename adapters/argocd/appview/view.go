// Package appview is meshdrift's own small typed view of an Argo CD Application
// (argoproj.io/v1alpha1): only the fields meshdrift reads, under Argo CD's JSON names, and
// the mapping of that view to reconcile.App.
//
// It is a leaf package on purpose. It depends on the standard library, reconcile and
// apimachinery's unstructured type only, so that hack/tools/argocd can compile it next to
// the upstream argo-cd/v2 types (which pin an older apimachinery than meshdrift does) and
// check it field by field against them.
package appview

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The resource this package reads.
const (
	Group      = "argoproj.io"
	Version    = "v1alpha1"
	APIVersion = Group + "/" + Version
	Kind       = "Application"
	Resource   = "applications"
)

// AnnotationRefresh is set by `argocd app get --refresh` and the UI to ask the controller
// for a refresh; the controller removes it once it has compared the app again.
const AnnotationRefresh = "argocd.argoproj.io/refresh"

// Sync status codes (status.sync.status, status.resources[].status).
const (
	SyncSynced    = "Synced"
	SyncOutOfSync = "OutOfSync"
	SyncUnknown   = "Unknown"
)

// Health status codes (gitops-engine pkg/health).
const (
	HealthHealthy     = "Healthy"
	HealthProgressing = "Progressing"
	HealthDegraded    = "Degraded"
	HealthSuspended   = "Suspended"
	HealthMissing     = "Missing"
	HealthUnknown     = "Unknown"
)

// Operation phases (gitops-engine pkg/sync/common).
const (
	PhaseRunning     = "Running"
	PhaseTerminating = "Terminating"
	PhaseFailed      = "Failed"
	PhaseError       = "Error"
	PhaseSucceeded   = "Succeeded"
)

// Application is the part of an Argo CD Application that meshdrift uses. Field names and
// JSON tags mirror argo-cd's pkg/apis/application/v1alpha1 so that the same bytes decode
// into either; everything else in the object is ignored.
type Application struct {
	APIVersion string            `json:"apiVersion,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	Metadata   ObjectMeta        `json:"metadata"`
	Spec       ApplicationSpec   `json:"spec"`
	Status     ApplicationStatus `json:"status,omitempty"`
}

// ObjectMeta holds the metadata fields meshdrift uses.
type ObjectMeta struct {
	Name            string            `json:"name,omitempty"`
	Namespace       string            `json:"namespace,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Generation      int64             `json:"generation,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
}

// ApplicationSpec: where the app comes from and whether Argo CD applies it by itself.
// An app has either Source or Sources (multi-source, Argo CD >= 2.6).
type ApplicationSpec struct {
	Source     *ApplicationSource  `json:"source,omitempty"`
	Sources    []ApplicationSource `json:"sources,omitempty"`
	SyncPolicy *SyncPolicy         `json:"syncPolicy,omitempty"`
}

// ApplicationSource is one Git repository path or Helm chart.
type ApplicationSource struct {
	RepoURL        string `json:"repoURL"`
	Path           string `json:"path,omitempty"`
	TargetRevision string `json:"targetRevision,omitempty"`
	Chart          string `json:"chart,omitempty"`
	Ref            string `json:"ref,omitempty"`
	Name           string `json:"name,omitempty"`
}

// SyncPolicy holds the automated sync settings.
type SyncPolicy struct {
	Automated *SyncPolicyAutomated `json:"automated,omitempty"`
}

// SyncPolicyAutomated is present when automated sync is configured. Enabled exists from
// Argo CD v3.1 on; see Application.AutoSync.
type SyncPolicyAutomated struct {
	Prune    bool  `json:"prune,omitempty"`
	SelfHeal bool  `json:"selfHeal,omitempty"`
	Enabled  *bool `json:"enabled,omitempty"`
}

// ApplicationStatus is what the application controller writes.
type ApplicationStatus struct {
	Resources      []ResourceStatus       `json:"resources,omitempty"`
	Sync           SyncStatus             `json:"sync,omitempty"`
	Health         HealthStatus           `json:"health,omitempty"`
	History        []RevisionHistory      `json:"history,omitempty"`
	Conditions     []ApplicationCondition `json:"conditions,omitempty"`
	ReconciledAt   *time.Time             `json:"reconciledAt,omitempty"`
	OperationState *OperationState        `json:"operationState,omitempty"`
}

// SyncStatus compares the live state with Git. Revision is set for a single-source app,
// Revisions (one per spec.sources entry, in order) for a multi-source one.
type SyncStatus struct {
	Status    string   `json:"status"`
	Revision  string   `json:"revision,omitempty"`
	Revisions []string `json:"revisions,omitempty"`
}

// HealthStatus is the aggregated health of the app or of one resource.
type HealthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// RevisionHistory is one successful deployment; Argo CD appends one per successful sync
// and trims the oldest beyond spec.revisionHistoryLimit.
type RevisionHistory struct {
	ID         int64     `json:"id"`
	Revision   string    `json:"revision,omitempty"`
	Revisions  []string  `json:"revisions,omitempty"`
	DeployedAt time.Time `json:"deployedAt"`
}

// ApplicationCondition is an error or warning the controller reports for the app.
type ApplicationCondition struct {
	Type               string     `json:"type"`
	Message            string     `json:"message"`
	LastTransitionTime *time.Time `json:"lastTransitionTime,omitempty"`
}

// OperationState is the state of the last (or current) sync operation.
type OperationState struct {
	Phase      string               `json:"phase"`
	Message    string               `json:"message,omitempty"`
	SyncResult *SyncOperationResult `json:"syncResult,omitempty"`
	// StartedAt is never null in Argo CD's output; a JSON null leaves it zero.
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// SyncOperationResult is what a sync operation applied.
type SyncOperationResult struct {
	Resources []ResourceResult `json:"resources,omitempty"`
	Revision  string           `json:"revision"`
	Revisions []string         `json:"revisions,omitempty"`
}

// ResourceResult is the outcome of one object in a sync operation.
type ResourceResult struct {
	Group     string `json:"group"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status,omitempty"`
	Message   string `json:"message,omitempty"`
	HookPhase string `json:"hookPhase,omitempty"`
	SyncPhase string `json:"syncPhase,omitempty"`
}

// ResourceStatus is one object the app manages. Health is nil for kinds Argo CD has no
// health check for (all networking.istio.io and security.istio.io kinds among them).
type ResourceStatus struct {
	Group     string        `json:"group,omitempty"`
	Kind      string        `json:"kind,omitempty"`
	Namespace string        `json:"namespace,omitempty"`
	Name      string        `json:"name,omitempty"`
	Status    string        `json:"status,omitempty"`
	Health    *HealthStatus `json:"health,omitempty"`
}

// AutoSync reports whether automated sync is on. Argo CD v2 switches it on by the mere
// presence of spec.syncPolicy.automated, even `automated: {}`; v3.1 added
// automated.enabled, which switches it off only when explicitly false (as
// SyncPolicy.IsAutomatedSyncEnabled does upstream).
func (a *Application) AutoSync() bool {
	p := a.Spec.SyncPolicy
	if p == nil || p.Automated == nil {
		return false
	}
	return p.Automated.Enabled == nil || *p.Automated.Enabled
}

// MultiSource reports whether the app uses spec.sources; Argo CD then ignores spec.source.
func (a *Application) MultiSource() bool {
	return len(a.Spec.Sources) > 0
}

// FromJSON decodes one Application as the Kubernetes API or Argo CD's API server serves
// it. Unknown fields are ignored: Argo CD adds fields in every release. An Application
// without status decodes fine.
func FromJSON(data []byte) (Application, error) {
	var a Application
	if err := json.Unmarshal(data, &a); err != nil {
		return Application{}, fmt.Errorf("decoding argo cd application: %w", err)
	}
	if err := a.validate(); err != nil {
		return Application{}, err
	}
	return a, nil
}

// FromUnstructured decodes an Application read through a dynamic client or informer.
// It goes through JSON rather than the unstructured converter so that the one decoding
// path, with its time parsing, serves both sources.
func FromUnstructured(u *unstructured.Unstructured) (Application, error) {
	if u == nil {
		return Application{}, errors.New("decoding argo cd application: nil object")
	}
	data, err := json.Marshal(u.Object)
	if err != nil {
		return Application{}, fmt.Errorf("encoding unstructured argo cd application: %w", err)
	}
	return FromJSON(data)
}

// FromListJSON decodes the body of Argo CD's `GET /api/v1/applications`
// ({"metadata": {...}, "items": [...]}). The items key must be present (null is an empty
// list): an unrelated JSON object must not read as "no applications".
func FromListJSON(data []byte) ([]Application, error) {
	var list struct {
		Items json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("decoding argo cd application list: %w", err)
	}
	if list.Items == nil {
		return nil, errors.New("decoding argo cd application list: no items field")
	}
	var items []Application
	if err := json.Unmarshal(list.Items, &items); err != nil {
		return nil, fmt.Errorf("decoding argo cd application list: %w", err)
	}
	for i := range items {
		if err := items[i].validate(); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
	}
	return items, nil
}

// validate rejects objects that are not Applications or cannot be keyed. apiVersion and
// kind are only checked when set: the API server's list items carry neither.
func (a *Application) validate() error {
	if a.APIVersion != "" && a.APIVersion != APIVersion {
		return fmt.Errorf("decoding argo cd application: apiVersion %q, want %q", a.APIVersion, APIVersion)
	}
	if a.Kind != "" && a.Kind != Kind {
		return fmt.Errorf("decoding argo cd application: kind %q, want %q", a.Kind, Kind)
	}
	if a.Metadata.Name == "" || a.Metadata.Namespace == "" {
		return fmt.Errorf("decoding argo cd application: metadata.name and metadata.namespace are required (got %q/%q)",
			a.Metadata.Namespace, a.Metadata.Name)
	}
	return nil
}
