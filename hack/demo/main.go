// Command demo brings up meshdrift's local demo environment: the real test bed (kube-apiserver,
// etcd, istiod, Flux controllers), a small sample mesh (three services, their VirtualServices
// and DestinationRules, owned by an Argo CD Application and a Flux Kustomization), test proxies
// for its workloads, and `meshdrift serve` pointed at all of it. It prints where to look and
// tears everything down on Ctrl-C. `make demo` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/testbed"
)

func main() {
	var (
		binary    = flag.String("meshdrift", "bin/meshdrift", "meshdrift binary to run")
		listen    = flag.String("listen", "127.0.0.1:9090", "address meshdrift serves its status, metrics and webhooks on")
		logDir    = flag.String("log-dir", "", "directory for the bed's logs (default: a new temporary directory)")
		rbac      = flag.String("rbac", "manifests/rbac.yaml", "meshdrift's shipped RBAC, applied and used: meshdrift runs as its ServiceAccount")
		exitAfter = flag.Duration("exit-after", 0, "stop by itself after this long (0: run until Ctrl-C); used by tests")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *exitAfter > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *exitAfter)
		defer cancel()
	}
	if err := run(ctx, log, *binary, *listen, *logDir, *rbac); err != nil {
		log.Error("demo failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, binary, listen, logDir, rbacFile string) (err error) {
	assets, err := testbed.LoadAssets()
	if err != nil {
		return err
	}
	if logDir == "" {
		if logDir, err = os.MkdirTemp("", "meshdrift-demo-"); err != nil {
			return fmt.Errorf("creating log directory: %w", err)
		}
	}
	env, err := startEnvironment(ctx, log, assets, logDir, rbacFile)
	if env != nil {
		defer env.stop(log)
	}
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(logDir, "meshdrift.yaml")
	if err := testbed.WriteMeshdriftConfig(cfgPath, demoConfig(env, listen)); err != nil {
		return err
	}
	md := exec.Command(binary, "serve", "--config", cfgPath)
	md.Stdout, md.Stderr = os.Stdout, os.Stderr
	md.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := md.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- md.Wait() }()
	// Where the demo's Alertmanager listens, for whoever drives the demo (its test).
	if err := os.WriteFile(filepath.Join(logDir, "alertmanager-url"), []byte(env.am.URL), 0o600); err != nil {
		return fmt.Errorf("writing the Alertmanager URL: %w", err)
	}
	go func() {
		// Once meshdrift has seen the healthy mesh, break it the way users find out about
		// too late: a Flux revision that Flux applies and a proxy rejects.
		if err := waitReady(ctx, "http://"+listen+"/readyz"); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
		if err := env.rejectRatingsChange(ctx); err != nil {
			log.Error("making the ratings proxy reject a change", "err", err)
			return
		}
		fmt.Printf(`
Flux is applying bookinfo %s, and the ratings proxy rejects its route. Flux says Ready;
meshdrift raises MD0201 MeshChangeNACKed within a second:
  page:          http://%s/
  Alertmanager:  %s/#/alerts
  Events:        kubectl --kubeconfig %s -n %s describe virtualservice ratings
`, rejectedRevision, listen, env.am.URL, env.kube.Kubeconfig, demoNamespace)
	}()

	fmt.Printf(`
meshdrift demo is running.
  page:          http://%[1]s/
  status API:    http://%[1]s/api/v1/status
  metrics:       http://%[1]s/metrics
  kubeconfig:    %[2]s   (kubectl --kubeconfig %[2]s get virtualservices -A)
  istiod syncz:  http://%[3]s/debug/syncz
  logs:          %[4]s
Try: kubectl --kubeconfig %[2]s -n bookinfo edit virtualservice ratings
Press Ctrl-C to stop.
`, listen, env.kube.Kubeconfig, env.istiod.HTTPAddr, logDir)

	select {
	case <-ctx.Done():
		_ = syscall.Kill(-md.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-md.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		log.Info("stopping the demo environment")
		return nil
	case err := <-exited:
		if err == nil {
			err = errors.New("exited")
		}
		return fmt.Errorf("meshdrift serve stopped: %w", err)
	}
}

// demoConfig is meshdrift's configuration for the demo: the bed's istiod and
// Alertmanager, read every 2 s, with a 30 s grace.
func demoConfig(env *environment, listen string) config.Config {
	cfg := testbed.MeshdriftConfig(env.kubeconfig, env.tokenFile, env.istiod)
	cfg.Server.ListenAddress = listen
	cfg.Istio.PollInterval = config.Duration(2 * time.Second)
	cfg.Reconcile.StaleGrace = config.Duration(30 * time.Second)
	cfg.Alerting.Alertmanager.URLs = []string{env.am.URL}
	cfg.Alerting.Alertmanager.ExternalURL = "http://" + listen
	return cfg
}

// waitReady polls url until it answers 200 or ctx ends.
func waitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
