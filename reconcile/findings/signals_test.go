package findings

import (
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

func signalView(istiod string, at time.Time, rejected float64, pushErrs float64) reconcile.IstiodView {
	s := &reconcile.IstiodSignals{ObservedAt: at, PushErrors: map[string]float64{}}
	if rejected > 0 {
		s.RejectedConfigs = []reconcile.RejectedConfig{{Type: "gateway", Name: "shop/gw", Count: rejected}}
	}
	if pushErrs > 0 {
		s.PushErrors["cds_builderr"] = pushErrs
	}
	return reconcile.IstiodView{Istiod: istiod, ObservedAt: at, Signals: s}
}

func TestSignalHistory(t *testing.T) {
	h := NewSignalHistory()
	window := 10 * time.Minute
	step := func(at time.Time, v ...reconcile.IstiodView) []Increase { return h.Observe(v, at, window) }

	// The first read is a baseline, however high istiod's counters are since it started.
	if inc := step(t0, signalView("istiod-0", t0, 7, 2)); len(inc) != 0 {
		t.Fatalf("first read gave %+v", inc)
	}
	// The same read seen again (a view polled without a new metrics read) counts nothing.
	if inc := step(t0.Add(time.Second), signalView("istiod-0", t0, 7, 2)); len(inc) != 0 {
		t.Fatalf("repeated read gave %+v", inc)
	}
	t1 := t0.Add(30 * time.Second)
	inc := step(t1, signalView("istiod-0", t1, 9, 2))
	if len(inc) != 1 || inc[0].Code != CodeIstiodRejected || inc[0].Delta != 2 || !inc[0].FirstAt.Equal(t1) {
		t.Fatalf("after +2 rejects: %+v", inc)
	}
	// No further increase: the episode lasts window after its last increase.
	t2 := t1.Add(window)
	if inc := step(t2, signalView("istiod-0", t2, 9, 2)); len(inc) != 1 {
		t.Fatalf("within the window: %+v", inc)
	}
	t3 := t2.Add(time.Second)
	if inc := step(t3, signalView("istiod-0", t3, 9, 2)); len(inc) != 0 {
		t.Fatalf("after the window: %+v", inc)
	}
	// istiod restarted: its counters start from zero, so a lower value is new.
	t4 := t3.Add(time.Minute)
	inc = step(t4, signalView("istiod-0", t4, 1, 0))
	if len(inc) != 1 || inc[0].Delta != 1 {
		t.Fatalf("after a restart: %+v", inc)
	}
	// A counter that appears (it was zero, so not reported) counts in full.
	t5 := t4.Add(time.Minute)
	inc = step(t5, signalView("istiod-0", t5, 1, 3))
	if len(inc) != 2 || inc[1].Code != CodeIstiodPushErrors || inc[1].Delta != 3 {
		t.Fatalf("after push errors appeared: %+v", inc)
	}
	// A second istiod starts with its baseline; a gone istiod is forgotten.
	if inc := step(t5.Add(time.Second), signalView("istiod-1", t5, 4, 4)); len(inc) != 2 {
		t.Fatalf("with a new istiod only: %+v", inc)
	}
	if len(h.last) != 2 || len(h.read) != 1 {
		t.Fatalf("memory not bounded to present istiods: last %v read %v", h.last, h.read)
	}
}

func TestEngineFiresOnlyOnObservedIncrease(t *testing.T) {
	e, c := newTestEngine(Config{SignalWindow: 5 * time.Minute, ResolveAfter: time.Minute})
	snap := func(n float64) reconcile.Snapshot {
		return reconcile.Snapshot{Istiods: []reconcile.IstiodView{signalView("istiod-0", c.t, n, 0)}}
	}
	wantTransitions(t, e.Evaluate(snap(5)))
	c.advance(30 * time.Second)
	wantTransitions(t, e.Evaluate(snap(5)))
	c.advance(30 * time.Second)
	wantTransitions(t, e.Evaluate(snap(6)), "MD0303 ->firing")
	for range 5 {
		c.advance(time.Minute)
		wantTransitions(t, e.Evaluate(snap(6)))
	}
	// The window ends 5m after the increase; the finding resolves resolveAfter later.
	c.advance(time.Minute)
	wantTransitions(t, e.Evaluate(snap(6)), "MD0303 firing->resolved")
}
