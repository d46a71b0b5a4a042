package reconcile

import (
	"errors"
	"fmt"
	"time"
)

// FastPollConfig says how fast istiod may be read while a change is in flight, and for
// how much of the time.
type FastPollConfig struct {
	// Interval between reads while a change is in flight (default 250 ms).
	Interval time.Duration
	// MaxShare is the most of the time spent polling fast, in (0, 1] (default 0.5).
	MaxShare float64
	// Window is what the share is held to: fast polling may run for MaxShare × Window
	// at a stretch, and over any longer period for no more than MaxShare of it, give or
	// take one decision (default 1 min: a change's whole 30 s grace at the default share).
	Window time.Duration
}

func (c FastPollConfig) withDefaults() FastPollConfig {
	if c.Interval == 0 {
		c.Interval = 250 * time.Millisecond
	}
	if c.MaxShare == 0 {
		c.MaxShare = 0.5
	}
	if c.Window == 0 {
		c.Window = time.Minute
	}
	return c
}

func (c FastPollConfig) validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("fast poll interval %s: must be positive", c.Interval))
	}
	if !(c.MaxShare > 0 && c.MaxShare <= 1) {
		errs = append(errs, fmt.Errorf("fast poll max share %g: must be greater than 0 and at most 1", c.MaxShare))
	}
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("fast poll window %s: must be positive", c.Window))
	}
	return errors.Join(errs...)
}

// PollPacer decides when istiod is read fast: only while a change is in flight (pending
// within its grace), and within a budget of fast time that refills at MaxShare of the
// time passing, up to MaxShare × Window. Spent beyond it, fast polling resumes only once
// a quarter of the budget is back, so that it does not flap every decision. Changes in a
// final state are read at the normal interval: they wait for istiod, not for meshdrift.
// Not safe for concurrent use; the evaluation loop owns it.
type PollPacer struct {
	cfg    FastPollConfig
	budget time.Duration // fast time available; negative after an overshoot, repaid
	last   time.Time
	fast   bool
}

// NewPollPacer returns a pacer with a full budget.
func NewPollPacer(cfg FastPollConfig) (*PollPacer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &PollPacer{cfg: cfg, budget: cfg.capacity()}, nil
}

func (c FastPollConfig) capacity() time.Duration {
	return time.Duration(float64(c.Window) * c.MaxShare)
}

// Interval is the fast interval.
func (p *PollPacer) Interval() time.Duration { return p.cfg.Interval }

// Fast reports, at now, whether istiod should be read fast until the next decision.
func (p *PollPacer) Fast(now time.Time, inFlight bool) bool {
	if !p.last.IsZero() {
		el := max(now.Sub(p.last), 0)
		if p.fast {
			p.budget -= el
		}
		p.budget = min(p.budget+time.Duration(float64(el)*p.cfg.MaxShare), p.cfg.capacity())
	}
	p.last = now
	switch {
	case !inFlight:
		p.fast = false
	case p.fast:
		p.fast = p.budget > 0
	default:
		p.fast = p.budget >= p.cfg.capacity()/4
	}
	return p.fast
}
