package statusapi

import (
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Checks is the latest run of the semantic checks on the live cluster.
type Checks struct {
	// Waiting says why the checks do not run yet (a cache not synced); their findings
	// are held meanwhile.
	Waiting string `json:"waiting,omitempty"`
	// LastRunAt and DurationSeconds are those of the last run that ran.
	LastRunAt       time.Time `json:"lastRunAt,omitzero"`
	DurationSeconds float64   `json:"durationSeconds"`
	// ConfirmedAt is when the runner last found nothing the checks read changed since
	// that run and did not run them again: the results were current then.
	ConfirmedAt time.Time `json:"confirmedAt,omitzero"`
	// Ran names the checks of the last run; Skipped the others, with the reason.
	Ran     []CheckRef     `json:"ran"`
	Skipped []SkippedCheck `json:"skipped"`
	// Results counts the problems of the last run per finding code.
	Results map[string]int `json:"results"`
}

// CheckRef names one check.
type CheckRef struct {
	Name string `json:"name"`
	Code string `json:"code"`
}

// SkippedCheck is a check that did not run, and why ("kinds not served: ...").
type SkippedCheck struct {
	CheckRef
	Reason string `json:"reason"`
}

func checksOf(r *reconcile.CheckRun) *Checks {
	if r == nil {
		return nil
	}
	c := &Checks{Waiting: r.Waiting, LastRunAt: r.At.UTC(), DurationSeconds: r.Duration.Seconds(),
		Ran: []CheckRef{}, Skipped: []SkippedCheck{}, Results: map[string]int{}}
	if r.At.IsZero() {
		c.LastRunAt = time.Time{}
	}
	if !r.ConfirmedAt.IsZero() {
		c.ConfirmedAt = r.ConfirmedAt.UTC()
	}
	for _, st := range r.Checks {
		ref := CheckRef{Name: st.Name, Code: st.Code}
		if st.Skipped != "" {
			c.Skipped = append(c.Skipped, SkippedCheck{CheckRef: ref, Reason: st.Skipped})
			continue
		}
		c.Ran = append(c.Ran, ref)
	}
	for _, res := range r.Results {
		c.Results[res.Code]++
	}
	return c
}
