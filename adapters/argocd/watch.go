package argocd

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
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdrift/meshdrift/adapters/adaptermetrics"
	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

// DefaultDiscoveryInterval is how often discovery is asked again while the Application CRD
// is missing: Argo CD may be installed after meshdrift.
const DefaultDiscoveryInterval = 30 * time.Second

// SourceName names the Kubernetes watch of Applications in SourceStatus.
const SourceName = string(reconcile.SourceArgoCD)

// ReasonDecodeError is the App.Reason of an Application that was read but could not be
// decoded; Message holds the decoding error.
const ReasonDecodeError = "DecodeError"

// adapterLabel is the value of the shared metrics' adapter label.
const adapterLabel = "argocd"

var applicationsGVR = schema.GroupVersionResource{Group: appview.Group, Version: appview.Version, Resource: appview.Resource}

// WatcherConfig configures the Application watcher.
type WatcherConfig struct {
	// Namespaces restricts the watch to these namespaces, one informer each (for
	// installations that grant meshdrift namespaced Roles only). Empty watches every
	// namespace, which Argo CD's apps-in-any-namespace needs.
	Namespaces []string
	// DiscoveryInterval is how often discovery is asked again while the Application CRD is
	// missing or discovery fails. Zero means DefaultDiscoveryInterval.
	DiscoveryInterval time.Duration
}

// Watcher reports every Argo CD Application in the cluster to an AppSink: each add and
// update as ObserveApp, each delete as ForgetApp. Whether it can read Applications at all
// goes to a SourceReporter under SourceName: down while the CRD is missing or listing or
// watching fails, up after a successful list. Apps are never forgotten because the source
// went down; a relist forgets only those deleted meanwhile.
type Watcher struct {
	cfg     WatcherConfig
	client  dynamic.Interface
	disco   discovery.DiscoveryInterface
	sink    reconcile.AppSink
	log     *slog.Logger
	now     func() time.Time
	status  *sourceStatus
	running atomic.Bool

	objects      prometheus.Gauge
	restarts     prometheus.Counter
	decodeErrors prometheus.Counter

	// mu guards known, the apps reported and not forgotten, which the objects gauge counts.
	mu    sync.Mutex
	known map[reconcile.AppKey]struct{}

	// statusMu guards crdErr, scopes and each scope's listed and err.
	statusMu sync.Mutex
	crdErr   error
	scopes   []*scope
}

// scope is one informer: on every namespace, or on one of WatcherConfig.Namespaces.
type scope struct {
	namespace string
	informer  cache.SharedIndexInformer
	handler   cache.ResourceEventHandlerRegistration
	listed    bool
	err       error
}

func (s *scope) String() string {
	if s.namespace == metav1.NamespaceAll {
		return "in all namespaces"
	}
	return "in namespace " + s.namespace
}

// New checks cfg and registers the adapter metrics in reg (nil: unregistered). Nothing is
// read before Run.
func New(cfg WatcherConfig, client dynamic.Interface, disco discovery.DiscoveryInterface, sink reconcile.AppSink,
	sources reconcile.SourceReporter, reg prometheus.Registerer, log *slog.Logger) (*Watcher, error) {
	if client == nil || disco == nil {
		return nil, errors.New("argo cd watcher: a dynamic client and a discovery client are required")
	}
	if sink == nil || sources == nil {
		return nil, errors.New("argo cd watcher: an app sink and a source reporter are required")
	}
	if cfg.DiscoveryInterval < 0 {
		return nil, fmt.Errorf("argo cd watcher: discovery interval %s is negative", cfg.DiscoveryInterval)
	}
	if cfg.DiscoveryInterval == 0 {
		cfg.DiscoveryInterval = DefaultDiscoveryInterval
	}
	namespaces, err := checkNamespaces(cfg.Namespaces)
	if err != nil {
		return nil, err
	}
	cfg.Namespaces = namespaces
	m, err := adaptermetrics.New(reg)
	if err != nil {
		return nil, fmt.Errorf("argo cd watcher: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("adapter", adapterLabel)
	w := &Watcher{
		cfg:          cfg,
		client:       client,
		disco:        disco,
		sink:         sink,
		log:          log,
		now:          time.Now,
		objects:      m.Objects.WithLabelValues(adapterLabel, appview.Kind),
		restarts:     m.WatchRestarts.WithLabelValues(adapterLabel, appview.Kind),
		decodeErrors: m.DecodeErrors.WithLabelValues(adapterLabel),
		known:        map[reconcile.AppKey]struct{}{},
	}
	w.status = &sourceStatus{name: SourceName, reporter: sources, log: log, now: func() time.Time { return w.now() }}
	return w, nil
}

func checkNamespaces(in []string) ([]string, error) {
	var out []string
	var errs []error
	for _, ns := range in {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("argo cd watcher: namespace %q: %s", ns, strings.Join(msgs, "; ")))
			continue
		}
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out, errors.Join(errs...)
}

// Run waits for the Application CRD, then watches until ctx is done. It returns nil when
// ctx ends; it may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("argo cd watcher: already running")
	}
	if !w.waitForCRD(ctx) {
		return nil
	}
	scopes, err := w.startScopes()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, s := range scopes {
		wg.Go(func() { s.informer.RunWithContext(ctx) })
	}
	wg.Wait()
	return nil
}

