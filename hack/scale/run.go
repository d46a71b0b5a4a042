package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/memlimit"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
)

const (
	meshNamespace   = "scale-mesh"
	injectNamespace = "scale-inject"
	nackMarker      = "scale-nack-marker"
)

func runScale(ctx context.Context, o options, rep *report) (err error) {
	assets, err := testbed.LoadAssets()
	if err != nil {
		return err
	}
	logDir := o.logDir
	if logDir == "" {
		if logDir, err = os.MkdirTemp("", "meshdrift-scale-"); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logf("logs in %s", logDir)

	logf("starting kube-apiserver and etcd")
	kube, err := testbed.StartKube(assets, logDir)
	if err != nil {
		return err
	}
	defer stopPart("kube-apiserver", kube.Stop)

	start := time.Now()
	logf("creating %d apps owning %d mesh objects", o.apps, o.objects)
	if err := populate(ctx, kube, o.apps, o.objects, o.workers); err != nil {
		return err
	}
	rep.add(fmt.Sprintf("setup: %d apps / %d mesh objects created", o.apps, o.objects), fmtDur(time.Since(start)), "-", "-")

	logf("starting istiod")
	istiod, err := testbed.StartIstiod(ctx, assets, kube, testbed.IstiodOptions{
		Name: "istiod-scale", AllowedDebugNamespaces: []string{testbed.MeshdriftNamespace},
		Env: []string{fmt.Sprintf("PILOT_MAX_REQUESTS_PER_SECOND=%d", o.maxRPS)},
	})
	if err != nil {
		return err
	}
	defer stopPart("istiod", istiod.Stop)
	am, err := testbed.StartAlertmanager(ctx, logDir, "")
	if err != nil {
		return err
	}
	defer stopPart("alertmanager", am.Stop)

	dyn, err := fastDynamic(kube.Config)
	if err != nil {
		return err
	}
	for _, ns := range []string{meshNamespace, injectNamespace} {
		if err := kube.CreateNamespace(ctx, ns); err != nil {
			return err
		}
	}
	// One ServiceEntry per NACK injection, so that each injected VirtualService routes a
	// host the injection proxy has a route for.
	for i := range o.injections {
		if _, err := dyn.Resource(gvrSE).Namespace(injectNamespace).Create(ctx, serviceEntry(i), metav1.CreateOptions{FieldManager: "kubectl"}); err != nil {
			return fmt.Errorf("creating ServiceEntry: %w", err)
		}
	}

	start = time.Now()
	proxies, _, err := connectProxies(ctx, istiod, o.proxies)
	defer func() {
		for _, p := range proxies {
			_ = p.Close()
		}
	}()
	if err != nil {
		return err
	}
	rep.add("setup: test proxies connected to the real istiod", fmt.Sprintf("%d in %s", len(proxies)-1, fmtDur(time.Since(start))), ">= 1000", metStr(len(proxies)-1 >= 1000))

	// Record istiod's syncz as istioctl reads it (istio-system token) once every proxy
	// has ACKed its config, and replicate it to the rest of the fleet.
	adminToken, err := kube.ServiceAccountToken(ctx, testbed.IstioNamespace, "default", testbed.IstioCAAudience)
	if err != nil {
		return err
	}
	recorder, err := newSynczClient(istiod.SecureGRPCAddr, istiod.RootCertFile, adminToken, testbed.IstioNamespace, "default")
	if err != nil {
		return err
	}
	defer recorder.close()
	rec, err := waitSyncz(ctx, recorder, len(proxies))
	if err != nil {
		return err
	}
	caFile := filepath.Join(logDir, "meshdrift-ca.pem")
	addresses := []string{istiod.SecureGRPCAddr}
	monitoring := []string{istiod.MonitoringAddr}
	rootPEM, err := os.ReadFile(istiod.RootCertFile)
	if err != nil {
		return err
	}
	seen := len(rec.GetResources())
	if n := o.synczProxies - seen; n > 0 {
		resp, err := replicate(rec, n, "istiod-replica")
		if err != nil {
			return err
		}
		replica, err := startReplica(resp, logDir)
		if err != nil {
			return err
		}
		defer replica.stop()
		extra, err := os.ReadFile(replica.CAFile)
		if err != nil {
			return err
		}
		rootPEM = append(append(rootPEM, '\n'), extra...)
		addresses = append(addresses, replica.Addr)
		maddr, mstop, err := startReplicaMetrics(ctx, istiod.MonitoringAddr, n)
		if err != nil {
			return err
		}
		defer mstop()
		monitoring = append(monitoring, maddr)
		seen += n
	}
	if err := os.WriteFile(caFile, rootPEM, 0o644); err != nil {
		return err
	}
	rep.add("setup: proxies in meshdrift's syncz reads (real + replicated)", fmt.Sprintf("%d (%d real)", seen, len(rec.GetResources())), "10000", metStr(seen >= 10000))

	tokenFile, err := kube.TokenFile(ctx, testbed.MeshdriftNamespace, "meshdrift")
	if err != nil {
		return err
	}
	listen, err := freePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(logDir, "meshdrift.yaml")
	cfg := testbed.MeshdriftConfig(kube.Kubeconfig, tokenFile)
	cfg.Server.ListenAddress = listen
	cfg.Istio.Addresses, cfg.Istio.MonitoringAddresses, cfg.Istio.CAFile = addresses, monitoring, caFile
	cfg.Reconcile.StaleGrace = config.Duration(o.grace)
	cfg.Alerting.Alertmanager.URLs = []string{am.URL}
	if err := testbed.WriteMeshdriftConfig(cfgPath, cfg); err != nil {
		return err
	}
	bin, pprofAddr := o.meshdrift, ""
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
		if bin, err = buildProfiled(ctx, logDir); err != nil {
			return err
		}
		if pprofAddr, err = freePort(); err != nil {
			return err
		}
	}
	md, err := startMeshdrift(bin, cfgPath, logDir, pprofAddr)
	if err != nil {
		return err
	}
	defer md.stop()
	base := "http://" + listen
	start = time.Now()
	var profiles sync.WaitGroup
	defer profiles.Wait()
	if pprofAddr != "" {
		profiles.Add(1)
		go func() {
			defer profiles.Done()
			// The listener comes up with the process; the initial sync is what this shows.
			// It ends before the steady profile starts (ready, then 15 s), as the runtime
			// takes one CPU profile at a time.
			_ = sleep(ctx, 2*time.Second)
			saveProfile(ctx, pprofAddr, "/debug/pprof/profile?seconds=14", o.profileDir, "meshdrift-cpu-startup.pb.gz", 45*time.Second)
		}()
	}
	ready := true
	readyAnswer, err := waitReady(ctx, base+"/readyz", o.readyTimeout, md)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		ready = false
		rep.add("meshdrift serve: start to ready (initial sync)", fmt.Sprintf("not ready after %s (%v)", o.readyTimeout, err), "-", "NO")
	} else {
		rep.add("meshdrift serve: start to ready (initial sync)", fmtDur(time.Since(start)), "-", "-")
		rep.add("meshdrift /readyz answer time once synced", fmtDur(readyAnswer), "< 1 s (kubelet probe timeout)", metStr(readyAnswer < time.Second))
	}
	// The first findings pass and the first reads after readiness.
	if err := sleep(ctx, 15*time.Second); err != nil {
		return err
	}
	m0, ok := scrapeMeshdrift(ctx, base, md.cmd.Process.Pid)
	rss := m0.sum("process_resident_memory_bytes", nil)
	rep.add("RSS after initial sync", mib(rss), "<= 256 MiB", metStr(rss <= 256<<20))
	rep.add("Go heap in use after initial sync", heapOrNA(m0, ok), "-", "-")

	if pprofAddr != "" {
		profiles.Add(1)
		go func() {
			defer profiles.Done()
			saveProfile(ctx, pprofAddr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(o.steady.Seconds())), o.profileDir, "meshdrift-cpu-steady.pb.gz", o.steady+30*time.Second)
		}()
	}
	// From here on Argo CD's refreshes run as they do in production (refresh.go).
	refreshCtx, stopRefresh := context.WithCancel(ctx)
	defer stopRefresh()
	var refreshes refresher
	go refreshes.run(refreshCtx, dyn, o.apps)
	st, err := steadyState(ctx, o, rep, kube, istiod, base, md.cmd.Process.Pid, len(addresses), &refreshes)
	if err != nil {
		return err
	}
	if pprofAddr != "" {
		saveProfile(ctx, pprofAddr, "/debug/pprof/heap", o.profileDir, "meshdrift-heap-steady.pb.gz", 30*time.Second)
	}
	mdToken, err := readToken(tokenFile)
	if err != nil {
		return err
	}
	if err := sideBySide(ctx, o, rep, st, kube, istiod, assets, mdToken, len(rec.GetResources())); err != nil {
		return err
	}
	if !ready {
		rep.add("NACK -> alert in Alertmanager, p50 / p99", "not measured: meshdrift not ready", "p99 <= 2 s", "NO")
		rep.add("never-pushed change -> alert, minus grace, p50 / p99", "not measured: meshdrift not ready", "p99 <= 2 s (grace + 2 s)", "NO")
		return nil
	}
	if pprofAddr != "" {
		// The NACK injections: where the detection latency goes.
		profiles.Add(1)
		go func() {
			defer profiles.Done()
			saveProfile(ctx, pprofAddr, "/debug/pprof/profile?seconds=45", o.profileDir, "meshdrift-cpu-nacks.pb.gz", 75*time.Second)
		}()
	}
	if err := injectNACKs(ctx, o, rep, dyn, am.URL); err != nil {
		return err
	}
	if err := injectNotPushed(ctx, o, rep, dyn, am.URL); err != nil {
		return err
	}
	m2, _ := scrapeMeshdrift(ctx, base, md.cmd.Process.Pid)
	rss = m2.sum("process_resident_memory_bytes", nil)
	rep.add("RSS after the injections", mib(rss), "<= 256 MiB", metStr(rss <= 256<<20))
	return nil
}

