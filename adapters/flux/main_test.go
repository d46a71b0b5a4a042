package flux

import (
	"context"
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
	os.Exit(testbed.Main(m, func(a testbed.Assets) (func(), error) {
		b, err := testbed.StartBed(context.Background(), a, testbed.BedOptions{LogPrefix: "meshdrift-flux-", Flux: true})
		teardown := func() { _ = b.Stop() }
		if err != nil {
			return teardown, err
		}
		bed.assets, bed.kube, bed.flux = a, b.Kube, b.Flux
		bed.started = true
		return teardown, nil
	}))
}
