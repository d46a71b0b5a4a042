package findings

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshdrift/meshdrift/reconcile"
)

func write(manager, op string, at time.Time, fields ...string) reconcile.SpecWrite {
	return reconcile.SpecWrite{Manager: manager, Operation: op, At: at, Fields: fields}
}

func object(ref reconcile.ObjectRef, owner reconcile.AppKey, writes ...reconcile.SpecWrite) reconcile.MeshChange {
	return reconcile.MeshChange{Ref: ref, Generation: 1, GitOpsOwner: owner, SpecWrites: writes}
}

func TestDeriveDrift(t *testing.T) {
	applied := t0.Add(-time.Hour) // synced() apps applied an hour before t0
	upFlux := []reconcile.SourceStatus{{Name: "flux/Kustomization", Up: true}, {Name: "mesh", Up: true}}
	mtls := reconcile.ObjectRef{Group: "security.istio.io", Kind: "PeerAuthentication", Namespace: "shop", Name: "default"}
	// Without GitOps sources in the snapshot, orphans are held rather than derived.
	noGitOps := []Hold{{Code: CodeOrphanObject, Reason: "no GitOps source read yet"}}
	tel := reconcile.ObjectRef{Group: "telemetry.istio.io", Kind: "Telemetry", Namespace: "shop", Name: "default"}
	cases := []struct {
		name  string
		snap  reconcile.Snapshot
		cfg   Config
		want  []Problem
		holds []Hold
	}{
		{
			name: "kubectl edit after the apply is reported with manager, operation, time and fields; the controller's own write is not",
			snap: reconcile.Snapshot{
				Apps: []reconcile.App{synced(fluxKey("apps"), "main@sha1:abc")},
				Objects: []reconcile.MeshChange{object(vs("shop", "reviews"), fluxKey("apps"),
					write("kubectl-edit", "Update", t0, "spec.http"),
					write("kustomize-controller", "Apply", applied, "spec.hosts", "spec.http"))},
			},
			want: []Problem{{Code: CodeOutOfBandEdit, Subject: Subject{Object: vs("shop", "reviews"), App: fluxKey("apps")},
				Detail:   "kubectl-edit",
				Evidence: "kubectl-edit (Update) at 2026-11-25T12:00:00Z: spec.http; app last applied 2026-11-25T11:00:00Z", StartsAt: t0}},

			holds: noGitOps,
		},
		{
			name: "an edit older than the last apply, an allowed manager, and an unowned object are not out of band",
			snap: reconcile.Snapshot{
				Apps: []reconcile.App{synced(fluxKey("apps"), "main@sha1:abc", vs("shop", "ratings"))},
				Objects: []reconcile.MeshChange{
					// Owned through the Flux inventory rather than labels.
					object(vs("shop", "ratings"), reconcile.AppKey{}, write("kubectl-patch", "Update", applied.Add(-time.Minute), "spec.http")),
					object(vs("shop", "reviews"), fluxKey("apps"), write("my-operator", "Apply", t0, "spec.http")),
					object(vs("shop", "loose"), reconcile.AppKey{}, write("kubectl-edit", "Update", t0, "spec.http")),
				},
			},
			cfg: Config{AllowedManagers: []string{"my-operator"}},

			holds: noGitOps,
		},
		{
			name: "an app whose apply time is unknown counts every foreign writer, one finding per object naming each",
			snap: reconcile.Snapshot{
				Objects: []reconcile.MeshChange{object(vs("shop", "reviews"), argoKey("shop"),
					write("kubectl", "Apply", t0, "spec.hosts"),
					write("kubectl-edit", "Update", t0.Add(-time.Minute), "spec.http"),
					write("argocd-controller", "Apply", applied, "spec.hosts", "spec.http"))},
			},
			want: []Problem{{Code: CodeOutOfBandEdit, Subject: Subject{Object: vs("shop", "reviews"), App: argoKey("shop")},
				Detail:   "kubectl, kubectl-edit",
				Evidence: "kubectl (Apply) at 2026-11-25T12:00:00Z: spec.hosts; kubectl-edit (Update) at 2026-11-25T11:59:00Z: spec.http",
				StartsAt: t0.Add(-time.Minute)}},

			holds: noGitOps,
		},
		{
			name: "orphans once flux is read: unowned traffic objects only, telemetry and owned objects left out",
			snap: reconcile.Snapshot{
				Apps:    []reconcile.App{synced(fluxKey("apps"), "main@sha1:abc", vs("shop", "reviews"))},
				Sources: upFlux,
				Objects: []reconcile.MeshChange{
					object(vs("shop", "reviews"), reconcile.AppKey{}),
					object(vs("shop", "ratings"), argoKey("shop")),
					object(mtls, reconcile.AppKey{}),
					object(tel, reconcile.AppKey{}),
				},
			},
			want: []Problem{{Code: CodeOrphanObject, Subject: Subject{Object: mtls},
				Evidence: "no Argo CD tracking annotation or label, in no Flux inventory"}},
		},
		{
			name: "no orphans while a GitOps source is down, or before any is read: held instead",
			snap: reconcile.Snapshot{
				Sources: []reconcile.SourceStatus{{Name: "flux/Kustomization", Up: true}, {Name: "argocd", Up: false, Error: "forbidden"}},
				Objects: []reconcile.MeshChange{object(mtls, reconcile.AppKey{})},
			},
			want:  []Problem{{Code: CodeSourceUnreachable, Subject: Subject{Source: "argocd"}, Evidence: "forbidden"}},
			holds: []Hold{{AppSource: reconcile.SourceArgoCD, Reason: "argocd"}, {Code: CodeOrphanObject, Reason: "source argocd is down"}},
		},
		{
			name: "no orphans while an enabled source has not completed its first read, even before it reports",
			snap: reconcile.Snapshot{
				Sources:  []reconcile.SourceStatus{{Name: "flux/Kustomization", Up: true}, {Name: "mesh", Up: true}},
				Objects:  []reconcile.MeshChange{object(mtls, reconcile.AppKey{})},
				Unsynced: []string{"argocd-api"},
			},
			holds: []Hold{{Code: CodeOrphanObject, Reason: "not read yet: argocd-api"}},
		},
		{
			name: "no orphans when every GitOps CRD is missing",
			snap: reconcile.Snapshot{
				Sources: []reconcile.SourceStatus{{Name: "flux/Kustomization", Up: true, NotInstalled: true}},
				Objects: []reconcile.MeshChange{object(mtls, reconcile.AppKey{})},
			},
			want:  []Problem{{Code: CodeSourceNotInstalled, Subject: Subject{Source: "flux/Kustomization"}}},
			holds: []Hold{{Code: CodeOrphanObject, Reason: "no GitOps source read yet"}},
		},
		{
			name: "an ignore annotation on the object suppresses its out-of-band edit",
			snap: reconcile.Snapshot{
				Objects: []reconcile.MeshChange{func() reconcile.MeshChange {
					c := object(vs("shop", "reviews"), fluxKey("apps"), write("kubectl-edit", "Update", t0))
					c.Ignore = "MD0801"
					return c
				}()},
			},
			want: []Problem{{Code: CodeOutOfBandEdit, Subject: Subject{Object: vs("shop", "reviews"), App: fluxKey("apps")},
				Detail: "kubectl-edit", Evidence: "kubectl-edit (Update) at 2026-11-25T12:00:00Z", StartsAt: t0, Suppressed: true}},

			holds: noGitOps,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Derive(tc.snap, nil, tc.cfg)
			if diff := cmp.Diff(tc.want, got.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.holds, got.Holds); diff != "" {
				t.Errorf("holds (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAllowedManagersValidated(t *testing.T) {
	err := Config{AllowedManagers: []string{"ok", "", " pad", "ok", "kustomize-controller"}}.Validate()
	want := `allowedManagers[1]: must not be empty
allowedManagers[2] " pad": must not begin or end with spaces
allowedManagers[3] "ok": listed twice
allowedManagers[4] "kustomize-controller": a GitOps controller, always allowed`
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want\n%s", err, want)
	}
}

func TestVersionsDiffer(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1.24.0", "1.24.0", false},
		{"1.24.1", "1.24.0", true},
		{"1.23.2", "1.24.0", true},
		{"1.31.0", "1.31-dev", false},
		{"1.30.2", "1.31-dev", true},
		{"v1.24.0", "1.24.0+build.5", false},
		{"master", "1.24.0", true},
		{"master", "master", false},
		{"", "1.24.0", false},
	} {
		if got := versionsDiffer(tc.a, tc.b); got != tc.want {
			t.Errorf("versionsDiffer(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
