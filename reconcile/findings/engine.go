package findings

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Transition is one finding changing state in a pass: new (From ""), pending to firing,
// or resolved (From pending: it never fired, and sinks that deliver only firing findings
// have nothing to take back).
type Transition struct {
	From State
	// Finding is the finding as it is now; Finding.State is the new state.
	Finding Finding
}

// Engine keeps every finding through its lifecycle: pending while the problem has lasted
// less than its code's `for` (measured from StartsAt, the evidence's own time), then
// firing, then resolved once the problem has been gone for ResolveAfter. A problem that
// returns sooner keeps its finding (flap suppression); a suppressed problem resolves its
// finding at once. IDs come from the code and subject, so a new Engine given the same
// snapshot derives the same findings with the same IDs and start times.
//
// Call Evaluate (or Update) from one goroutine per pass; Findings and Active may be called
// from any goroutine.
type Engine struct {
	cfg     Config
	now     func() time.Time
	signals *SignalHistory

	// last is the latest Derive and what it was derived from: a pass over a snapshot
	// with the same Versions and increases reuses its result (Derive is pure), so that an
	// idle fleet's passes cost the lifecycle alone.
	last derivation

	mu       sync.Mutex
	active   map[string]*Finding
	resolved []Finding // oldest resolution first
}

// NewEngine returns an engine with no findings. now is its clock (nil: time.Now).
func NewEngine(cfg Config, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	return &Engine{cfg: cfg.WithDefaults(), now: now, signals: NewSignalHistory(), active: map[string]*Finding{}}
}

// Evaluate runs one pass over a snapshot at the engine's clock: istiod's counters, Derive,
// then the lifecycle. It returns the transitions of the pass, for sinks.
func (e *Engine) Evaluate(snap reconcile.Snapshot) []Transition {
	now := e.now()
	inc := e.signals.Observe(snap.Istiods, now, e.cfg.SignalWindow)
	if !e.last.same(snap.Versions, inc) {
		// The owner index is kept while the apps are the same: a change in flight moves
		// the changes many times a second, the apps seldom.
		owners := e.last.owners
		if snap.Versions == nil || e.last.versions == nil || snap.Versions.Apps != e.last.versions.Apps {
			owners = newOwnerIndex(snap.Apps)
		}
		e.last = derivation{increases: inc, owners: owners, result: derive(snap, inc, e.cfg, owners)}
		if snap.Versions != nil {
			v := *snap.Versions
			e.last.versions = &v
		}
	}
	return e.update(e.last.result, now)
}

// derivation is one Derive's result with its inputs' identity.
type derivation struct {
	versions  *reconcile.Versions
	increases []Increase
	owners    ownerIndex
	result    Result
}

// same reports whether a snapshot with versions v and increases inc is the one the
// result was derived from. Unknown versions never are.
func (d derivation) same(v *reconcile.Versions, inc []Increase) bool {
	return v != nil && d.versions != nil && *v == *d.versions && slices.Equal(inc, d.increases)
}

// Update applies a derived result at the engine's clock (Evaluate without the snapshot).
func (e *Engine) Update(r Result) []Transition { return e.update(r, e.now()) }

func (e *Engine) update(r Result, now time.Time) []Transition {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Transition
	seen := make(map[string]bool, len(r.Problems))
	suppressed := map[string]bool{}
	for _, p := range r.Problems {
		id := ID(p.Code, p.Subject)
		if p.Suppressed {
			suppressed[id] = true
			continue
		}
		seen[id] = true
		f, ok := e.active[id]
		if !ok {
			nf := e.newFinding(id, p, now)
			f = &nf
			e.active[id] = f
			e.dropResolved(id)
			out = append(out, Transition{Finding: *f})
		} else {
			f.LastSeen = now
			f.Evidence = p.Evidence
			// The problem has lasted since the earliest evidence of it.
			if !p.StartsAt.IsZero() && p.StartsAt.Before(f.StartsAt) {
				f.StartsAt = p.StartsAt
			}
			entry, _ := Lookup(p.Code)
			f.Summary = render(entry.Summary, p)
		}
		if f.State == StatePending && e.due(*f, now) {
			from := f.State
			f.State = StateFiring
			if ok {
				out = append(out, Transition{From: from, Finding: *f})
			} else {
				out[len(out)-1].Finding = *f
			}
		}
	}
	for id, f := range e.active {
		if seen[id] {
			continue
		}
		if !suppressed[id] {
			if held(r.Holds, *f) || now.Sub(f.LastSeen) < e.cfg.ResolveAfter {
				continue
			}
		}
		from := f.State
		f.State, f.ResolvedAt = StateResolved, now
		out = append(out, Transition{From: from, Finding: *f})
		e.resolved = append(e.resolved, *f)
		delete(e.active, id)
	}
	e.expire(now)
	slices.SortFunc(out, func(a, b Transition) int { return compareFindings(a.Finding, b.Finding) })
	return out
}

