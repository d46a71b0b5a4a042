package events

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// sinkMetrics are the sink's own counters; delivery outcomes per sink are counted around
// every sink, not here. Labels are bounded: event type, verb, outcome.
type sinkMetrics struct {
	emitted  *prometheus.CounterVec
	skipped  prometheus.Counter
	lookups  *prometheus.CounterVec
	requests *prometheus.CounterVec
}

func newSinkMetrics(reg prometheus.Registerer) (*sinkMetrics, error) {
	m := &sinkMetrics{
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshdrift", Subsystem: "kube_events", Name: "emitted_total",
			Help: "Events handed to the event broadcaster, by type (Warning, Normal); it aggregates them before writing.",
		}, []string{"type"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "meshdrift", Subsystem: "kube_events", Name: "skipped_findings_total",
			Help: "Firing or resolved findings that got no Event: neither their object nor their app could be found or read.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshdrift", Subsystem: "kube_events", Name: "metadata_reads_total",
			Help: "Metadata reads of objects Events are about, by outcome (found, missing, error); cached reads are not counted.",
		}, []string{"outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "meshdrift", Subsystem: "kube_events", Name: "api_requests_total",
			Help: "Requests the event broadcaster made to write Events, by verb (create, patch) and outcome (ok, error).",
		}, []string{"verb", "outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.emitted, m.skipped, m.lookups, m.requests} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering events sink metrics: %w", err)
		}
	}
	return m, nil
}
