// Package metrics exposes meshdrift's view as Prometheus metrics. Current state is read from
// the store at scrape time (metric families as data, as kube-state-metrics does); the
// propagation latency histogram is fed by the store's transitions. Labels are bounded:
// adapter, source, kind, state — never an object or proxy name — and istiod on the clock
// gauges: one series per istiod pod (replicas times revisions, a handful), read from the
// current snapshot so that a deleted pod's series goes with it.
package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Snapshotter is what the collector reads; reconcile.Store satisfies it.
type Snapshotter interface {
	Snapshot() reconcile.Snapshot
}

var (
	appsDesc = prometheus.NewDesc("meshdrift_apps",
		"GitOps apps by source and state.", []string{"source", "state"}, nil)
	sourceUpDesc = prometheus.NewDesc("meshdrift_source_up",
		"1 when every source of the adapter can be read, 0 when any cannot.", []string{"adapter"}, nil)
	proxiesDesc = prometheus.NewDesc("meshdrift_proxies",
		"Proxies by their worst xDS state (SYNCED, STALE, NOT SENT, ERROR) across all istiods.", []string{"state"}, nil)
	changesDesc = prometheus.NewDesc("meshdrift_mesh_changes",
		"Tracked mesh object changes by propagation state.", []string{"state"}, nil)
	rollupsDesc = prometheus.NewDesc("meshdrift_app_propagation",
		"GitOps app revisions by propagation state of their mesh objects.", []string{"source", "state"}, nil)
	clockOffsetDesc = prometheus.NewDesc("meshdrift_istiod_clock_offset_seconds",
		"How far the istiod's clock is ahead of meshdrift's (negative: behind), the value closest to zero its reads allow; absent until bounded both ways. Beyond 2s either way propagation verdicts are not reliable.", []string{"istiod"}, nil)
	clockErrorDesc = prometheus.NewDesc("meshdrift_istiod_clock_offset_error_seconds",
		"Width of the bounds on meshdrift_istiod_clock_offset_seconds: the estimate is within it of the true offset.", []string{"istiod"}, nil)
	restrictedDesc = prometheus.NewDesc("meshdrift_istiod_views_restricted",
		"istiod instances that show meshdrift fewer proxies than are connected to them, or refuse to show any (debug-endpoint authorization); propagation through them is Unknown.", nil, nil)
)

// Collector reports the store's current state.
type Collector struct {
	store Snapshotter
}

// NewCollector returns a collector over store.
func NewCollector(store Snapshotter) *Collector { return &Collector{store: store} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{appsDesc, sourceUpDesc, proxiesDesc, changesDesc, rollupsDesc, restrictedDesc, clockOffsetDesc, clockErrorDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.store.Snapshot()

	apps := map[[2]string]float64{}
	for _, a := range s.Apps {
		apps[[2]string{string(a.Key.Source), string(a.State)}]++
	}
	for k, v := range apps {
		ch <- prometheus.MustNewConstMetric(appsDesc, prometheus.GaugeValue, v, k[0], k[1])
	}

	up := map[string]float64{}
	for _, src := range s.Sources {
		adapter, _, _ := strings.Cut(src.Name, "/")
		if _, seen := up[adapter]; !seen {
			up[adapter] = 1
		}
		if !src.Up {
			up[adapter] = 0
		}
	}
	for adapter, v := range up {
		ch <- prometheus.MustNewConstMetric(sourceUpDesc, prometheus.GaugeValue, v, adapter)
	}

	proxies := map[reconcile.SyncState]float64{
		reconcile.StateSynced: 0, reconcile.StateStale: 0, reconcile.StateNotSent: 0, reconcile.StateError: 0,
	}
	for _, v := range s.Istiods {
		for _, p := range v.Proxies {
			proxies[worstState(p)]++
		}
	}
	for st, v := range proxies {
		ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, v, string(st))
	}

	changes := map[reconcile.PropagationState]float64{}
	for _, p := range s.Changes {
		changes[p.State]++
	}
	for st, v := range changes {
		ch <- prometheus.MustNewConstMetric(changesDesc, prometheus.GaugeValue, v, string(st))
	}

	rollups := map[[2]string]float64{}
	for _, r := range s.Propagation {
		rollups[[2]string{string(r.App.Source), string(r.State)}]++
	}
	for k, v := range rollups {
		ch <- prometheus.MustNewConstMetric(rollupsDesc, prometheus.GaugeValue, v, k[0], k[1])
	}

	restricted := 0.0
	for _, v := range s.Istiods {
		if v.Restriction != nil {
			restricted++
		}
	}
	ch <- prometheus.MustNewConstMetric(restrictedDesc, prometheus.GaugeValue, restricted)

	for _, v := range s.Istiods {
		if c := v.ClockOffset; c.Known() {
			ch <- prometheus.MustNewConstMetric(clockOffsetDesc, prometheus.GaugeValue, c.Estimate().Seconds(), v.Istiod)
			ch <- prometheus.MustNewConstMetric(clockErrorDesc, prometheus.GaugeValue, c.Error().Seconds(), v.Istiod)
		}
	}
}

// worstState is a proxy's worst state over its types; a proxy with no type sent counts
// as NOT SENT.
func worstState(p reconcile.ProxyStatus) reconcile.SyncState {
	rank := map[reconcile.SyncState]int{reconcile.StateSynced: 0, reconcile.StateNotSent: 1, reconcile.StateStale: 2, reconcile.StateError: 3}
	worst := reconcile.StateSynced
	if len(p.Types) == 0 {
		return reconcile.StateNotSent
	}
	for _, t := range p.Types {
		if rank[t.State] > rank[worst] {
			worst = t.State
		}
	}
	return worst
}

// Propagation records how long changes take to reach every targeted proxy. It is the
// store's PropagationObserver.
type Propagation struct {
	seconds *prometheus.HistogramVec
}

// NewPropagation registers meshdrift_propagation_seconds on reg.
func NewPropagation(reg prometheus.Registerer) (*Propagation, error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "meshdrift_propagation_seconds",
		Help: "Time from observing a mesh object change until every proxy istiod sent it to ACKed, by GitOps source (argocd, flux, none) and object kind.",
		// istiod debounces 100 ms; healthy pushes take up to a few seconds.
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"source", "kind"})
	if err := reg.Register(h); err != nil {
		return nil, err
	}
	return &Propagation{seconds: h}, nil
}

// PropagationChanged implements reconcile.PropagationObserver.
func (p *Propagation) PropagationChanged(_, next reconcile.Propagation, baseline bool) {
	if baseline || next.State != reconcile.PropagationPropagated || next.Targeted == 0 {
		return
	}
	source := string(next.Change.GitOpsOwner.Source)
	if source == "" {
		source = "none"
	}
	p.seconds.WithLabelValues(source, next.Change.Ref.Kind).Observe(next.Latency.Seconds())
}
