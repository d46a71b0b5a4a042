package istio

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Read outcomes, the values of meshdrift_istiod_reads_total's outcome label.
const (
	outcomeOK      = "ok"
	outcomeError   = "error"
	outcomeTimeout = "timeout"
)

// readerMetrics are the reader's own metrics. Labels stay bounded (transport, outcome,
// state): which istiod is down is in the source status, not in a label.
type readerMetrics struct {
	transport string
	reads     *prometheus.CounterVec
	duration  prometheus.Observer
	instances *prometheus.GaugeVec
	nacks     prometheus.Counter
}

func newReaderMetrics(reg prometheus.Registerer, transport Transport) (*readerMetrics, error) {
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshdrift_istiod_reads_total",
		Help: "Reads of istiod's per-proxy state, by transport and outcome (ok, error, timeout).",
	}, []string{"transport", "outcome"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "meshdrift_istiod_read_duration_seconds",
		Help:    "Duration of one read of one istiod's per-proxy state, failed reads included.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"transport"})
	instances := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshdrift_istiod_instances",
		Help: "istiod instances by the state of their last read (up or down).",
	}, []string{"state"})
	nacks := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshdrift_istiod_nack_events_total",
		Help: "NACKs streamed by istiod's istio.io/nack type as they happened.",
	})
	m := &readerMetrics{
		transport: string(transport),
		reads:     reads,
		duration:  duration.WithLabelValues(string(transport)),
		instances: instances,
		nacks:     nacks,
	}
	// Every series exists from the start, so that rate() and absence alerts work.
	for _, o := range []string{outcomeOK, outcomeError, outcomeTimeout} {
		reads.WithLabelValues(m.transport, o)
	}
	m.setInstances(0, 0)
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{reads, duration, instances, nacks} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return m, nil
}

func (m *readerMetrics) observeRead(err error, timedOut bool, d time.Duration) {
	outcome := outcomeOK
	switch {
	case err != nil && timedOut:
		outcome = outcomeTimeout
	case err != nil:
		outcome = outcomeError
	}
	m.reads.WithLabelValues(m.transport, outcome).Inc()
	m.duration.Observe(d.Seconds())
}

func (m *readerMetrics) setInstances(up, down int) {
	m.instances.WithLabelValues("up").Set(float64(up))
	m.instances.WithLabelValues("down").Set(float64(down))
}
