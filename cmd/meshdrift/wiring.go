package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshdrift/meshdrift/adapters/argocd"
	"github.com/meshdrift/meshdrift/adapters/flux"
	"github.com/meshdrift/meshdrift/adapters/istio"
	"github.com/meshdrift/meshdrift/adapters/mesh"
	"github.com/meshdrift/meshdrift/alerting/alertmanager"
	"github.com/meshdrift/meshdrift/alerting/dispatch"
	"github.com/meshdrift/meshdrift/alerting/events"
	"github.com/meshdrift/meshdrift/alerting/metrics"
	"github.com/meshdrift/meshdrift/alerting/statusapi"
	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/checks"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// component is one long-running part; Run blocks until ctx ends.
type component struct {
	name   string
	run    func(context.Context) error
	synced func() bool
	// err, when set, says why a component has not synced (its latest list or watch
	// error), for /readyz and the startup timeout.
	err func() error
}

// notSynced names a component that has not synced, with its latest error if it says one.
func (c component) notSynced() string {
	if c.err != nil {
		if err := c.err(); err != nil {
			return c.name + " (" + err.Error() + ")"
		}
	}
	return c.name
}

// app is meshdrift wired from a configuration: the store, every adapter, and the HTTP
// handlers. Nothing registers itself; every part is built here.
type app struct {
	cfg        config.Config
	log        *slog.Logger
	registry   *prometheus.Registry
	store      *reconcile.Store
	components []component
	reader     *istio.Reader
	mux        *http.ServeMux
	// engine turns every evaluation's snapshot into findings; dispatcher (nil when no
	// sink is configured) delivers them.
	engine         *findings.Engine
	dispatcher     *dispatch.Dispatcher
	findingMetrics *metrics.Findings
	evalMetrics    *metrics.Evaluation
	// objects, namespaces and pods feed the checks that judge every mesh object and
	// namespace (out-of-band edits, orphans, revision drift, selectors), not only recent
	// changes.
	objects    *reconcile.MeshObjects
	namespaces *mesh.Namespaces
	pods       *mesh.Pods
	tags       *mesh.RevisionTags
	// checks runs the semantic checks on the same caches whenever they change.
	checks *checks.Live
}

// wire builds every part the configuration enables.
func wire(cfg config.Config, log *slog.Logger) (*app, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	latency, err := metrics.NewPropagation(reg)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	store := reconcile.NewStore(reconcile.PropagationConfig{
		Grace: cfg.Reconcile.StaleGrace.D(),
		// Changes in a final state are looked at again as often as istiod is read normally.
		Recheck:    cfg.Istio.PollInterval.D(),
		MaxChanges: cfg.Reconcile.MaxChanges,
	}, latency)
	if err := reg.Register(metrics.NewCollector(store)); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	a := &app{cfg: cfg, log: log, registry: reg, store: store, mux: http.NewServeMux()}

	restCfg, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	restCfg.UserAgent = "meshdrift"
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes discovery client: %w", err)
	}

	var errs []error
	if cfg.ArgoCD.Enabled {
		errs = append(errs, a.wireArgoCD(dyn, disc))
	}
	if cfg.Flux.Enabled {
		errs = append(errs, a.wireFlux(dyn, disc))
	}
	a.objects = reconcile.NewMeshObjects()
	// Istio's root namespace, where policies apply mesh-wide, is istiod's own namespace
	// unless meshConfig.rootNamespace moves it.
	rootNamespace := cfg.Istio.Namespace
	live := &mesh.LiveSource{RootNamespace: rootNamespace, Kinds: checks.InputKinds(checks.All())}
	if a.checks, err = checks.NewLive(checks.LiveConfig{}, live, nil, log.With("component", "checks")); err != nil {
		return nil, err
	}
	meshWatcher, err := mesh.New(mesh.Config{RootNamespace: rootNamespace}, dyn, disc, reconcile.MeshSinks{store, a.objects, a.checks}, store, reg, log)
	if err != nil {
		errs = append(errs, err)
	} else {
		a.components = append(a.components, component{name: "mesh", run: meshWatcher.Run, synced: meshWatcher.HasSynced})
	}
	md, err := metadata.NewForConfig(restCfg)
	if err != nil {
		errs = append(errs, fmt.Errorf("kubernetes metadata client: %w", err))
	} else {
		a.namespaces = mesh.NewNamespaces(md, 0)
		a.components = append(a.components, component{name: "namespaces", run: a.namespaces.Run, synced: a.namespaces.HasSynced, err: a.namespaces.Err})
		a.pods = mesh.NewPods(md, 0)
		a.components = append(a.components, component{name: "pods", run: a.pods.Run, synced: a.pods.HasSynced, err: a.pods.Err})
		a.tags = mesh.NewRevisionTags(md, 0)
		a.components = append(a.components, component{name: "revision-tags", run: a.tags.Run, synced: a.tags.HasSynced, err: a.tags.Err})
	}
	if meshWatcher != nil && md != nil {
		errs = append(errs, a.wireChecks(dyn, live, meshWatcher))
	}
	if cfg.Istio.Enabled {
		errs = append(errs, a.wireIstio(restCfg))
	}
	errs = append(errs, a.wireFindings(restCfg))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	a.mux.Handle("GET /metrics", promhttpHandler(reg))
	status, err := statusapi.New(statusSnapshot{a}, a.engine, log.With("component", "statusapi"))
	if err != nil {
		return nil, err
	}
	status.Register(a.mux)
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	a.mux.HandleFunc("GET /readyz", a.ready)
	return a, nil
}

