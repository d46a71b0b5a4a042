package checks

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Defaults Istio itself uses when nothing says otherwise.
const (
	DefaultDomain        = "cluster.local"
	DefaultRootNamespace = "istio-system"
	// DefaultNamespace is given to manifests without a namespace, as kubectl apply does.
	DefaultNamespace = "default"
	// DefaultRouteStatusGrace is how long a Gateway API implementation may take to
	// process a route's new spec before MD0603 fires, when the snapshot sets none. Istio
	// writes route status within a second or two of a change; two minutes leave room for a
	// busy controller and for clock skew between the API server and meshdrift.
	DefaultRouteStatusGrace = 2 * time.Minute
)

// Origin is where an object was read from: a manifest file and the line its document
// starts on; empty for objects read from the cluster. LineOf finds a field's line.
type Origin struct {
	File string
	Line int

	fields  *fieldLines
	patches []Origin
}

// PodMeta is what checks may know of a pod: metadata only, never its spec. It is the
// type the live pod cache lists, so a live snapshot takes its pods as they are.
type PodMeta = reconcile.PodMeta

// Snapshot is the set of objects checks read, by kind.
type Snapshot struct {
	// Live says that pods and controller-written status are present and current. Checks
	// with NeedsLive are skipped when it is false.
	Live bool
	// Served holds the kinds the API server serves; nil means every kind (manifests,
	// where a kind with no objects is simply empty).
	Served map[schema.GroupKind]bool
	// Domain is the cluster's DNS domain, RootNamespace Istio's root namespace.
	Domain        string
	RootNamespace string
	Pods          []PodMeta
	// Now is when the snapshot was taken, for checks that measure how long something
	// has lasted; zero offline, where those checks are skipped.
	Now time.Time
	// RouteStatusGrace is how long a route's conditions may lag its generation (MD0603);
	// zero means DefaultRouteStatusGrace.
	RouteStatusGrace time.Duration

	objects map[schema.GroupKind][]*unstructured.Unstructured
	origins map[reconcile.ObjectRef]Origin
	// byRef indexes objects for Get.
	byRef map[reconcile.ObjectRef]*unstructured.Unstructured
	// podIndex indexes Pods (by position), built from the first podsIndexed pods.
	podIndex    map[podKey][]int
	podsIndexed int
	// recheck is the earliest time RecheckAt was given; zero when none.
	recheck time.Time
}

// NewSnapshot returns an empty snapshot with Istio's default domain and root namespace.
func NewSnapshot() *Snapshot {
	return &Snapshot{
		Domain: DefaultDomain, RootNamespace: DefaultRootNamespace,
		objects: map[schema.GroupKind][]*unstructured.Unstructured{},
		origins: map[reconcile.ObjectRef]Origin{},
		byRef:   map[reconcile.ObjectRef]*unstructured.Unstructured{},
	}
}

// clusterScoped are the kinds checks read that have no namespace.
var clusterScoped = map[schema.GroupKind]bool{{Kind: "Namespace"}: true}

// Add adds an object; a namespaced object without a namespace gets DefaultNamespace. A
// Pod is kept as PodMeta only. An object with the same kind, namespace and name as one
// already added replaces it.
func (s *Snapshot) Add(obj *unstructured.Unstructured, o Origin) {
	gk := obj.GroupVersionKind().GroupKind()
	if obj.GetNamespace() == "" && !clusterScoped[gk] {
		obj.SetNamespace(DefaultNamespace)
	}
	if gk == (schema.GroupKind{Kind: "Pod"}) {
		s.Pods = append(s.Pods, PodMeta{Namespace: obj.GetNamespace(), Name: obj.GetName(),
			Labels: obj.GetLabels(), Annotations: obj.GetAnnotations()})
		return
	}
	ref := refOf(obj)
	if _, dup := s.origins[ref]; dup {
		s.objects[gk] = slices.DeleteFunc(s.objects[gk], func(u *unstructured.Unstructured) bool { return refOf(u) == ref })
	}
	s.objects[gk] = append(s.objects[gk], obj)
	s.origins[ref] = o
	s.byRef[ref] = obj
}

// RecheckAt records that a check's answer on this snapshot may change with time alone
// once t has passed (a lag that crosses its grace at t), although no object changes. A
// check with NeedsNow must call it for every such answer: Live does not run again on
// unchanged inputs until the earliest of these times has passed.
func (s *Snapshot) RecheckAt(t time.Time) {
	if s.recheck.IsZero() || t.Before(s.recheck) {
		s.recheck = t
	}
}

