package flux

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

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
	// testing.Short needs parsed flags, and setup runs before m.Run would parse them.
	flag.Parse()
	// envtest logs through controller-runtime, which prints a stack trace when nothing set
	// its logger; the bed's programs have log files of their own.
	ctrllog.SetLogger(logr.Discard())
	os.Exit(testbed.Main(m, func(a testbed.Assets) (func(), error) {
		// Unit tests (-short) need no bed, and neither do fuzz targets: go test -fuzz runs
		// TestMain in every fuzzing worker process too.
		if testing.Short() || fuzzing() {
			return nil, nil
		}
		logDir, err := testbed.NewLogDir("meshdrift-flux-")
		if err != nil {
			return nil, err
		}
		var stops []func() error
		teardown := func() {
			if err := writeGolden(); err != nil {
				fmt.Fprintf(os.Stderr, "writing golden cases: %v\n", err)
			}
			for i := len(stops) - 1; i >= 0; i-- {
				_ = stops[i]()
			}
		}
		bed.assets = a
		if bed.kube, err = testbed.StartKube(a, logDir); err != nil {
			return teardown, err
		}
		stops = append(stops, bed.kube.Stop)
		if bed.flux, err = testbed.StartFlux(context.Background(), a, bed.kube); err != nil {
			return teardown, err
		}
		stops = append(stops, bed.flux.Stop)
		bed.started = true
		return teardown, nil
	}))
}

// fuzzing reports whether this process runs a fuzz target, as the coordinator or as one of
// its workers.
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}