// HasSynced reports whether the sink has been given every Application of the first
// complete list.
func (w *Watcher) HasSynced() bool {
	w.statusMu.Lock()
	scopes := w.scopes
	w.statusMu.Unlock()
	if len(scopes) == 0 {
		return false
	}
	for _, s := range scopes {
		if !s.handler.HasSynced() {
			return false
		}
	}
	return true
}

// waitForCRD asks discovery for the Application resource until it is served. Starting the
// informers without it would only log 404s; the source is reported down with the reason
// meanwhile. It returns false when ctx ended first.
func (w *Watcher) waitForCRD(ctx context.Context) bool {
	disco := discovery.ToDiscoveryInterfaceWithContext(w.disco)
	for {
		err := w.checkCRD(ctx, disco)
		if ctx.Err() != nil {
			return false
		}
		w.statusMu.Lock()
		w.crdErr = err
		w.reportLocked()
		w.statusMu.Unlock()
		if err == nil {
			return true
		}
		w.log.Debug("argo cd application crd not available", "error", err, "retry", w.cfg.DiscoveryInterval)
		t := time.NewTimer(w.cfg.DiscoveryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		// A cached discovery client would return the same miss forever.
		if c, ok := w.disco.(discovery.CachedDiscoveryInterface); ok {
			c.Invalidate()
		}
	}
}

// errCRDNotInstalled marks checkCRD's error when discovery answered and the Application
// resource is not among what it serves.
var errCRDNotInstalled = errors.New("argo cd application crd is not installed")

func (w *Watcher) checkCRD(ctx context.Context, disco discovery.DiscoveryInterfaceWithContext) error {
	list, err := disco.ServerResourcesForGroupVersionWithContext(ctx, applicationsGVR.GroupVersion().String())
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("discovering argo cd applications (%s): %w; checking again every %s",
			applicationsGVR.GroupVersion(), err, w.cfg.DiscoveryInterval)
	}
	if list != nil && slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == appview.Resource }) {
		return nil
	}
	return fmt.Errorf("%w: the api server does not serve %s.%s/%s; checking again every %s",
		errCRDNotInstalled, appview.Resource, appview.Group, appview.Version, w.cfg.DiscoveryInterval)
}

func (w *Watcher) startScopes() ([]*scope, error) {
	namespaces := w.cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	scopes := make([]*scope, 0, len(namespaces))
	for _, ns := range namespaces {
		s, err := w.newScope(ns)
		if err != nil {
			return nil, err
		}
		scopes = append(scopes, s)
	}
	w.statusMu.Lock()
	w.scopes = scopes
	w.statusMu.Unlock()
	return scopes, nil
}

// newScope builds a dynamic informer the way dynamicinformer does, with a ListWatch that
// also tells the watcher when a list succeeded or a watch could not be opened: the
// informer's watch error handler alone misses an API server that refuses connections,
// because the reflector retries a refused watch in place without calling it.
func (w *Watcher) newScope(namespace string) (*scope, error) {
	s := &scope{namespace: namespace}
	ri := w.client.Resource(applicationsGVR).Namespace(namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list, err := ri.List(ctx, opts)
			if err == nil {
				w.scopeUp(s, "list")
			}
			// A failed list reaches the watch error handler.
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			wi, err := ri.Watch(ctx, opts)
			if err != nil {
				w.watchOpenFailed(ctx, s, err)
				return nil, err
			}
			if opts.SendInitialEvents != nil && *opts.SendInitialEvents {
				// A streaming list: complete at its initial-events-end bookmark.
				return newInitialEventsWatch(wi, func() { w.scopeUp(s, "streaming list") }), nil
			}
			// A plain watch follows a list or resumes from the last resource version
			// (after a timeout or a refused connection): either way the cache is current.
			w.scopeUp(s, "watch")
			return wi, nil
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, w.client),
		&unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{ObjectDescription: appview.APIVersion + " " + appview.Kind},
	)
	// The cache keeps every Application: only the App observe reports of each.
	if err := inf.SetTransform(trimApplication); err != nil {
		return nil, fmt.Errorf("argo cd watcher: %w", err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		w.listWatchFailed(ctx, s, err)
	}); err != nil {
		return nil, fmt.Errorf("argo cd watcher: %w", err)
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.observe,
		UpdateFunc: func(_, obj any) { w.observe(obj) },
		DeleteFunc: w.forget,
	})
	if err != nil {
		return nil, fmt.Errorf("argo cd watcher: %w", err)
	}
	s.informer, s.handler = inf, reg
	return s, nil
}

// listWatchFailed is the informer's watch error handler: a list failed, or a watch could
// not be opened for a reason the reflector does not retry in place. It relists next.
func (w *Watcher) listWatchFailed(ctx context.Context, s *scope, err error) {
	if ctx.Err() != nil {
		return // shutting down
	}
	w.restarts.Inc()
	if benignWatchEnd(err) {
		w.log.Debug("argo cd application watch restarts", "scope", s.String(), "error", err)
		return
	}
	w.scopeDown(s, err)
}

