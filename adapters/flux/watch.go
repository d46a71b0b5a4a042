package flux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/meshdrift/meshdrift/adapters/adaptermetrics"
	"github.com/meshdrift/meshdrift/reconcile"
)

// Defaults of WatcherConfig.
const (
	DefaultDiscoveryInterval = time.Minute
	DefaultRequeueTimeout    = 10 * time.Second
)

const (
	// adapterName is the adapter label of the shared adapter metrics.
	adapterName = "flux"
	// firstDiscoveryRetry is the first wait after a failed discovery request; the wait
	// doubles up to DiscoveryInterval.
	firstDiscoveryRetry = time.Second
	// requeueWorkers GET requeued apps concurrently, so that one slow GET does not hold
	// up the others.
	requeueWorkers = 2
	// maxRequeueRetries bounds the retries of a failed requeue GET; the watch still
	// delivers the object's next change.
	maxRequeueRetries = 5
	// tombstoneTTL is how long a deleted app's last resource version is kept to reject a
	// requeue GET that raced the delete. It only has to outlive an in-flight GET.
	tombstoneTTL = 10 * time.Minute
)

// WatcherConfig configures a Watcher. The zero value is valid.
type WatcherConfig struct {
	// ResyncPeriod makes the informers deliver every object again this often, so that the
	// sink sees each app at least once a period even when nothing changed; 0 disables it.
	ResyncPeriod time.Duration
	// DiscoveryInterval is how often a kind whose CRD the API server does not serve is
	// looked up again, and the longest wait between retries of a failed discovery
	// request; 0 means DefaultDiscoveryInterval.
	DiscoveryInterval time.Duration
	// RequeueTimeout bounds the GET of one requeued app; 0 means DefaultRequeueTimeout.
	RequeueTimeout time.Duration
}

// withDefaults validates c and fills in defaults.
func (c WatcherConfig) withDefaults() (WatcherConfig, error) {
	var errs []error
	for name, d := range map[string]time.Duration{
		"resync period":      c.ResyncPeriod,
		"discovery interval": c.DiscoveryInterval,
		"requeue timeout":    c.RequeueTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", name, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if c.DiscoveryInterval == 0 {
		c.DiscoveryInterval = DefaultDiscoveryInterval
	}
	if c.RequeueTimeout == 0 {
		c.RequeueTimeout = DefaultRequeueTimeout
	}
	return c, nil
}

// watchedKinds are the Flux kinds the Watcher reads, in the API versions it decodes.
var watchedKinds = []struct {
	kind string
	gvr  schema.GroupVersionResource
}{
	{KindKustomization, kustomizev1.GroupVersion.WithResource("kustomizations")},
	{KindHelmRelease, helmv2.GroupVersion.WithResource("helmreleases")},
}

// SourceName is the reconcile.SourceStatus name under which the Watcher reports whether
// it can read kind: "flux/Kustomization", "flux/HelmRelease".
func SourceName(kind string) string { return string(reconcile.SourceFlux) + "/" + kind }

// Watcher watches Flux Kustomizations and HelmReleases in all namespaces and reports each
// as a reconcile.App to an AppSink: on every change the informers see, on deletion
// (ForgetApp), and at once when asked through Requeue (a notification-controller webhook
// via Receiver). It reports per kind whether it can read the API server, as SourceStatus
// "flux/<Kind>": down while list or watch requests fail, up again once they succeed.
// A kind whose CRD is not served (no helm-controller in the cluster, say) is not watched,
// is reported up and NotInstalled (there is nothing of it to read), and is looked up again every
// DiscoveryInterval so that installing its CRD later starts its watch.
type Watcher struct {
	cfg       WatcherConfig
	client    dynamic.Interface
	discovery discovery.DiscoveryInterface
	sink      reconcile.AppSink
	log       *slog.Logger
	now       func() time.Time

	kinds        []*kindWatch
	queue        workqueue.TypedRateLimitingInterface[reconcile.AppKey]
	decodeErrors prometheus.Counter
	running      atomic.Bool
	// stopping is closed when Run's context ends; request errors after that are the
	// shutdown, not an outage.
	stopping chan struct{}

	// mu serialises emissions so that the sink sees each app's versions in order: the
	// informer and the requeue workers both emit, and a requeue GET can overtake the watch
	// or race a delete. It also guards each kind's objects gauge, which counts live.
	mu   sync.Mutex
	live map[reconcile.AppKey]string    // apps reported and not forgotten: last resource version
	gone map[reconcile.AppKey]tombstone // apps forgotten less than tombstoneTTL ago
}

