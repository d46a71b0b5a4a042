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
	os.Exit(testbed.Main(m, func(a testbed.Assets) (func(), error) {
		logDir, err := testbed.NewLogDir("meshdrift-argocd-")
		if err != nil {
			return nil, err
		}
		teardown := func() {
			if bed.kube != nil {
				_ = bed.kube.Stop()
			}
		}
		bed.assets = a
		if bed.kube, err = testbed.StartKube(a, logDir); err != nil {
			return teardown, err
		}
		bed.started = true
		return teardown, nil
	}))
}
