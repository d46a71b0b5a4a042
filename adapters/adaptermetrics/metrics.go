// Package adaptermetrics defines the metric families every meshdrift adapter shares. Each
// family exists once per registry and each adapter fills in its own `adapter` label
// (argocd, flux, ...): separately created collectors of the same name would collide in the
// one registry the binary uses.
package adaptermetrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Label names. Values are bounded: the adapter name and the Kubernetes kind it reads.
const (
	LabelAdapter = "adapter"
	LabelKind    = "kind"
)

// Metrics holds the shared families.
type Metrics struct {
	// Objects is how many objects of a kind an adapter currently reports.
	Objects *prometheus.GaugeVec
	// WatchRestarts counts failed list or watch attempts that the adapter's watch retries.
	WatchRestarts *prometheus.CounterVec
	// DecodeErrors counts objects an adapter read but could not decode.
	DecodeErrors *prometheus.CounterVec
}

// New returns the shared families registered in reg. Every adapter calls it with the same
// registry: a family some other adapter registered first is reused, so all adapters write
// into one collector per name. A nil reg leaves the families unregistered (for tests).
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "meshdrift",
			Subsystem: "adapter",
			Name:      "objects",
			Help:      "Objects an adapter currently reports, by adapter and kind.",
		}, []string{LabelAdapter, LabelKind}),
		WatchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshdrift",
			Subsystem: "adapter",
			Name:      "watch_restarts_total",
			Help:      "Failed list or watch attempts of an adapter's watch, each followed by a retry.",
		}, []string{LabelAdapter, LabelKind}),
		DecodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshdrift",
			Subsystem: "adapter",
			Name:      "decode_errors_total",
			Help:      "Objects an adapter read but could not decode.",
		}, []string{LabelAdapter}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.Objects, err = register(reg, m.Objects); err != nil {
		return nil, err
	}
	if m.WatchRestarts, err = register(reg, m.WatchRestarts); err != nil {
		return nil, err
	}
	if m.DecodeErrors, err = register(reg, m.DecodeErrors); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under the same
// descriptor. A family of the same name with other labels or help is still an error.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	var zero C
	return zero, fmt.Errorf("registering adapter metrics: %w", err)
}
