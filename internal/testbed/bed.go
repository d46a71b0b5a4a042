package testbed

import (
	"context"
	"errors"
	"testing"
)

// BedOptions says which parts of the bed a test package needs besides the API server.
type BedOptions struct {
	// LogPrefix names the log directory (see NewLogDir).
	LogPrefix    string
	Istiods      []IstiodOptions
	Flux         bool
	Alertmanager bool
}

// Bed is a started set of the bed's programs.
type Bed struct {
	Assets       Assets
	Kube         *Kube
	Istiods      []*Istiod
	Flux         *Flux
	Alertmanager *Alertmanager

	stops []func() error
}

// MainBed is Main for a package whose tests share one Bed: it starts the Bed opts asks
// for, hands it to ready (which keeps what the tests use and may prepare more), and stops
// it after the run. An error from either fails the run as Main does.
func MainBed(m *testing.M, opts BedOptions, ready func(*Bed) error) int {
	return Main(m, func(a Assets) (func(), error) {
		b, err := StartBed(context.Background(), a, opts)
		teardown := func() { _ = b.Stop() }
		if err != nil {
			return teardown, err
		}
		return teardown, ready(b)
	})
}

// StartBed starts the API server and the parts opts asks for. On error the returned Bed
// holds what did start, so that Stop can stop it.
func StartBed(ctx context.Context, a Assets, opts BedOptions) (*Bed, error) {
	b := &Bed{Assets: a}
	if opts.LogPrefix == "" {
		opts.LogPrefix = "meshdrift-bed-"
	}
	logDir, err := NewLogDir(opts.LogPrefix)
	if err != nil {
		return b, err
	}
	if b.Kube, err = StartKube(a, logDir); err != nil {
		return b, err
	}
	b.stops = append(b.stops, b.Kube.Stop)
	for _, o := range opts.Istiods {
		i, err := StartIstiod(ctx, a, b.Kube, o)
		if err != nil {
			return b, err
		}
		b.Istiods = append(b.Istiods, i)
		b.stops = append(b.stops, i.Stop)
	}
	if opts.Flux {
		if b.Flux, err = StartFlux(ctx, a, b.Kube); err != nil {
			return b, err
		}
		b.stops = append(b.stops, b.Flux.Stop)
	}
	if opts.Alertmanager {
		if b.Alertmanager, err = StartAlertmanager(ctx, logDir, ""); err != nil {
			return b, err
		}
		b.stops = append(b.stops, b.Alertmanager.Stop)
	}
	return b, nil
}

// Stop stops everything in reverse start order.
func (b *Bed) Stop() error {
	var errs []error
	for i := len(b.stops) - 1; i >= 0; i-- {
		errs = append(errs, b.stops[i]())
	}
	b.stops = nil
	return errors.Join(errs...)
}
