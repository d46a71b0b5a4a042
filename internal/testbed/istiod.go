package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IstiodOptions configure one istiod replica.
type IstiodOptions struct {
	// Name is the pod name istiod reports (control_plane identifier, syncz); default "istiod-0".
	Name string
	// Revision is the control-plane revision; default "default".
	Revision string
	// AllowedDebugNamespaces become istiod's DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES: callers
	// whose token is from one of them see every proxy in istiod's debug answers, as
	// istio-system callers do. Empty: istiod's default (only its own namespace).
	AllowedDebugNamespaces []string
	// Env adds environment variables (e.g. PILOT_DEBOUNCE_AFTER=50ms). It may not switch
	// off the CA or debug-endpoint authorization: the bed runs istiod as users do.
	Env []string
}

// Istiod is a real pilot-discovery connected to the bed's API server, run with Istio's
// defaults for what meshdrift depends on: its CA on (a self-signed root in istio-system,
// published as ConfigMap istio-ca-root-cert), the secure xDS port serving TLS and
// authenticating callers' istio-ca tokens through the API server's TokenReview, and
// debug-endpoint authorization on. Only the addresses are the bed's: all on loopback.
type Istiod struct {
	Name     string
	Revision string
	// GRPCAddr is the plaintext xDS address (15010 in a cluster): test proxies connect
	// here, as sidecars without mTLS bootstrap do. istiod refuses debug types on it.
	GRPCAddr string
	// SecureGRPCAddr is the TLS xDS address (15012 in a cluster), where meshdrift and
	// istioctl read syncz with a token. Its certificate is for ServerName.
	SecureGRPCAddr string
	// HTTPAddr is the debug and readiness address (8080), MonitoringAddr the metrics and
	// debug address (15014). Both let loopback callers through without a token, so a test
	// over them says nothing about what a pod in another namespace gets.
	HTTPAddr       string
	MonitoringAddr string
	// RootCertFile holds istiod's CA root (PEM), as a pod finds it mounted from
	// istio-ca-root-cert.
	RootCertFile string

	assets Assets
	kube   *Kube
	opts   IstiodOptions
	proc   *process
	starts int
}

// IstiodServerName is the name istiod's serving certificate carries for every revision.
const IstiodServerName = "istiod." + IstioNamespace + ".svc"

// envNotAllowed are istiod settings that would make the bed unlike production.
var envNotAllowed = []string{"ENABLE_CA_SERVER=", "ENABLE_DEBUG_ENDPOINT_AUTH=", "DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES="}

// StartIstiod starts istiod against kube. Its ports stay the same across Restart, so test
// proxies reconnect to the restarted process as Envoy would to a restarted pod.
func StartIstiod(ctx context.Context, assets Assets, kube *Kube, opts IstiodOptions) (*Istiod, error) {
	if opts.Name == "" {
		opts.Name = "istiod-0"
	}
	if opts.Revision == "" {
		opts.Revision = "default"
	}
	for _, e := range opts.Env {
		for _, bad := range envNotAllowed {
			if strings.HasPrefix(e, bad) {
				return nil, fmt.Errorf("istiod %s: %s is not settable through Env (use AllowedDebugNamespaces; the CA and debug auth stay at Istio's defaults)", opts.Name, strings.TrimSuffix(bad, "="))
			}
		}
	}
	i := &Istiod{Name: opts.Name, Revision: opts.Revision, assets: assets, kube: kube, opts: opts}
	// A port freeAddr found free may be taken before istiod binds it (a busy machine hands
	// out ephemeral ports too): then start again on new ports.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		for _, a := range []*string{&i.GRPCAddr, &i.SecureGRPCAddr, &i.HTTPAddr, &i.MonitoringAddr} {
			if *a, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		if err = i.start(ctx); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
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
		"--secureGRPCAddr=" + i.SecureGRPCAddr,
		"--httpAddr=" + i.HTTPAddr,
		"--monitoringAddr=" + i.MonitoringAddr,
		// The webhook port would bind every interface; nothing in the bed calls it.
		"--httpsAddr=",
		"--shutdownDuration=1s",
		"--log_output_level=default:info",
	}
	env := []string{
		"POD_NAMESPACE=" + IstioNamespace,
		"POD_NAME=" + i.Name,
		"REVISION=" + i.Revision,
		"KUBECONFIG=" + i.kube.Kubeconfig,
	}
	if len(i.opts.AllowedDebugNamespaces) > 0 {
		env = append(env, "DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES="+strings.Join(i.opts.AllowedDebugNamespaces, ","))
	}
	env = append(env, i.opts.Env...)
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
	if err := i.writeRootCert(ctx); err != nil {
		_ = p.stop(5 * time.Second)
		return fmt.Errorf("istiod %s (log %s): %w", i.Name, p.logPath, err)
	}
	return nil
}

// writeRootCert waits for istiod to publish its CA root and writes it to RootCertFile.
// Every istiod of the bed shares one root (the first one creates istio-ca-secret).
func (i *Istiod) writeRootCert(ctx context.Context) error {
	var last error
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		cm, err := i.kube.Clientset.CoreV1().ConfigMaps(IstioNamespace).Get(ctx, "istio-ca-root-cert", metav1.GetOptions{})
		if err == nil {
			if pem := cm.Data["root-cert.pem"]; pem != "" {
				return i.saveRootCert(cm)
			}
			err = fmt.Errorf("configmap has no root-cert.pem")
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for istiod's root certificate (ConfigMap %s/istio-ca-root-cert): %w (last: %v)", IstioNamespace, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (i *Istiod) saveRootCert(cm *corev1.ConfigMap) error {
	path := filepath.Join(i.kube.LogDir, "istiod", i.Name+"-root-cert.pem")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing root certificate: %w", err)
	}
	if err := os.WriteFile(path, []byte(cm.Data["root-cert.pem"]), 0o644); err != nil {
		return fmt.Errorf("writing root certificate: %w", err)
	}
	i.RootCertFile = path
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