// wireChecks runs the semantic checks on the mesh watcher's informers, a Services
// informer, and the namespace and pod metadata informers; every change of what they read
// pokes the runner (mesh changes reach it as a MeshSink).
func (a *app) wireChecks(dyn dynamic.Interface, live *mesh.LiveSource, w *mesh.Watcher) error {
	services := mesh.NewServices(dyn, 0)
	a.components = append(a.components, component{name: "services", run: services.Run, synced: services.HasSynced, err: services.Err})
	live.Watcher, live.Services, live.Pods, live.Namespaces = w, services, a.pods, a.namespaces
	err := errors.Join(services.OnChange(a.checks.Poke), a.pods.OnChange(a.checks.Poke), a.namespaces.OnChange(a.checks.Poke))
	if err != nil {
		return fmt.Errorf("live checks: %w", err)
	}
	a.components = append(a.components, component{name: "checks", run: a.checks.Run})
	return nil
}

// statusSnapshot is what the status API shows: the store's snapshot and the latest
// check run.
type statusSnapshot struct{ a *app }

func (s statusSnapshot) Snapshot() reconcile.Snapshot {
	snap := s.a.store.Snapshot()
	if s.a.checks != nil {
		snap.Checks = s.a.checks.Latest()
	}
	return snap
}

// readOnly is cfg for the one-shot commands: they report on their own output and deliver
// nothing, so that a pipeline's check or wait never raises or resolves a team's alerts.
func readOnly(cfg config.Config) config.Config {
	cfg.Alerting.Alertmanager.URLs = nil
	cfg.Alerting.Events.Enabled = false
	return cfg
}

