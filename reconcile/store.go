package reconcile

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// maxNACKEvents bounds the streamed NACKs kept between polls.
const maxNACKEvents = 1000

// PropagationObserver is told when a change's propagation state changes, e.g. to record
// the latency histogram. Baseline is true for objects that already existed when meshdrift
// started, whose "latency" would only measure meshdrift's own start.
type PropagationObserver interface {
	PropagationChanged(prev, next Propagation, baseline bool)
}

// Store keeps the latest observation of every app, source, istiod and mesh object change,
// and the propagation outcome of each change. Adapters write into it (it is an AppSink, a
// SourceReporter, a ProxySink and a MeshSink); the evaluator and sinks read snapshots.
type Store struct {
	cfg      PropagationConfig
	observer PropagationObserver
	started  time.Time

	mu      sync.RWMutex
	apps    map[AppKey]App
	sources map[string]SourceStatus
	istiods map[string]IstiodView
	nacks   []NACKEvent
	changes map[ObjectRef]*trackedChange
	changed chan struct{}
}

// NewStore returns an empty store. observer may be nil.
func NewStore(cfg PropagationConfig, observer PropagationObserver) *Store {
	return &Store{
		cfg:      cfg.withDefaults(),
		observer: observer,
		started:  time.Now(),
		apps:     map[AppKey]App{},
		sources:  map[string]SourceStatus{},
		istiods:  map[string]IstiodView{},
		changes:  map[ObjectRef]*trackedChange{},
		changed:  make(chan struct{}, 1),
	}
}

// ObserveApp records the latest state of an app.
func (s *Store) ObserveApp(a App) {
	s.mu.Lock()
	s.apps[a.Key] = a
	s.mu.Unlock()
	s.notify()
}

// ForgetApp removes a deleted app.
func (s *Store) ForgetApp(k AppKey) {
	s.mu.Lock()
	delete(s.apps, k)
	s.mu.Unlock()
	s.notify()
}

// ReportSource records a source's reachability.
func (s *Store) ReportSource(st SourceStatus) {
	s.mu.Lock()
	prev, ok := s.sources[st.Name]
	if ok && prev.Up == st.Up && prev.Error == st.Error {
		s.mu.Unlock()
		return
	}
	s.sources[st.Name] = st
	s.mu.Unlock()
	s.notify()
}

// ObserveIstiod replaces what is known from one istiod.
func (s *Store) ObserveIstiod(v IstiodView) {
	s.mu.Lock()
	s.istiods[v.Istiod] = v
	s.mu.Unlock()
	s.notify()
}

// ForgetIstiod drops an istiod that no longer exists.
func (s *Store) ForgetIstiod(name string) {
	s.mu.Lock()
	delete(s.istiods, name)
	delete(s.sources, "istiod/"+name)
	s.mu.Unlock()
	s.notify()
}

// ObserveNACK records a NACK streamed by istiod.
func (s *Store) ObserveNACK(n NACKEvent) {
	s.mu.Lock()
	s.nacks = append(s.nacks, n)
	if len(s.nacks) > maxNACKEvents {
		s.nacks = slices.Clone(s.nacks[len(s.nacks)-maxNACKEvents:])
	}
	s.mu.Unlock()
	s.notify()
}

// ObserveMeshChange starts tracking a change; it supersedes the object's previous change.
// A change already held (same generation, or same resourceVersion for kinds without one)
// is a repeat, e.g. from a relist, and keeps its outcome.
func (s *Store) ObserveMeshChange(c MeshChange) {
	s.mu.Lock()
	if prev, ok := s.changes[c.Ref]; ok && prev.change.Deleted == c.Deleted &&
		((c.Generation != 0 && prev.change.Generation == c.Generation) || prev.change.ResourceVersion == c.ResourceVersion) {
		s.mu.Unlock()
		return
	}
	s.changes[c.Ref] = &trackedChange{change: c, settled: settledAtStart(c, s.started, s.cfg.Grace),
		result: Propagation{Change: c, State: PropagationPending, Since: c.ObservedAt}}
	s.mu.Unlock()
	s.notify()
}

// Changed is signalled (coalesced) after any change, so an evaluator can re-run at once.
func (s *Store) Changed() <-chan struct{} { return s.changed }

