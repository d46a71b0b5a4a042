package mesh

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshdrift/meshdrift/adapters/adaptermetrics"
)

// metrics are the watcher's own family and its share of the adapters' common families.
// The kind label is "Kind.group": Istio, Gateway API and Linkerd reuse kind names
// (Gateway, HTTPRoute, AuthorizationPolicy). It takes at most one value per mesh kind.
type metrics struct {
	changes  *prometheus.CounterVec
	objects  *prometheus.GaugeVec
	restarts *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	shared, err := adaptermetrics.New(reg)
	if err != nil {
		return nil, err
	}
	changes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshdrift_mesh_changes_total",
		Help: "Spec changes and deletions of mesh objects observed while watching (objects found by the initial list are not counted), by kind and class of field manager (gitops, kubectl, other).",
	}, []string{"kind", "manager_class"})
	if reg != nil {
		if err := reg.Register(changes); err != nil {
			return nil, fmt.Errorf("registering mesh metrics: %w", err)
		}
	}
	return &metrics{changes: changes, objects: shared.Objects, restarts: shared.WatchRestarts}, nil
}
