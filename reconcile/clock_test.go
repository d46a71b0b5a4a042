package reconcile

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// istiodSim plays one istiod whose clock is offset from meshdrift's, read by meshdrift:
// local times are meshdrift's; istiod stamps its sends and push versions with its own.
type istiodSim struct {
	offset  time.Duration
	counter int
	version string
	proxies map[string]*ProxyStatus
	order   []string
}

func newIstiodSim(offset time.Duration) *istiodSim {
	return &istiodSim{offset: offset, proxies: map[string]*ProxyStatus{}}
}

// push sends every type of proxy id at local time at, leaving it in state st.
func (s *istiodSim) push(id string, at time.Time, st SyncState, errText string) {
	p := s.proxies[id]
	if p == nil {
		p = &ProxyStatus{ID: id, Istiod: "istiod-a"}
		s.proxies[id] = p
		s.order = append(s.order, id)
	}
	sent := at.Add(s.offset)
	p.Types = p.Types[:0]
	for _, typ := range []string{cds, lds, rds} {
		x := XDSStatus{TypeURL: typ, State: st, SentAt: sent}
		if st == StateError {
			x.Error = errText
		}
		p.Types = append(p.Types, x)
	}
	s.counter++
	s.version = fmt.Sprintf("%s/%d", sent.Truncate(time.Second).Format(time.RFC3339), s.counter)
}

// read is one read sent at local start and answered at local end.
func (s *istiodSim) read(start, end time.Time) IstiodView {
	v := IstiodView{Istiod: "istiod-a", PushVersion: s.version, ReadStartedAt: start, ObservedAt: end}
	for _, id := range s.order {
		p := *s.proxies[id]
		p.Types = append([]XDSStatus(nil), p.Types...)
		v.Proxies = append(v.Proxies, p)
	}
	return v
}

// The offsets the verdicts must stand, both ways.
var clockOffsets = []time.Duration{1500 * time.Millisecond, -1500 * time.Millisecond, 2 * time.Second, -2 * time.Second}

// A change seen at o (a watch time, not a whole second): a proxy connected half a second
// before it and got its full push then, which the change (scoped away from it) does not
// concern; another proxy gets the change's push 100 ms after o. meshdrift reads before
// the change, right after it (the poke), and 250 ms later, as it does while a change is
// in flight.
func TestPropagationUnderClockOffset(t *testing.T) {
	const nackText = "Proto constraint validation failed: route: invalid regex"
	o := t0.Add(437 * time.Millisecond)
	for _, offset := range clockOffsets {
		for _, tc := range []struct {
			name  string
			state SyncState
			want  PropagationState
		}{
			{"an ACK after the change propagates it", StateSynced, PropagationPropagated},
			{"a NACK after the change is the change's", StateError, PropagationNACKed},
		} {
			t.Run(fmt.Sprintf("%s/%s", offset, tc.name), func(t *testing.T) {
				sim := newIstiodSim(offset)
				s := NewStore(PropagationConfig{}, nil)
				sim.push("a.ns", o.Add(-5*time.Second), StateSynced, "")
				s.ObserveIstiod(sim.read(o.Add(-1200*time.Millisecond), o.Add(-1190*time.Millisecond)))
				// A proxy connects and is pushed in full; it never answers.
				sim.push("conn.ns", o.Add(-500*time.Millisecond), StateStale, "")
				s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 2, ObservedAt: o})
				s.ObserveIstiod(sim.read(o.Add(20*time.Millisecond), o.Add(30*time.Millisecond)))
				if s.Evaluate(o.Add(30 * time.Millisecond)); s.Snapshot().Changes[0].State != PropagationPending {
					t.Fatalf("before the push: %s, want Pending", s.Snapshot().Changes[0].State)
				}
				sim.push("a.ns", o.Add(100*time.Millisecond), tc.state, nackText)
				s.ObserveIstiod(sim.read(o.Add(270*time.Millisecond), o.Add(280*time.Millisecond)))
				s.Evaluate(o.Add(300 * time.Millisecond))
				snap := s.Snapshot()
				got := snap.Changes[0]
				if got.State != tc.want {
					t.Fatalf("state = %s, want %s (%+v; clock %+v)", got.State, tc.want, got, snap.Istiods[0].ClockOffset)
				}
				// The connect push came before the change: conn.ns is not targeted.
				if got.Targeted != 1 {
					t.Errorf("targeted = %d, want 1 (only a.ns): %+v", got.Targeted, got.Proxies)
				}
				for _, p := range got.Proxies {
					if p.Proxy == "conn.ns" {
						t.Errorf("the connect push before the change counted: %+v", p)
					}
				}
				if tc.want == PropagationNACKed && (len(got.Proxies) != 1 || got.Proxies[0].Error != nackText) {
					t.Errorf("proxies = %+v, want a.ns with the NACK text", got.Proxies)
				}
				if tc.want == PropagationPropagated {
					// 100 ms, measured on meshdrift's clock within the estimate's error.
					if got.Latency < 0 || got.Latency > 400*time.Millisecond {
						t.Errorf("latency = %s, want about 100ms", got.Latency)
					}
				}
				c := snap.Istiods[0].ClockOffset
				if !c.Known() || c.Min > offset || c.Max < offset || c.Error() > maxClockUncertainty {
					t.Errorf("clock = %+v, want known bounds around %s within %s", c, offset, maxClockUncertainty)
				}
				if snap.Istiods[0].ClockProblem != "" {
					t.Errorf("clock problem reported for %s: %s", offset, snap.Istiods[0].ClockProblem)
				}
			})
		}
	}
}