func (e *Engine) newFinding(id string, p Problem, now time.Time) Finding {
	entry, _ := Lookup(p.Code)
	start := p.StartsAt
	if start.IsZero() || start.After(now) {
		start = now
	}
	return Finding{
		ID: id, Code: p.Code, Name: entry.Name, Severity: entry.Severity, State: StatePending,
		Subject: p.Subject, Summary: render(entry.Summary, p), Description: entry.Description,
		Evidence: p.Evidence, StartsAt: start, FirstSeen: now, LastSeen: now,
	}
}

// due reports whether a pending finding has lasted its code's `for`.
func (e *Engine) due(f Finding, now time.Time) bool {
	entry, _ := Lookup(f.Code)
	return now.Sub(f.StartsAt) >= e.cfg.forOf(entry)
}

func held(holds []Hold, f Finding) bool {
	for _, h := range holds {
		if h.matches(f) {
			return true
		}
	}
	return false
}

// dropResolved forgets a resolved finding whose problem came back after ResolveAfter: the
// new finding has the same ID.
func (e *Engine) dropResolved(id string) {
	e.resolved = slices.DeleteFunc(e.resolved, func(f Finding) bool { return f.ID == id })
}

// expire drops resolved findings older than KeepResolved, and the oldest beyond
// MaxResolved, so that memory stays bounded however many problems come and go.
func (e *Engine) expire(now time.Time) {
	i := 0
	for i < len(e.resolved) && now.Sub(e.resolved[i].ResolvedAt) >= e.cfg.KeepResolved {
		i++
	}
	if n := len(e.resolved) - i; n > e.cfg.MaxResolved {
		i += n - e.cfg.MaxResolved
	}
	if i > 0 {
		e.resolved = slices.Delete(e.resolved, 0, i)
	}
}

// Active returns the pending and firing findings, sorted by code and subject.
func (e *Engine) Active() []Finding {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Finding, 0, len(e.active))
	for _, f := range e.active {
		out = append(out, *f)
	}
	slices.SortFunc(out, compareFindings)
	return out
}

// Findings returns the active findings and the resolved ones still kept, sorted by code
// and subject.
func (e *Engine) Findings() []Finding {
	out := e.Active()
	e.mu.Lock()
	out = append(out, e.resolved...)
	e.mu.Unlock()
	slices.SortFunc(out, compareFindings)
	return out
}

// Current is the findings of one snapshot as a new engine sees them at now, for a one-shot
// read such as `meshdrift check`. Without an earlier read, istiod's counters give no
// increases, and a problem whose evidence has no time of its own is pending.
func Current(snap reconcile.Snapshot, cfg Config, now time.Time) []Finding {
	e := NewEngine(cfg, func() time.Time { return now })
	e.update(Derive(snap, nil, e.cfg), now)
	return e.Active()
}

func compareFindings(a, b Finding) int {
	if c := strings.Compare(string(a.Code), string(b.Code)); c != 0 {
		return c
	}
	if c := compareSubjects(a.Subject, b.Subject); c != 0 {
		return c
	}
	return a.ResolvedAt.Compare(b.ResolvedAt)
}

// ID is the stable identity of a (code, subject): the code and a hash of the subject,
// e.g. "MD0201-6f1c0e9a2b7d4c35". The same problem gets the same ID after a restart.
func ID(code Code, s Subject) string {
	h := sha256.New()
	for _, part := range []string{
		string(code), string(s.App.Source), s.App.Kind, s.App.Namespace, s.App.Name, s.Revision,
		s.Object.Group, s.Object.Kind, s.Object.Namespace, s.Object.Name, s.Istiod, s.Proxy, s.Source,
	} {
		// Length-prefixed so that no two subjects write the same bytes.
		h.Write([]byte{byte(len(part) >> 8), byte(len(part))})
		h.Write([]byte(part))
	}
	return string(code) + "-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// maxSummaryEvidence bounds the evidence quoted in a summary line; the full text is in
// Evidence.
const maxSummaryEvidence = 200

// render fills a summary template. Placeholders: {app}, {revision}, {object}, {istiod},
// {proxy}, {source}, {detail}, {evidence}.
func render(tmpl string, p Problem) string {
	s := p.Subject
	app := ""
	if s.App.Name != "" {
		app = s.App.String()
	}
	object := ""
	if s.Object.Name != "" {
		object = s.Object.String()
	}
	out := strings.NewReplacer(
		"{app}", app,
		"{revision}", s.Revision,
		"{object}", object,
		"{istiod}", s.Istiod,
		"{proxy}", s.Proxy,
		"{source}", s.Source,
		"{detail}", p.Detail,
		"{evidence}", truncate(p.Evidence, maxSummaryEvidence),
	).Replace(tmpl)
	// A template ending in ": {evidence}" with no evidence.
	return strings.TrimSuffix(out, ": ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
