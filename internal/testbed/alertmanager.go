package testbed

import (
	"context"
	"fmt"
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
	URL  string
	proc *process
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
	bin, err := AlertmanagerBinary()
	if err != nil {
		return nil, err
	}
	if config == "" {
		config = DefaultAlertmanagerConfig
	}
	dir := filepath.Join(logDir, "alertmanager")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("creating alertmanager directory: %w", err)
	}
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("writing alertmanager config: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := startProcess("alertmanager", dir, bin, []string{
		"--config.file=" + cfgPath,
		"--storage.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		"--cluster.listen-address=",
		"--log.level=debug",
	}, nil)
	if err != nil {
		return nil, err
	}
	am := &Alertmanager{URL: "http://" + addr, proc: p}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitHTTP(ctx, am.URL+"/-/ready"); err != nil {
		_ = p.stop(5 * time.Second)
		return nil, fmt.Errorf("alertmanager not ready:\n%s\n%w", p.tail(20), err)
	}
	return am, nil
}

// Stop stops Alertmanager.
func (a *Alertmanager) Stop() error {
	if a == nil {
		return nil
	}
	return a.proc.stop(5 * time.Second)
}
