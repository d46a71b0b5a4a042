package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdrift/meshdrift/reconcile"
)

// DefaultDiscoveryInterval is how often the API server is asked again which mesh kinds
// it serves, when Config.DiscoveryInterval is zero.
const DefaultDiscoveryInterval = time.Minute

// Config configures a Watcher.
type Config struct {
	// Resync replays the informer caches to the handlers at this period. A replay never
	// yields a change, since nothing moved; 0 (the default) turns it off.
	Resync time.Duration
	// DiscoveryInterval is how often discovery is read again, so that a CRD installed
	// later is watched, a removed one is dropped and a kind that gains a v1 moves to it.
	// 0 means DefaultDiscoveryInterval.
	DiscoveryInterval time.Duration
	// RootNamespace is Istio's root namespace (meshConfig.rootNamespace), where workload
	// policies apply mesh-wide; "" means DefaultRootNamespace.
	RootNamespace string
}

// Watcher watches the mesh kinds the API server serves and reports each spec change,
// creation and deletion as a reconcile.MeshChange.
type Watcher struct {
	cfg     Config
	dyn     dynamic.Interface
	disco   discovery.DiscoveryInterface
	sink    reconcile.MeshSink
	status  *sourceStatus
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time

	started atomic.Bool
	// startedAt is when Run began: objects of a first list written before it are the
	// baseline. Set before any informer runs.
	startedAt time.Time
	// poke asks Run for a discovery round ahead of the interval.
	poke chan struct{}

	mu sync.Mutex
	// discovered is set by the first discovery round that read every mesh group.
	discovered bool
	kinds      map[schema.GroupKind]*kindWatch
	// versions count each kind's changes (Version). A kind's counter outlives its
	// informer, so that the sum over kinds never goes back when a kind is dropped;
	// kindsVersion counts the kinds started and stopped.
	versions     map[schema.GroupKind]*atomic.Uint64
	kindsVersion atomic.Uint64
}

// kindWatch is the informer of one mesh kind.
type kindWatch struct {
	gvr      schema.GroupVersionResource
	informer cache.SharedIndexInformer
	handler  cache.ResourceEventHandlerRegistration
	cancel   context.CancelFunc
	done     chan struct{}
}

// New builds a Watcher. reg may be nil (no metrics exported), log may be nil (no logs).
func New(cfg Config, dyn dynamic.Interface, dc discovery.DiscoveryInterface, sink reconcile.MeshSink, src reconcile.SourceReporter, reg prometheus.Registerer, log *slog.Logger) (*Watcher, error) {
	switch {
	case dyn == nil || dc == nil:
		return nil, errors.New("mesh watcher: dynamic and discovery clients are required")
	case sink == nil || src == nil:
		return nil, errors.New("mesh watcher: mesh sink and source reporter are required")
	case cfg.Resync < 0 || cfg.DiscoveryInterval < 0:
		return nil, errors.New("mesh watcher: resync and discovery interval must not be negative")
	}
	if cfg.DiscoveryInterval == 0 {
		cfg.DiscoveryInterval = DefaultDiscoveryInterval
	}
	if cfg.RootNamespace == "" {
		cfg.RootNamespace = DefaultRootNamespace
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("mesh watcher: %w", err)
	}
	w := &Watcher{
		cfg:     cfg,
		dyn:     dyn,
		disco:   dc,
		sink:    sink,
		metrics: m,
		log:     log.With("adapter", SourceName),
		now:     time.Now,
		poke:    make(chan struct{}, 1),
		kinds:   map[schema.GroupKind]*kindWatch{},
	}
	w.versions = map[schema.GroupKind]*atomic.Uint64{}
	w.status = newSourceStatus(src, func() time.Time { return w.now() })
	return w, nil
}

// Run reads discovery, watches the mesh kinds found, and reads discovery again every
// DiscoveryInterval, until ctx ends. Failures are reported as the "mesh" source being
// down and retried, never returned: Run returns nil when ctx ends, and an error only when
// called a second time.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("mesh watcher: already run")
	}
	w.startedAt = w.now()
	defer w.stopAll()
	ticker := time.NewTicker(w.cfg.DiscoveryInterval)
	defer ticker.Stop()
	for {
		w.rediscover(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-w.poke:
		}
	}
}

