package statusapi

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// The fixture is a real store fed the observations of one broken and one healthy change,
// and findings as the engine would report them. Text from the cluster carries markup that
// must come out as text.
var (
	t0       = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	xss      = `<script>document.title="pwned"</script><img src=x onerror="document.title='pwned'">`
	shopApp  = reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: "shop"}
	payApp   = reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: "payments"}
	reviewVS = reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "shop", Name: "reviews"}
	payVS    = reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "payments", Name: "pay"}
	nackText = "Proxy rejected RDS: route reviews: invalid regex " + xss
)

const (
	rdsURL = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	cdsURL = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
)

type staticFindings []findings.Finding

func (s staticFindings) Findings() []findings.Finding { return slices.Clone(s) }

func fixtureStore() *reconcile.Store {
	s := reconcile.NewStore(reconcile.PropagationConfig{}, nil)
	s.ObserveApp(reconcile.App{
		Key: shopApp, State: reconcile.AppSynced, Reason: "ReconciliationSucceeded", Message: "Applied revision: main@sha1:aaa",
		DesiredRevision: "main@sha1:aaa", AppliedRevision: "main@sha1:aaa", AppliedAt: t0.Add(-5 * time.Second),
		Objects:    []reconcile.OwnedObject{{Ref: reviewVS}},
		ObservedAt: t0.Add(-time.Second),
	})
	s.ObserveApp(reconcile.App{
		Key: payApp, State: reconcile.AppFailed, Reason: "Failed", Message: "one or more objects failed to apply: " + xss,
		DesiredRevision: "bbb2", AppliedRevision: "bbb1", AppliedAt: t0.Add(-time.Hour),
		Objects:    []reconcile.OwnedObject{{Ref: payVS, Sync: "Synced", Health: "Healthy"}},
		ObservedAt: t0.Add(-time.Second),
	})
	s.ReportSource(reconcile.SourceStatus{Name: "argocd", Up: true, Since: t0.Add(-time.Hour)})
	s.ReportSource(reconcile.SourceStatus{Name: "flux", Up: true, Since: t0.Add(-time.Hour)})
	s.ReportSource(reconcile.SourceStatus{Name: "istiod/istiod-0", Up: true, Since: t0.Add(-time.Hour)})
	s.ObserveMeshChange(reconcile.MeshChange{
		Ref: reviewVS, Generation: 3, ResourceVersion: "1001", ObservedAt: t0, Manager: "kustomize-controller", GitOpsOwner: shopApp,
	})
	// Label tracking: the owner carries no namespace.
	s.ObserveMeshChange(reconcile.MeshChange{
		Ref: payVS, Generation: 7, ResourceVersion: "1002", ObservedAt: t0.Add(80 * time.Millisecond), Manager: "argocd-controller",
		GitOpsOwner: reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Name: "payments"},
	})
	s.ObserveIstiod(reconcile.IstiodView{
		Istiod: "istiod-0", Revision: "default", PushVersion: "2026-12-03T12:00:01Z/42", ObservedAt: t0.Add(2 * time.Second),
		Proxies: []reconcile.ProxyStatus{
			{ID: "reviews-v1-abc.shop", ClusterID: "Kubernetes", ProxyType: "sidecar", IstioVersion: "1.31.0", Istiod: "istiod-0", Revision: "default",
				Types: []reconcile.XDSStatus{
					{TypeURL: cdsURL, State: reconcile.StateSynced, SentVersion: "2026-12-03T12:00:00Z/41", AckedVersion: "2026-12-03T12:00:00Z/41", SentAt: t0.Add(100 * time.Millisecond)},
					{TypeURL: rdsURL, State: reconcile.StateSynced, SentVersion: "2026-12-03T12:00:00Z/41", AckedVersion: "2026-12-03T12:00:00Z/41", SentAt: t0.Add(106 * time.Millisecond)},
				}},
			{ID: "ratings-v1-xyz.shop", ClusterID: "Kubernetes", ProxyType: "sidecar", IstioVersion: "1.31.0", Istiod: "istiod-0", Revision: "default",
				Types: []reconcile.XDSStatus{
					{TypeURL: rdsURL, State: reconcile.StateError, SentVersion: "2026-12-03T12:00:00Z/40", AckedVersion: "2026-12-03T11:59:00Z/12", SentAt: t0.Add(50 * time.Millisecond), Error: nackText},
				}},
		},
		Signals: &reconcile.IstiodSignals{
			RejectedConfigs: []reconcile.RejectedConfig{{Type: "VirtualService", Name: "shop/reviews", Count: 1}},
			ProxyRejects:    []reconcile.ProxyReject{{Type: "rds", Proxy: "ratings-v1-xyz.shop", Count: 2}},
			Conflicts:       map[string]float64{},
			PushErrors:      map[string]float64{"rds": 1},
			ObservedAt:      t0.Add(2 * time.Second),
		},
	})
	s.Evaluate(t0.Add(3 * time.Second))
	return s
}

var fixtureFindings = staticFindings{
	{
		ID: "4f1c2a9e0b7d", Code: "MD0201", Name: "ChangeNACKed", Severity: findings.SeverityCritical, State: findings.StateFiring,
		Subject:     findings.Subject{Object: reviewVS, App: shopApp, Revision: "main@sha1:aaa", Istiod: "istiod-0", Proxy: "ratings-v1-xyz.shop"},
		Summary:     "VirtualService shop/reviews: proxy ratings-v1-xyz.shop rejected the change",
		Description: "A proxy NACKed the config istiod pushed for this change and keeps running its previous config.",
		Evidence:    nackText,
		StartsAt:    t0.Add(50 * time.Millisecond), FirstSeen: t0.Add(3 * time.Second), LastSeen: t0.Add(10 * time.Second),
	},
	{
		ID: "9a8b7c6d5e4f", Code: "MD0101", Name: "AppSyncFailed", Severity: findings.SeverityWarning, State: findings.StatePending,
		Subject:  findings.Subject{App: reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Name: "payments"}, Revision: "bbb2"},
		Summary:  "Application payments failed to sync revision bbb2",
		Evidence: "one or more objects failed to apply: " + xss,
		StartsAt: t0.Add(-time.Minute), FirstSeen: t0.Add(-time.Minute), LastSeen: t0.Add(10 * time.Second),
	},
	{
		ID: "0011aabbccdd", Code: "MD0301", Name: "IstiodUnreachable", Severity: findings.SeverityCritical, State: findings.StateResolved,
		Subject:  findings.Subject{Istiod: "istiod-1", Source: "istiod/istiod-1"},
		Summary:  "istiod istiod-1 cannot be read",
		Evidence: "dial tcp 10.0.0.9:15012: connect: connection refused",
		StartsAt: t0.Add(-2 * time.Hour), FirstSeen: t0.Add(-2 * time.Hour), LastSeen: t0.Add(-time.Hour), ResolvedAt: t0.Add(-time.Hour),
	},
}

func newFixtureHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := New(fixtureStore(), fixtureFindings, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.now = func() time.Time { return t0.Add(11 * time.Second) }
	return h
}

func get(t *testing.T, h http.Handler, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}
