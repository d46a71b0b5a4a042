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
	clocks  map[string]*clockEstimator // per istiod, as istiods
	nacks   []NACKEvent
	changes map[ObjectRef]*trackedChange
	// open holds the changes not propagated yet, the ones Evaluate visits; swept is when
	// it last looked through all changes for those past their Retention.
	open  map[ObjectRef]*trackedChange
	swept time.Time
	// index holds each istiod view prepared for evaluation (index.go), made when first
	// needed after a read; ids numbers the proxies they hold.
	index map[string]*viewIndex
	ids   *proxyIDs
	// nackSeq versions the streamed NACKs of each istiod (see evalInput).
	nackSeq map[string]uint64
	// seq counts istiod evidence (views, NACKs, reachability), so that changes in a final
	// state are evaluated again only when there is something new.
	seq         uint64
	inFlight    bool // as of the last Evaluate
	newInFlight bool // a change was first evaluated by the last Evaluate
	// transitions counts the state changes Evaluate has made, for callers that act only
	// when a verdict moved (Transitions).
	transitions uint64
	changed     chan struct{}
	// ver versions what Snapshot returns, part by part; cache holds the parts of the last
	// Snapshot. An idle fleet's snapshot then costs a few slice headers instead of a copy
	// of every app, change and proxy (BenchmarkSnapshotFleet).
	ver   storeVersions
	cache snapshotCache
}

// storeVersions counts the writes to each part of a snapshot.
type storeVersions struct {
	// apps, changes and sources count every write that changed them; istiods counts
	// every read, istiodContent only reads whose content differed (sameView).
	apps, changes, istiods, istiodContent, sources uint64
}

// snapshotCache is the last Snapshot's parts and the versions they were built at.
type snapshotCache struct {
	built   bool
	at      storeVersions
	apps    []App
	sources []SourceStatus
	istiods []IstiodView
	changes []Propagation
	rollup  []Rollup
	owners  *appOwners // of apps
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
		clocks:   map[string]*clockEstimator{},
		changes:  map[ObjectRef]*trackedChange{},
		open:     map[ObjectRef]*trackedChange{},
		index:    map[string]*viewIndex{},
		ids:      &proxyIDs{},
		nackSeq:  map[string]uint64{},
		changed:  make(chan struct{}, 1),
	}
}

// ObserveApp records the latest state of an app.
// A read that repeats what is held (Argo CD rewrites every Application's status at each
// refresh, every 3 minutes by default, mostly to move reconciledAt) keeps the earlier
// one, with the time it was first read, and wakes nobody.
func (s *Store) ObserveApp(a App) {
	s.mu.Lock()
	if prev, ok := s.apps[a.Key]; ok && sameApp(prev, a) {
		s.mu.Unlock()
		return
	}
	s.apps[a.Key] = a
	s.ver.apps++
	s.mu.Unlock()
	s.notify()
}

// ForgetApp removes a deleted app.
func (s *Store) ForgetApp(k AppKey) {
	s.mu.Lock()
	delete(s.apps, k)
	s.ver.apps++
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
	s.ver.sources++
	s.seq++
	s.mu.Unlock()
	s.notify()
}

// ObserveIstiod replaces what is known from one istiod, and bounds its clock offset from
// this read and the previous one.
func (s *Store) ObserveIstiod(v IstiodView) {
	s.mu.Lock()
	est := s.clocks[v.Istiod]
	if est == nil {
		est = &clockEstimator{}
		s.clocks[v.Istiod] = est
	}
	var prev *IstiodView
	if p, ok := s.istiods[v.Istiod]; ok {
		prev = &p
	}
	v.ClockOffset = est.observe(prev, v)
	v.ClockProblem = v.ClockOffset.Problem()
	s.istiods[v.Istiod] = v
	s.ver.istiods++
	if prev == nil || !sameView(*prev, v) {
		s.ver.istiodContent++
	}
	delete(s.index, v.Istiod)
	s.seq++
	s.mu.Unlock()
	s.notify()
}

