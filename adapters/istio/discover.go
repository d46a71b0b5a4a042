package istio

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
)

// Target is one istiod instance to read: one pod, never a Service, because each replica
// only knows the proxies connected to it.
type Target struct {
	// Name identifies the instance in views and source statuses: the pod name, or the
	// address when configured by hand.
	Name string
	// Revision is the control-plane revision (the pod's istio.io/rev label).
	Revision string
	// Addr is host:port of the port the reader's transport uses (15010, 15012 or 15014).
	Addr string
	// MonitoringAddr is host:port of istiod's monitoring port (15014), for its /metrics;
	// empty when unknown.
	MonitoringAddr string
}

// TargetSource says which istiod instances exist.
type TargetSource interface {
	// Targets returns the current instances once, for one-shot reads.
	Targets(ctx context.Context) ([]Target, error)
	// Watch calls update with the complete set of instances, first once the source knows
	// them and then after every change, until ctx ends. It calls fail when it cannot
	// currently follow the instances (it keeps retrying) and update again once it can.
	// Neither may block for long. Watch returns nil when ctx ends, an error when the
	// source cannot be watched at all.
	Watch(ctx context.Context, update func([]Target), fail func(error)) error
}

// StaticTargets is a TargetSource for addresses given in the configuration. Each address
// must reach a single istiod pod: a Service address would answer from a different
// replica on each read.
func StaticTargets(targets []Target) (TargetSource, error) {
	ts := slices.Clone(targets)
	var errs []error
	seen := map[string]bool{}
	for i := range ts {
		t := &ts[i]
		if t.Addr == "" {
			errs = append(errs, fmt.Errorf("target %d: address is required", i))
			continue
		}
		if _, _, err := net.SplitHostPort(t.Addr); err != nil {
			errs = append(errs, fmt.Errorf("target %d: address %q: %w", i, t.Addr, err))
		}
		if t.Name == "" {
			t.Name = t.Addr
		}
		if t.Revision == "" {
			t.Revision = DefaultRevision
		}
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("target %d: duplicate name %q", i, t.Name))
		}
		seen[t.Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sortTargets(ts)
	return staticTargets(ts), nil
}

type staticTargets []Target

func (s staticTargets) Targets(context.Context) ([]Target, error) { return slices.Clone(s), nil }

func (s staticTargets) Watch(ctx context.Context, update func([]Target), _ func(error)) error {
	update(slices.Clone(s))
	<-ctx.Done()
	return nil
}

// DefaultRevision is the revision of an istiod without an istio.io/rev label.
const DefaultRevision = "default"

func sortTargets(ts []Target) {
	slices.SortFunc(ts, func(a, b Target) int { return cmp.Compare(a.Name, b.Name) })
}