// watchOpenFailed sees every failed watch request. Those the reflector retries in place
// (refused connections, 429) never reach the watch error handler, so they are reported
// here; the others reach it or make the reflector list again.
func (w *Watcher) watchOpenFailed(ctx context.Context, s *scope, err error) {
	if ctx.Err() != nil || !(utilnet.IsConnectionRefused(err) || apierrors.IsTooManyRequests(err)) {
		return
	}
	w.restarts.Inc()
	w.scopeDown(s, err)
}

// benignWatchEnd tells the errors the reflector recovers from at once by relisting, as
// client-go's default handler does, from those that mean the source cannot be read.
func benignWatchEnd(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// scopeUp records that s read the API server successfully; how says by which request.
func (w *Watcher) scopeUp(s *scope, how string) {
	w.log.Debug("argo cd applications read", "scope", s.String(), "via", how)
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	s.listed, s.err = true, nil
	w.reportLocked()
}

func (w *Watcher) scopeDown(s *scope, err error) {
	w.statusMu.Lock()
	defer w.statusMu.Unlock()
	s.err = fmt.Errorf("watching argo cd applications %s: %w%s", s, err, hint(err))
	w.reportLocked()
}

func hint(err error) string {
	switch {
	case apierrors.IsNotFound(err):
		return " (was the argo cd application crd removed?)"
	case apierrors.IsForbidden(err):
		return " (meshdrift needs list and watch on applications.argoproj.io)"
	}
	return ""
}

// reportLocked reports the watch as a whole: down while the CRD is missing or any scope
// fails, up once every scope has listed. Before that there is nothing to say yet.
func (w *Watcher) reportLocked() {
	if w.crdErr != nil {
		w.status.setStatus(false, w.crdErr.Error(), errors.Is(w.crdErr, errCRDNotInstalled))
		return
	}
	if len(w.scopes) == 0 {
		return
	}
	listed := true
	for _, s := range w.scopes {
		if s.err != nil {
			w.status.set(false, s.err.Error())
			return
		}
		listed = listed && s.listed
	}
	if listed {
		w.status.set(true, "")
	}
}

// observe reports one added or updated Application. One that cannot be decoded is still
// reported, as Unknown with the reason, so that it does not silently vanish.
func (w *Watcher) observe(obj any) {
	now := w.now()
	if c, ok := obj.(*cachedApplication); ok {
		app := c.app
		app.ObservedAt = now
		w.remember(app.Key)
		w.sink.ObserveApp(app)
		return
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		w.decodeFailed(nil, fmt.Errorf("unexpected object type %T", obj), now)
		return
	}
	a, err := appview.FromUnstructured(u)
	if err != nil {
		w.decodeFailed(u, err, now)
		return
	}
	app := appview.ToApp(a, now)
	w.remember(app.Key)
	w.sink.ObserveApp(app)
}

func (w *Watcher) decodeFailed(u *unstructured.Unstructured, err error, now time.Time) {
	w.decodeErrors.Inc()
	if u == nil {
		w.log.Warn("cannot decode argo cd application", "error", err)
		return
	}
	w.log.Warn("cannot decode argo cd application; reporting it as Unknown",
		"namespace", u.GetNamespace(), "name", u.GetName(), "resourceVersion", u.GetResourceVersion(), "error", err)
	if u.GetNamespace() == "" || u.GetName() == "" {
		return
	}
	key := appKey(u.GetNamespace(), u.GetName())
	w.remember(key)
	w.sink.ObserveApp(reconcile.App{
		Key:        key,
		State:      reconcile.AppUnknown,
		Reason:     ReasonDecodeError,
		Message:    err.Error(),
		ObservedAt: now,
	})
}

// forget reports a deleted Application. A tombstone (the delete happened while the watch
// was down, and the relist no longer lists the app) carries the key of the last state.
func (w *Watcher) forget(obj any) {
	var ns, name string
	switch o := obj.(type) {
	case *cachedApplication:
		ns, name = o.app.Key.Namespace, o.app.Key.Name
	case *unstructured.Unstructured:
		ns, name = o.GetNamespace(), o.GetName()
	case cache.DeletedFinalStateUnknown:
		var err error
		if ns, name, err = cache.SplitMetaNamespaceKey(o.Key); err != nil {
			w.log.Warn("cannot read the key of a deleted argo cd application", "key", o.Key, "error", err)
			return
		}
	default:
		w.log.Warn("cannot read a deleted argo cd application", "type", fmt.Sprintf("%T", obj))
		return
	}
	key := appKey(ns, name)
	w.mu.Lock()
	delete(w.known, key)
	w.objects.Set(float64(len(w.known)))
	w.mu.Unlock()
	w.sink.ForgetApp(key)
}

func (w *Watcher) remember(key reconcile.AppKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.known[key] = struct{}{}
	w.objects.Set(float64(len(w.known)))
}

func appKey(namespace, name string) reconcile.AppKey {
	return reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: appview.Kind, Namespace: namespace, Name: name}
}