// ForgetIstiod drops an istiod that no longer exists.
func (s *Store) ForgetIstiod(name string) {
	s.mu.Lock()
	delete(s.istiods, name)
	delete(s.index, name)
	delete(s.clocks, name)
	delete(s.sources, "istiod/"+name)
	s.ver.istiods++
	s.ver.istiodContent++
	s.ver.sources++
	s.seq++
	s.mu.Unlock()
	s.notify()
}

// ObserveNACK records a NACK streamed by istiod.
func (s *Store) ObserveNACK(n NACKEvent) {
	s.mu.Lock()
	s.nacks = append(s.nacks, n)
	s.nackSeq[n.Istiod]++
	if len(s.nacks) > maxNACKEvents {
		// Drop the oldest quarter at once, so a NACK storm does not copy on every event.
		s.nacks = slices.Delete(s.nacks, 0, len(s.nacks)-maxNACKEvents*3/4)
		s.nacksDroppedLocked()
	}
	s.seq++
	s.mu.Unlock()
	s.notify()
}

// ObserveMeshChange starts tracking a change; it supersedes the object's previous change,
// which is dropped, as it is when the object is deleted (the deletion is then the change
// tracked, for Retention at most). A change already held (same generation, or same
// resourceVersion for kinds without one) is a repeat, e.g. from a relist, and keeps its
// outcome; an older generation than the one held is late news and is ignored.
func (s *Store) ObserveMeshChange(c MeshChange) {
	s.mu.Lock()
	if prev, ok := s.changes[c.Ref]; ok && repeatOrOlder(prev.change, c) {
		s.mu.Unlock()
		return
	}
	tc := &trackedChange{change: c, settled: settledAtStart(c, s.started, s.cfg.Grace),
		result: Propagation{Change: c, State: PropagationPending, Since: c.ObservedAt}}
	s.changes[c.Ref] = tc
	s.open[c.Ref] = tc
	s.ver.changes++
	if len(s.changes) > s.cfg.MaxChanges {
		s.evictLocked()
	}
	s.mu.Unlock()
	s.notify()
}

// repeatOrOlder reports whether c says nothing newer than prev about the same object.
func repeatOrOlder(prev, c MeshChange) bool {
	if prev.Deleted != c.Deleted {
		return false
	}
	if prev.Generation != 0 && c.Generation != 0 {
		return c.Generation <= prev.Generation
	}
	return c.ResourceVersion != "" && c.ResourceVersion == prev.ResourceVersion
}

// evictLocked drops changes down to nine tenths of MaxChanges (so that a flood does not
// sort on every change): propagated ones first, oldest first, then the rest, oldest first.
func (s *Store) evictLocked() {
	type victim struct {
		ref             ObjectRef
		resolved        bool
		since, observed time.Time
	}
	all := make([]victim, 0, len(s.changes))
	for ref, tc := range s.changes {
		all = append(all, victim{ref, tc.resolved, tc.result.Since, tc.change.ObservedAt})
	}
	slices.SortFunc(all, func(a, b victim) int {
		if a.resolved != b.resolved {
			if a.resolved {
				return -1
			}
			return 1
		}
		if c := a.since.Compare(b.since); c != 0 {
			return c
		}
		return a.observed.Compare(b.observed)
	})
	keep := s.cfg.MaxChanges * 9 / 10
	for _, v := range all[:len(all)-keep] {
		delete(s.changes, v.ref)
		delete(s.open, v.ref)
	}
	s.ver.changes++
}

// Changed is signalled (coalesced) after any change, so an evaluator can re-run at once.
func (s *Store) Changed() <-chan struct{} { return s.changed }

