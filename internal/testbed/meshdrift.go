package testbed

import (
	"fmt"
	"os"

	"github.com/meshdrift/meshdrift/config"
)

// MeshdriftConfig is meshdrift's configuration for this bed: its shipped defaults, the
// kubeconfig it runs with, and istiods read over TLS xDS with a token and the bed's CA
// (one root for all of them). Callers set the rest.
func MeshdriftConfig(kubeconfig, tokenFile string, istiods ...*Istiod) config.Config {
	cfg := config.Default()
	cfg.Kubeconfig = kubeconfig
	cfg.Istio.Transport = config.TransportXDSTLS
	cfg.Istio.TokenFile = tokenFile
	for _, i := range istiods {
		cfg.Istio.Addresses = append(cfg.Istio.Addresses, i.SecureGRPCAddr)
		cfg.Istio.MonitoringAddresses = append(cfg.Istio.MonitoringAddresses, i.MonitoringAddr)
		cfg.Istio.CAFile = i.RootCertFile
	}
	return cfg
}

// WriteMeshdriftConfig validates cfg and writes it to path, for `meshdrift --config`.
func WriteMeshdriftConfig(path string, cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("meshdrift config: %w", err)
	}
	b, err := cfg.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing meshdrift config: %w", err)
	}
	return nil
}
