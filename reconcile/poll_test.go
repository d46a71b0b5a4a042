package reconcile

import (
	"testing"
	"time"
)

func TestPollPacerOnlyWhileInFlight(t *testing.T) {
	p, err := NewPollPacer(FastPollConfig{})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	if p.Fast(now, false) {
		t.Fatal("fast with nothing in flight")
	}
	if !p.Fast(now.Add(time.Second), true) {
		t.Fatal("not fast while a change is in flight")
	}
	// The change resolves, or goes NACKed/Stale/NotPushed: back to the normal interval.
	if p.Fast(now.Add(2*time.Second), false) {
		t.Fatal("still fast with nothing in flight")
	}
	if got := p.Interval(); got != 250*time.Millisecond {
		t.Fatalf("interval = %s, want the 250ms default", got)
	}
}

// Changes in flight without end (a GitOps loop applying every few seconds) get at most
// MaxShare of the time at the fast interval.
func TestPollPacerHoldsTheShare(t *testing.T) {
	for _, share := range []float64{0.5, 0.2, 1} {
		p, err := NewPollPacer(FastPollConfig{MaxShare: share})
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		var fast, total time.Duration
		wasFast := p.Fast(now, true)
		// One decision a second, as the evaluation loop ticks, for an hour.
		for range 3600 {
			now = now.Add(time.Second)
			if wasFast {
				fast += time.Second
			}
			total += time.Second
			wasFast = p.Fast(now, true)
		}
		got := float64(fast) / float64(total)
		// Over an hour the one-minute burst adds at most share/60.
		if got > share*(1+1.0/60)+0.001 || got < share*0.9 {
			t.Errorf("share %g: fast %.3f of the time", share, got)
		}
		t.Logf("share %g: fast %.3f of an hour", share, got)
	}
}

// The first change after a quiet spell gets the whole burst (a grace period's worth).
func TestPollPacerBurst(t *testing.T) {
	p, err := NewPollPacer(FastPollConfig{})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for i := range 30 {
		if !p.Fast(now, true) {
			t.Fatalf("slowed after %ds in flight; the budget is 30s", i)
		}
		now = now.Add(time.Second)
	}
}

func TestPollPacerRejectsBadConfig(t *testing.T) {
	for _, c := range []FastPollConfig{{MaxShare: 1.5}, {MaxShare: -0.1}, {Interval: -time.Second}, {Window: -time.Minute}} {
		if _, err := NewPollPacer(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