func stopPart(name string, stop func() error) {
	if err := stop(); err != nil {
		logf("stopping %s: %v", name, err)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func serviceEntry(i int) *unstructured.Unstructured {
	host := fmt.Sprintf("inj-%02d.%s.example.com", i, injectNamespace)
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
		"metadata": map[string]any{"name": fmt.Sprintf("inj-%02d", i), "namespace": injectNamespace},
		"spec": map[string]any{"hosts": []any{host}, "exportTo": []any{"."}, "location": "MESH_EXTERNAL", "resolution": "DNS",
			"ports": []any{map[string]any{"number": int64(9080), "name": "http", "protocol": "HTTP"}}},
	}}
}

// connectProxies connects n proxies in meshNamespace and one injection proxy in
// injectNamespace (last in the returned slice) at a bounded rate: istiod throttles new
// connections, and xdsproxy retries what it refuses.
func connectProxies(ctx context.Context, istiod *testbed.Istiod, n int) ([]*xdsproxy.Proxy, *xdsproxy.Proxy, error) {
	injector := xdsproxy.New(xdsproxy.Config{
		Addr: istiod.GRPCAddr, PodName: "inject-v1-0", Namespace: injectNamespace, IP: "10.9.0.1",
		Labels: map[string]string{"app": "inject"}, NACKWhenContains: nackMarker,
		NACKMessage:        "Proto constraint validation failed: route " + nackMarker + " rejected by the scale harness",
		MaxConnectAttempts: 20,
	})
	if err := injector.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("injection proxy: %w", err)
	}
	out := make([]*xdsproxy.Proxy, n)
	var mu sync.Mutex
	var firstErr error
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := xdsproxy.New(xdsproxy.Config{
					Addr: istiod.GRPCAddr, PodName: fmt.Sprintf("shop-v1-%05d", i), Namespace: meshNamespace,
					IP:     fmt.Sprintf("10.%d.%d.%d", 2+i/65536, (i/256)%256, i%256),
					Labels: map[string]string{"app": "shop", "version": "v1"}, MaxConnectAttempts: 30,
				})
				err := p.Start(ctx)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("proxy %d: %w", i, err)
				}
				if err == nil {
					out[i] = p
				}
				mu.Unlock()
			}
		}()
	}
	begin := time.Now()
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
		if i > 0 && i%250 == 0 {
			logf("connecting proxies: %d/%d after %s", i, n, time.Since(begin).Round(time.Second))
		}
	}
	close(jobs)
	wg.Wait()
	var all []*xdsproxy.Proxy
	for _, p := range out {
		if p != nil {
			all = append(all, p)
		}
	}
	all = append(all, injector)
	if firstErr != nil {
		return all, injector, firstErr
	}
	return all, injector, ctx.Err()
}

