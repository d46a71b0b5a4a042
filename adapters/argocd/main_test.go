package argocd

import (
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
	os.Exit(testbed.MainBed(m, testbed.BedOptions{LogPrefix: "meshdrift-argocd-"}, func(b *testbed.Bed) error {
		bed.assets, bed.kube, bed.started = b.Assets, b.Kube, true
		return nil
	}))
}