// Recheck returns the earliest time given to RecheckAt; zero when none was.
func (s *Snapshot) Recheck() time.Time { return s.recheck }

// List returns the objects of a kind.
func (s *Snapshot) List(gk schema.GroupKind) []*unstructured.Unstructured { return s.objects[gk] }

// Get returns one object, nil when absent.
func (s *Snapshot) Get(gk schema.GroupKind, namespace, name string) *unstructured.Unstructured {
	return s.byRef[reconcile.ObjectRef{Group: gk.Group, Kind: gk.Kind, Namespace: namespace, Name: name}]
}

// Origin returns where an object was read from.
func (s *Snapshot) Origin(ref reconcile.ObjectRef) (Origin, bool) {
	o, ok := s.origins[ref]
	return o, ok
}

func (s *Snapshot) unserved(inputs []schema.GroupVersionKind) []string {
	if s.Served == nil {
		return nil
	}
	var out []string
	for _, gvk := range inputs {
		if !s.Served[gvk.GroupKind()] {
			out = append(out, gvk.GroupKind().String())
		}
	}
	return out
}

// podsMatching returns how many pods in namespace ns ("" for every namespace) carry all
// labels in every selector.
func (s *Snapshot) podsMatching(ns string, selectors ...map[string]string) int {
	s.indexPods()
	// Start from the smallest candidate list: the namespace's pods, or the pods carrying
	// one of the selected labels.
	candidates := s.podIndex[podKey{ns: ns}]
	if ns == "" {
		candidates = s.podIndex[podKey{}]
	}
	for _, sel := range selectors {
		for k, v := range sel {
			if l := s.podIndex[podKey{label: k + "=" + v}]; len(l) < len(candidates) {
				candidates = l
			}
		}
	}
	n := 0
	for _, i := range candidates {
		p := &s.Pods[i]
		if (ns == "" || p.Namespace == ns) && matchesAll(p.Labels, selectors...) {
			n++
		}
	}
	return n
}

// podKey keys the pod index: every pod (zero key), a namespace's pods, or the pods
// carrying a label "key=value".
type podKey struct{ ns, label string }

// indexPods builds the pod index on first use: Pods may be set directly, and a check run
// (one goroutine) does not change them.
func (s *Snapshot) indexPods() {
	if s.podIndex != nil && s.podsIndexed == len(s.Pods) {
		return
	}
	s.podIndex = map[podKey][]int{}
	for i, p := range s.Pods {
		s.podIndex[podKey{}] = append(s.podIndex[podKey{}], i)
		s.podIndex[podKey{ns: p.Namespace}] = append(s.podIndex[podKey{ns: p.Namespace}], i)
		for k, v := range p.Labels {
			key := podKey{label: k + "=" + v}
			s.podIndex[key] = append(s.podIndex[key], i)
		}
	}
	s.podsIndexed = len(s.Pods)
}

func matchesAll(labels map[string]string, selectors ...map[string]string) bool {
	for _, sel := range selectors {
		for k, v := range sel {
			if got, ok := labels[k]; !ok || got != v {
				return false
			}
		}
	}
	return true
}

func refOf(u *unstructured.Unstructured) reconcile.ObjectRef {
	gvk := u.GroupVersionKind()
	return reconcile.ObjectRef{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// Kinds checks read.
var (
	gkService         = schema.GroupKind{Kind: "Service"}
	gkVirtualService  = schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}
	gkDestinationRule = schema.GroupKind{Group: "networking.istio.io", Kind: "DestinationRule"}
	gkGateway         = schema.GroupKind{Group: "networking.istio.io", Kind: "Gateway"}
	gkServiceEntry    = schema.GroupKind{Group: "networking.istio.io", Kind: "ServiceEntry"}
	gkSidecar         = schema.GroupKind{Group: "networking.istio.io", Kind: "Sidecar"}
	gkAuthzPolicy     = schema.GroupKind{Group: "security.istio.io", Kind: "AuthorizationPolicy"}
	gkPeerAuthn       = schema.GroupKind{Group: "security.istio.io", Kind: "PeerAuthentication"}
	gkRequestAuthn    = schema.GroupKind{Group: "security.istio.io", Kind: "RequestAuthentication"}
)

type schemaGVK = schema.GroupVersionKind

func gvk(gk schema.GroupKind, version string) schemaGVK { return gk.WithVersion(version) }

// istioGroup says whether a group is one of Istio's config groups.
func istioGroup(g string) bool { return strings.HasSuffix(g, ".istio.io") }
