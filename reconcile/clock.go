package reconcile

import (
	"fmt"
	"time"
)

// How meshdrift compares istiod's times with its own.
//
// istiod stamps what it reports with its own clock (a type's send time, the push
// version's second), meshdrift stamps a change with its own (when the watch delivered it).
// The two clocks may disagree. meshdrift bounds the offset (istiod time minus meshdrift
// time) from evidence that holds whatever the clocks say, per istiod:
//
//   - anything istiod reports happened before its answer arrived: every send time S and
//     the push version's second V in an answer received at r give offset >= S - r;
//   - a send that the previous answer did not show happened after the previous request
//     went out at s': offset <= S - s' (and for a new push version, V + 1 s - s');
//   - an HTTP answer's Date header D was written between the request at s and the answer
//     at r: D - r <= offset < D + 1 s - s.
//
// The offset lies in the intersection of these intervals over the last hour
// (older evidence ages out; evidence that contradicts older evidence, as after a clock
// step, replaces it). The reported offset is the value in that interval closest to zero,
// and the interval's width is the estimate's error. Polling every 250 ms while a change
// is in flight brackets the change's own push, so the error is then about a poll
// interval plus a read.

const (
	// MaxClockOffset is the largest offset meshdrift is built to tolerate. Beyond it the
	// istiod is reported: the offset is corrected where it is measured, but times that
	// meshdrift cannot measure against istiod (the API server's managedFields) and the
	// first reads before any upper bound exists assume clocks that roughly agree.
	MaxClockOffset = 2 * time.Second
	// maxClockUncertainty is the widest error meshdrift widens a change's window by: up
	// to this long before a change, an unrelated push may be taken for the change's.
	// Wider, the window is placed by the estimate alone.
	maxClockUncertainty = 500 * time.Millisecond
	// clockWindow is how long evidence is kept: long, as the tight bounds come from the
	// fast reads around a change's push, and a quiet mesh may not push for a while; a clock
	// that steps contradicts older evidence, which is then dropped. clockBuckets split it
	// so that it ages out in steps with bounded memory.
	clockWindow  = time.Hour
	clockBuckets = 12
)

// ClockOffset is what meshdrift knows of how far one istiod's clock is ahead of its own
// (istiod time minus meshdrift time; negative when istiod is behind): bounds that the
// true offset lies within.
type ClockOffset struct {
	Min    time.Duration `json:"min"`
	Max    time.Duration `json:"max"`
	HasMin bool          `json:"hasMin"`
	HasMax bool          `json:"hasMax"`
}

// Known reports whether the offset is bounded on both sides.
func (o ClockOffset) Known() bool { return o.HasMin && o.HasMax }

// Estimate is the offset closest to zero that the bounds allow: meshdrift corrects no
// more than the evidence requires.
func (o ClockOffset) Estimate() time.Duration {
	switch {
	case o.HasMin && o.Min > 0:
		return o.Min
	case o.HasMax && o.Max < 0:
		return o.Max
	}
	return 0
}

// Error is the width of the bounds, which the estimate is within; -1 when unbounded.
func (o ClockOffset) Error() time.Duration {
	if !o.Known() {
		return -1
	}
	return o.Max - o.Min
}

// TooLarge reports an offset known to exceed MaxClockOffset either way.
func (o ClockOffset) TooLarge() bool {
	return (o.HasMin && o.Min > MaxClockOffset) || (o.HasMax && o.Max < -MaxClockOffset)
}

// Problem says what is wrong with an istiod's clock, "" when nothing is known to be.
func (o ClockOffset) Problem() string {
	if !o.TooLarge() {
		return ""
	}
	dir, d := "ahead of", o.Min
	if o.Max < 0 {
		dir, d = "behind", -o.Max
	}
	return fmt.Sprintf("istiod's clock is at least %s %s meshdrift's; propagation verdicts tolerate %s: synchronise the nodes' clocks (NTP)",
		d.Round(time.Millisecond), dir, MaxClockOffset)
}

// apiServerTime reports whether a change's time came from the API server's managedFields
// (objects found by a list rather than delivered by a watch): one-second resolution, on
// the API server's clock, which meshdrift cannot measure against istiod's. A watch time
// falls on a whole second once in a billion.
func apiServerTime(t time.Time) bool { return t.Nanosecond() == 0 }

// clockBucket holds the tightest bounds seen during one clockWindow/clockBuckets span.
type clockBucket struct {
	start  time.Time
	bounds ClockOffset
}

// clockEstimator bounds one istiod's offset from its successive views.
type clockEstimator struct {
	buckets []clockBucket // oldest first, at most clockBuckets
}

// observe adds the evidence of view v, read after prev (nil for the first read), and
// returns the current bounds.
func (e *clockEstimator) observe(prev *IstiodView, v IstiodView) ClockOffset {
	if ev := clockEvidence(prev, v); ev.HasMin || ev.HasMax {
		e.add(v.ObservedAt, ev)
	}
	return e.bounds(v.ObservedAt)
}