// HasSynced reports whether discovery has been read and every watched kind's initial list
// has been delivered to the sink. A kind that starts to be watched later (its CRD was
// installed) makes it false until that kind's list is delivered.
func (w *Watcher) HasSynced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.discovered {
		return false
	}
	for _, kw := range w.kinds {
		if !kw.handler.HasSynced() {
			return false
		}
	}
	return true
}

// Watched returns the resources currently watched, one version per kind, sorted.
func (w *Watcher) Watched() []schema.GroupVersionResource {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]schema.GroupVersionResource, 0, len(w.kinds))
	for _, kw := range w.kinds {
		out = append(out, kw.gvr)
	}
	slices.SortFunc(out, func(a, b schema.GroupVersionResource) int {
		return strings.Compare(a.String(), b.String())
	})
	return out
}

// rediscover reads discovery and starts, stops or switches informers to match it. Only
// Run calls it, so rounds never overlap.
func (w *Watcher) rediscover(ctx context.Context) {
	d, err := discover(w.disco)
	if err != nil {
		w.log.Warn("reading discovery failed; watches of the affected groups are left as they are", "err", err)
	}
	w.status.setDiscovery(err)

	var stopped []schema.GroupKind
	var stopping []*kindWatch
	w.mu.Lock()
	for gk, kw := range w.kinds {
		if d.FailedGroups[gk.Group] {
			continue
		}
		if gvr, ok := d.Resources[gk]; ok && gvr == kw.gvr {
			continue
		}
		kw.cancel()
		delete(w.kinds, gk)
		w.kindsVersion.Add(1)
		stopped, stopping = append(stopped, gk), append(stopping, kw)
		w.log.Info("no longer watching mesh kind", "kind", gk.String(), "resource", kw.gvr.String())
	}
	w.mu.Unlock()
	// After done, no handler of the old informer runs, so its watch error cannot come back.
	for i, kw := range stopping {
		<-kw.done
		w.status.setWatch(stopped[i], nil)
		w.metrics.objects.DeleteLabelValues(SourceName, stopped[i].String())
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	for gk, gvr := range d.Resources {
		if _, ok := w.kinds[gk]; ok {
			continue
		}
		kw, startErr := w.startKind(ctx, gk, gvr)
		if startErr != nil {
			w.log.Error("cannot watch mesh kind", "kind", gk.String(), "err", startErr)
			w.status.setWatch(gk, startErr)
			continue
		}
		w.kinds[gk] = kw
		w.kindsVersion.Add(1)
		w.countObjects(gk, kw.informer)
		w.log.Info("watching mesh kind", "kind", gk.String(), "resource", gvr.String())
	}
	if err == nil && ctx.Err() == nil {
		w.discovered = true
	}
}

func (w *Watcher) stopAll() {
	w.mu.Lock()
	kinds := w.kinds
	w.kinds = map[schema.GroupKind]*kindWatch{}
	w.mu.Unlock()
	for _, kw := range kinds {
		kw.cancel()
	}
	for gk, kw := range kinds {
		<-kw.done
		w.metrics.objects.DeleteLabelValues(SourceName, gk.String())
	}
}

// startKind starts the informer of one kind, across all namespaces.
func (w *Watcher) startKind(parent context.Context, gk schema.GroupKind, gvr schema.GroupVersionResource) (*kindWatch, error) {
	res := w.dyn.Resource(gvr)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			wi, err := res.Watch(ctx, opts)
			if err == nil {
				// The reflector watches only after a good list (or watches with the
				// list folded in): an open watch is the recovery of a failed kind.
				w.status.setWatch(gk, nil)
			}
			return wi, err
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, w.dyn),
		&unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{ResyncPeriod: w.cfg.Resync, ObjectDescription: gvr.String()},
	)
	// The cache holds every mesh object of the cluster: keep only what is read.
	if err := inf.SetTransform(compactObject); err != nil {
		return nil, fmt.Errorf("setting the transform of %s: %w", gvr, err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		w.watchFailed(ctx, gk, err)
	}); err != nil {
		return nil, fmt.Errorf("setting the watch error handler of %s: %w", gvr, err)
	}
	// The counter is bumped as a handler runs, after the informer's store holds the
	// change (Version's contract). startKind runs with w.mu held.
	version := w.versions[gk]
	if version == nil {
		version = &atomic.Uint64{}
		w.versions[gk] = version
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			version.Add(1)
			w.onAdd(gk, obj, initial)
			// Counting walks the cache: once per initial add it would be quadratic in the
			// kind's objects (12 % of a 20,000-object start's CPU). The initial list is
			// counted once, when the handler has seen all of it.
			if !initial {
				w.countObjects(gk, inf)
			}
		},
		UpdateFunc: func(old, new any) {
			// Any write counts, status too (MD0601-MD0603 read route status); a resync
			// delivers the same resourceVersion.
			if resourceVersionMoved(old, new) {
				version.Add(1)
			}
			w.onUpdate(gk, old, new)
		},
		DeleteFunc: func(obj any) {
			version.Add(1)
			w.onDelete(gk, obj)
			w.countObjects(gk, inf)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("adding the handler of %s: %w", gvr, err)
	}
	ctx, cancel := context.WithCancel(parent)
	kw := &kindWatch{gvr: gvr, informer: inf, handler: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(kw.done)
		inf.RunWithContext(ctx)
	}()
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			w.countObjects(gk, inf)
		}
	}()
	return kw, nil
}

