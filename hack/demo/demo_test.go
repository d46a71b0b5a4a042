package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

const prSetChildSubreaper = 36

// The README's run command end to end: the demo brings up the bed and meshdrift, serves the
// sample mesh's state, and on SIGINT stops everything it started.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole bed")
	}
	if _, err := testbed.LoadAssets(); err != nil {
		if testbed.Required() {
			t.Fatal(err)
		}
		t.Skipf("test bed not available: %v", err)
	}
	// Become a subreaper so that descendants the demo orphans are reparented here.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
	dir := t.TempDir()
	meshdrift := filepath.Join(dir, "meshdrift")
	if out, err := exec.Command("go", "build", "-o", meshdrift, "../../cmd/meshdrift").CombinedOutput(); err != nil {
		t.Fatalf("building meshdrift: %v\n%s", err, out)
	}
	demo := filepath.Join(dir, "demo")
	if out, err := exec.Command("go", "build", "-o", demo, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the demo: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()

	var out bytes.Buffer
	cmd := exec.Command(demo, "--meshdrift", meshdrift, "--rbac", "../../manifests/rbac.yaml", "--listen", listen, "--log-dir", filepath.Join(dir, "logs"))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	}()

	// The sample mesh shows up in the status API: both GitOps apps and three proxies.
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for {
		if time.Now().After(deadline) {
			t.Fatalf("status never complete; last: %s", last)
		}
		select {
		case err := <-exited:
			t.Fatalf("demo exited early: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
		ok, state := statusComplete("http://" + listen + "/api/v1/status")
		if ok {
			break
		}
		last = state
	}

	// The demo's rejected Flux revision: one firing MD0201 on the page's API, exactly one
	// alert in the demo's Alertmanager, and Events on the VirtualService and on the
	// Kustomization that applied it.
	t.Run("RejectedChange", func(t *testing.T) {
		logs := filepath.Join(dir, "logs")
		amURL, err := os.ReadFile(filepath.Join(logs, "alertmanager-url"))
		if err != nil {
			t.Fatal(err)
		}
		testbed.Eventually(t, 2*time.Minute, "MD0201 firing, one alert, Events on the object and its Kustomization", func() (bool, string) {
			var fs struct {
				Findings []struct {
					Code, State string
					Subject     struct{ Object struct{ Kind, Name string } } `json:"subject"`
				} `json:"findings"`
			}
			if err := getJSON("http://"+listen+"/api/v1/findings?code=MD0201", &fs); err != nil {
				return false, err.Error()
			}
			firing := 0
			for _, f := range fs.Findings {
				if f.State == "firing" && f.Subject.Object.Kind == "VirtualService" && f.Subject.Object.Name == "ratings" {
					firing++
				}
			}
			var alerts []struct {
				Labels map[string]string `json:"labels"`
			}
			if err := getJSON(string(amURL)+`/api/v2/alerts?active=true&filter=code%3D%22MD0201%22`, &alerts); err != nil {
				return false, err.Error()
			}
			events := eventReasons(t, filepath.Join(logs, "kubeconfig"))
			ok := firing == 1 && len(alerts) == 1 && alerts[0].Labels["object"] == "networking.istio.io/VirtualService/bookinfo/ratings" &&
				events["VirtualService/ratings"]["MeshChangeNACKed"] && events["Kustomization/bookinfo-routing"]["MeshChangeNACKed"]
			return ok, fmt.Sprintf("findings %+v; alerts %+v; events %v", fs.Findings, alerts, events)
		})
	})

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("demo did not stop cleanly on Ctrl-C: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo still running 60 s after Ctrl-C")
	}
	// Nothing the demo started may outlive it: as a subreaper this test inherits any
	// orphaned descendant, so every child left is a leak.
	if left := children(); len(left) > 0 {
		t.Errorf("processes left after the demo stopped: %v", left)
	}
}

func statusComplete(url string) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var st struct {
		Apps []struct {
			Source, Name, State string
		} `json:"apps"`
		Istiods []struct {
			Proxies []struct{ ID string } `json:"proxies"`
		} `json:"istiods"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return false, err.Error()
	}
	sources := map[string]bool{}
	for _, a := range st.Apps {
		if a.State == "Synced" {
			sources[a.Source] = true
		}
	}
	proxies := 0
	for _, i := range st.Istiods {
		proxies += len(i.Proxies)
	}
	return sources["argocd"] && sources["flux"] && proxies == 3, fmt.Sprintf("%+v", st)
}

// children lists this process's remaining children as "pid:name".
func children() []string {
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// stat is "pid (comm) state ppid ..."; comm may contain spaces.
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		fields := strings.Fields(s[end+1:])
		// A zombie has exited; only running leftovers are leaks.
		if len(fields) > 1 && fields[1] == self && fields[0] != "Z" {
			out = append(out, e.Name()+":"+s[strings.IndexByte(s, '(')+1:end])
		}
	}
	return out
}

func getJSON(url string, into any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// eventReasons lists the Events meshdrift wrote, by "Kind/name" of what they regard.
func eventReasons(t *testing.T, kubeconfig string) map[string]map[string]bool {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	evs, err := c.EventsV1().Events("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return out
	}
	for _, e := range evs.Items {
		if e.ReportingController != "meshdrift" {
			continue
		}
		k := e.Regarding.Kind + "/" + e.Regarding.Name
		if out[k] == nil {
			out[k] = map[string]bool{}
		}
		out[k][e.Reason] = true
	}
	return out
}
