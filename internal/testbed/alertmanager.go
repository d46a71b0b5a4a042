package testbed

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// DefaultAlertmanagerConfig routes every alert to a receiver that sends nothing, with
// short waits so that tests see grouping quickly.
const DefaultAlertmanagerConfig = `route:
  receiver: blackhole
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: blackhole
`

// Alertmanager is the real Alertmanager from Debian's prometheus-alertmanager package.
type Alertmanager struct {
	// URL is the base URL, e.g. http://127.0.0.1:PORT (API under /api/v2).
	URL string
	// ClusterAddr is the gossip address when the instance is part of a cluster.
	ClusterAddr string
	// Dir holds its config, storage and log.
	Dir string

	bin  string
	name string
	args []string
	// authenticated: its web config may answer 401 to the readiness probe.
	authenticated bool
	proc          *process
}

// AlertmanagerOptions starts an Alertmanager that is not the bed's default one.
type AlertmanagerOptions struct {
	// Name is the directory and log name; default "alertmanager".
	Name string
	// Config is the alertmanager.yml content; empty means DefaultAlertmanagerConfig.
	Config string
	// WebConfig is the --web.config.file content (basic auth users); empty means none.
	WebConfig string
	// Cluster turns gossip on, on a loopback port, joining Peers (their ClusterAddr).
	Cluster bool
	Peers   []string
	// Args are extra flags, e.g. --cluster.peer-timeout.
	Args []string
}

// AlertmanagerBinary finds Debian's prometheus-alertmanager (or an alertmanager on PATH).
func AlertmanagerBinary() (string, error) {
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("alertmanager not found on PATH (make testbed installs Debian's prometheus-alertmanager)")
}

// StartAlertmanager runs Alertmanager on a loopback port with its own storage and no
// cluster gossip. config is the alertmanager.yml content; empty means DefaultAlertmanagerConfig.
func StartAlertmanager(ctx context.Context, logDir, config string) (*Alertmanager, error) {
	return StartAlertmanagerWith(ctx, logDir, AlertmanagerOptions{Config: config})
}

// StartAlertmanagerWith runs one Alertmanager as opts says, on loopback ports.
func StartAlertmanagerWith(ctx context.Context, logDir string, opts AlertmanagerOptions) (*Alertmanager, error) {
	bin, err := AlertmanagerBinary()
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "alertmanager"
	}
	if opts.Config == "" {
		opts.Config = DefaultAlertmanagerConfig
	}
	dir := filepath.Join(logDir, opts.Name)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("creating alertmanager directory: %w", err)
	}
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(opts.Config), 0o600); err != nil {
		return nil, fmt.Errorf("writing alertmanager config: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	am := &Alertmanager{URL: "http://" + addr, Dir: dir, bin: bin, name: opts.Name, authenticated: opts.WebConfig != ""}
	am.args = []string{
		"--config.file=" + cfgPath,
		"--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--log.level=debug",
	}
	if opts.WebConfig != "" {
		webPath := filepath.Join(dir, "web.yml")
		if err := os.WriteFile(webPath, []byte(opts.WebConfig), 0o600); err != nil {
			return nil, fmt.Errorf("writing alertmanager web config: %w", err)
		}
		am.args = append(am.args, "--web.config.file="+webPath)
	}
	if !opts.Cluster {
		am.args = append(am.args, "--cluster.listen-address=")
	} else {
		if am.ClusterAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		// On loopback the listen address is also the one to advertise to peers.
		am.args = append(am.args, "--cluster.listen-address="+am.ClusterAddr, "--cluster.advertise-address="+am.ClusterAddr)
		for _, p := range opts.Peers {
			am.args = append(am.args, "--cluster.peer="+p)
		}
	}
	am.args = append(am.args, opts.Args...)
	if err := am.Start(ctx); err != nil {
		return nil, err
	}
	return am, nil
}

// StartAlertmanagerCluster runs n Alertmanagers gossiping with each other on loopback, all
// with the same config, as an HA pair (or more) is run.
func StartAlertmanagerCluster(ctx context.Context, logDir, config string, n int, args ...string) ([]*Alertmanager, error) {
	var ams []*Alertmanager
	stop := func() {
		for _, a := range ams {
			_ = a.Stop()
		}
	}
	for i := range n {
		var peers []string
		for _, a := range ams {
			peers = append(peers, a.ClusterAddr)
		}
		a, err := StartAlertmanagerWith(ctx, logDir, AlertmanagerOptions{
			Name: fmt.Sprintf("alertmanager-%d", i), Config: config, Cluster: true, Peers: peers, Args: args,
		})
		if err != nil {
			stop()
			return nil, err
		}
		ams = append(ams, a)
	}
	return ams, nil
}

// Start starts the Alertmanager again after Stop, on the same addresses and storage, as a
// restarted pod comes back behind its Service.
func (a *Alertmanager) Start(ctx context.Context) error {
	if a.proc != nil && !a.proc.exited() {
		return fmt.Errorf("%s is running", a.name)
	}
	p, err := startProcess(a.name, a.Dir, a.bin, a.args, nil)
	if err != nil {
		return err
	}
	a.proc = p
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.waitReady(ctx); err != nil {
		_ = p.stop(5 * time.Second)
		return fmt.Errorf("alertmanager not ready:\n%s\n%w", p.tail(20), err)
	}
	return nil
}

func (a *Alertmanager) waitReady(ctx context.Context) error {
	if !a.authenticated {
		return waitHTTP(ctx, a.URL+"/-/ready")
	}
	// Behind basic auth every path answers 401 to an anonymous probe: that it answers at
	// all shows it serves.
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL+"/-/ready", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", a.URL, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops Alertmanager.
func (a *Alertmanager) Stop() error {
	if a == nil {
		return nil
	}
	return a.proc.stop(5 * time.Second)
}
