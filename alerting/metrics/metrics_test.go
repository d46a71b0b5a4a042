package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshdrift/meshdrift/reconcile"
)

func TestCollectorExposition(t *testing.T) {
	store := reconcile.NewStore(reconcile.PropagationConfig{}, nil)
	store.ObserveApp(reconcile.App{Key: reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "a", Name: "x"}, State: reconcile.AppSynced})
	store.ObserveApp(reconcile.App{Key: reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: "a", Name: "y"}, State: reconcile.AppFailed})
	store.ReportSource(reconcile.SourceStatus{Name: "istiod/istiod-a", Up: true})
	store.ReportSource(reconcile.SourceStatus{Name: "istiod/istiod-b", Up: false, Error: "timeout"})
	store.ReportSource(reconcile.SourceStatus{Name: "flux", Up: true})
	store.ObserveIstiod(reconcile.IstiodView{Istiod: "istiod-r", Restriction: &reconcile.ViewRestriction{Reason: "shows 0 of 2", Connected: 2}})
	store.ObserveIstiod(reconcile.IstiodView{Istiod: "istiod-a", Proxies: []reconcile.ProxyStatus{
		{ID: "a", Types: []reconcile.XDSStatus{{State: reconcile.StateSynced}, {State: reconcile.StateError}}},
		{ID: "b", Types: []reconcile.XDSStatus{{State: reconcile.StateSynced}}},
		{ID: "c", Types: []reconcile.XDSStatus{{State: reconcile.StateStale}, {State: reconcile.StateNotSent}}},
	}})
	want := `
# HELP meshdrift_apps GitOps apps by source and state.
# TYPE meshdrift_apps gauge
meshdrift_apps{source="argocd",state="Failed"} 1
meshdrift_apps{source="flux",state="Synced"} 1
# HELP meshdrift_istiod_views_restricted istiod instances that show meshdrift fewer proxies than are connected to them, or refuse to show any (debug-endpoint authorization); propagation through them is Unknown.
# TYPE meshdrift_istiod_views_restricted gauge
meshdrift_istiod_views_restricted 1
# HELP meshdrift_proxies Proxies by their worst xDS state (SYNCED, STALE, NOT SENT, ERROR) across all istiods.
# TYPE meshdrift_proxies gauge
meshdrift_proxies{state="ERROR"} 1
meshdrift_proxies{state="NOT SENT"} 0
meshdrift_proxies{state="STALE"} 1
meshdrift_proxies{state="SYNCED"} 1
# HELP meshdrift_source_up 1 when every source of the adapter can be read, 0 when any cannot.
# TYPE meshdrift_source_up gauge
meshdrift_source_up{adapter="flux"} 1
meshdrift_source_up{adapter="istiod"} 0
`
	if err := testutil.CollectAndCompare(NewCollector(store), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// The clock gauges: an istiod whose offset is bounded both ways has them, at the value
// closest to zero its bounds allow; one with only a lower bound has none.
func TestClockOffsetGauge(t *testing.T) {
	store := reconcile.NewStore(reconcile.PropagationConfig{}, nil)
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	// istiod-a is 1.5 s ahead: its Date headers say so, read twice at different phases.
	for i, ms := range []int{100, 700} {
		start := at.Add(time.Duration(i)*time.Second + time.Duration(ms)*time.Millisecond)
		store.ObserveIstiod(reconcile.IstiodView{Istiod: "istiod-a", ReadStartedAt: start, ObservedAt: start.Add(10 * time.Millisecond),
			ServerDate: start.Add(1500 * time.Millisecond).Truncate(time.Second)})
	}
	store.ObserveIstiod(reconcile.IstiodView{Istiod: "istiod-b", ObservedAt: at, Proxies: []reconcile.ProxyStatus{
		{ID: "a", Types: []reconcile.XDSStatus{{State: reconcile.StateSynced, SentAt: at.Add(-time.Second)}}},
	}})
	want := `
# HELP meshdrift_istiod_clock_offset_error_seconds Width of the bounds on meshdrift_istiod_clock_offset_seconds: the estimate is within it of the true offset.
# TYPE meshdrift_istiod_clock_offset_error_seconds gauge
meshdrift_istiod_clock_offset_error_seconds{istiod="istiod-a"} 0.61
# HELP meshdrift_istiod_clock_offset_seconds How far the istiod's clock is ahead of meshdrift's (negative: behind), the value closest to zero its reads allow; absent until bounded both ways. Beyond 2s either way propagation verdicts are not reliable.
# TYPE meshdrift_istiod_clock_offset_seconds gauge
meshdrift_istiod_clock_offset_seconds{istiod="istiod-a"} 1.29
`
	if err := testutil.CollectAndCompare(NewCollector(store), strings.NewReader(want),
		"meshdrift_istiod_clock_offset_seconds", "meshdrift_istiod_clock_offset_error_seconds"); err != nil {
		t.Fatal(err)
	}
}

func TestPropagationHistogram(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := NewPropagation(reg)
	if err != nil {
		t.Fatal(err)
	}
	vs := reconcile.MeshChange{Ref: reconcile.ObjectRef{Kind: "VirtualService"}, GitOpsOwner: reconcile.AppKey{Source: reconcile.SourceFlux}}
	p.PropagationChanged(reconcile.Propagation{}, reconcile.Propagation{Change: vs, State: reconcile.PropagationPropagated, Targeted: 3, Latency: 120 * time.Millisecond}, false)
	// Not counted: baseline objects, changes that reached no proxy, other states.
	p.PropagationChanged(reconcile.Propagation{}, reconcile.Propagation{Change: vs, State: reconcile.PropagationPropagated, Targeted: 3, Latency: time.Hour}, true)
	p.PropagationChanged(reconcile.Propagation{}, reconcile.Propagation{Change: vs, State: reconcile.PropagationPropagated}, false)
	p.PropagationChanged(reconcile.Propagation{}, reconcile.Propagation{Change: vs, State: reconcile.PropagationStale, Targeted: 1}, false)
	if got := testutil.CollectAndCount(reg, "meshdrift_propagation_seconds"); got != 1 {
		t.Fatalf("series = %d, want 1", got)
	}
	want := `
# HELP meshdrift_propagation_seconds Time from observing a mesh object change until every proxy istiod sent it to ACKed, by GitOps source (argocd, flux, none) and object kind.
# TYPE meshdrift_propagation_seconds histogram
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="0.05"} 0
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="0.1"} 0
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="0.25"} 1
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="0.5"} 1
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="1"} 1
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="2.5"} 1
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="5"} 1
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="10"} 1
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="30"} 1
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="60"} 1
meshdrift_propagation_seconds_bucket{kind="VirtualService",source="flux",le="+Inf"} 1
meshdrift_propagation_seconds_sum{kind="VirtualService",source="flux"} 0.12
meshdrift_propagation_seconds_count{kind="VirtualService",source="flux"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshdrift_propagation_seconds"); err != nil {
		t.Fatal(err)
	}
}
