package statusapi

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Filter selects findings. Each field lists accepted values (any of them matches); empty
// fields match everything; all fields must match.
type Filter struct {
	Codes      []findings.Code
	Severities []findings.Severity
	States     []findings.State
	Apps       []reconcile.AppKey
	Namespaces []string
}

var codePattern = regexp.MustCompile(`^MD[0-9]{4}$`)

// filterParams are the query parameters of GET /api/v1/findings.
var filterParams = []string{"app", "code", "namespace", "severity", "state"}

// ParseFilter reads the query of GET /api/v1/findings. A parameter may repeat or hold
// comma-separated values. Unknown parameters and malformed values are errors (400): a
// typo must not silently return every finding.
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	var errs []error
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(filterParams, k) {
			errs = append(errs, fmt.Errorf("unknown query parameter %q (known: %s)", k, strings.Join(filterParams, ", ")))
			continue
		}
		for _, raw := range q[k] {
			for v := range strings.SplitSeq(raw, ",") {
				if err := f.add(k, strings.TrimSpace(v)); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return f, errors.Join(errs...)
}

func (f *Filter) add(param, v string) error {
	switch param {
	case "code":
		if !codePattern.MatchString(v) {
			return fmt.Errorf("code %q: want MD and four digits, e.g. MD0201", v)
		}
		f.Codes = append(f.Codes, findings.Code(v))
	case "severity":
		s := findings.Severity(v)
		if s != findings.SeverityCritical && s != findings.SeverityWarning && s != findings.SeverityInfo {
			return fmt.Errorf("severity %q: want critical, warning or info", v)
		}
		f.Severities = append(f.Severities, s)
	case "state":
		s := findings.State(v)
		if s != findings.StatePending && s != findings.StateFiring && s != findings.StateResolved {
			return fmt.Errorf("state %q: want pending, firing or resolved", v)
		}
		f.States = append(f.States, s)
	case "namespace":
		if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
			return fmt.Errorf("namespace %q: %s", v, strings.Join(errs, "; "))
		}
		f.Namespaces = append(f.Namespaces, v)
	case "app":
		k, err := parseAppKey(v)
		if err != nil {
			return err
		}
		f.Apps = append(f.Apps, k)
	}
	return nil
}

// parseAppKey reads "source/kind/namespace/name" (reconcile.AppKey's String form); the
// namespace may be empty or "_" when unknown.
func parseAppKey(v string) (reconcile.AppKey, error) {
	parts := strings.Split(v, "/")
	if len(parts) != 4 || parts[1] == "" || parts[3] == "" {
		return reconcile.AppKey{}, fmt.Errorf("app %q: want source/kind/namespace/name, e.g. flux/Kustomization/flux-system/payments", v)
	}
	src := reconcile.Source(parts[0])
	if src != reconcile.SourceArgoCD && src != reconcile.SourceFlux {
		return reconcile.AppKey{}, fmt.Errorf("app %q: source must be argocd or flux", v)
	}
	ns := parts[2]
	if ns == emptyNamespace {
		ns = ""
	}
	return reconcile.AppKey{Source: src, Kind: parts[1], Namespace: ns, Name: parts[3]}, nil
}

// Match reports whether the filter selects f. A namespace matches the namespace of the
// finding's object, of its app, or of its proxy ("<pod>.<namespace>").
func (f Filter) Match(fd findings.Finding) bool {
	if len(f.Codes) > 0 && !slices.Contains(f.Codes, fd.Code) {
		return false
	}
	if len(f.Severities) > 0 && !slices.Contains(f.Severities, fd.Severity) {
		return false
	}
	if len(f.States) > 0 && !slices.Contains(f.States, fd.State) {
		return false
	}
	if len(f.Apps) > 0 && !slices.ContainsFunc(f.Apps, func(k reconcile.AppKey) bool { return appMatches(k, fd.Subject.App) }) {
		return false
	}
	if len(f.Namespaces) > 0 {
		_, proxyNS, _ := strings.Cut(fd.Subject.Proxy, ".")
		if !slices.ContainsFunc(f.Namespaces, func(ns string) bool {
			return ns == fd.Subject.Object.Namespace || ns == fd.Subject.App.Namespace || ns == proxyNS
		}) {
			return false
		}
	}
	return true
}

// appMatches compares a filter's app with a finding's; an unknown namespace on either
// side matches any.
func appMatches(want, got reconcile.AppKey) bool {
	return got.Name != "" && want.Source == got.Source && want.Kind == got.Kind && want.Name == got.Name &&
		(want.Namespace == "" || got.Namespace == "" || want.Namespace == got.Namespace)
}