type startedMeshdrift struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// shippedMemoryLimit is the memory limit of manifests/deployment.yaml.
const shippedMemoryLimit = 256 << 20

func startMeshdrift(bin, cfgPath, logDir, pprofAddr string) (*startedMeshdrift, error) {
	logFile, err := os.Create(filepath.Join(logDir, "meshdrift.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	// In its shipped Deployment meshdrift runs under a 256Mi memory limit and gives the Go
	// runtime memlimit.For of it (internal/memlimit reads the cgroup). The harness runs it
	// outside any such cgroup, so it passes the same soft limit as GOMEMLIMIT.
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMEMLIMIT=%d", memlimit.For(shippedMemoryLimit)))
	if pprofAddr != "" {
		cmd.Env = append(cmd.Env, "MESHDRIFT_SCALE_PPROF="+pprofAddr)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	m := &startedMeshdrift{cmd: cmd, exited: make(chan struct{})}
	go func() {
		m.err = cmd.Wait()
		logFile.Close()
		close(m.exited)
	}()
	return m, nil
}

func (m *startedMeshdrift) stop() {
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.exited
	}
}

// waitReady polls /readyz one request at a time, every second, each allowed a minute:
// once synced, meshdrift answers it from a store snapshot, which at fleet size takes
// seconds, and abandoned requests would keep computing snapshots and skew what follows.
// It returns how long the successful answer took.
func waitReady(ctx context.Context, u string, within time.Duration, md *startedMeshdrift) (time.Duration, error) {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Minute}
	for time.Now().Before(deadline) {
		select {
		case <-md.exited:
			return 0, fmt.Errorf("meshdrift serve exited: %v", md.err)
		default:
		}
		t0 := time.Now()
		if resp, err := client.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0), nil
			}
		}
		if err := sleep(ctx, time.Second); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("meshdrift not ready within %s", within)
}

