// Package events delivers findings as Kubernetes Events (events.k8s.io/v1) on the mesh
// object a finding is about and on the GitOps app that owns it (an Argo CD Application, a
// Flux Kustomization or HelmRelease), so that `kubectl describe`, `flux events` and the
// Argo CD UI show them where people already look.
//
// Events go through client-go's tools/events broadcaster, which aggregates: deliveries
// with the same type, reason, action and objects become one Event with a series. The
// broadcaster writes the first delivery (create) and the second (patch to series count 2)
// at once; later ones only raise the count in its cache, which it writes when the series
// ends (no delivery for 6 min) or every 30 min. Repeated deliveries (the resend of a firing
// finding) therefore cost no API request, and the note of a series stays the first one.
//
// Those UIs find Events by the regarding object's UID, so every Event needs the object's
// UID and apiVersion. The sink reads object metadata with one GET per object and caches it
// (default 10 min, bounded): only objects that have findings are ever read, where a
// metadata informer would hold every mesh object and app of the cluster a second time (the
// adapters already watch them) for the few that ever have a finding. The price: an object
// deleted and re-created under the same name gets Events with its old UID until the entry
// expires.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes/scheme"
	typedeventsv1 "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/events"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Limits of events.k8s.io/v1 validation (kube-apiserver's core validation).
const (
	noteLimit   = 1024
	reasonLimit = 128
)

// Actions of the Events: what meshdrift did about the object.
const (
	ActionDetected = "Detected"
	ActionResolved = "Resolved"
)

// Config tunes the sink. Zero values take the defaults.
type Config struct {
	// Controller is the Events' reportingController (default "meshdrift"); the reporting
	// instance is Controller-<hostname>, as client-go builds it.
	Controller string
	// MetadataTTL is how long an object's UID and apiVersion are reused before they are
	// read again (default 10 min). MissingTTL is the same for an object that was not found
	// or may not be read (default 1 min).
	MetadataTTL time.Duration
	MissingTTL  time.Duration
	// MaxObjects bounds the metadata cache (default 4096); the oldest entry goes first.
	MaxObjects int
	// ArgoCDNamespace is where an Argo CD Application lives when a finding names it without
	// a namespace (label tracking does not carry it); default "argocd".
	ArgoCDNamespace string
}

func (c Config) withDefaults() Config {
	if c.Controller == "" {
		c.Controller = "meshdrift"
	}
	if c.MetadataTTL <= 0 {
		c.MetadataTTL = 10 * time.Minute
	}
	if c.MissingTTL <= 0 {
		c.MissingTTL = time.Minute
	}
	if c.MaxObjects <= 0 {
		c.MaxObjects = 4096
	}
	if c.ArgoCDNamespace == "" {
		c.ArgoCDNamespace = "argocd"
	}
	return c
}

// Clients are what the sink talks to; NewForConfig builds them from a rest.Config.
type Clients struct {
	// Events writes events.k8s.io/v1 Events.
	Events typedeventsv1.EventsV1Interface
	// Metadata reads objects' metadata; Mapper maps their kinds to resources.
	Metadata metadata.Interface
	Mapper   meta.RESTMapper
}

// Sink writes Kubernetes Events for findings. It satisfies alerting/dispatch's Notifier.
type Sink struct {
	cfg         Config
	log         *slog.Logger
	now         func() time.Time
	clients     Clients
	broadcaster events.EventBroadcaster
	recorder    events.EventRecorder
	metrics     *sinkMetrics

	mu      sync.Mutex
	started bool
	cache   map[objectKey]cachedRef
}

// objectKey names an object by group and kind, as findings do.
type objectKey struct{ group, kind, namespace, name string }

// cachedRef is one metadata read: the reference, or nil when the object is missing or
// may not be read.
type cachedRef struct {
	ref     *corev1.ObjectReference
	fetched time.Time
}

// NewForConfig builds the clients from restCfg (a discovery-backed REST mapper, reset
// when a kind is not found so that a CRD installed later is picked up) and the sink.
func NewForConfig(cfg Config, restCfg *rest.Config, reg prometheus.Registerer, log *slog.Logger) (*Sink, error) {
	ev, err := typedeventsv1.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("events client: %w", err)
	}
	md, err := metadata.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	return New(cfg, Clients{Events: ev, Metadata: md, Mapper: mapper}, reg, log)
}

