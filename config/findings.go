package config

import (
	"fmt"
	"slices"
	"time"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// FindingsConfig is the `findings:` section: the lifecycle of findings and what to
// suppress. The codes are those of docs/findings.md.
type FindingsConfig struct {
	// ResolveAfter is how long a problem must stay away before its finding resolves; a
	// problem that returns sooner keeps its finding.
	ResolveAfter Duration `json:"resolveAfter"`
	// KeepResolved is how long resolved findings stay listed (status API, page).
	KeepResolved Duration `json:"keepResolved"`
	// MaxResolved bounds the resolved findings kept.
	MaxResolved int `json:"maxResolved"`
	// SignalWindow is how long an observed increase of an istiod counter (rejected
	// configs, push errors) keeps its finding active.
	SignalWindow Duration `json:"signalWindow"`
	// For overrides codes' `for` durations, e.g. {MD0103: 30m}.
	For map[string]Duration `json:"for,omitempty"`
	// Ignore suppresses findings; each rule matches when all of its set fields match.
	Ignore []FindingsIgnoreRule `json:"ignore,omitempty"`
	// AllowedManagers are field managers allowed to write GitOps-owned mesh objects
	// besides the GitOps controllers (an operator, an autoscaler): their writes are not
	// out-of-band edits (MD0801).
	AllowedManagers []string `json:"allowedManagers,omitempty"`
}

// FindingsIgnoreRule suppresses matching findings. At least one field must be set.
type FindingsIgnoreRule struct {
	Code string `json:"code,omitempty"`
	// Namespace is the namespace of the finding's object (or, with no object, its app).
	Namespace string `json:"namespace,omitempty"`
	// App is "name", "namespace/name" or "<source>/<kind>/<namespace>/<name>".
	App string `json:"app,omitempty"`
}

func defaultFindings() FindingsConfig {
	return FindingsConfig{
		ResolveAfter: Duration(findings.DefaultResolveAfter),
		KeepResolved: Duration(findings.DefaultKeepResolved),
		MaxResolved:  findings.DefaultMaxResolved,
		SignalWindow: Duration(findings.DefaultSignalWindow),
	}
}

// Engine returns the section as the findings engine takes it.
func (f FindingsConfig) Engine() findings.Config {
	c := findings.Config{
		ResolveAfter: f.ResolveAfter.D(),
		KeepResolved: f.KeepResolved.D(),
		MaxResolved:  f.MaxResolved,
		SignalWindow: f.SignalWindow.D(),
		// Cloned: the engine keeps the config for its whole life.
		AllowedManagers: slices.Clone(f.AllowedManagers),
	}
	if len(f.For) > 0 {
		c.For = make(map[findings.Code]time.Duration, len(f.For))
		for code, d := range f.For {
			c.For[findings.Code(code)] = d.D()
		}
	}
	for _, r := range f.Ignore {
		c.Ignore = append(c.Ignore, findings.IgnoreRule{Code: findings.Code(r.Code), Namespace: r.Namespace, App: r.App})
	}
	return c
}

func (f FindingsConfig) validate() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    Duration
	}{{"resolveAfter", f.ResolveAfter}, {"keepResolved", f.KeepResolved}, {"signalWindow", f.SignalWindow}} {
		if d.v.D() <= 0 {
			errs = append(errs, fmt.Errorf("findings.%s %s: must be positive", d.name, d.v))
		}
	}
	if f.MaxResolved < 1 {
		errs = append(errs, fmt.Errorf("findings.maxResolved %d: must be at least 1", f.MaxResolved))
	}
	if err := f.Engine().Validate(); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, fmt.Errorf("findings.%w", e))
		}
	}
	return errs
}

// unjoin splits an errors.Join result so that each error gets its prefix.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
