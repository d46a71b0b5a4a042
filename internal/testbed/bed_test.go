package testbed_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// One bed for the package: API server, istiod, Flux and Alertmanager, as the product sees them.
var bed struct {
	started bool
	assets  testbed.Assets
	kube    *testbed.Kube
	istiod  *testbed.Istiod
	flux    *testbed.Flux
	am      *testbed.Alertmanager
}

func TestMain(m *testing.M) {
	os.Exit(testbed.MainBed(m, testbed.BedOptions{
		LogPrefix: "meshdrift-testbed-",
		Istiods:   []testbed.IstiodOptions{{Name: "istiod-bed"}},
		Flux:      true, Alertmanager: true,
	}, func(b *testbed.Bed) error {
		bed.assets, bed.kube, bed.istiod, bed.flux, bed.am = b.Assets, b.Kube, b.Istiods[0], b.Flux, b.Alertmanager
		bed.started = true
		return nil
	}))
}

// synczEntry is the part of istiod's /debug/syncz the bed's tests look at.
type synczEntry struct {
	Proxy     string `json:"proxy"`
	Resources map[string]struct {
		Sent      string `json:"sent"`
		Acked     string `json:"acked"`
		LastError string `json:"lastError"`
	} `json:"resources"`
}

func syncz(t *testing.T, istiod *testbed.Istiod) map[string]synczEntry {
	t.Helper()
	resp, err := http.Get("http://" + istiod.HTTPAddr + "/debug/syncz")
	if err != nil {
		t.Fatalf("GET syncz: %v", err)
	}
	defer resp.Body.Close()
	var entries []synczEntry
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		t.Fatalf("decoding syncz: %v", err)
	}
	out := map[string]synczEntry{}
	for _, e := range entries {
		out[e.Proxy] = e
	}
	return out
}