func (e *clockEstimator) add(at time.Time, ev ClockOffset) {
	span := clockWindow / clockBuckets
	if n := len(e.buckets); n == 0 || at.Sub(e.buckets[n-1].start) >= span || at.Before(e.buckets[n-1].start) {
		e.buckets = append(e.buckets, clockBucket{start: at})
		if len(e.buckets) > clockBuckets {
			e.buckets = append(e.buckets[:0], e.buckets[1:]...)
		}
	}
	b := &e.buckets[len(e.buckets)-1]
	b.bounds = intersect(b.bounds, ev)
	if b.bounds.Known() && b.bounds.Min > b.bounds.Max {
		// Contradicts this bucket's earlier evidence (a clock step): the new evidence wins.
		b.bounds = ev
	}
}

// bounds intersects the buckets still within the window; when they contradict each
// other, the older ones are dropped.
func (e *clockEstimator) bounds(now time.Time) ClockOffset {
	for len(e.buckets) > 0 && now.Sub(e.buckets[0].start) > clockWindow {
		e.buckets = e.buckets[1:]
	}
	for {
		var o ClockOffset
		for _, b := range e.buckets {
			o = intersect(o, b.bounds)
		}
		if !o.Known() || o.Min <= o.Max || len(e.buckets) <= 1 {
			return o
		}
		e.buckets = e.buckets[1:]
	}
}

func intersect(a, b ClockOffset) ClockOffset {
	if b.HasMin && (!a.HasMin || b.Min > a.Min) {
		a.Min, a.HasMin = b.Min, true
	}
	if b.HasMax && (!a.HasMax || b.Max < a.Max) {
		a.Max, a.HasMax = b.Max, true
	}
	return a
}

// clockEvidence is the bounds one read puts on the offset (see the comment at the top).
func clockEvidence(prev *IstiodView, v IstiodView) ClockOffset {
	var ev ClockOffset
	if v.ObservedAt.IsZero() {
		return ev
	}
	lower := func(d time.Duration) { ev = intersect(ev, ClockOffset{Min: d, HasMin: true}) }
	upper := func(d time.Duration) { ev = intersect(ev, ClockOffset{Max: d, HasMax: true}) }
	r := v.ObservedAt
	var latest time.Time
	for _, p := range v.Proxies {
		for _, t := range p.Types {
			if t.SentAt.After(latest) {
				latest = t.SentAt
			}
		}
	}
	if !latest.IsZero() {
		lower(latest.Sub(r))
	}
	vt, hasVersion := pushVersionTime(v.PushVersion)
	if hasVersion {
		lower(vt.Sub(r))
	}
	if d := v.ServerDate; !d.IsZero() {
		lower(d.Sub(r))
		if s := v.ReadStartedAt; !s.IsZero() && !s.After(r) {
			upper(d.Add(time.Second).Sub(s))
		}
	}
	if prev == nil || prev.ReadStartedAt.IsZero() || !prev.ReadStartedAt.Before(r) {
		return ev
	}
	s := prev.ReadStartedAt
	// One entry per proxy, not a map of its types: a read lists thousands of proxies,
	// each with a handful of types. The last listing of a proxy, and of a type, counts.
	before := make(map[string]int32, len(prev.Proxies))
	for i, p := range prev.Proxies {
		before[p.ID] = int32(i)
	}
	var earliestNew time.Time
	for _, p := range v.Proxies {
		// A proxy the previous answer did not list may have been sent config before it
		// (its connection registered late): it proves nothing.
		i, ok := before[p.ID]
		if !ok {
			continue
		}
		was := prev.Proxies[i].Types
		for _, t := range p.Types {
			if t.SentAt.IsZero() || !t.SentAt.After(sentBefore(was, t.TypeURL)) {
				continue
			}
			if earliestNew.IsZero() || t.SentAt.Before(earliestNew) {
				earliestNew = t.SentAt
			}
		}
	}
	if !earliestNew.IsZero() {
		upper(earliestNew.Sub(s))
	}
	// A new push version was made after the previous answer. Only when the same istiod
	// answered both times: behind a Service, replicas may take turns.
	if pvt, ok := pushVersionTime(prev.PushVersion); ok && hasVersion && v.PushVersion != prev.PushVersion && !vt.Before(pvt) && sameAnswerer(prev, &v) {
		upper(vt.Add(time.Second).Sub(s))
	}
	return ev
}

// sameAnswerer reports whether two views come from the same istiod process as far as they
// tell (the instance their proxies name).
// sentBefore is when a type was last sent as types lists it (its last entry), zero when
// it does not.
func sentBefore(types []XDSStatus, typeURL string) time.Time {
	for i := len(types) - 1; i >= 0; i-- {
		if types[i].TypeURL == typeURL {
			return types[i].SentAt
		}
	}
	return time.Time{}
}

