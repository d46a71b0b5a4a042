package istio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// RevisionLabel is the label carrying an istiod pod's control-plane revision.
const RevisionLabel = "istio.io/rev"

// Ports istiod listens on in a cluster.
const (
	PortXDSPlaintext = 15010
	PortXDSTLS       = 15012
	PortMonitoring   = 15014
)

// PodTargetsConfig finds istiod pods.
type PodTargetsConfig struct {
	// Namespace holds the istiod pods; default "istio-system".
	Namespace string
	// Selector selects them; default "app=istiod" (every revision).
	Selector string
	// Port is the port read on each pod; default the port of Transport.
	Port int
	// Transport picks the default Port; default TransportXDSTLS.
	Transport Transport
	// MonitoringPort serves /metrics; default 15014.
	MonitoringPort int
}

// DefaultPort is the port istiod serves a transport on.
func DefaultPort(t Transport) int {
	switch t {
	case TransportXDSPlaintext:
		return PortXDSPlaintext
	case TransportHTTP:
		return PortMonitoring
	default:
		return PortXDSTLS
	}
}

func (c PodTargetsConfig) withDefaults() PodTargetsConfig {
	if c.Namespace == "" {
		c.Namespace = "istio-system"
	}
	if c.Selector == "" {
		c.Selector = "app=istiod"
	}
	if c.Transport == "" {
		c.Transport = TransportXDSTLS
	}
	if c.Port == 0 {
		c.Port = DefaultPort(c.Transport)
	}
	if c.MonitoringPort == 0 {
		c.MonitoringPort = PortMonitoring
	}
	return c
}

// podTargets follows istiod pods with an informer limited to one namespace and selector,
// so that meshdrift needs only namespaced pod list/watch rights and caches a few pods.
type podTargets struct {
	client   kubernetes.Interface
	cfg      PodTargetsConfig
	selector string
}

// PodTargets is a TargetSource of the istiod pods that match cfg.
func PodTargets(client kubernetes.Interface, cfg PodTargetsConfig) (TargetSource, error) {
	if client == nil {
		return nil, errors.New("pod targets: kubernetes client is nil")
	}
	cfg = cfg.withDefaults()
	sel, err := labels.Parse(cfg.Selector)
	if err != nil {
		return nil, fmt.Errorf("pod targets: selector %q: %w", cfg.Selector, err)
	}
	var errs []error
	if err := cfg.Transport.validate(); err != nil {
		errs = append(errs, err)
	}
	for name, p := range map[string]int{"port": cfg.Port, "monitoring port": cfg.MonitoringPort} {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("pod targets: %s %d out of range", name, p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &podTargets{client: client, cfg: cfg, selector: sel.String()}, nil
}

func (p *podTargets) Targets(ctx context.Context) ([]Target, error) {
	list, err := p.client.CoreV1().Pods(p.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: p.selector})
	if err != nil {
		return nil, fmt.Errorf("list istiod pods in %s (%s): %w", p.cfg.Namespace, p.selector, err)
	}
	pods := make([]*corev1.Pod, 0, len(list.Items))
	for i := range list.Items {
		pods = append(pods, &list.Items[i])
	}
	return podTargetSet(pods, nil, p.cfg), nil
}

func (p *podTargets) Watch(ctx context.Context, update func([]Target), fail func(error)) error {
	var (
		mu     sync.Mutex
		synced bool
		sent   bool
		last   []Target
		known  = map[string]bool{}
		// failing is set by a failed list or watch and cleared by a successful one, which
		// forces the next update out so that the caller learns of the recovery.
		failing bool
		force   bool
	)
	healthy := func() {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			failing, force = false, true
		}
	}
	ns, sel := p.cfg.Namespace, p.selector
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel
			list, err := p.client.CoreV1().Pods(ns).List(ctx, o)
			if err == nil {
				healthy()
			}
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			w, err := p.client.CoreV1().Pods(ns).Watch(ctx, o)
			if err == nil {
				healthy()
			}
			return w, err
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})

	recompute := func() {
		mu.Lock()
		defer mu.Unlock()
		if !synced || failing {
			return // the first update waits for the complete list
		}
		objs := inf.GetStore().List()
		pods := make([]*corev1.Pod, 0, len(objs))
		for _, o := range objs {
			if pod, ok := o.(*corev1.Pod); ok {
				pods = append(pods, pod)
			}
		}
		ts := podTargetSet(pods, known, p.cfg)
		if sent && !force && slices.Equal(ts, last) {
			return
		}
		clear(known)
		for _, t := range ts {
			known[t.Name] = true
		}
		last, sent, force = ts, true, false
		update(slices.Clone(ts))
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { recompute() },
		UpdateFunc: func(any, any) { recompute() },
		DeleteFunc: func(any) { recompute() },
	}
	if _, err := inf.AddEventHandler(handler); err != nil {
		return fmt.Errorf("watch istiod pods: %w", err)
	}
	// The informer retries failed lists and watches by itself; without this a forbidden
	// list would leave meshdrift silently without any istiod.
	err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return // a watch ending: the informer resumes it
		}
		mu.Lock()
		failing = true
		mu.Unlock()
		fail(fmt.Errorf("list/watch pods %s in %s: %w", sel, ns, err))
	})
	if err != nil {
		return fmt.Errorf("watch istiod pods: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		inf.RunWithContext(ctx)
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		<-done
		return nil // ctx ended before the first list
	}
	mu.Lock()
	synced = true
	mu.Unlock()
	recompute()
	// A recovery that brings no pod event (no istiod at all) is reported from here.
	tick := time.NewTicker(recoveryCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return nil
		case <-tick.C:
			recompute()
		}
	}
}

// recoveryCheck is how often a recovered pod watch with no pod event is reported.
const recoveryCheck = 5 * time.Second

// podTargetSet turns pods into targets. A pod becomes a target once it runs and is ready
// with an IP. It stays one while it runs even if it turns unready, so that an unhealthy
// istiod reads as down instead of vanishing with its proxies; it stops being one when it
// is deleted, terminating or no longer running, as its proxies then reconnect elsewhere.
func podTargetSet(pods []*corev1.Pod, known map[string]bool, cfg PodTargetsConfig) []Target {
	var ts []Target
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
			continue
		}
		if !podReady(pod) && !known[pod.Name] {
			continue
		}
		rev := pod.Labels[RevisionLabel]
		if rev == "" {
			rev = DefaultRevision
		}
		ts = append(ts, Target{
			Name:           pod.Name,
			Revision:       rev,
			Addr:           net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(cfg.Port)),
			MonitoringAddr: net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(cfg.MonitoringPort)),
		})
	}
	sortTargets(ts)
	return ts
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