// wireFindings builds the findings engine and the sinks that deliver its findings:
// every configured Alertmanager and Kubernetes Events, behind one dispatcher.
func (a *app) wireFindings(restCfg *rest.Config) error {
	a.engine = findings.NewEngine(a.cfg.Findings.Engine(), nil)
	fm, err := metrics.NewFindings(a.registry, a.engine)
	if err != nil {
		return fmt.Errorf("registering findings metrics: %w", err)
	}
	a.findingMetrics = fm
	if a.evalMetrics, err = metrics.NewEvaluation(a.registry); err != nil {
		return fmt.Errorf("registering evaluation metrics: %w", err)
	}
	var sinks []dispatch.Sink
	if c := a.cfg.Alerting.Alertmanager; len(c.URLs) > 0 {
		ac := alertmanager.Config{
			URLs: c.URLs, ResendInterval: c.ResendInterval.D(), Timeout: c.Timeout.D(), QueueCapacity: c.QueueCapacity,
			Cluster: c.Cluster, ExternalURL: c.ExternalURL, RunbookURL: c.RunbookURL, BearerTokenFile: c.BearerTokenFile,
			TLS: alertmanager.TLSConfig{
				CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
				ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify,
			},
		}
		if b := c.BasicAuth; b != nil {
			ac.BasicAuth = &alertmanager.BasicAuth{Username: b.Username, PasswordFile: b.PasswordFile}
		}
		s, err := alertmanager.Sinks(ac)
		if err != nil {
			return fmt.Errorf("alertmanager: %w", err)
		}
		sinks = append(sinks, s...)
	}
	if e := a.cfg.Alerting.Events; e.Enabled {
		ev, err := events.NewForConfig(events.Config{}, restCfg, a.registry, a.log.With("sink", "events"))
		if err != nil {
			return fmt.Errorf("kubernetes events: %w", err)
		}
		a.components = append(a.components, component{name: "events", run: ev.Run, synced: ev.HasSynced})
		sinks = append(sinks, dispatch.Sink{Notifier: ev, ResendInterval: e.ResendInterval.D()})
	}
	if len(sinks) == 0 {
		return nil
	}
	d, err := dispatch.New(sinks, dispatch.Options{Registerer: a.registry, Logger: a.log.With("component", "dispatch")})
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	a.dispatcher = d
	a.components = append(a.components, component{name: "dispatch", run: d.Run})
	return nil
}

// evaluateFindings runs one findings pass over the store's latest state and hands the
// result to the sinks.
func (a *app) evaluateFindings(now time.Time) {
	for _, tr := range a.engine.Evaluate(a.snapshot()) {
		a.findingMetrics.Transitioned(tr, now)
	}
	if a.dispatcher != nil {
		a.dispatcher.Update(a.engine.Findings())
	}
}

