package testbed

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Environment variables that locate and require the test bed.
const (
	EnvDir     = "MESHDRIFT_TESTBED"
	EnvRequire = "MESHDRIFT_REQUIRE_TESTBED"
)

// Assets is a test bed directory filled by hack/build-tools.sh and hack/crds.sh.
type Assets struct {
	Dir string
}

// CRD groups under crds/, in the order they are installed.
var crdGroups = []string{"istio", "gateway-api", "flux", "argocd"}

// LoadAssets finds the test bed directory and checks that it holds what the bed needs.
func LoadAssets() (Assets, error) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return Assets{}, fmt.Errorf("locating the test bed: %s is unset and %w", EnvDir, err)
		}
		dir = filepath.Join(cache, "meshdrift", "testbed")
	}
	a := Assets{Dir: dir}
	var errs []error
	for _, bin := range []string{"etcd", "kube-apiserver", "kubectl", "pilot-discovery", "istioctl", "kustomize-controller", "notification-controller"} {
		if _, err := os.Stat(a.Bin(bin)); err != nil {
			errs = append(errs, fmt.Errorf("missing %s: %w", bin, err))
		}
	}
	for _, g := range crdGroups {
		if _, err := os.Stat(a.CRDDir(g)); err != nil {
			errs = append(errs, fmt.Errorf("missing CRDs %s: %w", g, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return a, fmt.Errorf("test bed in %s is incomplete (run `make testbed`): %w", dir, err)
	}
	return a, nil
}

// Bin is the path of a test bed program.
func (a Assets) Bin(name string) string { return filepath.Join(a.Dir, "bin", name) }

// CRDDir is the directory of one group of CRDs.
func (a Assets) CRDDir(group string) string { return filepath.Join(a.Dir, "crds", group) }

// CRDDirs lists every CRD directory.
func (a Assets) CRDDirs() []string {
	dirs := make([]string, 0, len(crdGroups))
	for _, g := range crdGroups {
		dirs = append(dirs, a.CRDDir(g))
	}
	return dirs
}

// Required reports whether missing parts must fail tests instead of skipping them.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Main runs a package's tests around a shared test bed set up once. setup runs only when
// the assets are present; when they are not, tests run without it (each integration test
// calls Need and skips) unless the bed is required, which fails the package at once.
//
// Under -short (make unit) and in fuzz runs (the coordinator and every worker process run
// TestMain) nothing is started: integration tests skip there, and make integration runs them.
func Main(m *testing.M, setup func(Assets) (teardown func(), err error)) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() || fuzzing() {
		return m.Run()
	}
	// envtest logs through controller-runtime, which prints a stack trace when nothing set
	// its logger; the bed's programs have log files of their own.
	ctrllog.SetLogger(logr.Discard())
	assets, err := LoadAssets()
	if err != nil {
		if Required() {
			fmt.Fprintf(os.Stderr, "testbed: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "testbed: integration tests will skip: %v\n", err)
		return m.Run()
	}
	teardown, err := setup(assets)
	code := 1
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed: setup failed: %v\n", err)
	} else {
		code = m.Run()
	}
	if teardown != nil {
		teardown()
	}
	finishLogDirs(code != 0)
	return code
}

var logDirs struct {
	sync.Mutex
	dirs []string
}

// NewLogDir creates a directory for the logs of the bed's programs. Main removes it after
// a passing run and keeps it, printing where, after a failing one (or when
// MESHDRIFT_KEEP_LOGS is set), so that a failure can be read from the programs' side.
func NewLogDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", fmt.Errorf("creating log directory: %w", err)
	}
	logDirs.Lock()
	logDirs.dirs = append(logDirs.dirs, dir)
	logDirs.Unlock()
	return dir, nil
}

func finishLogDirs(failed bool) {
	logDirs.Lock()
	defer logDirs.Unlock()
	for _, dir := range logDirs.dirs {
		if failed || os.Getenv("MESHDRIFT_KEEP_LOGS") != "" {
			fmt.Fprintf(os.Stderr, "testbed: logs of the bed's programs kept in %s\n", dir)
			continue
		}
		_ = os.RemoveAll(dir)
	}
	logDirs.dirs = nil
}

// fuzzing reports whether this process runs a fuzz target, as the coordinator or as one
// of its workers; neither needs a bed.
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// Need skips an integration test whose shared part was not started because the assets are
// missing; with the bed required, Main has already failed before tests run.
func Need(t testing.TB, started bool) {
	t.Helper()
	if !started {
		t.Skip("test bed not available: run `make test` (or set " + EnvDir + ")")
	}
}