func (s *Store) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Evaluate recomputes the propagation of tracked changes as of now and reports whether
// any is unresolved (not propagated); InFlight then says whether istiod should be read
// faster. Changes in a final state (NACKed, Stale, NotPushed) are evaluated again only
// when istiod reported something since, at most every Recheck; propagated ones are kept
// as they are for Retention.
func (s *Store) Evaluate(now time.Time) (unresolved bool) {
	type transition struct {
		prev, next Propagation
		baseline   bool
	}
	var transitions []transition
	s.mu.Lock()
	var in *evalInput // made when a change needs evaluating
	inFlight, started := false, false
	// Expired changes are swept from all of them at most every sweepEvery; the pass
	// itself visits the open ones: an idle fleet holds thousands of propagated changes,
	// and visiting each every second was most of an idle meshdrift's CPU.
	if sweep := min(s.cfg.Retention/10, maxSweepEvery); now.Sub(s.swept) >= sweep || now.Before(s.swept) {
		s.swept = now
		for ref, tc := range s.changes {
			if s.expired(tc, now) {
				delete(s.changes, ref)
				delete(s.open, ref)
				s.ver.changes++
			}
		}
	}
	for ref, tc := range s.open {
		if tc.resolved || s.expired(tc, now) {
			if !tc.resolved {
				delete(s.changes, ref)
				s.ver.changes++
			}
			delete(s.open, ref)
			continue
		}
		if final(tc.result.State) && (tc.evaluatedSeq == s.seq || now.Sub(tc.evaluatedAt) < s.cfg.Recheck) {
			unresolved = true
			continue
		}
		if s.pendingStands(tc, now) {
			// Nothing new from istiod, and no deadline passed: the verdict stands.
			unresolved, inFlight = true, true
			continue
		}
		if in == nil {
			in = s.evalInputLocked()
		}
		tc.evaluatedAt, tc.evaluatedSeq = now, s.seq
		next := tc.evaluateIn(s.cfg, in, now)
		prev := tc.result
		if next.State == prev.State {
			next.Since = prev.Since
		} else {
			next.Since = now
			transitions = append(transitions, transition{prev, next, isBaseline(tc.change)})
		}
		if !samePropagation(prev, next) {
			s.ver.changes++
		}
		tc.result = next
		tc.resolved = next.State == PropagationPropagated
		if tc.resolved {
			delete(s.open, ref)
		}
		if tc.resolved || final(next.State) {
			// Only a change in flight needs its first pushes, for its latency: one that
			// went NACKed, Stale or NotPushed measures it, should it propagate after all,
			// from the pushes it sees then. That bounds what they take to the changes in
			// flight, 12 bytes per proxy each.
			tc.firstAt, tc.firstEval, tc.firstCount, tc.parts = nil, nil, 0, nil
		}
		unresolved = unresolved || !tc.resolved
		if next.State == PropagationPending && now.Sub(tc.change.ObservedAt) < s.cfg.Grace {
			inFlight = true
			started = started || tc.evals == 1
		}
	}
	s.inFlight, s.newInFlight = inFlight, started
	s.transitions += uint64(len(transitions))
	s.pruneNACKsLocked(now)
	s.mu.Unlock()
	if s.observer != nil {
		for _, t := range transitions {
			s.observer.PropagationChanged(t.prev, t.next, t.baseline)
		}
	}
	return unresolved
}

// maxSweepEvery bounds how late a change past its Retention is dropped.
const maxSweepEvery = time.Minute

// expired reports whether a change is past its Retention: propagated ones from when they
// propagated, deletions from when they were seen.
func (s *Store) expired(tc *trackedChange, now time.Time) bool {
	return (tc.resolved && now.Sub(tc.result.Since) > s.cfg.Retention) ||
		(tc.change.Deleted && now.Sub(tc.change.ObservedAt) > s.cfg.Retention)
}