type tombstone struct {
	resourceVersion string
	at              time.Time
}

// kindWatch is the state of one watched kind.
type kindWatch struct {
	kind     string
	gvr      schema.GroupVersionResource
	source   *sourceState
	objects  prometheus.Gauge   // apps of the kind reported and not forgotten
	restarts prometheus.Counter // failed list or watch attempts, each retried

	mu       sync.Mutex
	resolved bool // discovery has answered at least once
	served   bool
	synced   bool // the sink has the informer's initial list and the source was reported up
	informer cache.SharedIndexInformer
}

// New builds a Watcher. client and disc talk to the API server (disc must not cache, or
// must implement discovery.CachedDiscoveryInterface so that it can be invalidated); sink
// receives the apps and sources the reachability of each kind. The shared adapter metrics
// (adaptermetrics) are registered with reg, or reused when another adapter registered
// them first (nil: not registered); log may be nil.
func New(cfg WatcherConfig, client dynamic.Interface, disc discovery.DiscoveryInterface, sink reconcile.AppSink,
	sources reconcile.SourceReporter, reg prometheus.Registerer, log *slog.Logger) (*Watcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("flux watcher: %w", err)
	}
	switch {
	case client == nil:
		return nil, errors.New("flux watcher: nil dynamic client")
	case disc == nil:
		return nil, errors.New("flux watcher: nil discovery client")
	case sink == nil:
		return nil, errors.New("flux watcher: nil app sink")
	case sources == nil:
		return nil, errors.New("flux watcher: nil source reporter")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("adapter", adapterName))
	w := &Watcher{
		cfg:       cfg,
		client:    client,
		discovery: disc,
		sink:      sink,
		log:       log,
		now:       time.Now,
		stopping:  make(chan struct{}),
		live:      map[reconcile.AppKey]string{},
		gone:      map[reconcile.AppKey]tombstone{},
	}
	m, err := adaptermetrics.New(reg)
	if err != nil {
		return nil, fmt.Errorf("flux watcher: %w", err)
	}
	w.decodeErrors = m.DecodeErrors.WithLabelValues(adapterName)
	for _, wk := range watchedKinds {
		w.kinds = append(w.kinds, &kindWatch{
			kind:     wk.kind,
			gvr:      wk.gvr,
			source:   &sourceState{name: SourceName(wk.kind), reporter: sources, now: w.now},
			objects:  m.Objects.WithLabelValues(adapterName, wk.kind),
			restarts: m.WatchRestarts.WithLabelValues(adapterName, wk.kind),
		})
	}
	// Last: the queue starts a goroutine, which nothing would stop after a failed New.
	w.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.AppKey](100*time.Millisecond, 10*time.Second),
		workqueue.TypedRateLimitingQueueConfig[reconcile.AppKey]{})
	return w, nil
}

// Run watches until ctx ends, then stops the informers and returns nil. It returns an
// error only when called a second time. API server and discovery errors do not end it:
// they are reported as SourceStatus and retried.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("flux watcher: already run")
	}
	// The informers list and watch through observedClient, which reports every request's
	// outcome; Requeue's GETs go to the plain client.
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(
		observedClient{Interface: w.client, observe: w.requestDone}, w.cfg.ResyncPeriod, metav1.NamespaceAll, nil)
	var wg sync.WaitGroup
	for _, k := range w.kinds {
		wg.Go(func() { w.runKind(ctx, factory, k) })
	}
	for range requeueWorkers {
		wg.Go(func() { w.requeueWorker(ctx) })
	}
	<-ctx.Done()
	close(w.stopping)
	w.queue.ShutDown()
	factory.Shutdown()
	wg.Wait()
	return nil
}

// HasSynced reports whether discovery has answered for every kind and the informer of
// every served kind has delivered its initial list to the sink.
func (w *Watcher) HasSynced() bool {
	for _, k := range w.kinds {
		if !k.hasSynced() {
			return false
		}
	}
	return true
}

// Requeue makes the watcher read the app from the API server (a GET, not the informer's
// cache) and emit it at once. It implements Requeuer: it only enqueues, so it returns at
// once and keeps nothing of ctx. Keys of other sources or kinds are ignored, and so is an
// app that no longer exists (its watch reports the deletion). Before Run, the request
// waits for Run; after Run, it is dropped.
func (w *Watcher) Requeue(_ context.Context, key reconcile.AppKey, n Notification) {
	if key.Source != reconcile.SourceFlux || w.kindWatch(key.Kind) == nil || key.Namespace == "" || key.Name == "" {
		w.log.Debug("flux requeue ignored", slog.String("app", key.String()))
		return
	}
	w.log.Debug("flux requeue",
		slog.String("app", key.String()),
		slog.String("revision", n.Revision),
		slog.String("reason", n.Reason))
	w.queue.Add(key)
}

