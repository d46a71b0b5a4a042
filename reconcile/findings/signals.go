package findings

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Increase is an istiod counter (rejected configs, push errors, a proxy's rejects) that
// meshdrift saw go up. istiod's counters are cumulative since it started, so a value alone
// says nothing about now: only an increase between two reads meshdrift made does.
type Increase struct {
	Code   Code
	Istiod string
	// Proxy is set for a proxy's rejects; Kind and Name say what was counted (a config's
	// type and name, a push type, an xDS type).
	Proxy string
	Kind  string
	Name  string
	// Delta is the total increase in the current episode.
	Delta float64
	// FirstAt and LastAt are the signals' read times of the episode's first and latest
	// increase.
	FirstAt time.Time
	LastAt  time.Time
}

type counterKey struct {
	code                      Code
	istiod, proxy, kind, name string
}

// SignalHistory remembers istiod's counters between reads, to turn them into increases.
// It is not safe for concurrent use; the Engine owns one.
type SignalHistory struct {
	// read is the ObservedAt of the last signals read of every istiod: a view polled again
	// carries the same signals until they are read again, and must not count twice.
	read   map[string]time.Time
	last   map[counterKey]float64
	active map[counterKey]*Increase
}

// NewSignalHistory returns an empty history: the first read of each istiod is its baseline.
func NewSignalHistory() *SignalHistory {
	return &SignalHistory{read: map[string]time.Time{}, last: map[counterKey]float64{}, active: map[counterKey]*Increase{}}
}

// Observe takes the latest views and returns the increases seen within window before now,
// sorted. An istiod meshdrift reads for the first time only sets the baseline; a counter
// that went down (istiod restarted) counts from zero.
func (h *SignalHistory) Observe(views []reconcile.IstiodView, now time.Time, window time.Duration) []Increase {
	present := make(map[string]bool, len(views))
	for _, v := range views {
		present[v.Istiod] = true
		sig := v.Signals
		if sig == nil {
			continue
		}
		prevRead, known := h.read[v.Istiod]
		if known && !sig.ObservedAt.After(prevRead) {
			continue
		}
		h.read[v.Istiod] = sig.ObservedAt
		cur := counters(v.Istiod, sig)
		for k := range h.last {
			if k.istiod != v.Istiod {
				continue
			}
			if _, ok := cur[k]; !ok {
				// Zero values are not reported: the counter went back to zero (restart).
				delete(h.last, k)
			}
		}
		for k, val := range cur {
			prev, seen := h.last[k]
			h.last[k] = val
			if !known {
				continue
			}
			delta := val - prev
			if val < prev {
				delta = val
			}
			if !seen {
				delta = val
			}
			if delta <= 0 {
				continue
			}
			inc := h.active[k]
			if inc == nil {
				inc = &Increase{Code: k.code, Istiod: k.istiod, Proxy: k.proxy, Kind: k.kind, Name: k.name, FirstAt: sig.ObservedAt}
				h.active[k] = inc
			}
			inc.Delta += delta
			inc.LastAt = sig.ObservedAt
		}
	}
	// Forget istiods that are gone, so that memory follows the istiods that exist.
	for name := range h.read {
		if !present[name] {
			delete(h.read, name)
			for k := range h.last {
				if k.istiod == name {
					delete(h.last, k)
				}
			}
		}
	}
	out := make([]Increase, 0, len(h.active))
	for k, inc := range h.active {
		if now.Sub(inc.LastAt) > window {
			delete(h.active, k)
			continue
		}
		out = append(out, *inc)
	}
	slices.SortFunc(out, func(a, b Increase) int {
		return cmp.Or(strings.Compare(string(a.Code), string(b.Code)), strings.Compare(a.Istiod, b.Istiod),
			strings.Compare(a.Proxy, b.Proxy), strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name))
	})
	return out
}

func counters(istiod string, s *reconcile.IstiodSignals) map[counterKey]float64 {
	m := make(map[counterKey]float64, len(s.RejectedConfigs)+len(s.PushErrors)+len(s.ProxyRejects))
	for _, r := range s.RejectedConfigs {
		m[counterKey{code: CodeIstiodRejected, istiod: istiod, kind: r.Type, name: r.Name}] += r.Count
	}
	for typ, n := range s.PushErrors {
		m[counterKey{code: CodeIstiodPushErrors, istiod: istiod, kind: typ}] += n
	}
	for _, r := range s.ProxyRejects {
		m[counterKey{code: CodeProxyRejecting, istiod: istiod, proxy: r.Proxy, kind: r.Type}] += r.Count
	}
	return m
}

// describe is the increase for people: "gateway default/gw (+2)".
func (i Increase) describe() string {
	what := i.Kind
	if i.Name != "" {
		what += " " + i.Name
	}
	return fmt.Sprintf("%s (+%g)", what, i.Delta)
}
