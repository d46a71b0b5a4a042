package mesh

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	fieldsSpec     = `{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:hosts":{},"f:http":{}}}`
	fieldsSpecOnly = `{"f:spec":{"f:http":{}}}`
	fieldsLabels   = `{"f:metadata":{"f:labels":{"f:team":{}}}}`
	fieldsStatus   = `{"f:status":{".":{},"f:observedGeneration":{}}}`
	// "f:spec" appears, but not at the top level.
	fieldsNested = `{"f:metadata":{"f:annotations":{"f:spec":{}}}}`
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func mf(manager string, op metav1.ManagedFieldsOperationType, sec int, fields string) metav1.ManagedFieldsEntry {
	e := metav1.ManagedFieldsEntry{Manager: manager, Operation: op, APIVersion: "networking.istio.io/v1", FieldsType: "FieldsV1"}
	if sec >= 0 {
		e.Time = &metav1.Time{Time: t0.Add(time.Duration(sec) * time.Second)}
	}
	if fields != "" {
		e.FieldsV1 = metav1.NewFieldsV1(fields)
	}
	return e
}

func status(e metav1.ManagedFieldsEntry) metav1.ManagedFieldsEntry {
	e.Subresource = "status"
	return e
}

const (
	apply  = metav1.ManagedFieldsOperationApply
	update = metav1.ManagedFieldsOperationUpdate
)

func TestLastSpecWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []metav1.ManagedFieldsEntry
		want    specWrite
	}{
		{"none", nil, specWrite{}},
		{
			"created by kustomize-controller",
			[]metav1.ManagedFieldsEntry{mf("kustomize-controller", apply, 0, fieldsSpec)},
			specWrite{"kustomize-controller", t0},
		},
		{
			"kubectl edit after the apply",
			[]metav1.ManagedFieldsEntry{
				mf("kustomize-controller", apply, 0, fieldsSpec),
				mf("kubectl-edit", update, 60, fieldsSpecOnly),
			},
			specWrite{"kubectl-edit", t0.Add(time.Minute)},
		},
		{
			"a re-apply after the edit wins",
			[]metav1.ManagedFieldsEntry{
				mf("argocd-controller", apply, 120, fieldsSpec),
				mf("kubectl-edit", update, 60, fieldsSpecOnly),
			},
			specWrite{"argocd-controller", t0.Add(2 * time.Minute)},
		},
		{
			"later label and status writes do not count",
			[]metav1.ManagedFieldsEntry{
				mf("helm-controller", apply, 0, fieldsSpec),
				mf("kubectl-label", update, 300, fieldsLabels),
				status(mf("pilot-discovery", update, 400, fieldsStatus)),
				mf("annotator", update, 500, fieldsNested),
			},
			specWrite{"helm-controller", t0},
		},
		{
			"no entry touches spec: latest overall",
			[]metav1.ManagedFieldsEntry{
				mf("kubectl-label", update, 300, fieldsLabels),
				status(mf("pilot-discovery", update, 400, fieldsStatus)),
			},
			specWrite{"pilot-discovery", t0.Add(400 * time.Second)},
		},
		{
			"same second: the Update wins over the Apply",
			[]metav1.ManagedFieldsEntry{
				mf("kustomize-controller", apply, 0, fieldsSpec),
				mf("kubectl-edit", update, 0, fieldsSpecOnly),
			},
			specWrite{"kubectl-edit", t0},
		},
		{
			"same second, same operation: by name",
			[]metav1.ManagedFieldsEntry{
				mf("kubectl-patch", update, 0, fieldsSpecOnly),
				mf("kubectl-edit", update, 0, fieldsSpecOnly),
			},
			specWrite{"kubectl-edit", t0},
		},
		{
			"an entry without time loses to one with",
			[]metav1.ManagedFieldsEntry{
				mf("old", update, -1, fieldsSpecOnly),
				mf("kubectl-client-side-apply", update, 0, fieldsSpec),
			},
			specWrite{"kubectl-client-side-apply", t0},
		},
		{
			"no time anywhere",
			[]metav1.ManagedFieldsEntry{mf("kubectl-create", update, -1, fieldsSpec)},
			specWrite{"kubectl-create", time.Time{}},
		},
		{
			"malformed fieldsV1 does not touch spec",
			[]metav1.ManagedFieldsEntry{
				mf("broken", update, 90, `{"f:spec":`),
				mf("kustomize-controller", apply, 0, fieldsSpec),
			},
			specWrite{"kustomize-controller", t0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lastSpecWrite(tc.entries); got.Manager != tc.want.Manager || !got.At.Equal(tc.want.At) {
				t.Errorf("lastSpecWrite = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestUpdateSpecWrite(t *testing.T) {
	applied := mf("kustomize-controller", apply, 0, fieldsSpec)
	for _, tc := range []struct {
		name     string
		old, new []metav1.ManagedFieldsEntry
		want     string
	}{
		{
			// Times tie at one-second resolution; the new entry tells the writer.
			"edit in the same second as the apply",
			[]metav1.ManagedFieldsEntry{applied},
			[]metav1.ManagedFieldsEntry{applied, mf("kubectl-edit", update, 0, fieldsSpecOnly)},
			"kubectl-edit",
		},
		{
			"re-apply in the same second as an edit",
			[]metav1.ManagedFieldsEntry{applied, mf("kubectl-edit", update, 0, fieldsSpecOnly)},
			// Forced apply took the edited field back; the edit entry lost its spec.
			[]metav1.ManagedFieldsEntry{mf("kustomize-controller", apply, 1, fieldsSpec), mf("kubectl-edit", update, 0, fieldsLabels)},
			"kustomize-controller",
		},
		{
			// Flux takes hosts back in the same second; the editor keeps exportTo. Times
			// tie and no entry is new: the one that gained fields wrote.
			"re-apply in the same second takes a field back",
			[]metav1.ManagedFieldsEntry{
				mf("kustomize-controller", apply, 0, `{"f:spec":{"f:http":{}}}`),
				mf("kubectl-edit", update, 0, `{"f:spec":{"f:exportTo":{},"f:hosts":{}}}`),
			},
			[]metav1.ManagedFieldsEntry{
				mf("kustomize-controller", apply, 0, `{"f:spec":{"f:hosts":{},"f:http":{}}}`),
				mf("kubectl-edit", update, 0, `{"f:spec":{"f:exportTo":{}}}`),
			},
			"kustomize-controller",
		},
		{
			"second edit by the same manager moves its time",
			[]metav1.ManagedFieldsEntry{mf("kustomize-controller", apply, 30, fieldsSpec), mf("kubectl-edit", update, 10, fieldsSpecOnly)},
			[]metav1.ManagedFieldsEntry{mf("kustomize-controller", apply, 30, fieldsSpec), mf("kubectl-edit", update, 40, fieldsSpecOnly)},
			"kubectl-edit",
		},
		{
			"writer removed spec fields and set a label: owns no spec",
			[]metav1.ManagedFieldsEntry{applied},
			[]metav1.ManagedFieldsEntry{applied, mf("kubectl-edit", update, 5, fieldsLabels)},
			"kubectl-edit",
		},
		{
			"nothing moved: falls back to the latest spec write",
			[]metav1.ManagedFieldsEntry{applied, mf("kubectl-edit", update, 5, fieldsSpecOnly)},
			[]metav1.ManagedFieldsEntry{applied, mf("kubectl-edit", update, 5, fieldsSpecOnly)},
			"kubectl-edit",
		},
		{
			"relist after an outage: the latest of the moved spec writers",
			[]metav1.ManagedFieldsEntry{applied},
			[]metav1.ManagedFieldsEntry{
				mf("kustomize-controller", apply, 50, fieldsSpec),
				mf("kubectl-edit", update, 20, fieldsSpecOnly),
				mf("kubectl-label", update, 90, fieldsLabels),
			},
			"kustomize-controller",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := updateSpecWrite(tc.old, tc.new); got.Manager != tc.want {
				t.Errorf("updateSpecWrite manager = %q, want %q", got.Manager, tc.want)
			}
			// The informers' transform keeps what this reads.
			if got := updateSpecWrite(trimEntries(t, tc.old), trimEntries(t, tc.new)); got.Manager != tc.want {
				t.Errorf("after trimObject: updateSpecWrite manager = %q, want %q", got.Manager, tc.want)
			}
		})
	}
}

func TestManagerClass(t *testing.T) {
	for manager, want := range map[string]string{
		"kustomize-controller":          classGitOps,
		"helm-controller":               classGitOps,
		"argocd-controller":             classGitOps,
		"argocd-application-controller": classGitOps,
		"kubectl":                       classKubectl,
		"kubectl-edit":                  classKubectl,
		"kubectl-client-side-apply":     classKubectl,
		"kubectl-patch":                 classKubectl,
		"kubectlx":                      classOther,
		"argocd-server":                 classOther,
		"pilot-discovery":               classOther,
		"":                              classOther,
	} {
		if got := managerClass(manager); got != want {
			t.Errorf("managerClass(%q) = %q, want %q", manager, got, want)
		}
	}
}

func TestGainedFields(t *testing.T) {
	for _, tc := range []struct {
		prev, now string
		want      bool
	}{
		{fieldsSpecOnly, fieldsSpecOnly, false},
		{`{"f:spec":{"f:http":{}}}`, `{"f:spec":{"f:hosts":{},"f:http":{}}}`, true},
		{`{"f:spec":{"f:hosts":{},"f:http":{}}}`, `{"f:spec":{"f:http":{}}}`, false},
		// Same set, different encoding.
		{`{"f:spec":{"f:hosts":{},"f:http":{}}}`, `{"f:spec":{"f:http":{},"f:hosts":{}}}`, false},
		// Lost one field, gained another: an Apply of a changed config.
		{`{"f:spec":{"f:hosts":{}}}`, `{"f:spec":{"f:http":{}}}`, true},
		{`{"f:spec":{"f:http":{}}}`, `{"f:spec":{"f:http":{"f:x":{}}}}`, true},
		{"", fieldsSpecOnly, true},
		{fieldsSpecOnly, "", false},
		{`not json`, fieldsSpecOnly, false},
		{fieldsSpecOnly, `not json`, false},
	} {
		got := gainedFields(mf("m", update, 0, tc.prev), mf("m", update, 0, tc.now))
		if got != tc.want {
			t.Errorf("gainedFields(%s, %s) = %v, want %v", tc.prev, tc.now, got, tc.want)
		}
	}
}
