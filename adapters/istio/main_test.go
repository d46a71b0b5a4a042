package istio

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
)

// The package's bed: an API server and two real istiods of different revisions, as a
// canary upgrade runs them.
var bed struct {
	started bool
	assets  testbed.Assets
	kube    *testbed.Kube
	client  kubernetes.Interface
	istiodA *testbed.Istiod // revision default
	istiodB *testbed.Istiod // revision canary
	// tokenFile is an istio-ca token of meshdrift's ServiceAccount in meshdrift-system.
	tokenFile string
}

func TestMain(m *testing.M) {
	os.Exit(testbed.MainBed(m, testbed.BedOptions{
		LogPrefix: "meshdrift-istio-",
		// Both istiods let meshdrift's namespace read their debug endpoints, as the
		// README tells users to configure; TestIstiodAuthorizesDebugCallers covers
		// istiod without that setting.
		Istiods: []testbed.IstiodOptions{
			{Name: "istiod-a", Revision: "default", AllowedDebugNamespaces: []string{testbed.MeshdriftNamespace}},
			{Name: "istiod-b", Revision: "canary", AllowedDebugNamespaces: []string{testbed.MeshdriftNamespace}},
		},
	}, func(b *testbed.Bed) error {
		var err error
		if bed.client, err = kubernetes.NewForConfig(b.Kube.Config); err != nil {
			return err
		}
		bed.assets, bed.kube, bed.istiodA, bed.istiodB = b.Assets, b.Kube, b.Istiods[0], b.Istiods[1]
		if bed.tokenFile, err = b.Kube.TokenFile(context.Background(), testbed.MeshdriftNamespace, "meshdrift"); err != nil {
			return err
		}
		bed.started = true
		return nil
	}))
}

// needBed skips integration tests under -short and when the bed is missing.
func needBed(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	testbed.Need(t, bed.started)
}

// startProxy connects a test proxy to istiod and closes it when the test ends.
func startProxy(t *testing.T, istiod *testbed.Istiod, pod, ns, ip string) *xdsproxy.Proxy {
	t.Helper()
	p := xdsproxy.New(xdsproxy.Config{
		Addr: istiod.GRPCAddr, PodName: pod, Namespace: ns, IP: ip,
		Labels: map[string]string{"app": strings.SplitN(pod, "-", 2)[0], "version": "v1"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("starting proxy %s: %v\nistiod log:\n%s", pod, err, istiod.LogTail(30))
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// newNamespace creates a namespace named after the test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(ns) > 50 {
		ns = strings.TrimRight(ns[:50], "-")
	}
	if err := bed.kube.CreateNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns
}
