package mesh

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/runtime"
	discoveryfake "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/meshdrift/meshdrift/adapters/adaptermetrics"
	"github.com/meshdrift/meshdrift/reconcile"
)

type nopSink struct{}

func (nopSink) ObserveMeshChange(reconcile.MeshChange) {}

// The binary has one registry for every adapter: the watcher must take its share of the
// common families another adapter registered first, and register its own once.
func TestMetricsShareTheRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	argo, err := adaptermetrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	argo.Objects.WithLabelValues("argocd", "Application").Set(3)

	dyn := dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())
	dc := &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{}}
	w, err := New(Config{}, dyn, dc, nopSink{}, &statusRecorder{}, reg, nil)
	if err != nil {
		t.Fatalf("watcher beside another adapter: %v", err)
	}
	w.metrics.objects.WithLabelValues(SourceName, "VirtualService.networking.istio.io").Set(2)
	w.metrics.changes.WithLabelValues("VirtualService.networking.istio.io", classKubectl).Inc()
	if _, err := New(Config{}, dyn, dc, nopSink{}, &statusRecorder{}, reg, nil); err == nil {
		t.Error("a second mesh watcher registered its changes counter twice")
	}

	want := `
# HELP meshdrift_adapter_objects Objects an adapter currently reports, by adapter and kind.
# TYPE meshdrift_adapter_objects gauge
meshdrift_adapter_objects{adapter="argocd",kind="Application"} 3
meshdrift_adapter_objects{adapter="mesh",kind="VirtualService.networking.istio.io"} 2
# HELP meshdrift_mesh_changes_total Spec changes and deletions of mesh objects observed while watching (objects found by the initial list are not counted), by kind and class of field manager (gitops, kubectl, other).
# TYPE meshdrift_mesh_changes_total counter
meshdrift_mesh_changes_total{kind="VirtualService.networking.istio.io",manager_class="kubectl"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshdrift_adapter_objects", "meshdrift_mesh_changes_total"); err != nil {
		t.Error(err)
	}
}
