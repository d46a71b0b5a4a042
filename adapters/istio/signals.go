package istio

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// SignalsInterval is how often istiod's /metrics is read beside its syncz: the counters
// move slowly and the page is large, so not on every (possibly fast) cycle.
const SignalsInterval = 30 * time.Second

// refreshSignals reads istiod's metrics when due. A failed read keeps the previous signals
// and is logged: the syncz read already decides whether istiod is reachable.
func (r *Reader) refreshSignals(ctx context.Context, c *targetClient, now time.Time) {
	if c.target.MonitoringAddr == "" || (!c.signalsAt.IsZero() && now.Sub(c.signalsAt) < SignalsInterval) {
		return
	}
	c.signalsAt = now
	sig, err := r.ReadSignals(ctx, c.target)
	if err != nil {
		r.log.Debug("reading istiod metrics", "istiod", c.target.Name, "err", err)
		return
	}
	out := ToSignals(sig, now)
	c.signals = &out
}

// ToSignals keeps what points at a problem: rejected configs, NACKing proxies, non-zero
// conflicts and push errors, each sorted so that views compare stably.
func ToSignals(s IstiodSignals, at time.Time) reconcile.IstiodSignals {
	out := reconcile.IstiodSignals{ObservedAt: at, Conflicts: map[string]float64{}, PushErrors: map[string]float64{}}
	for _, rc := range s.RejectedConfigs {
		if rc.Count > 0 {
			out.RejectedConfigs = append(out.RejectedConfigs, reconcile.RejectedConfig{Type: rc.Type, Name: rc.Name, Count: rc.Count})
		}
	}
	for _, pr := range s.ProxyRejects {
		if pr.Count > 0 {
			out.ProxyRejects = append(out.ProxyRejects, reconcile.ProxyReject{Type: pr.Type, Proxy: pr.Proxy, Count: pr.Count})
		}
	}
	for k, v := range s.Conflicts {
		if v > 0 {
			out.Conflicts[k] = v
		}
	}
	for k, v := range s.PushErrors {
		if v > 0 {
			out.PushErrors[k] = v
		}
	}
	slices.SortFunc(out.RejectedConfigs, func(a, b reconcile.RejectedConfig) int {
		return strings.Compare(a.Type+"/"+a.Name, b.Type+"/"+b.Name)
	})
	slices.SortFunc(out.ProxyRejects, func(a, b reconcile.ProxyReject) int {
		return strings.Compare(a.Proxy+"/"+a.Type, b.Proxy+"/"+b.Type)
	})
	return out
}