// New returns a sink over clients. Metrics go to reg (nil: unregistered). Run must be
// running for Events to be written.
func New(cfg Config, clients Clients, reg prometheus.Registerer, log *slog.Logger) (*Sink, error) {
	if clients.Events == nil || clients.Metadata == nil || clients.Mapper == nil {
		return nil, errors.New("events sink: events, metadata and mapper clients are required")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newSinkMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, log: log.With("sink", "events"), now: time.Now, clients: clients, metrics: m, cache: map[objectKey]cachedRef{}}
	s.broadcaster = events.NewBroadcaster(&countingSink{next: &events.EventSinkImpl{Interface: clients.Events}, metrics: m, log: s.log})
	s.recorder = s.broadcaster.NewRecorder(scheme.Scheme, cfg.Controller)
	return s, nil
}

// Name names the sink in delivery metrics and logs.
func (s *Sink) Name() string { return "events" }

// Run writes Events until ctx ends. Events still being retried then are dropped.
func (s *Sink) Run(ctx context.Context) error {
	if err := s.broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return fmt.Errorf("starting the event broadcaster: %w", err)
	}
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.started = false
	s.mu.Unlock()
	s.broadcaster.Shutdown()
	return nil
}

// HasSynced reports whether Run is recording, so that Notify can write Events.
func (s *Sink) HasSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Notify emits one Event per finding on its object and one on its app: Warning while
// firing, Normal once resolved; pending findings are not shown. It asks for a retry only
// when an object's metadata could not be read for a reason that may pass (the API server
// unreachable); a retried batch only raises the count of the Events already written.
func (s *Sink) Notify(ctx context.Context, fs []findings.Finding) (retry bool, err error) {
	if !s.HasSynced() {
		return true, errors.New("events sink is not running")
	}
	var errs []error
	for _, f := range fs {
		var eventType, action, note string
		switch f.State {
		case findings.StateFiring:
			eventType, action, note = corev1.EventTypeWarning, ActionDetected, f.Summary
		case findings.StateResolved:
			eventType, action, note = corev1.EventTypeNormal, ActionResolved, "Resolved: "+f.Summary
		default:
			continue
		}
		note = eventNote(note, f.Code)
		reason := truncate(f.Name, reasonLimit)
		if reason == "" {
			reason = string(f.Code)
		}
		obj, objErr := s.objectRef(ctx, f.Subject.Object)
		app, appErr := s.appRef(ctx, f.Subject.App)
		errs = append(errs, objErr, appErr)
		if obj == nil && app == nil {
			if objErr == nil && appErr == nil {
				s.metrics.skipped.Inc()
			}
			continue
		}
		// Each Event names the other object as related, so either side leads to the other.
		if obj != nil {
			s.emit(obj, app, eventType, reason, action, note)
		}
		if app != nil {
			s.emit(app, obj, eventType, reason, action, note)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return true, err
	}
	return false, nil
}

func (s *Sink) emit(regarding, related *corev1.ObjectReference, eventType, reason, action, note string) {
	// The note is an argument, never the format: it carries text from the cluster. A nil
	// related must stay an untyped nil.
	if related == nil {
		s.recorder.Eventf(regarding, nil, eventType, reason, action, "%s", note)
	} else {
		s.recorder.Eventf(regarding, related, eventType, reason, action, "%s", note)
	}
	s.metrics.emitted.WithLabelValues(eventType).Inc()
}

// eventNote is an Event's note: the summary and the finding's code, within the API's limit.
func eventNote(summary string, code findings.Code) string {
	suffix := ""
	if code != "" {
		suffix = " (" + string(code) + ")"
	}
	return truncate(summary, noteLimit-len(suffix)) + suffix
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	if cut < 0 {
		return ""
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// appGroups maps a GitOps app's source and kind to its API group.
var appGroups = map[reconcile.Source]map[string]string{
	reconcile.SourceArgoCD: {"Application": "argoproj.io"},
	reconcile.SourceFlux:   {"Kustomization": "kustomize.toolkit.fluxcd.io", "HelmRelease": "helm.toolkit.fluxcd.io"},
}

func (s *Sink) appRef(ctx context.Context, k reconcile.AppKey) (*corev1.ObjectReference, error) {
	if k.Name == "" {
		return nil, nil
	}
	group, ok := appGroups[k.Source][k.Kind]
	if !ok {
		return nil, nil
	}
	ns := k.Namespace
	if ns == "" && k.Source == reconcile.SourceArgoCD {
		ns = s.cfg.ArgoCDNamespace
	}
	return s.lookup(ctx, objectKey{group: group, kind: k.Kind, namespace: ns, name: k.Name})
}

func (s *Sink) objectRef(ctx context.Context, r reconcile.ObjectRef) (*corev1.ObjectReference, error) {
	if r.Kind == "" || r.Name == "" {
		return nil, nil
	}
	return s.lookup(ctx, objectKey{group: r.Group, kind: r.Kind, namespace: r.Namespace, name: r.Name})
}

// lookup returns the object's reference from the cache or one metadata GET. A missing or
// forbidden object, or a kind the API server does not serve, is no Event and no error.
func (s *Sink) lookup(ctx context.Context, k objectKey) (*corev1.ObjectReference, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[k]
	s.mu.Unlock()
	if ok {
		ttl := s.cfg.MetadataTTL
		if c.ref == nil {
			ttl = s.cfg.MissingTTL
		}
		if now.Sub(c.fetched) < ttl {
			return c.ref, nil
		}
	}
	ref, err := s.fetch(ctx, k)
	if err != nil {
		s.metrics.lookups.WithLabelValues("error").Inc()
		return nil, err
	}
	outcome := "found"
	if ref == nil {
		outcome = "missing"
		s.log.Debug("no event for an object that cannot be read", "group", k.group, "kind", k.kind, "namespace", k.namespace, "name", k.name)
	}
	s.metrics.lookups.WithLabelValues(outcome).Inc()
	s.store(k, cachedRef{ref: ref, fetched: now})
	return ref, nil
}

func (s *Sink) fetch(ctx context.Context, k objectKey) (*corev1.ObjectReference, error) {
	gk := schema.GroupKind{Group: k.group, Kind: k.kind}
	mapping, err := s.clients.Mapper.RESTMapping(gk)
	if meta.IsNoMatchError(err) {
		// The discovery cache may predate the CRD: read discovery again once.
		if r, ok := s.clients.Mapper.(meta.ResettableRESTMapper); ok {
			r.Reset()
			mapping, err = s.clients.Mapper.RESTMapping(gk)
		}
	}
	if meta.IsNoMatchError(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", gk, err)
	}
	var ri metadata.ResourceInterface
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if k.namespace == "" {
			return nil, nil
		}
		ri = s.clients.Metadata.Resource(mapping.Resource).Namespace(k.namespace)
	} else {
		ri = s.clients.Metadata.Resource(mapping.Resource)
	}
	obj, err := ri.Get(ctx, k.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s %s/%s: %w", gk, k.namespace, k.name, err)
	}
	// No resourceVersion: the broadcaster aggregates by the whole reference, and the
	// object's every update would start a new Event.
	return &corev1.ObjectReference{
		APIVersion: mapping.GroupVersionKind.GroupVersion().String(),
		Kind:       mapping.GroupVersionKind.Kind,
		Namespace:  obj.Namespace,
		Name:       obj.Name,
		UID:        obj.UID,
	}, nil
}

// store caches one read, evicting the oldest entry when the cache is full.
func (s *Sink) store(k objectKey, c cachedRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cache[k]; !ok && len(s.cache) >= s.cfg.MaxObjects {
		var oldest objectKey
		first := true
		for key, v := range s.cache {
			if first || v.fetched.Before(s.cache[oldest].fetched) {
				oldest, first = key, false
			}
		}
		delete(s.cache, oldest)
	}
	s.cache[k] = c
}

// countingSink counts the API requests the broadcaster makes, to show what aggregation
// saves and whether writes fail.
type countingSink struct {
	next    events.EventSink
	metrics *sinkMetrics
	log     *slog.Logger
}

func (c *countingSink) Create(ctx context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	out, err := c.next.Create(ctx, e)
	c.count("create", err)
	return out, err
}

func (c *countingSink) Update(ctx context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	out, err := c.next.Update(ctx, e)
	c.count("update", err)
	return out, err
}

func (c *countingSink) Patch(ctx context.Context, e *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	out, err := c.next.Patch(ctx, e, data)
	c.count("patch", err)
	return out, err
}

func (c *countingSink) count(verb string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
		// The broadcaster falls back from a patch of a gone Event to a create; only other
		// failures are worth a line.
		if !apierrors.IsNotFound(err) {
			c.log.Warn("writing an event", "verb", verb, "err", err)
		}
	}
	c.metrics.requests.WithLabelValues(verb, outcome).Inc()
}