func (s *Store) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Evaluate recomputes the propagation of every tracked change as of now and reports
// whether any is still unresolved (pending), so the caller can poll istiod faster.
func (s *Store) Evaluate(now time.Time) (unresolved bool) {
	type transition struct {
		prev, next Propagation
		baseline   bool
	}
	var transitions []transition
	s.mu.Lock()
	down := s.downIstiodsLocked()
	for ref, tc := range s.changes {
		if tc.resolved {
			if now.Sub(tc.result.Since) > s.cfg.Retention {
				delete(s.changes, ref)
			}
			continue
		}
		next := tc.evaluate(s.cfg, s.istiods, s.nacks, down, now)
		prev := tc.result
		if next.State == prev.State {
			next.Since = prev.Since
		} else {
			next.Since = now
			transitions = append(transitions, transition{prev, next, isBaseline(tc.change)})
		}
		tc.result = next
		tc.resolved = next.State == PropagationPropagated
		if !tc.resolved {
			unresolved = true
		}
	}
	s.mu.Unlock()
	if s.observer != nil {
		for _, t := range transitions {
			s.observer.PropagationChanged(t.prev, t.next, t.baseline)
		}
	}
	return unresolved
}

func (s *Store) downIstiodsLocked() []string {
	var down []string
	for name, st := range s.sources {
		if strings.HasPrefix(name, "istiod/") && !st.Up {
			down = append(down, strings.TrimPrefix(name, "istiod/"))
		}
	}
	slices.Sort(down)
	return down
}

// Snapshot is a consistent copy of the store.
type Snapshot struct {
	Apps    []App
	Sources []SourceStatus
	Istiods []IstiodView
	// Changes is the latest propagation of every tracked mesh object change.
	Changes []Propagation
	// Propagation rolls Changes up per GitOps app and revision.
	Propagation []Rollup
	// Objects is every mesh object that exists (its latest change), sorted by Ref, when
	// the caller fills it from a MeshObjects; nil otherwise. Changes drop out after
	// Retention, Objects stay while the object exists.
	Objects []MeshChange
	// Namespaces are the namespaces with their labels, when the caller fills them from a
	// namespace lister; nil otherwise.
	Namespaces []Namespace
}

// Snapshot returns everything sorted by key.
func (s *Store) Snapshot() Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := Snapshot{
		Apps:    make([]App, 0, len(s.apps)),
		Sources: make([]SourceStatus, 0, len(s.sources)),
		Istiods: make([]IstiodView, 0, len(s.istiods)),
		Changes: make([]Propagation, 0, len(s.changes)),
	}
	for _, a := range s.apps {
		a.Objects = slices.Clone(a.Objects)
		snap.Apps = append(snap.Apps, a)
	}
	for _, src := range s.sources {
		snap.Sources = append(snap.Sources, src)
	}
	for _, v := range s.istiods {
		v.Proxies = slices.Clone(v.Proxies)
		snap.Istiods = append(snap.Istiods, v)
	}
	for _, tc := range s.changes {
		p := tc.result
		p.Proxies = slices.Clone(p.Proxies)
		snap.Changes = append(snap.Changes, p)
	}
	slices.SortFunc(snap.Apps, func(a, b App) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	slices.SortFunc(snap.Sources, func(a, b SourceStatus) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(snap.Istiods, func(a, b IstiodView) int { return strings.Compare(a.Istiod, b.Istiod) })
	slices.SortFunc(snap.Changes, func(a, b Propagation) int {
		return strings.Compare(a.Change.Ref.String(), b.Change.Ref.String())
	})
	for _, a := range snap.Apps {
		var props []Propagation
		for _, p := range snap.Changes {
			if ownedBy(p.Change, a) {
				props = append(props, p)
			}
		}
		if len(props) > 0 {
			snap.Propagation = append(snap.Propagation, rollup(a, props))
		}
	}
	return snap
}

// ownedBy reports whether app a manages the changed object: it lists it among its objects,
// or the object's tracking label/annotation names it. Label tracking (Argo CD's
// app.kubernetes.io/instance) does not carry the app's namespace, so an empty namespace
// matches by name.
func ownedBy(c MeshChange, a App) bool {
	o := c.GitOpsOwner
	if o.Name != "" && o.Source == a.Key.Source && o.Kind == a.Key.Kind && o.Name == a.Key.Name &&
		(o.Namespace == "" || o.Namespace == a.Key.Namespace) {
		return true
	}
	for _, obj := range a.Objects {
		if obj.Ref == c.Ref {
			return true
		}
	}
	return false
}

// App returns one app.
func (s *Store) App(k AppKey) (App, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.apps[k]
	return a, ok
}
