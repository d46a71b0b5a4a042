package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// steadyResult carries what the side-by-side needs from the steady window.
type steadyResult struct {
	istiodCPURate   float64 // istiod CPU seconds per second, meshdrift reading as usual
	mdCPUPerCycle   float64 // meshdrift CPU seconds per cycle (upper bound: all its CPU)
	mdReadSeconds   float64 // mean duration of one istiod read (read + decode)
	cyclesPerMinute float64
}

func apiserverMetrics(ctx context.Context, kube *testbed.Kube) (samples, error) {
	b, err := kube.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("api server metrics: %w", err)
	}
	return parseExposition(bytes.NewReader(b))
}

// meshdriftGroups are the API groups of what meshdrift reads and writes (core: namespaces
// and Events).
var meshdriftGroups = map[string]bool{"": true, "networking.istio.io": true, "argoproj.io": true,
	"kustomize.toolkit.fluxcd.io": true, "helm.toolkit.fluxcd.io": true, "events.k8s.io": true,
	"gateway.networking.k8s.io": true, "security.istio.io": true, "telemetry.istio.io": true}

// requestsByVerb sums apiserver_request_total by verb over the groups meshdrift uses,
// leaving out leases (istiod's leader election) and the core kinds only istiod reads.
func requestsByVerb(ss samples, singleGets bool) map[string]float64 {
	return requestsBy(ss, singleGets, false)
}

// requestsBy sums as requestsByVerb does, by verb, or by verb and resource
// ("PATCH applications").
func requestsBy(ss samples, singleGets, byResource bool) map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		if s.name != "apiserver_request_total" || !meshdriftGroups[s.labels["group"]] {
			continue
		}
		if s.labels["group"] == "" && s.labels["resource"] != "namespaces" && s.labels["resource"] != "events" {
			continue
		}
		if singleGets && !(s.labels["verb"] == "GET" && s.labels["scope"] == "resource" && s.labels["subresource"] == "") {
			continue
		}
		k := s.labels["verb"]
		if byResource {
			k += " " + s.labels["resource"]
		}
		out[k] += s.value
	}
	return out
}

func allRequests(ss samples) float64 {
	var t float64
	for _, s := range ss {
		if s.name == "apiserver_request_total" && s.labels["verb"] != "WATCH" {
			t += s.value
		}
	}
	return t
}

func steadyState(ctx context.Context, o options, rep *report, kube *testbed.Kube, istiod *testbed.Istiod, base string, pid, istiods int, refreshes *refresher) (steadyResult, error) {
	var st steadyResult
	var mok0, mok1 bool
	var r0, r1 int64
	scrapeAll := func(mok *bool, refreshed *int64) (a, m, i samples, err error) {
		*refreshed = refreshes.quiet(func() { a, err = apiserverMetrics(ctx, kube) })
		if err != nil {
			return
		}
		m, *mok = scrapeMeshdrift(ctx, base, pid)
		i, err = scrapeHTTP(ctx, "http://"+istiod.MonitoringAddr+"/metrics")
		return
	}
	logf("steady-state window of %s", o.steady)
	a0, m0, i0, err := scrapeAll(&mok0, &r0)
	if err != nil {
		return st, err
	}
	t0 := time.Now()
	if err := sleep(ctx, o.steady); err != nil {
		return st, err
	}
	a1, m1, i1, err := scrapeAll(&mok1, &r1)
	failed := refreshes.failed.Load()
	if err != nil {
		return st, err
	}
	elapsed := time.Since(t0)
	metricsOK := mok0 && mok1
	mins := elapsed.Minutes()

	refreshed := float64(r1 - r0)
	rep.add("Argo CD refresh writes (reconciledAt) the harness made, steady", fmt.Sprintf("%.1f/min (%d failed)", refreshed/mins, failed), "-", "-")
	v0, v1 := requestsBy(a0, false, true), requestsBy(a1, false, true)
	// The refreshes are Argo CD's writes, not meshdrift's requests.
	v1["PATCH applications"] -= refreshed
	var verbs []string
	for v := range v1 {
		if d := v1[v] - v0[v]; d > 0.5 {
			verbs = append(verbs, fmt.Sprintf("%s %.1f", v, d/mins))
		}
	}
	sort.Strings(verbs)
	if len(verbs) == 0 {
		verbs = []string{"none"}
	}
	all0, all1 := allRequests(a0), allRequests(a1)
	rep.add("API requests/min, steady (every client and kind, watches excluded)", fmt.Sprintf("%.1f", (all1-all0)/mins), "-", "-")
	rep.add("API requests/min, steady (meshdrift's kinds, all clients but the refreshes)", shortList(verbs), "watches only (+ Event writes)", "-")
	g0, g1 := requestsByVerb(a0, true), requestsByVerb(a1, true)
	gets := (g1["GET"] - g0["GET"]) / mins
	rep.add("single-object GETs/min, steady", fmt.Sprintf("%.1f", gets), "0", metStr(gets == 0))

	reads := m1.sum("meshdrift_istiod_reads_total", nil) - m0.sum("meshdrift_istiod_reads_total", nil)
	perIstiod := reads / float64(istiods) / mins
	st.cyclesPerMinute = perIstiod
	if metricsOK {
		rep.add("syncz reads per istiod per minute, steady", fmt.Sprintf("%.1f", perIstiod), "<= 6 (one per 10 s poll)", metStr(perIstiod <= 6.5))
	} else {
		rep.add("syncz reads per istiod per minute, steady", "n/a (/metrics did not answer)", "<= 6 (one per 10 s poll)", "-")
	}

	rss := m1.sum("process_resident_memory_bytes", nil)
	rep.add("RSS, steady state", mib(rss), "<= 256 MiB", metStr(rss <= 256<<20))
	rep.add("Go heap in use, steady state", heapOrNA(m1, mok1), "-", "-")

	st.istiodCPURate = (i1.sum("process_cpu_seconds_total", nil) - i0.sum("process_cpu_seconds_total", nil)) / elapsed.Seconds()
	mdCPU := m1.sum("process_cpu_seconds_total", nil) - m0.sum("process_cpu_seconds_total", nil)
	cycles := reads / float64(istiods)
	if cycles > 0 {
		st.mdCPUPerCycle = mdCPU / cycles
	}
	n := m1.sum("meshdrift_istiod_read_duration_seconds_count", nil) - m0.sum("meshdrift_istiod_read_duration_seconds_count", nil)
	if n > 0 {
		st.mdReadSeconds = (m1.sum("meshdrift_istiod_read_duration_seconds_sum", nil) - m0.sum("meshdrift_istiod_read_duration_seconds_sum", nil)) / n
	}
	rep.add("meshdrift CPU, steady", fmt.Sprintf("%.1f ms/s", 1000*mdCPU/elapsed.Seconds()), "-", "-")
	rep.add("istiod CPU, steady (meshdrift reading)", fmt.Sprintf("%.1f ms/s", 1000*st.istiodCPURate), "-", "-")
	return st, nil
}

