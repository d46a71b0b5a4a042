package mesh

import (
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/meshdrift/meshdrift/reconcile/checks"
)

// LiveSource builds the semantic checks' snapshot of the cluster from caches meshdrift
// already keeps: the mesh objects from the Watcher's informers, Services, namespaces and
// pods' metadata. It implements checks.Source, and checks.Versioned: each cache counts
// its changes, so that the checks are not run again on a picture that did not change.
type LiveSource struct {
	Watcher    *Watcher
	Services   *Services
	Pods       *Pods
	Namespaces *Namespaces
	// RootNamespace is Istio's root namespace; "" means DefaultRootNamespace.
	RootNamespace string
	// Kinds are the mesh kinds the checks read (checks.InputKinds); nil means every
	// watched kind. Only these are decoded from the watcher's compact cache.
	Kinds map[schema.GroupKind]bool
}

// Kinds every Kubernetes API server serves; the mesh kinds served are the ones watched.
var (
	gkService   = schema.GroupKind{Kind: "Service"}
	gkPod       = schema.GroupKind{Kind: "Pod"}
	gkNamespace = schema.GroupKind{Kind: "Namespace"}
)

// Snapshot returns the current picture, or, while any cache has not synced, nil and why:
// an empty picture is not a healthy one.
func (l *LiveSource) Snapshot() (*checks.Snapshot, string) {
	if why := l.waiting(); why != "" {
		return nil, why
	}
	s := checks.NewSnapshot()
	s.Live = true
	// Checks of how long a controller has lagged (route status) judge against now.
	s.Now = time.Now()
	if l.RootNamespace != "" {
		s.RootNamespace = l.RootNamespace
	}
	s.Served = map[schema.GroupKind]bool{gkService: true, gkPod: true, gkNamespace: true}
	var want func(schema.GroupKind) bool
	if l.Kinds != nil {
		want = func(gk schema.GroupKind) bool { return l.Kinds[gk] }
	}
	for gk, objs := range l.Watcher.Objects(want) {
		s.Served[gk] = true
		for _, u := range objs {
			s.Add(u, checks.Origin{})
		}
	}
	for _, u := range l.Services.List() {
		s.Add(u, checks.Origin{})
	}
	for _, ns := range l.Namespaces.List() {
		meta := map[string]any{"name": ns.Name}
		if len(ns.Labels) > 0 {
			meta["labels"] = stringMap(ns.Labels)
		}
		s.Add(&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": meta}}, checks.Origin{})
	}
	s.Pods = l.Pods.List()
	return s, ""
}

// Version is the sum of the change counters of every cache Snapshot reads: it grows
// whenever a snapshot could differ (checks.Versioned), and costs a few atomic loads.
// Each counter only grows, so the sum does too.
func (l *LiveSource) Version() uint64 {
	var want func(schema.GroupKind) bool
	if l.Kinds != nil {
		want = func(gk schema.GroupKind) bool { return l.Kinds[gk] }
	}
	return l.Watcher.Version(want) + l.Services.Version() + l.Namespaces.Version() + l.Pods.Version()
}

// countChanges returns an event handler counting an informer's changes in n: adds,
// deletes, and updates that move the resourceVersion and, when changed is set, change
// what it compares. A handler runs once the informer's store holds the change, which is
// what checks.Versioned asks.
func countChanges(n *atomic.Uint64, changed func(old, cur any) bool) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { n.Add(1) },
		UpdateFunc: func(old, cur any) {
			if resourceVersionMoved(old, cur) && (changed == nil || changed(old, cur)) {
				n.Add(1)
			}
		},
		DeleteFunc: func(any) { n.Add(1) },
	}
}

// resourceVersionMoved reports whether an update is a write rather than a resync, which
// delivers the cached object again. Anything without metadata counts as a write.
func resourceVersionMoved(old, cur any) bool {
	o, err1 := meta.Accessor(old)
	c, err2 := meta.Accessor(cur)
	return err1 != nil || err2 != nil || o.GetResourceVersion() != c.GetResourceVersion()
}

// waiting names the caches not synced yet, with the Services watch's error if it fails.
func (l *LiveSource) waiting() string {
	var pending []string
	if !l.Watcher.HasSynced() {
		pending = append(pending, "mesh objects")
	}
	if !l.Services.HasSynced() {
		p := "services"
		if err := l.Services.Err(); err != nil {
			p += " (" + err.Error() + ")"
		}
		pending = append(pending, p)
	}
	if !l.Namespaces.HasSynced() {
		pending = append(pending, "namespaces")
	}
	if !l.Pods.HasSynced() {
		pending = append(pending, "pods")
	}
	if len(pending) == 0 {
		return ""
	}
	return "not synced: " + strings.Join(pending, ", ")
}
