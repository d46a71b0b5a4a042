package reconcile

import "time"

// CheckRun is the latest run of the semantic checks (reconcile/checks) on the live
// cluster. The findings engine turns its results into findings; the status API shows it.
type CheckRun struct {
	// Waiting says why the checks have not run on the current picture, e.g. "not synced:
	// services": a cache they read is not listed yet (or cannot be), and an empty picture
	// is not a healthy one. While it is set, Results are empty and the findings of every
	// check are held, never resolved.
	Waiting string
	// At is when the last run started and Duration how long it took; zero before the
	// first run.
	At       time.Time
	Duration time.Duration
	// ConfirmedAt is when the runner last found that nothing the run read had changed
	// and skipped running again: its results were still current then. Zero when no run
	// was skipped since this one.
	ConfirmedAt time.Time
	// Checks is every check of the run, in code order, with the reason it was skipped.
	Checks []CheckStatus
	// Results are the problems the last run found, sorted by object, path and code.
	Results []CheckResult
}

// CheckStatus is one check of a run.
type CheckStatus struct {
	Name string
	// Code is the finding code (findings.Code) the check reports.
	Code string
	// Skipped says why the check did not run ("kinds not served: ..."); "" when it ran.
	Skipped string
}

// CheckResult is one problem a check found on one object.
type CheckResult struct {
	Code   string
	Object ObjectRef
	// Path is the field the problem is in, e.g. spec.http[0].route[0].destination.host.
	Path    string
	Message string
}