// The same scenario read without any correction gets it wrong both ways, so the test
// above can fail: istiod behind misses the change's push, istiod ahead takes the connect
// push for the change's.
func TestPropagationWithoutClockCorrectionWouldFail(t *testing.T) {
	o := t0.Add(437 * time.Millisecond)
	for _, offset := range []time.Duration{2 * time.Second, -2 * time.Second} {
		sim := newIstiodSim(offset)
		sim.push("a.ns", o.Add(-5*time.Second), StateSynced, "")
		sim.push("conn.ns", o.Add(-500*time.Millisecond), StateStale, "")
		sim.push("a.ns", o.Add(100*time.Millisecond), StateSynced, "")
		v := sim.read(o.Add(270*time.Millisecond), o.Add(280*time.Millisecond))
		tc := &trackedChange{change: MeshChange{Ref: vsRef, ObservedAt: o}}
		got := tc.evaluate(PropagationConfig{}.withDefaults(), map[string]IstiodView{v.Istiod: v}, nil, nil, o.Add(300*time.Millisecond))
		if got.State == PropagationPropagated && got.Targeted == 1 {
			t.Errorf("offset %s: uncorrected evaluation was right (%+v): the scenario does not test the clock", offset, got)
		}
	}
}

// The estimator's bounds always hold the true offset, and narrow with fast polls.
func TestClockEstimatorBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, offset := range append([]time.Duration{0, 300 * time.Millisecond, -40 * time.Millisecond, 5 * time.Second}, clockOffsets...) {
		sim := newIstiodSim(offset)
		var e clockEstimator
		var prev *IstiodView
		now := t0.Add(123 * time.Millisecond)
		var c ClockOffset
		for i := range 40 {
			if i%3 == 0 {
				sim.push(fmt.Sprintf("p%d.ns", i%2), now.Add(time.Duration(rng.IntN(250))*time.Millisecond), StateSynced, "")
			}
			now = now.Add(250 * time.Millisecond)
			rtt := time.Duration(2+rng.IntN(20)) * time.Millisecond
			v := sim.read(now, now.Add(rtt))
			c = e.observe(prev, v)
			if (c.HasMin && c.Min > offset) || (c.HasMax && c.Max < offset) {
				t.Fatalf("offset %s, read %d: bounds %+v exclude it", offset, i, c)
			}
			prev = &v
			now = now.Add(rtt)
		}
		if !c.Known() || c.Error() > 300*time.Millisecond {
			t.Errorf("offset %s: bounds %+v, want known within 300ms", offset, c)
		}
		if est := c.Estimate(); est < c.Min || est > c.Max {
			t.Errorf("offset %s: estimate %s outside %+v", offset, est, c)
		}
		t.Logf("offset %s: bounds [%s, %s], error %s, estimate %s", offset, c.Min, c.Max, c.Error(), c.Estimate())
		if too := offset > MaxClockOffset || offset < -MaxClockOffset; c.TooLarge() != too || (c.Problem() != "") != too {
			t.Errorf("offset %s: TooLarge %v, problem %q", offset, c.TooLarge(), c.Problem())
		}
	}
}

