package findings

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Config tunes derivation and the lifecycle. The zero value is usable: WithDefaults fills
// it in. cmd/meshdrift builds it from the `findings:` section of the configuration file.
type Config struct {
	// ResolveAfter is how long a problem must stay away before its finding resolves; one
	// that returns sooner keeps its finding (flap suppression). Default 5 min.
	ResolveAfter time.Duration
	// KeepResolved is how long a resolved finding stays listed (default 1 h); at most
	// MaxResolved are kept.
	KeepResolved time.Duration
	MaxResolved  int
	// For overrides a code's catalog `for` duration.
	For map[Code]time.Duration
	// SignalWindow is how long an observed increase of an istiod counter (rejected
	// configs, push errors) keeps its finding active. Default 10 min.
	SignalWindow time.Duration
	// Ignore suppresses findings by code, namespace and app.
	Ignore []IgnoreRule
	// AllowedManagers are field managers whose writes to GitOps-owned mesh objects are
	// not out-of-band edits (MD0801), besides the GitOps controllers themselves: an
	// operator or autoscaler meant to write them.
	AllowedManagers []string
}

// IgnoreRule suppresses the findings that match all of its non-empty fields.
type IgnoreRule struct {
	Code Code
	// Namespace matches the finding's object's namespace or, for a finding about an app
	// and no object, the app's namespace.
	Namespace string
	// App matches the finding's app as "name", "namespace/name" or the full key
	// ("flux/Kustomization/flux-system/apps").
	App string
}

// Defaults.
const (
	DefaultResolveAfter = 5 * time.Minute
	DefaultKeepResolved = time.Hour
	DefaultMaxResolved  = 10000
	DefaultSignalWindow = 10 * time.Minute
)

// WithDefaults fills in every unset field.
func (c Config) WithDefaults() Config {
	if c.ResolveAfter <= 0 {
		c.ResolveAfter = DefaultResolveAfter
	}
	if c.KeepResolved <= 0 {
		c.KeepResolved = DefaultKeepResolved
	}
	if c.MaxResolved <= 0 {
		c.MaxResolved = DefaultMaxResolved
	}
	if c.SignalWindow <= 0 {
		c.SignalWindow = DefaultSignalWindow
	}
	return c
}

var codePattern = regexp.MustCompile(`^MD[0-9]{4}$`)

// ValidCode reports whether c is a code of the catalog that is not retired; the error says
// why not.
func ValidCode(c Code) error {
	if !codePattern.MatchString(string(c)) {
		return fmt.Errorf("code %q: must be MD and four digits, e.g. MD0201", c)
	}
	e, ok := Lookup(c)
	if !ok {
		return fmt.Errorf("code %s: not in the catalog (see %s)", c, DocPath)
	}
	if e.Retired {
		return fmt.Errorf("code %s: retired", c)
	}
	return nil
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	codes := slices.Sorted(maps.Keys(c.For))
	for _, code := range codes {
		d := c.For[code]
		if err := ValidCode(code); err != nil {
			errs = append(errs, fmt.Errorf("for: %w", err))
		}
		if d < 0 {
			errs = append(errs, fmt.Errorf("for %s: %s must not be negative", code, d))
		}
	}
	for i, r := range c.Ignore {
		if r.Code == "" && r.Namespace == "" && r.App == "" {
			errs = append(errs, fmt.Errorf("ignore[%d]: set at least one of code, namespace, app", i))
		}
		if r.Code != "" {
			if err := ValidCode(r.Code); err != nil {
				errs = append(errs, fmt.Errorf("ignore[%d]: %w", i, err))
			}
		}
	}
	seen := map[string]bool{}
	for i, m := range c.AllowedManagers {
		switch {
		case strings.TrimSpace(m) == "":
			errs = append(errs, fmt.Errorf("allowedManagers[%d]: must not be empty", i))
		case m != strings.TrimSpace(m):
			errs = append(errs, fmt.Errorf("allowedManagers[%d] %q: must not begin or end with spaces", i, m))
		case seen[m]:
			errs = append(errs, fmt.Errorf("allowedManagers[%d] %q: listed twice", i, m))
		case gitOpsManagers[m]:
			errs = append(errs, fmt.Errorf("allowedManagers[%d] %q: a GitOps controller, always allowed", i, m))
		}
		seen[m] = true
	}
	return errors.Join(errs...)
}

// forOf is the code's effective `for` duration.
func (c Config) forOf(e Entry) time.Duration {
	if d, ok := c.For[e.Code]; ok {
		return d
	}
	return e.For
}
