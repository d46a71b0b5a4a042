package reconcile

import (
	"slices"
	"strings"
	"sync"
)

// Store keeps the latest observation of every app and source. Adapters write into it
// (it is an AppSink and a SourceReporter); checks and sinks read consistent snapshots.
type Store struct {
	mu      sync.RWMutex
	apps    map[AppKey]App
	sources map[string]SourceStatus
	changed chan struct{}
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
		apps:    map[AppKey]App{},
		sources: map[string]SourceStatus{},
		changed: make(chan struct{}, 1),
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

// Changed is signalled (coalesced) after any change, so an evaluator can re-run at once.
func (s *Store) Changed() <-chan struct{} { return s.changed }

func (s *Store) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Snapshot is a consistent copy of the store.
type Snapshot struct {
	Apps    []App
	Sources []SourceStatus
}

// Snapshot returns the apps sorted by key and the sources sorted by name.
func (s *Store) Snapshot() Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap := Snapshot{Apps: make([]App, 0, len(s.apps)), Sources: make([]SourceStatus, 0, len(s.sources))}
	for _, a := range s.apps {
		a.Objects = slices.Clone(a.Objects)
		snap.Apps = append(snap.Apps, a)
	}
	for _, src := range s.sources {
		snap.Sources = append(snap.Sources, src)
	}
	slices.SortFunc(snap.Apps, func(a, b App) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	slices.SortFunc(snap.Sources, func(a, b SourceStatus) int { return strings.Compare(a.Name, b.Name) })
	return snap
}

// App returns one app.
func (s *Store) App(k AppKey) (App, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.apps[k]
	return a, ok
}
