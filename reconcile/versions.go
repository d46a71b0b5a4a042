package reconcile

import (
	"maps"
	"slices"
)

// sameView reports whether two reads of one istiod say the same about its proxies, its
// counters and its view: they may differ only in when they were made (ObservedAt,
// ReadStartedAt, ServerDate, the counters' read time) and in the clock bounds those
// times give, unless the clock is off beyond tolerance (then its evidence is news). An
// idle mesh's reads are all alike, and findings need not be derived again for them.
func sameView(a, b IstiodView) bool {
	if a.Istiod != b.Istiod || a.Revision != b.Revision || a.PushVersion != b.PushVersion ||
		a.ClockProblem != b.ClockProblem || a.Unverified != b.Unverified {
		return false
	}
	if a.ClockProblem != "" && a.ClockOffset != b.ClockOffset {
		return false
	}
	if (a.Restriction == nil) != (b.Restriction == nil) || (a.Restriction != nil && *a.Restriction != *b.Restriction) {
		return false
	}
	if !sameSignals(a.Signals, b.Signals) {
		return false
	}
	return slices.EqualFunc(a.Proxies, b.Proxies, func(p, q ProxyStatus) bool {
		return p.ID == q.ID && p.ClusterID == q.ClusterID && p.ProxyType == q.ProxyType &&
			p.IstioVersion == q.IstioVersion && p.Istiod == q.Istiod && p.Revision == q.Revision &&
			p.ControlPlaneVersion == q.ControlPlaneVersion &&
			slices.EqualFunc(p.Types, q.Types, func(x, y XDSStatus) bool {
				return x.TypeURL == y.TypeURL && x.State == y.State && x.SentVersion == y.SentVersion &&
					x.AckedVersion == y.AckedVersion && x.SentAt.Equal(y.SentAt) && x.Error == y.Error
			})
	})
}

// sameSignals compares two reads of istiod's counters, leaving out when they were read.
func sameSignals(a, b *IstiodSignals) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.RejectedConfigs, b.RejectedConfigs) && slices.Equal(a.ProxyRejects, b.ProxyRejects) &&
		maps.Equal(a.Conflicts, b.Conflicts) && maps.Equal(a.PushErrors, b.PushErrors)
}

// samePropagation reports whether an evaluation left a change's outcome as it was (the
// change itself is the same object's: it is not compared).
func samePropagation(a, b Propagation) bool {
	return a.State == b.State && a.Latency == b.Latency && a.Targeted == b.Targeted && a.ACKed == b.ACKed &&
		a.NACKed == b.NACKed && a.Pending == b.Pending && a.Since.Equal(b.Since) &&
		slices.Equal(a.Proxies, b.Proxies) && slices.Equal(a.Concurrent, b.Concurrent) &&
		slices.Equal(a.Unreachable, b.Unreachable) && slices.Equal(a.Restricted, b.Restricted)
}

// sameApp reports whether two reads of an app say the same, whenever they were made.
func sameApp(a, b App) bool {
	return a.Key == b.Key && a.DesiredRevision == b.DesiredRevision && a.AppliedRevision == b.AppliedRevision &&
		a.AppliedAt.Equal(b.AppliedAt) && a.State == b.State && a.Reason == b.Reason && a.Message == b.Message &&
		a.Suspended == b.Suspended && a.Stale == b.Stale && a.Ignore == b.Ignore && slices.Equal(a.Objects, b.Objects)
}