// InFlight reports whether the last Evaluate found a change in flight: pending within its
// grace period, when reading istiod faster shows its propagation sooner. Changes in a
// final state wait for istiod, not for meshdrift, and are not in flight. started says a
// change was evaluated for the first time: a read of istiod now, before istiod's debounce
// ends and it pushes, brackets the push closely and so places it on meshdrift's clock
// (clock.go).
func (s *Store) InFlight() (inFlight, started bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.inFlight, s.newInFlight
}

// pendingStands reports whether a pending change's verdict as of its last evaluation
// still stands at now, with no news from istiod since: the verdict changes with time
// only when the hold on an ambiguous push ends and when the grace period does.
func (s *Store) pendingStands(tc *trackedChange, now time.Time) bool {
	if tc.evals == 0 || tc.evaluatedSeq != s.seq || tc.result.State != PropagationPending || now.Before(tc.evaluatedAt) {
		return false
	}
	for _, d := range []time.Duration{min(s.cfg.Grace, ambiguousHold), s.cfg.Grace} {
		if at := tc.change.ObservedAt.Add(d); tc.evaluatedAt.Before(at) && !now.Before(at) {
			return false
		}
	}
	return true
}

// evalInputLocked prepares the istiod views for evaluation, reusing the indexes of views
// not read again since. Proxies are numbered again once those numbered outnumber the
// connected ones twice over (pods come and go), keeping what changes hold of the
// connected ones.
func (s *Store) evalInputLocked() *evalInput {
	live := 0
	for _, v := range s.istiods {
		live += len(v.Proxies)
	}
	if s.ids.len() > 2*live+64 {
		s.renumberLocked()
	}
	in := newEvalInput(s.istiods, latestNACKs(s.nacks), s.downIstiodsLocked(), s.ids, s.index)
	in.nackSeq = s.nackSeq
	return in
}

// renumberLocked numbers the connected proxies afresh and moves the first pushes
// changes hold to the new numbers.
func (s *Store) renumberLocked() {
	old := s.ids
	s.ids = &proxyIDs{}
	to := make([]int32, old.len())
	for i := range to {
		to[i] = -1
	}
	for name, v := range s.istiods {
		for _, px := range v.Proxies {
			k := proxyKey{name, px.ID}
			if o, ok := old.m[k]; ok {
				to[o] = s.ids.id(k)
			}
		}
	}
	for _, tc := range s.changes {
		if tc.firstAt == nil {
			continue
		}
		at, eval := make([]int64, s.ids.len()), make([]uint32, s.ids.len())
		for o, n := range to {
			if n >= 0 && o < len(tc.firstAt) {
				at[n], eval[n] = tc.firstAt[o], tc.firstEval[o]
			}
		}
		tc.firstAt, tc.firstEval = at, eval
	}
	// Indexes hold the old numbers.
	clear(s.index)
}

// latestNACKs is each proxy's latest NACK: a change counts a proxy's NACK when one came
// after it, which the latest tells, at the cost of one lookup per proxy.
func latestNACKs(events []NACKEvent) map[proxyKey]NACKEvent {
	out := make(map[proxyKey]NACKEvent, len(events))
	for _, n := range events {
		out[proxyKey{n.Istiod, n.Proxy}] = n
	}
	return out
}

// final reports a state that stays until istiod reports something new.
func final(st PropagationState) bool {
	return st == PropagationNACKed || st == PropagationStale || st == PropagationNotPushed
}

// pruneNACKsLocked drops streamed NACKs older than any change they could count against.
func (s *Store) pruneNACKsLocked(now time.Time) {
	cut := now.Add(-s.cfg.Retention)
	i := 0
	for i < len(s.nacks) && s.nacks[i].At.Before(cut) {
		i++
	}
	if i > 0 {
		s.nacks = slices.Delete(s.nacks, 0, i)
		s.nacksDroppedLocked()
	}
}

// nacksDroppedLocked versions every istiod's NACKs anew after old ones were dropped.
func (s *Store) nacksDroppedLocked() {
	for k := range s.nackSeq {
		s.nackSeq[k]++
	}
}