func (w *Watcher) kindWatch(kind string) *kindWatch {
	for _, k := range w.kinds {
		if k.kind == kind {
			return k
		}
	}
	return nil
}

// runKind waits until the API server serves the kind, then starts its informer.
func (w *Watcher) runKind(ctx context.Context, factory dynamicinformer.DynamicSharedInformerFactory, k *kindWatch) {
	log := w.log.With(slog.String("kind", k.kind), slog.String("resource", k.gvr.String()))
	retry := firstDiscoveryRetry
	missingLogged := false
	for first := true; ; first = false {
		served, err := w.served(k.gvr, !first)
		var wait time.Duration
		switch {
		case err != nil:
			k.source.markDown(fmt.Errorf("discovering %s: %w", k.gvr.GroupVersion(), requestCause(err)))
			log.Warn("flux discovery failed", slog.Any("error", err), slog.Duration("retry_in", retry))
			wait, retry = min(retry, w.cfg.DiscoveryInterval), min(2*retry, w.cfg.DiscoveryInterval)
		case !served:
			k.setResolved()
			k.source.markNotInstalled(fmt.Sprintf("%s is not served by the api server (crd not installed)", k.gvr.GroupResource()))
			if !missingLogged {
				log.Info("flux kind not served by the API server (CRD not installed); not watching it until it is")
				missingLogged = true
			}
			wait, retry = w.cfg.DiscoveryInterval, firstDiscoveryRetry
		default:
			if missingLogged {
				log.Info("flux kind now served by the API server")
			}
			w.startInformer(ctx, factory, k, log)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// served asks discovery whether the API server serves gvr; invalidate drops a caching
// client's cache first.
func (w *Watcher) served(gvr schema.GroupVersionResource, invalidate bool) (bool, error) {
	if c, ok := w.discovery.(discovery.CachedDiscoveryInterface); ok && invalidate {
		c.Invalidate()
	}
	list, err := w.discovery.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true, nil
		}
	}
	return false, nil
}

func (w *Watcher) startInformer(ctx context.Context, factory dynamicinformer.DynamicSharedInformerFactory, k *kindWatch, log *slog.Logger) {
	inf := factory.ForResource(k.gvr).Informer()
	// Setting these can only fail on a started informer, and nothing else starts it.
	// The cache keeps every object of the kind: only the App made of it.
	if err := inf.SetTransform(func(obj any) (any, error) { return compactFluxObject(k.kind, obj) }); err != nil {
		log.Error("flux informer transform not set", slog.Any("error", err))
	}
	if err := inf.SetWatchErrorHandlerWithContext(w.watchEnded(k, log)); err != nil {
		log.Error("flux watch error handler not set", slog.Any("error", err))
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.onObject(k, obj) },
		UpdateFunc: func(_, obj any) { w.onObject(k, obj) },
		DeleteFunc: func(obj any) { w.onDelete(k, obj) },
	})
	if err != nil {
		k.source.markDown(fmt.Errorf("adding event handler: %w", err))
		log.Error("flux watch not started", slog.Any("error", err))
		return
	}
	k.setInformer(inf)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return
	}
	k.source.markSynced()
	k.setSynced()
	log.Info("flux watch synced", slog.Int("objects", len(inf.GetStore().ListKeys())))
}

// watchEnded is the informer's watch error handler: the reflector calls it when a list
// or watch ends with an error, then lists again after a backoff.
func (w *Watcher) watchEnded(k *kindWatch, log *slog.Logger) cache.WatchErrorHandlerWithContext {
	return func(_ context.Context, _ *cache.Reflector, err error) {
		if w.isStopping() {
			return
		}
		k.restarts.Inc()
		if routineWatchEnd(err) {
			log.Debug("flux watch ended, relisting", slog.Any("error", err))
			return
		}
		log.Warn("flux watch failed", slog.Any("error", err))
		k.source.markDown(fmt.Errorf("watching %s: %w", k.gvr.Resource, requestCause(err)))
	}
}