// watchFailed is the reflector's error handler: it runs after every failed list or watch,
// before the reflector retries with backoff.
func (w *Watcher) watchFailed(ctx context.Context, gk schema.GroupKind, err error) {
	switch {
	case ctx.Err() != nil:
		// Stopping.
		return
	case apierrors.IsResourceExpired(err) || apierrors.IsGone(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// A watch that ended or fell behind: the reflector lists or watches again at
		// once and nothing is lost; if the server is really gone, that attempt fails.
		w.log.Debug("watch of mesh kind ended; resuming", "kind", gk.String(), "err", err)
		return
	}
	w.log.Warn("watching mesh kind failed", "kind", gk.String(), "err", err)
	w.metrics.restarts.WithLabelValues(SourceName, gk.String()).Inc()
	w.status.setWatch(gk, err)
	if apierrors.IsNotFound(err) {
		// The CRD may have gone; discovery says so before the next interval.
		select {
		case w.poke <- struct{}{}:
		default:
		}
	}
}

func (w *Watcher) onAdd(gk schema.GroupKind, obj any, initial bool) {
	u, ok := cachedObject(obj)
	if !ok {
		return
	}
	write := lastSpecWrite(u.GetManagedFields())
	at := w.now()
	baseline := false
	if initial {
		// The object was there before the watch: it did not just change. Its last spec
		// write is when the change to propagate happened, so propagation is measured
		// from there, and an old object reads as long propagated rather than fresh.
		at = specWriteTime(write, u, at)
		baseline = isBaseline(at, w.startedAt)
	}
	w.emitChange(gk, u, write.Manager, at, false, !initial, baseline)
}

func (w *Watcher) onUpdate(gk schema.GroupKind, oldObj, newObj any) {
	old, ok1 := cachedObject(oldObj)
	cur, ok2 := cachedObject(newObj)
	if !ok1 || !ok2 || !specChanged(old, cur) {
		return
	}
	write := updateSpecWrite(old.GetManagedFields(), cur.GetManagedFields())
	w.emit(gk, cur, write.Manager, w.now(), false, true)
}

func (w *Watcher) onDelete(gk schema.GroupKind, obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	u, ok := cachedObject(obj)
	if !ok {
		return
	}
	// Who deleted an object is recorded nowhere in it, so Manager stays empty.
	w.emit(gk, u, "", w.now(), true, true)
}

// specChanged reports whether an update changed the object's spec. The API server raises
// generation on every spec change of a kind with a status subresource, and on nothing
// else but the start of a graceful deletion, which is not a change to propagate (the
// deletion follows). A kind that keeps no generation is taken to change on any write.
func specChanged(old, cur metav1.Object) bool {
	if old.GetDeletionTimestamp() == nil && cur.GetDeletionTimestamp() != nil {
		return false
	}
	og, ng := old.GetGeneration(), cur.GetGeneration()
	if og != 0 || ng != 0 {
		return og != ng
	}
	return old.GetResourceVersion() != cur.GetResourceVersion()
}

// specWriteTime is when an object found by the initial list last had its spec written:
// the managedFields time of that write, else its creation, else fallback.
func specWriteTime(write specWrite, u metav1.Object, fallback time.Time) time.Time {
	if !write.At.IsZero() {
		return write.At
	}
	if c := u.GetCreationTimestamp(); !c.IsZero() {
		return c.Time
	}
	return fallback
}

// isBaseline reports whether an object found by a kind's first list was written before
// the watcher started: it existed when meshdrift started. API server times have
// one-second resolution (truncated), so only a write in an earlier second than the start
// counts: a write in the start's own second may have come after it and is taken as a
// change, which errs on holding it responsible for what proxies do. A kind that starts to
// be watched later (its CRD installed) lists objects written after the start: changes.
func isBaseline(written, started time.Time) bool {
	return !written.IsZero() && written.Before(started.Truncate(time.Second))
}

func (w *Watcher) emit(gk schema.GroupKind, u metav1.Object, manager string, at time.Time, deleted, live bool) {
	w.emitChange(gk, u, manager, at, deleted, live, false)
}

func (w *Watcher) emitChange(gk schema.GroupKind, u metav1.Object, manager string, at time.Time, deleted, live, baseline bool) {
	change := changeOf(gk, u, manager, at, deleted, baseline, w.cfg.RootNamespace)
	ref := change.Ref
	if live {
		// The initial list is not counted: every restart would count every object again.
		w.metrics.changes.WithLabelValues(gk.String(), managerClass(manager)).Inc()
	}
	if w.log.Enabled(context.Background(), slog.LevelDebug) {
		w.log.Debug("mesh change", "object", ref.String(), "generation", change.Generation,
			"manager", manager, "owner", change.GitOpsOwner.String(), "deleted", deleted, "initial", !live, "baseline", baseline)
	}
	w.sink.ObserveMeshChange(change)
}

// changeOf reads the MeshChange of an object: everything the watcher reports of it.
func changeOf(gk schema.GroupKind, u metav1.Object, manager string, at time.Time, deleted, baseline bool, rootNamespace string) reconcile.MeshChange {
	ref := reconcile.ObjectRef{Group: gk.Group, Kind: gk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
	change := reconcile.MeshChange{
		Ref:             ref,
		Generation:      u.GetGeneration(),
		ResourceVersion: u.GetResourceVersion(),
		ObservedAt:      at,
		Manager:         manager,
		GitOpsOwner:     gitOpsOwner(ref, u.GetLabels(), u.GetAnnotations()),
		Deleted:         deleted,
		Baseline:        baseline,
		Reach:           reachOf(gk, u.GetNamespace(), contentOf(u), rootNamespace),
		Ignore:          u.GetAnnotations()[reconcile.AnnotationIgnore],
	}
	if !deleted {
		change.SpecWrites = specWrites(u.GetManagedFields())
	}
	return change
}

// countObjects sets the objects gauge of a kind to its cache's size. The cache is updated
// before handlers run, so the last event of a burst leaves the gauge right.
func (w *Watcher) countObjects(gk schema.GroupKind, inf cache.SharedIndexInformer) {
	w.metrics.objects.WithLabelValues(SourceName, gk.String()).Set(float64(len(inf.GetStore().ListKeys())))
}