// HTTP Date headers alone (second resolution) bound the offset; reads at different
// phases of the second narrow it.
func TestClockEstimatorDateHeader(t *testing.T) {
	for _, offset := range clockOffsets {
		var e clockEstimator
		now := t0.Add(17 * time.Millisecond)
		var c ClockOffset
		for range 20 {
			end := now.Add(5 * time.Millisecond)
			date := end.Add(offset - 2*time.Millisecond).Truncate(time.Second)
			c = e.observe(nil, IstiodView{Istiod: "istiod-a", ReadStartedAt: now, ObservedAt: end, ServerDate: date})
			now = now.Add(290 * time.Millisecond)
		}
		if !c.Known() || c.Min > offset || c.Max < offset || c.Error() > 300*time.Millisecond {
			t.Errorf("offset %s: bounds %+v", offset, c)
		}
	}
}

// A clock step contradicts the evidence held: the new evidence wins, and old evidence
// ages out of the window.
func TestClockEstimatorStepAndAgeing(t *testing.T) {
	var e clockEstimator
	at := t0.Add(time.Millisecond)
	tight := func(at time.Time, off time.Duration) ClockOffset {
		return e.observe(nil, IstiodView{ReadStartedAt: at, ObservedAt: at.Add(10 * time.Millisecond),
			ServerDate: at.Add(off).Truncate(time.Second), Istiod: "x"})
	}
	tight(at, 0)
	c := tight(at.Add(500*time.Millisecond), 0)
	if c.Min > 0 || c.Max < 0 {
		t.Fatalf("before the step: %+v", c)
	}
	// istiod's clock steps 3 s ahead.
	c = tight(at.Add(time.Second+300*time.Millisecond), 3*time.Second)
	if c.Min > 3*time.Second || c.Max < 3*time.Second {
		t.Fatalf("after the step: %+v, want bounds around 3s", c)
	}
	if !c.TooLarge() {
		t.Fatalf("3s ahead not reported: %+v", c)
	}
	c = e.bounds(at.Add(clockWindow + 2*time.Minute))
	if c.HasMin || c.HasMax {
		t.Fatalf("evidence did not age out: %+v", c)
	}
	if len(e.buckets) > clockBuckets {
		t.Fatalf("%d buckets", len(e.buckets))
	}
}

// A change found by the initial list carries the API server's managedFields second; its
// push must count even though it came within that second, whatever meshdrift's offset.
func TestManagedFieldsSecondIsNotShifted(t *testing.T) {
	written := t0.Add(700 * time.Millisecond) // managedFields says t0
	for _, offset := range clockOffsets {
		v := IstiodView{Istiod: "istiod-a", ObservedAt: t0.Add(3 * time.Second),
			ClockOffset: ClockOffset{Min: offset - 100*time.Millisecond, Max: offset + 100*time.Millisecond, HasMin: true, HasMax: true},
			Proxies:     []ProxyStatus{proxy("a.ns", written.Add(100*time.Millisecond), StateSynced, "")}}
		tc := &trackedChange{change: MeshChange{Ref: vsRef, ObservedAt: t0}}
		got := tc.evaluate(PropagationConfig{}.withDefaults(), map[string]IstiodView{v.Istiod: v}, nil, nil, t0.Add(3*time.Second))
		if got.State != PropagationPropagated || got.Targeted != 1 {
			t.Errorf("offset %s: %+v", offset, got)
		}
	}
}