// routineWatchEnd tells the ways a watch ends in normal operation (the server closed it,
// or its resource version expired) from failures. A connection cut mid-stream is routine
// too: if the API server is really gone, the relist that follows fails and says so.
func routineWatchEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// requestDone receives the outcome of every list and watch request of the informers.
func (w *Watcher) requestDone(gvr schema.GroupVersionResource, verb string, err error) {
	k := w.kindFor(gvr)
	if k == nil || w.isStopping() {
		return
	}
	if err == nil {
		k.source.requestSucceeded()
		return
	}
	// The reflector retries these watch failures itself, without its error handler, so
	// this is the only place they are seen.
	if verb == verbWatch && retriedWatchError(err) {
		k.restarts.Inc()
	}
	w.log.Warn("flux watch request failed", slog.String("kind", k.kind), slog.String("verb", verb), slog.Any("error", err))
	k.source.markDown(fmt.Errorf("%s %s: %w", verb, gvr.Resource, requestCause(err)))
}

// requestCause drops the request URL from a transport error for SourceStatus: a watch URL
// carries a random timeoutSeconds, which would make every retry of one outage a new
// error to report. The log keeps the whole error.
func requestCause(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

func (w *Watcher) kindFor(gvr schema.GroupVersionResource) *kindWatch {
	for _, k := range w.kinds {
		if k.gvr == gvr {
			return k
		}
	}
	return nil
}

func (w *Watcher) isStopping() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

func (w *Watcher) onObject(k *kindWatch, obj any) {
	switch o := obj.(type) {
	case *cachedFluxApp:
		app := o.app
		app.ObservedAt = w.now()
		w.emit(k.kind, app, o.err, o.resourceVersion, true)
	case *unstructured.Unstructured:
		w.observe(k.kind, o, true)
	default:
		w.log.Error("flux informer delivered an unexpected type", slog.String("kind", k.kind), slog.String("type", fmt.Sprintf("%T", obj)))
	}
}

func (w *Watcher) onDelete(k *kindWatch, obj any) {
	var namespace, name, rv string
	switch o := obj.(type) {
	case *cachedFluxApp:
		namespace, name, rv = o.app.Key.Namespace, o.app.Key.Name, o.resourceVersion
	case *unstructured.Unstructured:
		namespace, name, rv = o.GetNamespace(), o.GetName(), o.GetResourceVersion()
	case cache.DeletedFinalStateUnknown:
		// The watch missed the delete; the relist noticed the object gone.
		var err error
		if namespace, name, err = cache.SplitMetaNamespaceKey(o.Key); err != nil {
			w.log.Error("flux delete with a malformed key", slog.String("kind", k.kind), slog.String("key", o.Key))
			return
		}
		switch last := o.Obj.(type) {
		case *cachedFluxApp:
			rv = last.resourceVersion
		case *unstructured.Unstructured:
			rv = last.GetResourceVersion()
		}
	default:
		w.log.Error("flux informer delivered an unexpected type", slog.String("kind", k.kind), slog.String("type", fmt.Sprintf("%T", obj)))
		return
	}
	w.forget(appKey(k.kind, namespace, name), rv)
}

// observe emits the App of u unless the sink has seen a newer version of it. fromWatch
// says u comes from the informer, which delivers each object's versions in order, rather
// than from a requeue GET, which can overtake the watch or race a delete.
func (w *Watcher) observe(kind string, u *unstructured.Unstructured, fromWatch bool) {
	app, err := decodeApp(kind, u, w.now())
	w.emit(kind, app, err, u.GetResourceVersion(), fromWatch)
}

// emit is observe's second half, for an App decoded from resource version rv with err.
func (w *Watcher) emit(kind string, app reconcile.App, err error, rv string, fromWatch bool) {
	if errors.Is(err, errUndecodable) {
		w.decodeErrors.Inc()
	}
	if err != nil {
		w.log.Warn("flux object not fully understood", slog.String("app", app.Key.String()),
			slog.String("resource_version", rv), slog.Any("error", err))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ts, ok := w.gone[app.Key]; ok {
		if !newerThanDeleted(rv, ts.resourceVersion, fromWatch) {
			w.log.Debug("flux app version older than its deletion dropped", slog.String("app", app.Key.String()), slog.String("resource_version", rv))
			return
		}
		delete(w.gone, app.Key)
	}
	last, known := w.live[app.Key]
	if known && olderThan(rv, last) {
		w.log.Debug("flux app version older than the one emitted dropped", slog.String("app", app.Key.String()), slog.String("resource_version", rv))
		return
	}
	if !known {
		w.kindWatch(kind).objects.Inc()
	}
	w.live[app.Key] = rv
	w.sink.ObserveApp(app)
}

func (w *Watcher) forget(key reconcile.AppKey, rv string) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, known := w.live[key]; known {
		w.kindWatch(key.Kind).objects.Dec()
		delete(w.live, key)
	}
	for k, ts := range w.gone {
		if now.Sub(ts.at) > tombstoneTTL {
			delete(w.gone, k)
		}
	}
	w.gone[key] = tombstone{resourceVersion: rv, at: now}
	w.sink.ForgetApp(key)
}

// olderThan reports whether resource version rv is older than last. Versions that do not
// compare (a storage other than etcd) are taken as newer: emitting twice is harmless.
func olderThan(rv, last string) bool {
	c, err := resourceversion.CompareResourceVersion(rv, last)
	return err == nil && c < 0
}

// newerThanDeleted reports whether rv is a version after the deletion at deletedRV, i.e.
// of a re-created object. Versions that do not compare count as newer only when they come
// from the watch, whose order is the API server's.
func newerThanDeleted(rv, deletedRV string, fromWatch bool) bool {
	c, err := resourceversion.CompareResourceVersion(rv, deletedRV)
	if err != nil {
		return fromWatch
	}
	return c > 0
}

func (w *Watcher) requeueWorker(ctx context.Context) {
	for {
		key, shutdown := w.queue.Get()
		if shutdown {
			return
		}
		err := w.reread(ctx, key)
		switch {
		case err == nil || ctx.Err() != nil:
			w.queue.Forget(key)
		case w.queue.NumRequeues(key) < maxRequeueRetries:
			w.log.Info("flux requeue failed, retrying", slog.String("app", key.String()), slog.Any("error", err))
			w.queue.AddRateLimited(key)
		default:
			w.log.Warn("flux requeue failed, giving up", slog.String("app", key.String()), slog.Any("error", err))
			w.queue.Forget(key)
		}
		w.queue.Done(key)
	}
}

// reread GETs one app and emits it.
func (w *Watcher) reread(ctx context.Context, key reconcile.AppKey) error {
	k := w.kindWatch(key.Kind)
	if k == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.RequeueTimeout)
	defer cancel()
	u, err := w.client.Resource(k.gvr).Namespace(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		w.log.Debug("flux requeued app not found", slog.String("app", key.String()))
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting %s: %w", key, err)
	}
	w.observe(k.kind, u, false)
	return nil
}

