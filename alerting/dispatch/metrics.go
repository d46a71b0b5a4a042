package dispatch

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one Notify call, the values of the outcome label.
const (
	OutcomeSuccess = "success"
	// OutcomeRetry: the call failed and the findings stay queued for another attempt.
	OutcomeRetry = "retry"
	// OutcomeFailure: the notifier rejected the findings for good; they leave the queue.
	OutcomeFailure = "failure"
)

// metrics are the delivery outcomes per notifier. The notifier label is bounded by the
// configuration (one value per configured Alertmanager, one for Events).
type metrics struct {
	notifications *prometheus.CounterVec
	dropped       *prometheus.CounterVec
	queueLength   *prometheus.GaugeVec
	queueCapacity *prometheus.GaugeVec
	lastSuccess   *prometheus.GaugeVec
	duration      *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshdrift_notifications_total",
			Help: "Notify calls per notifier by outcome: success, retry (failed, findings kept for another attempt) or failure (rejected, findings dropped).",
		}, []string{"notifier", "outcome"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshdrift_notifications_dropped_total",
			Help: "Findings that left a notifier's queue undelivered: the queue was full, or the notifier rejected them for good.",
		}, []string{"notifier"}),
		queueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshdrift_notification_queue_length",
			Help: "Findings waiting to be delivered, per notifier.",
		}, []string{"notifier"}),
		queueCapacity: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshdrift_notification_queue_capacity",
			Help: "How many findings a notifier's queue holds before it drops the oldest resolved one.",
		}, []string{"notifier"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshdrift_notification_last_success_timestamp_seconds",
			Help: "Unix time of the last successful Notify call, per notifier.",
		}, []string{"notifier"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshdrift_notification_duration_seconds",
			Help:    "How long one Notify call took, per notifier.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"notifier"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.notifications, m.dropped, m.queueLength, m.queueCapacity, m.lastSuccess, m.duration} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registering dispatch metrics: %w", err)
	}
	return m, nil
}

// init0 makes every series of a notifier exist from the start, so that a rate over a
// notifier that never failed reads 0 rather than nothing.
func (m *metrics) init0(notifier string, capacity int) {
	for _, o := range []string{OutcomeSuccess, OutcomeRetry, OutcomeFailure} {
		m.notifications.WithLabelValues(notifier, o)
	}
	m.dropped.WithLabelValues(notifier)
	m.queueLength.WithLabelValues(notifier).Set(0)
	m.queueCapacity.WithLabelValues(notifier).Set(float64(capacity))
	m.lastSuccess.WithLabelValues(notifier)
}