// A proxy whose NACK was streamed and which ACKs a later push resolves: the NACK no longer
// stands once a later read shows no error.
func TestFixedNACKResolves(t *testing.T) {
	o := t0.Add(437 * time.Millisecond)
	s := NewStore(PropagationConfig{}, nil)
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 2, ObservedAt: o})
	s.ObserveNACK(NACKEvent{Istiod: "istiod-a", Proxy: "a.ns", TypeURL: rds, Error: "bad", At: o.Add(150 * time.Millisecond)})
	v := IstiodView{Istiod: "istiod-a", ObservedAt: o.Add(200 * time.Millisecond), Proxies: []ProxyStatus{proxy("a.ns", o.Add(100*time.Millisecond), StateError, "bad")}}
	s.ObserveIstiod(v)
	s.Evaluate(o.Add(300 * time.Millisecond))
	if got := s.Snapshot().Changes[0].State; got != PropagationNACKed {
		t.Fatalf("state = %s, want NACKed", got)
	}
	// Later reads still show the error; then the proxy is fixed (restarted, or the route it
	// choked on went away) and ACKs a push.
	s.ObserveIstiod(IstiodView{Istiod: "istiod-a", ReadStartedAt: o.Add(18900 * time.Millisecond), ObservedAt: o.Add(18910 * time.Millisecond),
		Proxies: []ProxyStatus{proxy("a.ns", o.Add(100*time.Millisecond), StateError, "bad")}})
	s.Evaluate(o.Add(18910 * time.Millisecond))
	if got := s.Snapshot().Changes[0].State; got != PropagationNACKed {
		t.Fatalf("state = %s while istiod still shows the error, want NACKed", got)
	}
	s.ObserveIstiod(IstiodView{Istiod: "istiod-a", ReadStartedAt: o.Add(19200 * time.Millisecond), ObservedAt: o.Add(19210 * time.Millisecond),
		Proxies: []ProxyStatus{proxy("a.ns", o.Add(19*time.Second), StateSynced, "")}})
	// A NACKed change is evaluated again at the recheck interval (10 s), not on every read.
	s.Evaluate(o.Add(19300 * time.Millisecond))
	if got := s.Snapshot().Changes[0].State; got != PropagationNACKed {
		t.Fatalf("state = %s within the recheck interval, want NACKed still", got)
	}
	s.Evaluate(o.Add(29 * time.Second))
	if got := s.Snapshot().Changes[0].State; got != PropagationPropagated {
		t.Fatalf("state after the fix = %s, want Propagated", got)
	}
}

// Before a read has bracketed a push closely, the bounds are wide (here: a lower bound
// from the sends seen and an upper one from a new push version, a second apart): a proxy's
// ACKed connect push just before the change may look like the change's. The change is then not
// declared propagated on it; once the change's own push is bracketed it is, with the
// right target.
func TestUnsureClockHoldsPropagation(t *testing.T) {
	o := t0.Add(437 * time.Millisecond)
	sim := newIstiodSim(2 * time.Second)
	s := NewStore(PropagationConfig{}, nil)
	sim.push("a.ns", o.Add(-5*time.Second), StateSynced, "")
	s.ObserveIstiod(sim.read(o.Add(-1200*time.Millisecond), o.Add(-1190*time.Millisecond)))
	sim.push("conn.ns", o.Add(-500*time.Millisecond), StateSynced, "")
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 2, ObservedAt: o})
	s.ObserveIstiod(sim.read(o.Add(20*time.Millisecond), o.Add(30*time.Millisecond)))
	s.Evaluate(o.Add(30 * time.Millisecond))
	snap := s.Snapshot()
	if c := snap.Istiods[0].ClockOffset; c.Known() && c.Error() <= maxClockUncertainty {
		t.Fatalf("clock %+v: the scenario wants bounds too wide to place the change yet", c)
	}
	if got := snap.Changes[0]; got.State != PropagationPending {
		t.Fatalf("on a push that may predate the change: %s, want Pending (%+v)", got.State, got)
	}
	sim.push("a.ns", o.Add(100*time.Millisecond), StateSynced, "")
	s.ObserveIstiod(sim.read(o.Add(270*time.Millisecond), o.Add(280*time.Millisecond)))
	s.Evaluate(o.Add(300 * time.Millisecond))
	if got := s.Snapshot().Changes[0]; got.State != PropagationPropagated || got.Targeted != 1 {
		t.Fatalf("after the change's push: %+v, want Propagated to a.ns only", got)
	}
}