// alertmanagerAlert is the part of Alertmanager's /api/v2/alerts answer the harness reads.
type alertmanagerAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
}

// findAlert reports whether Alertmanager holds an alert of code whose object label names name.
func findAlert(ctx context.Context, amURL, code, name string) (bool, error) {
	q := url.Values{"filter": {fmt.Sprintf("code=%q", code)}, "silenced": {"false"}, "inhibited": {"false"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, amURL+"/api/v2/alerts?"+q.Encode(), nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var alerts []alertmanagerAlert
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		return false, fmt.Errorf("decoding alerts: %w", err)
	}
	for _, a := range alerts {
		if strings.HasSuffix(a.Labels["object"], "/"+name) {
			return true, nil
		}
	}
	return false, nil
}

// waitAlert polls Alertmanager every 25 ms and returns when the alert arrived.
func waitAlert(ctx context.Context, amURL, code, name string, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ok, err := findAlert(ctx, amURL, code, name)
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			return time.Now(), nil
		}
		if err := sleep(ctx, 25*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, fmt.Errorf("no %s alert for %s within %s", code, name, within)
}

func heapOrNA(ss samples, ok bool) string {
	if !ok {
		return "n/a (/metrics did not answer within 45 s)"
	}
	return mib(ss.sum("go_memstats_heap_inuse_bytes", nil))
}
