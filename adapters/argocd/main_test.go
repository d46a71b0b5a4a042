package argocd

import (
	"context"
	"os"
	"testing"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// bed is the real API server this package's integration tests share, with Argo CD's CRDs.
var bed struct {
	started bool
	assets  testbed.Assets
	kube    *testbed.Kube
}

func TestMain(m *testing.M) {
	os.Exit(testbed.Main(m, func(a testbed.Assets) (func(), error) {
		b, err := testbed.StartBed(context.Background(), a, testbed.BedOptions{LogPrefix: "meshdrift-argocd-"})
		teardown := func() { _ = b.Stop() }
		if err != nil {
			return teardown, err
		}
		bed.assets, bed.kube = a, b.Kube
		bed.started = true
		return teardown, nil
	}))
}
