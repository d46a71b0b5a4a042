package findings

import (
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const (
	typeCDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeRDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

func fluxKey(name string) reconcile.AppKey {
	return reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: name}
}

func argoKey(name string) reconcile.AppKey {
	return reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: name}
}

func vs(ns, name string) reconcile.ObjectRef {
	return reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: ns, Name: name}
}

func synced(k reconcile.AppKey, rev string, objs ...reconcile.ObjectRef) reconcile.App {
	a := reconcile.App{Key: k, DesiredRevision: rev, AppliedRevision: rev, AppliedAt: t0.Add(-time.Hour), State: reconcile.AppSynced, ObservedAt: t0}
	for _, o := range objs {
		a.Objects = append(a.Objects, reconcile.OwnedObject{Ref: o})
	}
	return a
}

// nacked is a change of ref observed at `at`, rejected by the given proxies of istiod-0.
func nacked(ref reconcile.ObjectRef, at time.Time, targeted int, proxies ...string) reconcile.Propagation {
	p := reconcile.Propagation{Change: reconcile.MeshChange{Ref: ref, Generation: 2, ObservedAt: at, Manager: "kustomize-controller"},
		State: reconcile.PropagationNACKed, Targeted: targeted, NACKed: len(proxies), ACKed: targeted - len(proxies), Since: at}
	for _, px := range proxies {
		p.Proxies = append(p.Proxies, reconcile.ProxyOutcome{Proxy: px, Istiod: "istiod-0", State: reconcile.PropagationNACKed,
			Error: `route "reviews": invalid weight`})
	}
	return p
}

func errProxy(id string, sentAt time.Time, text string) reconcile.ProxyStatus {
	return reconcile.ProxyStatus{ID: id, Istiod: "istiod-0", Types: []reconcile.XDSStatus{
		{TypeURL: typeCDS, State: reconcile.StateSynced, SentAt: sentAt},
		{TypeURL: typeRDS, State: reconcile.StateError, SentAt: sentAt, Error: text},
	}}
}

