package reconcile

import (
	"testing"
	"time"
)

func TestStoreKeepsLatestAndForgets(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	k := AppKey{Source: SourceFlux, Kind: "Kustomization", Namespace: "apps", Name: "payments"}
	s.ObserveApp(App{Key: k, DesiredRevision: "main@sha1:1", State: AppProgressing})
	s.ObserveApp(App{Key: k, DesiredRevision: "main@sha1:2", State: AppSynced})
	got, ok := s.App(k)
	if !ok || got.DesiredRevision != "main@sha1:2" || got.State != AppSynced {
		t.Fatalf("App = %+v, %v", got, ok)
	}
	select {
	case <-s.Changed():
	default:
		t.Fatal("no change signalled")
	}
	s.ForgetApp(k)
	if _, ok := s.App(k); ok {
		t.Fatal("forgotten app still present")
	}
}

func TestStoreSnapshotSortedAndCopied(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	b := AppKey{Source: SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: "b"}
	a := AppKey{Source: SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: "a"}
	s.ObserveApp(App{Key: b, Objects: []OwnedObject{{Ref: ObjectRef{Kind: "ConfigMap", Name: "x"}}}})
	s.ObserveApp(App{Key: a})
	snap := s.Snapshot()
	if len(snap.Apps) != 2 || snap.Apps[0].Key != a || snap.Apps[1].Key != b {
		t.Fatalf("snapshot order = %+v", snap.Apps)
	}
	snap.Apps[1].Objects[0].Ref.Name = "changed"
	if got, _ := s.App(b); got.Objects[0].Ref.Name != "x" {
		t.Fatal("snapshot shares memory with the store")
	}
}

func TestStoreSourceStatusDedupes(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	s.ReportSource(SourceStatus{Name: "istiod/istiod-0", Up: false, Error: "connection refused", Since: time.Now()})
	<-s.Changed()
	s.ReportSource(SourceStatus{Name: "istiod/istiod-0", Up: false, Error: "connection refused", Since: time.Now()})
	select {
	case <-s.Changed():
		t.Fatal("an unchanged source status signalled a change")
	default:
	}
	if snap := s.Snapshot(); len(snap.Sources) != 1 || snap.Sources[0].Up {
		t.Fatalf("sources = %+v", snap.Sources)
	}
}

func TestShortType(t *testing.T) {
	for url, want := range map[string]string{
		"type.googleapis.com/envoy.config.route.v3.RouteConfiguration":         "RDS",
		"type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig":                  "PCDS",
		"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": "Secret",
		"": "",
	} {
		if got := ShortType(url); got != want {
			t.Errorf("ShortType(%q) = %q, want %q", url, got, want)
		}
	}
}