func (k *kindWatch) setResolved() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.resolved = true
}

func (k *kindWatch) setInformer(inf cache.SharedIndexInformer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.resolved, k.served, k.informer = true, true, inf
}

func (k *kindWatch) setSynced() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.synced = true
}

func (k *kindWatch) hasSynced() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.resolved && (!k.served || k.synced)
}

// sourceState reports a kind's reachability to the SourceReporter on every change.
type sourceState struct {
	name     string
	reporter reconcile.SourceReporter
	now      func() time.Time

	mu           sync.Mutex
	synced       bool
	reported     bool
	up           bool
	notInstalled bool
	err          string
	since        time.Time
}

// markSynced: the informer has its initial list; from now on a successful request means up.
func (s *sourceState) markSynced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.synced = true
	s.set(true, "")
}

// requestSucceeded: a list or watch request went through. Before the initial sync this
// proves nothing yet about the apps the sink has.
func (s *sourceState) requestSucceeded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.synced {
		s.set(true, "")
	}
}

func (s *sourceState) markUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set(true, "")
}

// markNotInstalled: the kind's CRD is not served. There is nothing to read, which is not
// an outage, so the source is up; NotInstalled says why it has nothing.
func (s *sourceState) markNotInstalled(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStatus(true, msg, true)
}

func (s *sourceState) markDown(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set(false, err.Error())
}

// set reports a change; s.mu is held so that reports leave in the order of changes.
func (s *sourceState) set(up bool, errText string) { s.setStatus(up, errText, false) }

func (s *sourceState) setStatus(up bool, errText string, notInstalled bool) {
	if s.reported && s.up == up && s.err == errText && s.notInstalled == notInstalled {
		return
	}
	// A new error while down is news, but the source has been down since it first went.
	if !s.reported || s.up != up {
		s.since = s.now()
	}
	s.reported, s.up, s.err, s.notInstalled = true, up, errText, notInstalled
	s.reporter.ReportSource(reconcile.SourceStatus{Name: s.name, Up: up, Error: errText, NotInstalled: notInstalled, Since: s.since})
}