// Measured on the real istiod under load: with bounds of [-102ms, +164ms] around a true
// offset of zero, an endpoint push 31 ms before the change falls inside the widened
// window. The change's latency is that of its own push (164 ms), not nothing.
func TestLatencyIgnoresAnEarlierPushInTheWidenedWindow(t *testing.T) {
	o := t0.Add(889555352)
	p := ProxyStatus{ID: "reviews-v1-ack.ns", Types: []XDSStatus{
		{TypeURL: cds, State: StateSynced, SentAt: o.Add(164 * time.Millisecond)},
		{TypeURL: eds, State: StateSynced, SentAt: o.Add(-31 * time.Millisecond)},
		{TypeURL: lds, State: StateSynced, SentAt: o.Add(167 * time.Millisecond)},
	}}
	v := IstiodView{Istiod: "istiod-shared", ObservedAt: o.Add(250 * time.Millisecond), Proxies: []ProxyStatus{p},
		ClockOffset: ClockOffset{Min: -102 * time.Millisecond, Max: 164 * time.Millisecond, HasMin: true, HasMax: true}}
	tc := &trackedChange{change: MeshChange{Ref: vsRef, ObservedAt: o}}
	got := tc.evaluate(PropagationConfig{}.withDefaults(), map[string]IstiodView{v.Istiod: v}, nil, nil, o.Add(300*time.Millisecond))
	if got.State != PropagationPropagated || got.Latency != 164*time.Millisecond {
		t.Fatalf("%s latency %s, want Propagated in 164ms", got.State, got.Latency)
	}
}

// The same, when a read before the change's push showed only the endpoint push: that is
// no verdict, and the latency guess is replaced once the change's own push shows.
func TestLatencyGuessReplacedByTheChangesPush(t *testing.T) {
	o := t0.Add(889555352)
	bounds := ClockOffset{Min: -102 * time.Millisecond, Max: 164 * time.Millisecond, HasMin: true, HasMax: true}
	eds := XDSStatus{TypeURL: eds, State: StateSynced, SentAt: o.Add(-31 * time.Millisecond)}
	before := IstiodView{Istiod: "istiod-shared", ObservedAt: o.Add(50 * time.Millisecond), ClockOffset: bounds,
		Proxies: []ProxyStatus{{ID: "a.ns", Types: []XDSStatus{eds}}}}
	tc := &trackedChange{change: MeshChange{Ref: vsRef, ObservedAt: o}}
	// The endpoint push may predate the change: no verdict on it, the change's own push
	// (which a NACK could answer) may be yet to come.
	if got := tc.evaluate(PropagationConfig{}.withDefaults(), map[string]IstiodView{before.Istiod: before}, nil, nil, o.Add(60*time.Millisecond)); got.State != PropagationPending {
		t.Fatalf("on a push that may predate the change: %s, want Pending", got.State)
	}
	after := before
	after.ObservedAt = o.Add(300 * time.Millisecond)
	after.Proxies = []ProxyStatus{{ID: "a.ns", Types: []XDSStatus{eds, {TypeURL: cds, State: StateSynced, SentAt: o.Add(164 * time.Millisecond)}}}}
	got := tc.evaluate(PropagationConfig{}.withDefaults(), map[string]IstiodView{after.Istiod: after}, nil, nil, o.Add(310*time.Millisecond))
	if got.State != PropagationPropagated || got.Latency != 164*time.Millisecond {
		t.Fatalf("%s latency %s, want Propagated in 164ms", got.State, got.Latency)
	}
}

// Measured on the real istiod: when no read fell between the change and its push, the
// push is bracketed by a read from before the change, and the bounds ([-97ms, +190ms])
// reach past the push. A push after the change as the estimate places it is the change's:
// no wait for the grace period.
func TestPushAfterTheEstimateIsNotHeld(t *testing.T) {
	o := t0.Add(950 * time.Millisecond)
	v := IstiodView{Istiod: "istiod-rep-b", ObservedAt: o.Add(210 * time.Millisecond),
		ClockOffset: ClockOffset{Min: -97 * time.Millisecond, Max: 190 * time.Millisecond, HasMin: true, HasMax: true},
		Proxies: []ProxyStatus{{ID: "orders-v1-b.ns", Types: []XDSStatus{
			{TypeURL: cds, State: StateSynced, SentAt: o.Add(108 * time.Millisecond)},
			{TypeURL: eds, State: StateSynced, SentAt: o.Add(-170 * time.Millisecond)},
			{TypeURL: lds, State: StateSynced, SentAt: o.Add(111 * time.Millisecond)},
		}}}}
	tc := &trackedChange{change: MeshChange{Ref: vsRef, ObservedAt: o}}
	got := tc.evaluate(PropagationConfig{}.withDefaults(), map[string]IstiodView{v.Istiod: v}, nil, nil, o.Add(220*time.Millisecond))
	if got.State != PropagationPropagated || got.Latency != 108*time.Millisecond {
		t.Fatalf("%s latency %s, want Propagated in 108ms", got.State, got.Latency)
	}
}