// storeSize is what the store holds that grows with the mesh's activity.
type storeSize struct{ changes, firstPush, maxFirstPush, firstPushCap, proxyIDs, nacks, istiods int }

func (s *Store) size() storeSize {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := storeSize{changes: len(s.changes), nacks: len(s.nacks), istiods: len(s.istiods) + len(s.clocks), proxyIDs: s.ids.len()}
	for _, tc := range s.changes {
		fp := tc.firstPushes()
		n.firstPush += fp
		n.maxFirstPush = max(n.maxFirstPush, fp)
		n.firstPushCap = max(n.firstPushCap, len(tc.firstAt))
	}
	return n
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
	// Pods are every pod's metadata, when the caller fills them from a pod metadata
	// lister; nil otherwise.
	Pods []PodMeta
	// RevisionTags are Istio's revision tags, sorted by tag, when the caller fills them
	// from a webhook lister; nil while they are not known (an empty slice: no tags).
	RevisionTags []RevisionTag
	// Unsynced names the caller's sources that have not completed their first read. A
	// source that has never answered may not have reported itself at all yet; judging
	// the mesh against the apps read so far would call its objects unowned.
	Unsynced []string
	// Checks is the latest run of the semantic checks, when the caller fills it; nil
	// otherwise.
	Checks *CheckRun
	// Versions identifies the content of the parts above, for callers that skip work
	// when nothing changed; nil when unknown (a snapshot put together by hand).
	Versions *Versions
}

// Versions identifies a snapshot's content: two snapshots with equal Versions hold the
// same apps, sources, changes, roll-ups and objects, and istiod views that differ at most
// in their read times (sameView). The store fills in its parts; a caller that adds
// objects, namespaces, pods, revision tags, unsynced sources or checks must fill in
// theirs, or set Versions to nil.
type Versions struct {
	Apps, Changes, Istiods, Sources         uint64
	Objects, Namespaces, Pods, RevisionTags uint64
	Unsynced                                string
	ChecksAt                                time.Time
	ChecksWaiting                           string
}

// Snapshot returns everything sorted by key. Its slices are shared with the store's
// other snapshots until the part they belong to changes: callers must not modify them.
func (s *Store) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.cache
	v := s.ver
	if !c.built || c.at.apps != v.apps {
		c.apps = make([]App, 0, len(s.apps))
		for _, a := range s.apps {
			c.apps = append(c.apps, a)
		}
		sortByKey(c.apps, func(a App) string { return a.Key.String() })
		c.owners = newAppOwners(c.apps)
	}
	if !c.built || c.at.sources != v.sources {
		c.sources = make([]SourceStatus, 0, len(s.sources))
		for _, src := range s.sources {
			c.sources = append(c.sources, src)
		}
		slices.SortFunc(c.sources, func(a, b SourceStatus) int { return strings.Compare(a.Name, b.Name) })
	}
	if !c.built || c.at.istiods != v.istiods {
		c.istiods = make([]IstiodView, 0, len(s.istiods))
		for _, iv := range s.istiods {
			c.istiods = append(c.istiods, iv)
		}
		slices.SortFunc(c.istiods, func(a, b IstiodView) int { return strings.Compare(a.Istiod, b.Istiod) })
	}
	if !c.built || c.at.changes != v.changes {
		c.changes = make([]Propagation, 0, len(s.changes))
		for _, tc := range s.changes {
			c.changes = append(c.changes, tc.result)
		}
		sortByKey(c.changes, func(p Propagation) string { return p.Change.Ref.String() })
	}
	if !c.built || c.at.apps != v.apps || c.at.changes != v.changes {
		c.rollup = c.owners.rollup(c.apps, c.changes)
	}
	c.built, c.at = true, v
	return Snapshot{
		Apps: c.apps, Sources: c.sources, Istiods: c.istiods, Changes: c.changes, Propagation: c.rollup,
		Versions: &Versions{Apps: v.apps, Changes: v.changes, Istiods: v.istiodContent, Sources: v.sources},
	}
}