// snapshot is the store's snapshot with every mesh object and namespace added, and
// the versions of what was added, so that the findings engine can tell an unchanged
// snapshot (findings.Engine.Evaluate).
func (a *app) snapshot() reconcile.Snapshot {
	snap := a.store.Snapshot()
	var ver reconcile.Versions
	if snap.Versions != nil {
		ver = *snap.Versions
	}
	// Which caches have synced is read first: a cache that had synced by then lists
	// what its version says, and one that syncs later changes Unsynced, so that the
	// versions never stand for a list read before the sync.
	for _, c := range a.components {
		if c.synced != nil && !c.synced() {
			snap.Unsynced = append(snap.Unsynced, c.name)
		}
	}
	ver.Unsynced = strings.Join(snap.Unsynced, ",")
	if a.objects != nil {
		ver.Objects = a.objects.Version()
		snap.Objects = a.objects.List()
	}
	// Static addresses without revisions all read as the default revision: comparing
	// namespaces with that would report every canary namespace.
	revisionsKnown := len(a.cfg.Istio.Addresses) == 0 || len(a.cfg.Istio.Revisions) > 0
	if a.namespaces != nil && revisionsKnown {
		ver.Namespaces = a.namespaces.Version()
		snap.Namespaces = a.namespaces.List()
	}
	if a.pods != nil {
		ver.Pods = a.pods.Version()
		snap.Pods = a.pods.List()
	}
	if a.tags != nil {
		ver.RevisionTags = a.tags.Version()
		snap.RevisionTags = a.tags.List()
	}
	if a.checks != nil {
		snap.Checks = a.checks.Latest()
		ver.ChecksAt, ver.ChecksWaiting = snap.Checks.At, snap.Checks.Waiting
	}
	if snap.Versions != nil {
		snap.Versions = &ver
	}
	return snap
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig given and not in a cluster: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

func (a *app) wireArgoCD(dyn dynamic.Interface, disc discovery.DiscoveryInterface) error {
	// The watchers label their own log lines with the adapter.
	log := a.log
	if s := a.cfg.ArgoCD.APIServer; s != nil {
		client, err := argocd.NewAPIServerClient(argocd.APIServerConfig{
			URL: s.URL, TokenFile: s.TokenFile, CAFile: s.CAFile, ServerName: s.ServerName, InsecureSkipVerify: s.InsecureSkipVerify,
		})
		if err != nil {
			return fmt.Errorf("argocd api server: %w", err)
		}
		poller, err := argocd.NewPoller(argocd.PollerConfig{Interval: s.Interval.D()}, client, a.store, a.store, a.registry, log)
		if err != nil {
			return err
		}
		a.components = append(a.components, component{name: "argocd-api", run: poller.Run, synced: poller.HasSynced})
		return nil
	}
	w, err := argocd.New(argocd.WatcherConfig{}, dyn, disc, a.store, a.store, a.registry, log)
	if err != nil {
		return err
	}
	a.components = append(a.components, component{name: "argocd", run: w.Run, synced: w.HasSynced})
	return nil
}

func (a *app) wireFlux(dyn dynamic.Interface, disc discovery.DiscoveryInterface) error {
	w, err := flux.New(flux.WatcherConfig{}, dyn, disc, a.store, a.store, a.registry, a.log)
	if err != nil {
		return err
	}
	a.components = append(a.components, component{name: "flux", run: w.Run, synced: w.HasSynced})
	r := a.cfg.Flux.Receiver
	if !r.Enabled {
		return nil
	}
	// Fail closed: config validation already demands a key file or insecureNoAuth, and
	// LoadHMACKey and NewReceiver refuse an empty key again, whatever built the config.
	rc := flux.ReceiverConfig{InsecureNoAuth: r.InsecureNoAuth, AllowSHA1: r.AllowSHA1, MaxBodyBytes: r.MaxBodyBytes}
	if r.HMACKeyFile != "" {
		key, err := flux.LoadHMACKey(r.HMACKeyFile)
		if err != nil {
			return err
		}
		rc.HMACKey = key
	}
	log := a.log.With("adapter", "flux")
	recv, err := flux.NewReceiver(rc, w, a.registry, log)
	if err != nil {
		return err
	}
	a.mux.Handle(r.Path, recv)
	if r.InsecureNoAuth {
		log.Warn("flux receiver accepts unsigned events: anyone who reaches it can trigger re-reads", "path", r.Path, "receiver", rc)
	} else {
		log.Info("flux receiver enabled", "path", r.Path, "receiver", rc)
	}
	return nil
}

func (a *app) wireIstio(restCfg *rest.Config) error {
	c := a.cfg.Istio
	transport := istio.Transport(c.Transport)
	var targets istio.TargetSource
	var err error
	if len(c.Addresses) > 0 {
		ts := make([]istio.Target, 0, len(c.Addresses))
		for i, addr := range c.Addresses {
			t := istio.Target{Addr: addr}
			if i < len(c.MonitoringAddresses) {
				t.MonitoringAddr = c.MonitoringAddresses[i]
			}
			if i < len(c.Revisions) {
				t.Revision = c.Revisions[i]
			}
			ts = append(ts, t)
		}
		targets, err = istio.StaticTargets(ts)
	} else {
		var kc kubernetes.Interface
		if kc, err = kubernetes.NewForConfig(restCfg); err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
		targets, err = istio.PodTargets(kc, istio.PodTargetsConfig{Namespace: c.Namespace, Selector: c.Selector, Transport: transport})
	}
	if err != nil {
		return fmt.Errorf("istiod targets: %w", err)
	}
	reader, err := istio.NewReader(istio.ReaderConfig{
		Transport: transport, Interval: c.PollInterval.D(), TokenFile: c.TokenFile, CAFile: c.CAFile, IstioNamespace: c.Namespace,
		AllowInsecureTokenOverHTTP: c.AllowInsecureTokenOverHTTP,
	}, targets, a.store, a.store, a.registry, a.log.With("adapter", "istio"))
	if err != nil {
		return err
	}
	a.reader = reader
	a.components = append(a.components, component{name: "istio", run: reader.Run})
	return nil
}

// ready answers 200 once every watcher has synced its cache. A restricted istiod view is
// listed in the body but keeps the 200: it is istiod's configuration that needs fixing,
// not meshdrift, and a 503 would take the status API and /metrics, which say what to fix,
// out of the Service's endpoints (meshdrift_istiod_views_restricted is what alerts).
func (a *app) ready(w http.ResponseWriter, _ *http.Request) {
	for _, c := range a.components {
		if c.synced != nil && !c.synced() {
			http.Error(w, c.notSynced()+" not synced", http.StatusServiceUnavailable)
			return
		}
	}
	var b strings.Builder
	b.WriteString("ok\n")
	rs := a.store.Restrictions()
	for _, name := range slices.Sorted(maps.Keys(rs)) {
		fmt.Fprintf(&b, "restricted istiod view, propagation Unknown: %s\n  fix: %s\n", rs[name].Reason, rs[name].Fix)
	}
	_, _ = w.Write([]byte(b.String()))
}

// findingsIdle is how often findings are derived when nothing arrived and no verdict
// moved: their timers are a minute and more, except in tests, which wait for them.
// findingsGap is the least time between two passes for news that moved no verdict: while
// a change is in flight istiod is read several times a second, and each read would
// otherwise derive every finding again. A verdict that moved is derived at once.
const (
	findingsIdle = 5 * time.Second
	findingsGap  = time.Second
)

// evaluate recomputes propagation whenever an observation arrives and at least every
// second (grace periods expire without any event). While a change is in flight istiod is
// read at the fast interval, so that its propagation is seen within a fraction of a
// second, for no more than the configured share of the time (reconcile.PollPacer).
func (a *app) evaluate(ctx context.Context) error {
	pacer, err := reconcile.NewPollPacer(reconcile.FastPollConfig{
		Interval: a.cfg.Reconcile.FastPoll.Interval.D(),
		MaxShare: a.cfg.Reconcile.FastPoll.MaxShare,
	})
	if err != nil {
		return fmt.Errorf("fast polling: %w", err)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	fast := false
	var lastFindings time.Time
	var lastTransitions uint64
	pending := false // news not derived yet
	for {
		news := true
		select {
		case <-ctx.Done():
			return nil
		case <-a.store.Changed():
		case <-a.checksRan():
		case <-tick.C:
			news = false
		}
		now := time.Now()
		a.store.Evaluate(now)
		found := time.Now()
		a.evalMetrics.Observe("propagation", found.Sub(now))
		// Findings are derived at once when a verdict moved, within findingsGap when
		// something else arrived, and otherwise every findingsIdle for their timers (for,
		// resolveAfter). A pass over an unchanged snapshot reuses the last derivation
		// (findings.Engine), so idle passes cost the lifecycle alone.
		pending = pending || news
		if n := a.store.Transitions(); n != lastTransitions || (pending && now.Sub(lastFindings) >= findingsGap) || now.Sub(lastFindings) >= findingsIdle {
			lastTransitions, lastFindings, pending = n, now, false
			a.evaluateFindings(now)
			a.evalMetrics.Observe("findings", time.Since(found))
		}
		if a.reader == nil {
			continue
		}
		inFlight, started := a.store.InFlight()
		f := pacer.Fast(now, inFlight)
		if f != fast {
			fast = f
			if fast {
				a.reader.SetInterval(pacer.Interval())
			} else {
				a.reader.SetInterval(0) // the configured interval
			}
		}
		if fast && started {
			// A read now, before istiod's debounce ends, brackets the change's push.
			a.reader.Poke()
		}
	}
}

// checksRan yields after each check run; nil (never) without checks.
func (a *app) checksRan() <-chan struct{} {
	if a.checks == nil {
		return nil
	}
	return a.checks.Ran()
}

// start runs every component and the evaluator until ctx ends; the returned channel
// yields the first error (or nil once all have stopped).
func (a *app) start(ctx context.Context) <-chan error {
	parts := append([]component{{name: "evaluator", run: a.evaluate}}, a.components...)
	errc := make(chan error, len(parts))
	for _, c := range parts {
		go func() {
			err := c.run(ctx)
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%s: %w", c.name, err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	out := make(chan error, 1)
	go func() {
		var first error
		for range parts {
			if err := <-errc; err != nil && first == nil {
				first = err
				out <- err
			}
		}
		if first == nil {
			out <- nil
		}
		close(out)
	}()
	return out
}

// waitSynced waits until every watcher has synced, or ctx ends.
func (a *app) waitSynced(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var pending []string
		for _, c := range a.components {
			if c.synced != nil && !c.synced() {
				pending = append(pending, c.notSynced())
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to sync: %w", strings.Join(pending, ", "), ctx.Err())
		case <-tick.C:
		}
	}
}