func TestDerive(t *testing.T) {
	changeAt := t0.Add(-10 * time.Minute)
	cases := []struct {
		name  string
		snap  reconcile.Snapshot
		inc   []Increase
		cfg   Config
		want  []Problem
		holds []Hold
	}{
		{
			name: "all well",
			snap: reconcile.Snapshot{
				Apps:    []reconcile.App{synced(fluxKey("apps"), "main@sha1:abc", vs("shop", "reviews"))},
				Sources: []reconcile.SourceStatus{{Name: "flux/Kustomization", Up: true}, {Name: "istiod/istiod-0", Up: true}},
				Changes: []reconcile.Propagation{{Change: reconcile.MeshChange{Ref: vs("shop", "reviews"), ObservedAt: changeAt}, State: reconcile.PropagationPropagated}},
			},
		},
		{
			name: "flux sync failed, with the attempted revision",
			snap: reconcile.Snapshot{Apps: []reconcile.App{{Key: fluxKey("apps"), DesiredRevision: "main@sha1:def", AppliedRevision: "main@sha1:abc",
				State: reconcile.AppFailed, Reason: "BuildFailed", Message: "kustomize build failed"}}},
			want: []Problem{{Code: CodeAppSyncFailed, Subject: Subject{App: fluxKey("apps"), Revision: "main@sha1:def"},
				Evidence: "BuildFailed: kustomize build failed"}},
		},
		{
			name: "argo cd degraded, flux health check failed",
			snap: reconcile.Snapshot{Apps: []reconcile.App{
				{Key: argoKey("shop"), State: reconcile.AppFailed, Reason: "Degraded", Message: "Deployment shop/details: exceeded its progress deadline"},
				{Key: fluxKey("apps"), State: reconcile.AppFailed, Reason: "HealthCheckFailed", Message: "timeout"},
			}},
			want: []Problem{
				{Code: CodeAppDegraded, Subject: Subject{App: argoKey("shop")}, Evidence: "Degraded: Deployment shop/details: exceeded its progress deadline"},
				{Code: CodeAppDegraded, Subject: Subject{App: fluxKey("apps")}, Evidence: "HealthCheckFailed: timeout"},
			},
		},
		{
			name: "an argo cd app without automated sync still fails; a suspended flux app does not",
			snap: reconcile.Snapshot{Apps: []reconcile.App{
				{Key: argoKey("manual"), Suspended: true, DesiredRevision: "abc", State: reconcile.AppFailed, Reason: "Failed", Message: "one or more objects failed to apply"},
				{Key: argoKey("manual-oos"), Suspended: true, State: reconcile.AppOutOfSync, Reason: "OutOfSync"},
				{Key: fluxKey("apps"), Suspended: true, State: reconcile.AppSuspended, Reason: "Suspended"},
			}},
			want: []Problem{
				{Code: CodeAppSyncFailed, Subject: Subject{App: argoKey("manual"), Revision: "abc"}, Evidence: "Failed: one or more objects failed to apply"},
				{Code: CodeAppSuspendedDrift, Subject: Subject{App: argoKey("manual-oos")}, Evidence: "app out of sync"},
			},
		},
		{
			name: "out of sync",
			snap: reconcile.Snapshot{Apps: []reconcile.App{{Key: argoKey("shop"), State: reconcile.AppOutOfSync, Reason: "OutOfSync"}}},
			want: []Problem{{Code: CodeAppOutOfSync, Subject: Subject{App: argoKey("shop")}, Evidence: "OutOfSync"}},
		},
		{
			name: "applied revision differs from attempted while progressing; an OCI digest is no difference",
			snap: reconcile.Snapshot{Apps: []reconcile.App{
				{Key: fluxKey("apps"), DesiredRevision: "main@sha1:def", AppliedRevision: "main@sha1:abc", State: reconcile.AppProgressing, Reason: "DependencyNotReady"},
				{Key: fluxKey("chart"), DesiredRevision: "1.2.3@sha256:0a1b", AppliedRevision: "1.2.3", State: reconcile.AppProgressing},
				{Key: fluxKey("ok"), DesiredRevision: "main@sha1:def", AppliedRevision: "main@sha1:abc", State: reconcile.AppSynced},
			}},
			want: []Problem{{Code: CodeAppRevisionMismatch, Subject: Subject{App: fluxKey("apps"), Revision: "main@sha1:def"},
				Evidence: "applied main@sha1:abc: DependencyNotReady"}},
		},
		{
			name: "suspended while objects drift: argo cd says out of sync, a kubectl edit of a flux object",
			snap: reconcile.Snapshot{
				Apps: []reconcile.App{
					{Key: argoKey("shop"), Suspended: true, State: reconcile.AppSynced, Objects: []reconcile.OwnedObject{{Ref: vs("shop", "details"), Sync: "OutOfSync"}}},
					{Key: fluxKey("apps"), Suspended: true, State: reconcile.AppSuspended, Objects: []reconcile.OwnedObject{{Ref: vs("shop", "reviews")}}},
					{Key: fluxKey("quiet"), Suspended: true, State: reconcile.AppSuspended},
				},
				Changes: []reconcile.Propagation{{Change: reconcile.MeshChange{Ref: vs("shop", "reviews"), ObservedAt: changeAt, Manager: "kubectl-edit"},
					State: reconcile.PropagationPropagated}},
			},
			want: []Problem{
				{Code: CodeAppSuspendedDrift, Subject: Subject{App: argoKey("shop")}, Evidence: "networking.istio.io/VirtualService/shop/details out of sync"},
				{Code: CodeAppSuspendedDrift, Subject: Subject{App: fluxKey("apps")}, StartsAt: changeAt,
					Evidence: "networking.istio.io/VirtualService/shop/reviews changed by kubectl-edit"},
			},
		},
		{
			name: "NACKed change: owner found by inventory, the proxy's NACK is the change's, not a proxy finding",
			snap: reconcile.Snapshot{
				Apps:    []reconcile.App{synced(fluxKey("apps"), "main@sha1:abc", vs("shop", "reviews"))},
				Changes: []reconcile.Propagation{nacked(vs("shop", "reviews"), changeAt, 50, "reviews-v1-a.shop", "reviews-v1-b.shop")},
				Istiods: []reconcile.IstiodView{{Istiod: "istiod-0", Proxies: []reconcile.ProxyStatus{
					errProxy("reviews-v1-a.shop", changeAt.Add(time.Second), `route "reviews": invalid weight`),
				}}},
			},
			want: []Problem{{Code: CodeChangeNACKed, Subject: Subject{Object: vs("shop", "reviews"), App: fluxKey("apps")}, StartsAt: changeAt,
				Detail:   "2 of 50 proxies",
				Evidence: `proxy reviews-v1-a.shop (istiod istiod-0): route "reviews": invalid weight; app flux/Kustomization/flux-system/apps revision main@sha1:abc`}},
		},
		{
			name: "stale, not pushed; owner from Argo CD label tracking without namespace",
			snap: reconcile.Snapshot{
				Apps: []reconcile.App{synced(argoKey("shop"), "abc")},
				Changes: []reconcile.Propagation{
					{Change: reconcile.MeshChange{Ref: vs("shop", "details"), ObservedAt: changeAt,
						GitOpsOwner: reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Name: "shop"}},
						State: reconcile.PropagationStale, Targeted: 3, Pending: 1,
						Proxies: []reconcile.ProxyOutcome{{Proxy: "details-1.shop", Istiod: "istiod-0", State: reconcile.PropagationStale}}},
					{Change: reconcile.MeshChange{Ref: vs("shop", "ratings"), ObservedAt: changeAt}, State: reconcile.PropagationNotPushed},
				},
			},
			want: []Problem{
				{Code: CodeChangeStale, Subject: Subject{Object: vs("shop", "details"), App: argoKey("shop")}, StartsAt: changeAt,
					Detail: "1 of 3 proxies", Evidence: "stale: details-1.shop; app argocd/Application/argocd/shop revision abc"},
				{Code: CodeChangeNotPushed, Subject: Subject{Object: vs("shop", "ratings")}, StartsAt: changeAt},
			},
		},
		{
			name: "istiod unreachable: MD0301, the change it may serve is unknown, and both are held",
			snap: reconcile.Snapshot{
				Sources: []reconcile.SourceStatus{{Name: "istiod/istiod-1", Up: false, Error: "connection refused", Since: t0.Add(-time.Minute)}},
				Changes: []reconcile.Propagation{{Change: reconcile.MeshChange{Ref: vs("shop", "reviews"), ObservedAt: changeAt},
					State: reconcile.PropagationUnknown, Unreachable: []string{"istiod-1"}}},
			},
			want: []Problem{
				{Code: CodeChangeUnknown, Subject: Subject{Object: vs("shop", "reviews")}, StartsAt: changeAt, Detail: "istiod istiod-1 cannot be read"},
				{Code: CodeIstiodUnreachable, Subject: Subject{Istiod: "istiod-1"}, Evidence: "connection refused", StartsAt: t0.Add(-time.Minute)},
			},
			holds: []Hold{{Object: vs("shop", "reviews"), Reason: "istiod istiod-1 cannot be read"}, {Istiod: "istiod-1", Reason: "istiod/istiod-1"}},
		},
		{
			name: "istiod whose clock is off by more than verdicts tolerate: MD0306",
			snap: reconcile.Snapshot{
				Istiods: []reconcile.IstiodView{{Istiod: "istiod-0", ObservedAt: t0, ClockProblem: "istiod's clock is 3.2s ahead of meshdrift's (±0.1s)"}},
			},
			want: []Problem{
				{Code: CodeIstiodClockOffset, Subject: Subject{Istiod: "istiod-0"}, Evidence: "istiod's clock is 3.2s ahead of meshdrift's (±0.1s)"},
			},
		},
		{
			name: "restricted view: MD0302 with the fix, the change is unknown, proxy findings held",
			snap: reconcile.Snapshot{
				Istiods: []reconcile.IstiodView{{Istiod: "istiod-0", ObservedAt: t0, Restriction: &reconcile.ViewRestriction{
					Reason: "istiod shows only the proxies of meshdrift's own namespace", Fix: "add meshdrift-system to DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES",
					Visible: 0, Connected: 50}}},
				Changes: []reconcile.Propagation{{Change: reconcile.MeshChange{Ref: vs("shop", "reviews"), ObservedAt: changeAt},
					State: reconcile.PropagationUnknown, Restricted: []string{"istiod-0"}}},
			},
			want: []Problem{
				{Code: CodeChangeUnknown, Subject: Subject{Object: vs("shop", "reviews")}, StartsAt: changeAt, Detail: "the view of istiod istiod-0 is restricted"},
				{Code: CodeIstiodRestricted, Subject: Subject{Istiod: "istiod-0"}, StartsAt: t0, Detail: "shows 0 of 50 proxies",
					Evidence: "istiod shows only the proxies of meshdrift's own namespace; fix: add meshdrift-system to DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES"},
			},
			holds: []Hold{
				{Object: vs("shop", "reviews"), Reason: "the view of istiod istiod-0 is restricted"},
				{Code: CodeProxyRejecting, Reason: "istiod istiod-0 view restricted"},
			},
		},
		{
			name: "a proxy rejecting config no change explains, seen by two istiods, is one finding",
			snap: reconcile.Snapshot{Istiods: []reconcile.IstiodView{
				{Istiod: "istiod-0", Proxies: []reconcile.ProxyStatus{errProxy("old-envoy.legacy", t0.Add(-3*time.Minute), "unknown field")}},
				{Istiod: "istiod-1", Proxies: []reconcile.ProxyStatus{errProxy("old-envoy.legacy", t0.Add(-2*time.Minute), "unknown field")}},
			}},
			want: []Problem{{Code: CodeProxyRejecting, Subject: Subject{Proxy: "old-envoy.legacy"}, StartsAt: t0.Add(-3 * time.Minute),
				Detail: "istiod istiod-0; istiod istiod-1", Evidence: "RDS: unknown field"}},
		},
		{
			name: "sources down hold their apps; flux CRD not installed is MD0402, not an outage",
			snap: reconcile.Snapshot{Sources: []reconcile.SourceStatus{
				{Name: "argocd", Up: false, Error: "forbidden", Since: t0.Add(-time.Hour)},
				{Name: "argocd-api", Up: false, Error: "401", Since: t0.Add(-time.Hour)},
				{Name: "flux/HelmRelease", Up: true, NotInstalled: true, Error: "helmreleases.helm.toolkit.fluxcd.io not served", Since: t0.Add(-time.Hour)},
				{Name: "flux/Kustomization", Up: false, Error: "timeout", Since: t0},
				{Name: "mesh", Up: false, Error: "timeout", Since: t0},
			}},
			want: []Problem{
				{Code: CodeSourceUnreachable, Subject: Subject{Source: "argocd"}, Evidence: "forbidden", StartsAt: t0.Add(-time.Hour)},
				{Code: CodeSourceUnreachable, Subject: Subject{Source: "argocd-api"}, Evidence: "401", StartsAt: t0.Add(-time.Hour)},
				{Code: CodeSourceUnreachable, Subject: Subject{Source: "flux/Kustomization"}, Evidence: "timeout", StartsAt: t0},
				{Code: CodeSourceUnreachable, Subject: Subject{Source: "mesh"}, Evidence: "timeout", StartsAt: t0},
				{Code: CodeSourceNotInstalled, Subject: Subject{Source: "flux/HelmRelease"}, Evidence: "helmreleases.helm.toolkit.fluxcd.io not served", StartsAt: t0.Add(-time.Hour)},
			},
			holds: []Hold{
				{AppSource: reconcile.SourceArgoCD, Reason: "argocd"},
				{AppSource: reconcile.SourceArgoCD, Reason: "argocd-api"},
				{AppSource: reconcile.SourceFlux, AppKind: "Kustomization", Reason: "flux/Kustomization"},
				{Code: CodeAppSuspendedDrift, Reason: "mesh"},
			},
		},
		{
			name: "istiod counter increases: a config rejected by two replicas is one finding",
			inc: []Increase{
				{Code: CodeIstiodRejected, Istiod: "istiod-0", Kind: "gateway", Name: "shop/gw", Delta: 1, FirstAt: t0, LastAt: t0},
				{Code: CodeIstiodRejected, Istiod: "istiod-1", Kind: "gateway", Name: "shop/gw", Delta: 1, FirstAt: t0.Add(-time.Second), LastAt: t0},
				{Code: CodeIstiodPushErrors, Istiod: "istiod-0", Kind: "cds_builderr", Delta: 3, FirstAt: t0, LastAt: t0},
			},
			want: []Problem{
				{Code: CodeIstiodRejected, Subject: Subject{Object: reconcile.ObjectRef{Kind: "gateway", Namespace: "shop", Name: "gw"}},
					Detail: "gateway shop/gw (+1)", Evidence: "istiod istiod-0", StartsAt: t0.Add(-time.Second)},
				{Code: CodeIstiodPushErrors, Subject: Subject{Istiod: "istiod-0"}, Detail: "cds_builderr (+3)", StartsAt: t0},
			},
		},
		{
			name: "suppression by annotation on the object, on the app, and by a config rule",
			cfg:  Config{Ignore: []IgnoreRule{{Code: CodeChangeStale, Namespace: "legacy"}}},
			snap: reconcile.Snapshot{
				Apps: []reconcile.App{
					{Key: fluxKey("apps"), State: reconcile.AppOutOfSync, Ignore: "md0103, MD0201"},
					{Key: argoKey("shop"), State: reconcile.AppOutOfSync},
				},
				Changes: []reconcile.Propagation{
					{Change: reconcile.MeshChange{Ref: vs("shop", "ratings"), ObservedAt: changeAt, Ignore: "MD0203"}, State: reconcile.PropagationNotPushed},
					{Change: reconcile.MeshChange{Ref: vs("legacy", "old"), ObservedAt: changeAt}, State: reconcile.PropagationStale},
				},
			},
			want: []Problem{
				{Code: CodeAppOutOfSync, Subject: Subject{App: argoKey("shop")}},
				{Code: CodeAppOutOfSync, Subject: Subject{App: fluxKey("apps")}, Suppressed: true},
				{Code: CodeChangeStale, Subject: Subject{Object: vs("legacy", "old")}, StartsAt: changeAt, Detail: "0 of 0 proxies", Evidence: "stale: ", Suppressed: true},
				{Code: CodeChangeNotPushed, Subject: Subject{Object: vs("shop", "ratings")}, StartsAt: changeAt, Suppressed: true},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Derive(tc.snap, tc.inc, tc.cfg)
			if len(got.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got.Problems), len(tc.want), dump(got.Problems))
			}
			for i := range tc.want {
				if got.Problems[i] != tc.want[i] {
					t.Errorf("problem %d\n got %+v\nwant %+v", i, got.Problems[i], tc.want[i])
				}
			}
			if len(got.Holds) != len(tc.holds) {
				t.Fatalf("holds %+v, want %+v", got.Holds, tc.holds)
			}
			for i := range tc.holds {
				if got.Holds[i] != tc.holds[i] {
					t.Errorf("hold %d: got %+v, want %+v", i, got.Holds[i], tc.holds[i])
				}
			}
		})
	}
}

