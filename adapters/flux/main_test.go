package flux

import (
	"os"
	"testing"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// One bed for the package: a real API server with Flux's, Istio's and the other CRDs, and
// the real kustomize-controller and notification-controller. Each test uses its own
// namespace and its own Watcher.
var bed struct {
	started bool
	assets  testbed.Assets
	kube    *testbed.Kube
	flux    *testbed.Flux
}

func TestMain(m *testing.M) {
	os.Exit(testbed.MainBed(m, testbed.BedOptions{LogPrefix: "meshdrift-flux-", Flux: true}, func(b *testbed.Bed) error {
		bed.assets, bed.kube, bed.flux, bed.started = b.Assets, b.Kube, b.Flux, true
		return nil
	}))
}
