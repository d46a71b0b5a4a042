package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// FindingLister is what the findings metrics read; findings.Engine satisfies it.
type FindingLister interface {
	Findings() []findings.Finding
}

var findingsDesc = prometheus.NewDesc("meshdrift_findings",
	"Findings by code, severity and lifecycle state (pending, firing, recently resolved).", []string{"code", "severity", "state"}, nil)

// Findings reports the current findings at scrape time and how long each code took from
// its evidence's start to firing.
type Findings struct {
	lister    FindingLister
	detection *prometheus.HistogramVec
}

// NewFindings registers the findings metrics on reg.
func NewFindings(reg prometheus.Registerer, lister FindingLister) (*Findings, error) {
	f := &Findings{
		lister: lister,
		detection: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshdrift_finding_detection_seconds",
			Help: "Time from a problem's start (the evidence's own time, e.g. when the change was observed) to its finding firing.",
			// From sub-second NACKs to stale changes after their grace.
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900},
		}, []string{"code"}),
	}
	if err := reg.Register(f); err != nil {
		return nil, err
	}
	return f, nil
}

// Transitioned records a finding that changed state at now.
func (f *Findings) Transitioned(tr findings.Transition, now time.Time) {
	fd := tr.Finding
	if fd.State != findings.StateFiring || tr.From == findings.StateFiring || fd.StartsAt.IsZero() {
		return
	}
	if d := now.Sub(fd.StartsAt); d >= 0 {
		f.detection.WithLabelValues(string(fd.Code)).Observe(d.Seconds())
	}
}

// Describe implements prometheus.Collector.
func (f *Findings) Describe(ch chan<- *prometheus.Desc) {
	ch <- findingsDesc
	f.detection.Describe(ch)
}

// Collect implements prometheus.Collector.
func (f *Findings) Collect(ch chan<- prometheus.Metric) {
	type key struct{ code, severity, state string }
	counts := map[key]float64{}
	for _, fd := range f.lister.Findings() {
		counts[key{string(fd.Code), string(fd.Severity), string(fd.State)}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(findingsDesc, prometheus.GaugeValue, n, k.code, k.severity, k.state)
	}
	f.detection.Collect(ch)
}

// Evaluation times meshdrift's evaluation passes by stage: "propagation" (the store's
// verdict on every change in flight) and "findings" (deriving and delivering findings).
// A pass that grows with the fleet delays every alert; this shows it before users do.
type Evaluation struct {
	seconds *prometheus.HistogramVec
}

// NewEvaluation registers the evaluation metric on reg.
func NewEvaluation(reg prometheus.Registerer) (*Evaluation, error) {
	e := &Evaluation{seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "meshdrift_evaluation_seconds",
		Help:    "Duration of one evaluation pass, by stage (propagation, findings).",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"stage"})}
	if err := reg.Register(e.seconds); err != nil {
		return nil, err
	}
	return e, nil
}

// Observe records one pass of stage that took d.
func (e *Evaluation) Observe(stage string, d time.Duration) {
	e.seconds.WithLabelValues(stage).Observe(d.Seconds())
}
