package istio

import (
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// The bounds meshdrift puts on the real istiod's clock offset, from reads every 250 ms
// (as while a change is in flight) across a few pushes: istiod runs on this machine, so
// the true offset is zero, and the bounds must hold it and be narrow enough to place a
// change (reconcile's tolerance, 500 ms).
func TestClockOffsetFromRealIstiod(t *testing.T) {
	needBed(t)
	ns := newNamespace(t)
	pushAll(t, ns)
	startProxy(t, bed.istiodA, "reviews-v1-clock", ns, "10.1.0.41")
	for transport, target := range transportsOf(bed.istiodA) {
		t.Run(string(transport), func(t *testing.T) {
			store := reconcile.NewStore(reconcile.PropagationConfig{}, nil)
			src, err := StaticTargets([]Target{target})
			if err != nil {
				t.Fatal(err)
			}
			cfg := ReaderConfig{Transport: transport, Interval: 250 * time.Millisecond}
			if transport == TransportXDSTLS {
				cfg.CAFile, cfg.TokenFile = bed.istiodA.RootCertFile, bed.tokenFile
			}
			log, _ := newTestLogger(t)
			r, err := NewReader(cfg, src, store, store, nil, log)
			if err != nil {
				t.Fatal(err)
			}
			runReader(t, r)
			var c reconcile.ClockOffset
			for i := range 4 {
				time.Sleep(1100 * time.Millisecond)
				pushAll(t, ns)
				time.Sleep(600 * time.Millisecond)
				snap := store.Snapshot()
				if len(snap.Istiods) != 1 {
					t.Fatalf("push %d: istiods %+v", i, snap.Istiods)
				}
				c = snap.Istiods[0].ClockOffset
				t.Logf("after push %d: bounds %+v, error %s", i+1, c, c.Error())
			}
			if !c.Known() || c.Min > 0 || c.Max < 0 {
				t.Fatalf("bounds %+v do not hold the true offset 0", c)
			}
			if c.Error() > 500*time.Millisecond {
				t.Errorf("error %s: too wide to place a change", c.Error())
			}
			if est := c.Estimate(); est != 0 {
				t.Errorf("estimate %s, want 0 (the value closest to zero within the bounds)", est)
			}
		})
	}
}