func startProxy(t *testing.T, pod, ns, ip string, mode xdsproxy.Mode) *xdsproxy.Proxy {
	t.Helper()
	p := xdsproxy.New(xdsproxy.Config{
		Addr: bed.istiod.GRPCAddr, PodName: pod, Namespace: ns, IP: ip,
		Labels: map[string]string{"app": strings.SplitN(pod, "-", 2)[0], "version": "v1"},
		Mode:   mode,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("starting proxy %s: %v\nistiod log:\n%s", pod, err, bed.istiod.LogTail(30))
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(ns) > 50 {
		ns = ns[:50]
	}
	if err := bed.kube.CreateNamespace(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

const serviceYAML = `apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: %[1]s}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: ratings}
`

// A VirtualService written through the API server reaches an ACKing proxy, and istiod's
// /debug/syncz shows that proxy's ACK of the route push.
func TestVirtualServiceReachesProxy(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	if _, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(serviceYAML, ns)); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, "reviews-v1-abc", ns, "10.0.0.11", xdsproxy.ModeACK)
	vs := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: %[1]s}
spec:
  hosts: [ratings.%[1]s.svc.cluster.local]
  http:
  - name: meshdrift-probe
    timeout: 7s
    route: [{destination: {host: ratings.%[1]s.svc.cluster.local}}]
`, ns)
	if _, err := bed.kube.Apply(ctx, "kubectl", vs); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := p.WaitFor(waitCtx, func(s xdsproxy.Snapshot) bool {
		return routeNamed(s.RouteConfigs(), "meshdrift-probe") && s.Type(xdsproxy.TypeRoute).ACKs > 0
	})
	if err != nil {
		t.Fatalf("route from the VirtualService never reached the proxy: %v\nistiod log:\n%s", err, bed.istiod.LogTail(30))
	}
	acked := p.Snapshot().Type(xdsproxy.TypeRoute).ACKedNonce
	testbed.Eventually(t, 10*time.Second, "syncz shows the RDS ACK", func() (bool, string) {
		e, ok := syncz(t, bed.istiod)[p.Name()]
		if !ok {
			return false, "proxy not in syncz"
		}
		r := e.Resources[xdsproxy.TypeRoute]
		return r.Acked != "" && r.Acked == r.Sent && r.Sent == acked && r.LastError == "", fmt.Sprintf("%+v (proxy acked %s)", r, acked)
	})
}

func routeNamed(rcs map[string]*routev3.RouteConfiguration, name string) bool {
	for _, rc := range rcs {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if r.GetName() == name {
					return true
				}
			}
		}
	}
	return false
}

// A NACKing proxy's error text shows in syncz, and the real istioctl lists the test proxies.
func TestNACKInSynczAndIstioctl(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	good := startProxy(t, "productpage-v1-ok", ns, "10.0.0.21", xdsproxy.ModeACK)
	bad := startProxy(t, "ratings-v1-nack", ns, "10.0.0.22", xdsproxy.ModeACK)
	const reason = "route_config: invalid regex in virtual host ratings"
	bad.SetNACKMessage(reason)
	bad.SetMode(xdsproxy.ModeNACK)
	// Any config change makes istiod push CDS/LDS/RDS to every proxy.
	if _, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(serviceYAML, ns)); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 15*time.Second, "syncz shows the NACK", func() (bool, string) {
		e, ok := syncz(t, bed.istiod)[bad.Name()]
		if !ok {
			return false, "proxy not in syncz"
		}
		for typ, r := range e.Resources {
			if strings.Contains(r.LastError, reason) {
				return true, typ
			}
		}
		return false, fmt.Sprintf("%+v", e.Resources)
	})

	out, err := exec.Command(bed.assets.Bin("istioctl"), "--kubeconfig", bed.kube.Kubeconfig,
		"proxy-status", "--revision", "default", "--xds-address", bed.istiod.SecureGRPCAddr, "-v", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("istioctl proxy-status: %v\n%s", err, out)
	}
	table := string(out)
	for _, p := range []*xdsproxy.Proxy{good, bad} {
		if !strings.Contains(table, p.Name()) {
			t.Errorf("istioctl proxy-status does not list %s:\n%s", p.Name(), table)
		}
	}
	if !lineHas(table, bad.Name(), "ERROR") || !lineHas(table, good.Name(), "SYNCED") {
		t.Errorf("istioctl proxy-status states wrong:\n%s", table)
	}
}

func lineHas(table, name, word string) bool {
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, name+" ") && strings.Contains(l, word) {
			return true
		}
	}
	return false
}

var kustomizationGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}

func readyCondition(t *testing.T, ns, name string) (status, reason, message string) {
	t.Helper()
	obj, err := bed.kube.Dynamic.Resource(kustomizationGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return "", "", err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" {
			return fmt.Sprint(m["status"]), fmt.Sprint(m["reason"]), fmt.Sprint(m["message"])
		}
	}
	return "", "", "no Ready condition"
}

// The real kustomize-controller applies a GitRepository artifact (Ready=True), then fails a
// broken one with BuildFailed.
func TestKustomizeControllerAppliesArtifacts(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	good, err := bed.flux.Artifacts.Publish(ns+"-good", "main@sha1:"+strings.Repeat("a", 40), map[string]string{
		"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: %s}\ndata: {mode: blue}\n", ns),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.SetGitRepository(ctx, ns, "repo", good); err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.ApplyKustomization(ctx, ns, "app", "repo", "./", false); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 30*time.Second, "Kustomization Ready=True", func() (bool, string) {
		s, r, m := readyCondition(t, ns, "app")
		return s == "True", s + "/" + r + ": " + m
	})

	broken, err := bed.flux.Artifacts.Publish(ns+"-broken", "main@sha1:"+strings.Repeat("b", 40), map[string]string{
		"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [broken\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.SetGitRepository(ctx, ns, "repo", broken); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 30*time.Second, "Kustomization Ready=False BuildFailed", func() (bool, string) {
		s, r, m := readyCondition(t, ns, "app")
		return s == "False" && r == "BuildFailed", s + "/" + r + ": " + m
	})
}

// notification-controller delivers a signed generic-hmac event to a local listener.
func TestNotificationControllerDeliversSignedEvents(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	const token = "bed-hmac-token"
	type delivery struct {
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	var got []delivery
	listener := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{r.Header.Clone(), b})
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer listener.Close()
	if err := bed.flux.ForwardEvents(ctx, ns, listener.URL+"/flux/events", token); err != nil {
		t.Fatal(err)
	}
	// The Provider and Alert must be Ready before events flow.
	time.Sleep(2 * time.Second)
	art, err := bed.flux.Artifacts.Publish(ns, "main@sha1:"+strings.Repeat("c", 40), map[string]string{
		"cm.yaml": fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: %s}\n", ns),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.SetGitRepository(ctx, ns, "repo", art); err != nil {
		t.Fatal(err)
	}
	if err := bed.flux.ApplyKustomization(ctx, ns, "app", "repo", "./", false); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 30*time.Second, "a signed event delivered", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range got {
			sig := d.header.Get("X-Signature")
			mac := hmac.New(sha256.New, []byte(token))
			mac.Write(d.body)
			if sig == "sha256="+hex.EncodeToString(mac.Sum(nil)) && bytes.Contains(d.body, []byte(`"kind":"Kustomization"`)) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d deliveries; controllers:\n%s", len(got), bed.flux.LogTail(10))
	})
}

// An alert posted to Alertmanager's API v2 is listed by its GET /api/v2/alerts.
func TestAlertmanagerListsPostedAlert(t *testing.T) {
	testbed.Need(t, bed.started)
	alert := `[{"labels":{"alertname":"MeshDriftBedProbe","code":"MD0000"},"annotations":{"summary":"probe"},"startsAt":"` +
		time.Now().UTC().Format(time.RFC3339) + `"}]`
	resp, err := http.Post(bed.am.URL+"/api/v2/alerts", "application/json", strings.NewReader(alert))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %s", resp.Status)
	}
	testbed.Eventually(t, 10*time.Second, "alert listed", func() (bool, string) {
		resp, err := http.Get(bed.am.URL + "/api/v2/alerts?filter=alertname%3D%22MeshDriftBedProbe%22")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var alerts []struct {
			Labels map[string]string `json:"labels"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
			return false, err.Error()
		}
		return len(alerts) == 1 && alerts[0].Labels["code"] == "MD0000" && alerts[0].Status.State == "active", fmt.Sprintf("%+v", alerts)
	})
}

// The bed's CRDs come from the pinned modules: spot-check one kind of each.
func TestCRDsInstalled(t *testing.T) {
	testbed.Need(t, bed.started)
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"},
		{Group: "argoproj.io", Version: "v1alpha1", Resource: "appprojects"},
		kustomizationGVR,
		{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"},
		{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"},
		{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "ocirepositories"},
		{Group: "notification.toolkit.fluxcd.io", Version: "v1beta3", Resource: "providers"},
		{Group: "notification.toolkit.fluxcd.io", Version: "v1beta3", Resource: "alerts"},
		{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
		{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"},
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"},
	} {
		if _, err := bed.kube.Dynamic.Resource(gvr).List(context.Background(), metav1.ListOptions{Limit: 1}); err != nil {
			t.Errorf("listing %s: %v", gvr, err)
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(bed.assets.CRDDir("flux"), "*helmreleases*")); len(matches) != 1 {
		t.Errorf("HelmRelease CRD files: %v", matches)
	}
}
