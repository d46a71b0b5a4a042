package findings

import (
	"slices"
	"strings"

	"github.com/meshdrift/meshdrift/reconcile"
)

// ParseIgnore reads the value of the meshdrift.io/ignore annotation: codes separated by
// commas or spaces ("MD0203,MD0301"). The value comes from the cluster, so anything that
// is not a code is skipped rather than an error.
func ParseIgnore(v string) []Code {
	var codes []Code
	for f := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		c := Code(strings.ToUpper(f))
		if codePattern.MatchString(string(c)) && !slices.Contains(codes, c) {
			codes = append(codes, c)
		}
	}
	return codes
}

// matches reports whether the rule suppresses a problem of code about s.
func (r IgnoreRule) matches(code Code, s Subject) bool {
	if r.Code != "" && r.Code != code {
		return false
	}
	if r.Namespace != "" {
		ns := s.Object.Namespace
		if ns == "" && s.Object.Name == "" {
			ns = s.App.Namespace
		}
		if ns != r.Namespace {
			return false
		}
	}
	if r.App != "" && !appMatches(r.App, s.App) {
		return false
	}
	return true
}

func appMatches(pattern string, k reconcile.AppKey) bool {
	if k.Name == "" {
		return false
	}
	return pattern == k.Name || pattern == k.Namespace+"/"+k.Name || pattern == k.String()
}

// suppression decides whether problems are suppressed, from the annotations of the apps
// and mesh objects in a snapshot and the configured rules.
type suppression struct {
	rules   []IgnoreRule
	objects map[reconcile.ObjectRef][]Code
	apps    map[reconcile.AppKey][]Code
}

func newSuppression(snap reconcile.Snapshot, rules []IgnoreRule) suppression {
	s := suppression{rules: rules}
	for _, a := range snap.Apps {
		if codes := ParseIgnore(a.Ignore); len(codes) > 0 {
			if s.apps == nil {
				s.apps = map[reconcile.AppKey][]Code{}
			}
			s.apps[a.Key] = codes
		}
	}
	// Objects carry the latest annotation of every object, so they are read last and win
	// over a change recorded earlier.
	// Only annotated objects are kept: a fleet has tens of thousands of objects and few
	// annotations.
	raw := map[reconcile.ObjectRef]string{}
	for _, p := range snap.Changes {
		if p.Change.Ignore != "" {
			raw[p.Change.Ref] = p.Change.Ignore
		}
	}
	for _, c := range snap.Objects {
		if c.Ignore != "" {
			raw[c.Ref] = c.Ignore
		} else if len(raw) > 0 {
			delete(raw, c.Ref)
		}
	}
	for ref, v := range raw {
		if codes := ParseIgnore(v); len(codes) > 0 {
			if s.objects == nil {
				s.objects = map[reconcile.ObjectRef][]Code{}
			}
			s.objects[ref] = codes
		}
	}
	return s
}

// suppressed reports whether a problem of code about subj is suppressed.
func (s suppression) suppressed(code Code, subj Subject) bool {
	if subj.Object != (reconcile.ObjectRef{}) && slices.Contains(s.objects[subj.Object], code) {
		return true
	}
	if subj.App != (reconcile.AppKey{}) && slices.Contains(s.apps[subj.App], code) {
		return true
	}
	for _, r := range s.rules {
		if r.matches(code, subj) {
			return true
		}
	}
	return false
}
