package testbed

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// IstiodOptions configure one istiod replica.
type IstiodOptions struct {
	// Name is the pod name istiod reports (control_plane identifier, syncz); default "istiod-0".
	Name string
	// Revision is the control-plane revision; default "default".
	Revision string
	// Env adds environment variables (e.g. PILOT_DEBOUNCE_AFTER=50ms).
	Env []string
}

// Istiod is a real pilot-discovery connected to the bed's API server.
type Istiod struct {
	Name     string
	Revision string
	// GRPCAddr is the plaintext xDS address (15010 in a cluster), HTTPAddr the debug and
	// readiness address (8080), MonitoringAddr the metrics and debug address (15014).
	GRPCAddr       string
	HTTPAddr       string
	MonitoringAddr string

	assets Assets
	kube   *Kube
	opts   IstiodOptions
	proc   *process
	starts int
}

// StartIstiod starts istiod against kube. Its ports stay the same across Restart, so test
// proxies reconnect to the restarted process as Envoy would to a restarted pod.
func StartIstiod(ctx context.Context, assets Assets, kube *Kube, opts IstiodOptions) (*Istiod, error) {
	if opts.Name == "" {
		opts.Name = "istiod-0"
	}
	if opts.Revision == "" {
		opts.Revision = "default"
	}
	i := &Istiod{Name: opts.Name, Revision: opts.Revision, assets: assets, kube: kube, opts: opts}
	var err error
	for _, a := range []*string{&i.GRPCAddr, &i.HTTPAddr, &i.MonitoringAddr} {
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	if err := i.start(ctx); err != nil {
		return nil, err
	}
	return i, nil
}

func (i *Istiod) start(ctx context.Context) error {
	i.starts++
	args := []string{
		"discovery",
		"--kubeconfig=" + i.kube.Kubeconfig,
		"--grpcAddr=" + i.GRPCAddr,
		"--httpAddr=" + i.HTTPAddr,
		"--monitoringAddr=" + i.MonitoringAddr,
		// No TLS listeners: the bed has no CA, and nothing may bind outside loopback.
		"--secureGRPCAddr=",
		"--httpsAddr=",
		"--shutdownDuration=1s",
		"--log_output_level=default:info",
	}
	env := append([]string{
		"POD_NAMESPACE=" + IstioNamespace,
		"POD_NAME=" + i.Name,
		"REVISION=" + i.Revision,
		"ENABLE_CA_SERVER=false",
		// Loopback callers may read /debug endpoints and the xDS debug types on 15010.
		"ENABLE_DEBUG_ENDPOINT_AUTH=false",
		"KUBECONFIG=" + i.kube.Kubeconfig,
	}, i.opts.Env...)
	name := fmt.Sprintf("%s-%d", i.Name, i.starts)
	p, err := startProcess(name, filepath.Join(i.kube.LogDir, "istiod"), i.assets.Bin("pilot-discovery"), args, env)
	if err != nil {
		return err
	}
	i.proc = p
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitHTTP(ctx, "http://"+i.HTTPAddr+"/ready"); err != nil {
		_ = p.stop(5 * time.Second)
		return fmt.Errorf("istiod %s not ready (log %s):\n%s\n%w", i.Name, p.logPath, p.tail(40), err)
	}
	return nil
}

// Stop stops istiod; its proxies lose their connection.
func (i *Istiod) Stop() error {
	if i == nil || i.proc == nil {
		return nil
	}
	return i.proc.stop(10 * time.Second)
}

// Restart stops istiod and starts a new process on the same ports, resetting its push
// version counter as a real restart does.
func (i *Istiod) Restart(ctx context.Context) error {
	if err := i.Stop(); err != nil {
		return err
	}
	return i.start(ctx)
}

// LogPath is the current process's log file.
func (i *Istiod) LogPath() string { return i.proc.logPath }

// LogTail returns the last n lines of istiod's log, for failing tests.
func (i *Istiod) LogTail(n int) string { return i.proc.tail(n) }