func sameAnswerer(a, b *IstiodView) bool {
	name := func(v *IstiodView) string {
		if len(v.Proxies) > 0 {
			return v.Proxies[0].Istiod
		}
		return v.Istiod
	}
	return name(a) == name(b)
}

// pushWindow is where, in one istiod's time, the pushes of a change are looked for.
type pushWindow struct {
	// from: a push at or after it may carry the change.
	from time.Time
	// after: a push after it came after the change, as far as the bounds tell.
	after time.Time
	// offset converts istiod's times to meshdrift's, for latency; at is the change's time
	// as the estimate places it on istiod's clock.
	offset time.Duration
	at     time.Time
	// unsure: the bounds are too wide to widen the window by their error, so from is a
	// guess (the estimate); hasMax: after is an upper bound's, not the estimate's.
	unsure, hasMax bool
}

// ambiguousHold is how long a change waits for its own push to a proxy whose only push
// in the window may predate it (see ambiguous), before the estimate decides: istiod
// pushes within its debounce of seeing a change, and a healthy push is ACKed within a
// few seconds.
const ambiguousHold = 5 * time.Second

// ambiguous reports whether a proxy whose latest push counted as the change's is at
// istiod time t may have been pushed nothing after the change: its pushes in the window
// all come before the change as the estimate places it (the window is widened below the
// estimate by the bounds' error, so that no push of the change is missed, which lets in
// an unrelated push from just before), or, with bounds too wide to widen by, before the
// change as the upper bound places it. Such a proxy's NACK counts; its ACK does not make
// the change propagated for ambiguousHold, as its own push may be yet to come. With no
// upper bound at all (a first read, as in check) the estimate is taken as it is.
func (w pushWindow) ambiguous(t time.Time) bool {
	return t.Before(w.at) || (w.unsure && w.hasMax && t.Before(w.after))
}

// lastPushSince is the latest send to px at or after from, zero when none.
func lastPushSince(px ProxyStatus, from time.Time) time.Time {
	var last time.Time
	for _, t := range px.Types {
		if !t.SentAt.Before(from) && t.SentAt.After(last) {
			last = t.SentAt
		}
	}
	return last
}

// windowFor places change c, seen at c.ObservedAt, on the clock of an istiod with
// offset o. A push carrying the change comes after istiod's debounce, so after the change
// on any clock: from is the change's time plus the estimate, widened by the estimate's
// error below, so that no push of the change is missed, when that error is at most
// maxClockUncertainty. Wider or unbounded, the error would let in unrelated pushes from
// before the change (another change's NACK): the estimate alone places the window, and a
// verdict on a push that may predate the change waits (see ambiguous).
func windowFor(c MeshChange, o ClockOffset, slack time.Duration) pushWindow {
	at := c.ObservedAt
	if apiServerTime(at) || (!o.HasMin && !o.HasMax) {
		// The API server's second (the write came within the second after it) is compared
		// with istiod's clock as it is: meshdrift cannot measure that offset. With no
		// evidence at all, clocks are taken to agree.
		return pushWindow{from: at.Add(-slack), after: at, at: at}
	}
	est := o.Estimate()
	precise := o.Known() && o.Max-o.Min <= maxClockUncertainty
	var widen time.Duration
	if precise {
		widen = est - o.Min
	}
	w := pushWindow{
		from:   at.Add(est - widen - slack),
		after:  at.Add(est),
		offset: est,
		at:     at.Add(est),
		unsure: !precise,
	}
	if o.HasMax {
		w.after, w.hasMax = at.Add(o.Max), true
	}
	return w
}

// nackSettle is how long after a streamed NACK a read must start to show istiod's state
// after it: the stream and istiod's per-proxy error are updated separately.
const nackSettle = time.Second

// nackSuperseded reports whether a streamed NACK no longer stands: a read of istiod
// started well after it shows the proxy with no type in error, so the proxy has ACKed
// since (a NACK's error stays until the next ACK). Without this a fixed NACK would count
// against the change forever.
func nackSuperseded(n NACKEvent, v IstiodView, px ProxyStatus) bool {
	for _, t := range px.Types {
		if t.State == StateError {
			return false
		}
	}
	started := v.ReadStartedAt
	if started.IsZero() {
		started = v.ObservedAt
	}
	return started.After(n.At.Add(nackSettle))
}

// latencyPush is the push to px that latency is measured from: the earliest at or after
// the change as the estimate places it. The window, widened by the estimate's error, may
// also hold an unrelated push just before the change (an endpoint update), which would
// make the latency nothing; only when there is no later one is first, the earliest in
// the window, taken.
func latencyPush(px ProxyStatus, w pushWindow, first time.Time) time.Time {
	var best time.Time
	for _, t := range px.Types {
		if !t.SentAt.Before(w.at) && (best.IsZero() || t.SentAt.Before(best)) {
			best = t.SentAt
		}
	}
	if best.IsZero() {
		return first
	}
	return best
}