func dump(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  ")
		b.WriteString(string(p.Code) + " " + ID(p.Code, p.Subject))
		b.WriteString("\n")
	}
	return b.String()
}

func TestParseIgnore(t *testing.T) {
	got := ParseIgnore(" MD0203,md0301 MD0203,,bogus, MD12345 ")
	want := []Code{"MD0203", "MD0301"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ParseIgnore = %v, want %v", got, want)
	}
}

func TestIgnoreRuleApp(t *testing.T) {
	s := Subject{App: fluxKey("apps")}
	for _, pattern := range []string{"apps", "flux-system/apps", "flux/Kustomization/flux-system/apps"} {
		if !(IgnoreRule{App: pattern}).matches(CodeAppOutOfSync, s) {
			t.Errorf("app %q does not match %s", pattern, s.App)
		}
	}
	if (IgnoreRule{App: "other/apps"}).matches(CodeAppOutOfSync, s) {
		t.Error("other/apps matches")
	}
	if (IgnoreRule{App: "apps", Code: CodeAppDegraded}).matches(CodeAppOutOfSync, s) {
		t.Error("a rule for another code matches")
	}
	// The namespace of an object finding is the object's, not its app's.
	if (IgnoreRule{Namespace: "flux-system"}).matches(CodeChangeNACKed, Subject{App: fluxKey("apps"), Object: vs("shop", "reviews")}) {
		t.Error("namespace rule matched the app's namespace of an object finding")
	}
}
