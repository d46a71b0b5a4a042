package adaptermetrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Two adapters (the Argo CD and the Flux watcher) share one registry in the binary.
func TestNewSharesFamiliesInOneRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	argo, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	flux, err := New(reg)
	if err != nil {
		t.Fatalf("second adapter: %v", err)
	}
	if argo.Objects != flux.Objects || argo.WatchRestarts != flux.WatchRestarts || argo.DecodeErrors != flux.DecodeErrors {
		t.Fatal("the second New did not reuse the registered collectors")
	}
	argo.Objects.WithLabelValues("argocd", "Application").Set(3)
	flux.Objects.WithLabelValues("flux", "Kustomization").Set(2)
	flux.Objects.WithLabelValues("flux", "HelmRelease").Set(1)
	argo.WatchRestarts.WithLabelValues("argocd", "Application").Inc()
	flux.DecodeErrors.WithLabelValues("flux").Add(2)
	argo.DecodeErrors.WithLabelValues("argocd")

	const want = `
# HELP meshdrift_adapter_decode_errors_total Objects an adapter read but could not decode.
# TYPE meshdrift_adapter_decode_errors_total counter
meshdrift_adapter_decode_errors_total{adapter="argocd"} 0
meshdrift_adapter_decode_errors_total{adapter="flux"} 2
# HELP meshdrift_adapter_objects Objects an adapter currently reports, by adapter and kind.
# TYPE meshdrift_adapter_objects gauge
meshdrift_adapter_objects{adapter="argocd",kind="Application"} 3
meshdrift_adapter_objects{adapter="flux",kind="HelmRelease"} 1
meshdrift_adapter_objects{adapter="flux",kind="Kustomization"} 2
# HELP meshdrift_adapter_watch_restarts_total Failed list or watch attempts of an adapter's watch, each followed by a retry.
# TYPE meshdrift_adapter_watch_restarts_total counter
meshdrift_adapter_watch_restarts_total{adapter="argocd",kind="Application"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func TestNewNilRegistry(t *testing.T) {
	m, err := New(nil)
	if err != nil || m.Objects == nil || m.WatchRestarts == nil || m.DecodeErrors == nil {
		t.Fatalf("New(nil) = %+v, %v", m, err)
	}
}

// A family of the same name defined differently elsewhere is a bug to report, not reuse.
func TestNewConflictingFamily(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshdrift_adapter_watch_restarts_total",
		Help: "Failed list or watch attempts of an adapter's watch, each followed by a retry.",
	}, []string{"adapter"}))
	_, err := New(reg)
	if err == nil || !strings.HasPrefix(err.Error(), "registering adapter metrics: ") ||
		!strings.Contains(err.Error(), "meshdrift_adapter_watch_restarts_total") {
		t.Fatalf("error %v", err)
	}
}