func istiodCPU(ctx context.Context, istiod *testbed.Istiod) (float64, error) {
	ss, err := scrapeHTTP(ctx, "http://"+istiod.MonitoringAddr+"/metrics")
	if err != nil {
		return 0, err
	}
	return ss.sum("process_cpu_seconds_total", nil), nil
}

// sideBySide compares one meshdrift cycle with one `istioctl proxy-status -v 1` on the same
// istiod and proxies: their own wall and CPU time, and what each costs istiod.
func sideBySide(ctx context.Context, o options, rep *report, st steadyResult, kube *testbed.Kube, istiod *testbed.Istiod, assets testbed.Assets, mdToken string, realProxies int) error {
	// istiod's CPU per read of the request meshdrift sends (syncz on an open TLS stream,
	// meshdrift-system token), measured from here over many reads, less istiod's own
	// steady rate over the same time.
	c, err := newSynczClient(istiod.SecureGRPCAddr, istiod.RootCertFile, mdToken, testbed.MeshdriftNamespace, "meshdrift")
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.read(); err != nil { // opens the stream
		return err
	}
	// istiod's CPU per call, less its steady rate over the same time.
	const reads = 20
	perCall := func(call func() error) (float64, error) {
		c0, err := istiodCPU(ctx, istiod)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		for range reads {
			if err := call(); err != nil {
				return 0, err
			}
		}
		el := time.Since(t0)
		c1, err := istiodCPU(ctx, istiod)
		if err != nil {
			return 0, err
		}
		return max(0, (c1-c0-st.istiodCPURate*el.Seconds())/reads), nil
	}
	synczCost, err := perCall(func() error { _, err := c.read(); return err })
	if err != nil {
		return err
	}
	// With a monitoring address, meshdrift reads istiod's /metrics page before and after
	// each syncz read, to tell a restricted view from a full one.
	pageCost, err := perCall(func() error {
		_, err := fetchText(ctx, "http://"+istiod.MonitoringAddr+"/metrics")
		return err
	})
	if err != nil {
		return err
	}
	mdIstiod := synczCost + 2*pageCost
	if o.profileDir != "" {
		// What istiod does for each: its CPU profile while one reads back to back.
		profileIstiod(ctx, istiod, o.profileDir, "istiod-cpu-meshdrift-reads.pb.gz", func() error { _, err := c.read(); return err })
		profileIstiod(ctx, istiod, o.profileDir, "istiod-cpu-istioctl-runs.pb.gz", func() error {
			return exec.CommandContext(ctx, assets.Bin("istioctl"), "--kubeconfig", kube.Kubeconfig,
				"proxy-status", "--revision", "default", "--xds-address", istiod.SecureGRPCAddr, "-v", "1").Run()
		})
	}
	rep.add("istiod CPU per meshdrift read: syncz / each of 2 /metrics pages", fmtDur(time.Duration(synczCost*float64(time.Second)))+" / "+fmtDur(time.Duration(pageCost*float64(time.Second))), "-", "-")

	var walls, cpus, istiodCosts []time.Duration
	for range o.istioctlRuns {
		c0, err := istiodCPU(ctx, istiod)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, assets.Bin("istioctl"), "--kubeconfig", kube.Kubeconfig,
			"proxy-status", "--revision", "default", "--xds-address", istiod.SecureGRPCAddr, "-v", "1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("istioctl proxy-status: %w: %s", err, stderr.String())
		}
		wall := time.Since(start)
		c1, err := istiodCPU(ctx, istiod)
		if err != nil {
			return err
		}
		if lines := strings.Count(stdout.String(), "\n"); lines < realProxies {
			return fmt.Errorf("istioctl listed %d lines for %d proxies", lines, realProxies)
		}
		walls = append(walls, wall)
		cpus = append(cpus, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
		istiodCosts = append(istiodCosts, time.Duration(max(0, c1-c0-st.istiodCPURate*wall.Seconds())*float64(time.Second)))
	}
	ictlWall, ictlCPU, ictlIstiod := mean(walls), mean(cpus), mean(istiodCosts)
	mdWall := time.Duration(st.mdReadSeconds * float64(time.Second))
	mdCPU := time.Duration(st.mdCPUPerCycle * float64(time.Second))
	mdI := time.Duration(mdIstiod * float64(time.Second))

	rep.add(fmt.Sprintf("istioctl proxy-status -v 1 (%d proxies): wall / CPU", realProxies), fmtDur(ictlWall)+" / "+fmtDur(ictlCPU), "-", "-")
	if mdWall > 0 {
		rep.add("meshdrift cycle (10k proxies): read wall / CPU per cycle", fmtDur(mdWall)+" / "+fmtDur(mdCPU), "-", "-")
	} else {
		rep.add("meshdrift cycle (10k proxies): read wall / CPU per cycle", "n/a (/metrics did not answer)", "-", "-")
	}
	ratio := func(a, b time.Duration) (string, bool) {
		if b <= 0 {
			return "n/a (meshdrift side measured 0)", false
		}
		r := float64(a) / float64(b)
		return fmt.Sprintf("%.1fx", r), r >= 10
	}
	s, ok := ratio(ictlCPU, mdCPU)
	rep.add("CPU: istioctl run / meshdrift cycle", s, ">= 10x", metStr(ok))
	// istioctl can read only the real istiod's proxies; meshdrift's cycle reads all of
	// o.synczProxies. Per proxy read, the two do the same work.
	if realProxies > 0 && o.synczProxies > 0 {
		perIctl := time.Duration(float64(ictlCPU) / float64(realProxies) * 1000)
		perMd := time.Duration(float64(mdCPU) / float64(o.synczProxies) * 1000)
		s, ok = ratio(perIctl, perMd)
		rep.add("CPU per 1,000 proxies read: istioctl run / meshdrift cycle", fmtDur(perIctl)+" / "+fmtDur(perMd)+" = "+s, ">= 10x", metStr(ok))
	}
	s, _ = ratio(ictlWall, mdWall)
	rep.add("wall: istioctl run / meshdrift read", s, "-", "-")
	rep.add("istiod CPU per read: istioctl / meshdrift", fmtDur(ictlIstiod)+" / "+fmtDur(mdI), "-", "-")
	s, ok = ratio(ictlIstiod, mdI)
	rep.add("istiod CPU per read: istioctl / meshdrift ratio", s, ">= 10x", metStr(ok))
	rep.add("istiod CPU serving meshdrift's syncz reads, steady", fmt.Sprintf("%.1f ms/min", 1000*mdIstiod*st.cyclesPerMinute), "-", "-")
	return nil
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t / time.Duration(len(ds))
}