// rollupByApp rolls changes up per app that owns them (ownedBy), in the order of apps,
// each app's changes in their order. Owners are looked up in an index of the apps'
// objects and keys: comparing every app with every change is quadratic at fleet scale
// (5,000 apps and 10,000 changes held).
func rollupByApp(apps []App, changes []Propagation) []Rollup {
	return newAppOwners(apps).rollup(apps, changes)
}

// appOwners indexes apps (by their position in a slice) by the objects they list and
// by their names, for the owners of a change. The store keeps it while the apps do not
// change: changes move many times a second while one is in flight, apps seldom.
type appOwners struct {
	byObject map[ObjectRef][]int32
	byName   map[ownerName][]int32
}

type ownerName struct {
	source     Source
	kind, name string
}

func newAppOwners(apps []App) *appOwners {
	n := 0
	for _, a := range apps {
		n += len(a.Objects)
	}
	ix := &appOwners{byObject: make(map[ObjectRef][]int32, n), byName: make(map[ownerName][]int32, len(apps))}
	for i, a := range apps {
		for _, o := range a.Objects {
			if l := ix.byObject[o.Ref]; len(l) == 0 || l[len(l)-1] != int32(i) {
				ix.byObject[o.Ref] = append(l, int32(i))
			}
		}
		k := ownerName{a.Key.Source, a.Key.Kind, a.Key.Name}
		ix.byName[k] = append(ix.byName[k], int32(i))
	}
	return ix
}

// rollup rolls changes up over apps, which ix indexes.
func (ix *appOwners) rollup(apps []App, changes []Propagation) []Rollup {
	type owned struct{ app, change int32 }
	pairs := make([]owned, 0, len(changes))
	var owners []int32
	for j, p := range changes {
		owners = append(owners[:0], ix.byObject[p.Change.Ref]...)
		if o := p.Change.GitOpsOwner; o.Name != "" {
			owners = append(owners, ix.byName[ownerName{o.Source, o.Kind, o.Name}]...)
		}
		slices.Sort(owners)
		owners = slices.Compact(owners)
		for _, i := range owners {
			// The index narrows; ownedBy decides, so both keep one rule.
			if ownedBy(p.Change, apps[i]) {
				pairs = append(pairs, owned{i, int32(j)})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b owned) int {
		if a.app != b.app {
			return int(a.app - b.app)
		}
		return int(a.change - b.change)
	})
	var out []Rollup
	var props []Propagation // reused: rollup keeps none of it
	for k := 0; k < len(pairs); {
		i := pairs[k].app
		props = props[:0]
		for ; k < len(pairs) && pairs[k].app == i; k++ {
			props = append(props, changes[pairs[k].change])
		}
		out = append(out, rollup(apps[i], props))
	}
	return out
}

// sortByKey sorts s by a string key computed once per element.
func sortByKey[T any](s []T, key func(T) string) {
	keys := make([]string, len(s))
	idx := make([]int, len(s))
	for i, v := range s {
		keys[i], idx[i] = key(v), i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	sorted := make([]T, len(s))
	for i, j := range idx {
		sorted[i] = s[j]
	}
	copy(s, sorted)
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

// Transitions returns how many state changes Evaluate has made so far: a caller that saw
// the same number before knows no verdict moved since.
func (s *Store) Transitions() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.transitions
}

// Restrictions returns the restriction of every istiod whose view is partial, by istiod:
// what /readyz tells, without the cost of a Snapshot.
func (s *Store) Restrictions() map[string]ViewRestriction {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string]ViewRestriction{}
	for name, v := range s.istiods {
		if v.Restriction != nil {
			out[name] = *v.Restriction
		}
	}
	return out
}

// App returns one app.
func (s *Store) App(k AppKey) (App, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.apps[k]
	return a, ok
}