func injectedVS(name, host, routeName string, labels map[string]string) *unstructured.Unstructured {
	md := map[string]any{"name": name, "namespace": injectNamespace}
	if labels != nil {
		l := map[string]any{}
		for k, v := range labels {
			l[k] = v
		}
		md["labels"] = l
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": md,
		"spec": map[string]any{"hosts": []any{host}, "exportTo": []any{"."},
			"http": []any{map[string]any{"name": routeName, "timeout": "3s",
				"route": []any{map[string]any{"destination": map[string]any{"host": host, "port": map[string]any{"number": int64(9080)}}}}}}},
	}}
}

// injectNACKs creates, one at a time, a VirtualService the injection proxy rejects, and
// times the write to the MD0201 alert in Alertmanager.
func injectNACKs(ctx context.Context, o options, rep *report, dyn dynamic.Interface, amURL string) error {
	var lats []time.Duration
	missed := 0
	for i := range o.injections {
		name := fmt.Sprintf("nack-%02d", i)
		vs := injectedVS(name, fmt.Sprintf("inj-%02d.%s.example.com", i, injectNamespace), fmt.Sprintf("%s-%02d", nackMarker, i), nil)
		t0 := time.Now()
		if _, err := dyn.Resource(gvrVS).Namespace(injectNamespace).Create(ctx, vs, metav1.CreateOptions{FieldManager: "kubectl"}); err != nil {
			return err
		}
		// Five times the target: a later alert counts as missed, which keeps a run
		// where detection is broken inside make bench's budget.
		at, err := waitAlert(ctx, amURL, "MD0201", name, 10*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logf("NACK injection %d: %v", i, err)
			missed++
		} else {
			lats = append(lats, at.Sub(t0))
			logf("NACK injection %d: alert after %s", i, fmtDur(at.Sub(t0)))
		}
		// Back to a config the proxy accepts before the next one.
		if err := dyn.Resource(gvrVS).Namespace(injectNamespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		if err := sleep(ctx, 1500*time.Millisecond); err != nil {
			return err
		}
	}
	p99 := percentile(lats, 0.99)
	measured := fmt.Sprintf("%s / %s (n=%d)", fmtDur(percentile(lats, 0.5)), fmtDur(p99), len(lats))
	if missed > 0 {
		measured += fmt.Sprintf(", %d without alert in 10 s", missed)
	}
	rep.add("NACK -> alert in Alertmanager, p50 / p99", measured, "p99 <= 2 s", metStr(missed == 0 && len(lats) > 0 && p99 <= 2*time.Second))
	return nil
}

// injectNotPushed creates VirtualServices of a revision no istiod runs (istiod ignores
// them; meshdrift tracks them), one a second, and times each write to the MD0203 alert.
// Nothing else changes meanwhile, so istiod's push version stays put.
func injectNotPushed(ctx context.Context, o options, rep *report, dyn dynamic.Interface, amURL string) error {
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	var mu sync.Mutex
	var lats []time.Duration
	missed := 0
	var wg sync.WaitGroup
	var firstErr error
	for i := range o.injections {
		name := fmt.Sprintf("notpushed-%02d", i)
		vs := injectedVS(name, fmt.Sprintf("np-%02d.%s.example.com", i, injectNamespace), name, map[string]string{"istio.io/rev": "scale-absent"})
		t0 := time.Now()
		if _, err := dyn.Resource(gvrVS).Namespace(injectNamespace).Create(ctx, vs, metav1.CreateOptions{FieldManager: "kubectl"}); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := waitAlert(ctx, amURL, "MD0203", name, o.grace+30*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if ctx.Err() != nil {
					firstErr = ctx.Err()
					return
				}
				logf("never-pushed injection %s: %v", name, err)
				missed++
				return
			}
			lats = append(lats, at.Sub(t0)-o.grace)
			logf("never-pushed injection %s: alert after grace + %s", name, fmtDur(at.Sub(t0)-o.grace))
		}()
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	p99 := percentile(lats, 0.99)
	measured := fmt.Sprintf("%s / %s (n=%d)", fmtDur(percentile(lats, 0.5)), fmtDur(p99), len(lats))
	if missed > 0 {
		measured += fmt.Sprintf(", %d without alert", missed)
	}
	rep.add(fmt.Sprintf("never-pushed change -> alert, minus grace (%s), p50 / p99", o.grace), measured, "p99 <= 2 s (grace + 2 s)", metStr(missed == 0 && len(lats) > 0 && p99 <= 2*time.Second))
	return nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// profileIstiod writes istiod's CPU profile over 5 s during which call runs back to back.
func profileIstiod(ctx context.Context, istiod *testbed.Istiod, dir, name string, call func() error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		saveProfile(ctx, istiod.MonitoringAddr, "/debug/pprof/profile?seconds=5", dir, name, 30*time.Second)
	}()
	n := 0
	for {
		select {
		case <-done:
			logf("%s: %d calls", name, n)
			return
		default:
		}
		if err := call(); err != nil {
			logf("%s: %v", name, err)
			<-done
			return
		}
		n++
	}
}
