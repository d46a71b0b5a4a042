package mesh

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
)

// meshKinds are the kinds a mesh control plane turns into proxy configuration, so a change
// of any of them must end in a push. Each is watched only where its CRD is installed.
var meshKinds = []schema.GroupKind{
	// Istio networking. EnvoyFilter is served in v1alpha3 only.
	{Group: "networking.istio.io", Kind: "VirtualService"},
	{Group: "networking.istio.io", Kind: "DestinationRule"},
	{Group: "networking.istio.io", Kind: "Gateway"},
	{Group: "networking.istio.io", Kind: "ServiceEntry"},
	{Group: "networking.istio.io", Kind: "Sidecar"},
	{Group: "networking.istio.io", Kind: "EnvoyFilter"},
	{Group: "networking.istio.io", Kind: "WorkloadEntry"},
	{Group: "networking.istio.io", Kind: "WorkloadGroup"},
	// Istio security and telemetry.
	{Group: "security.istio.io", Kind: "AuthorizationPolicy"},
	{Group: "security.istio.io", Kind: "PeerAuthentication"},
	{Group: "security.istio.io", Kind: "RequestAuthentication"},
	{Group: "telemetry.istio.io", Kind: "Telemetry"},
	// Pushed to proxies through ECDS.
	{Group: "extensions.istio.io", Kind: "WasmPlugin"},
	// Gateway API, as istiod translates it. TCPRoute and TLSRoute are experimental in
	// older Gateway API releases and often absent.
	{Group: "gateway.networking.k8s.io", Kind: "Gateway"},
	{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"},
	{Group: "gateway.networking.k8s.io", Kind: "GRPCRoute"},
	{Group: "gateway.networking.k8s.io", Kind: "TCPRoute"},
	{Group: "gateway.networking.k8s.io", Kind: "TLSRoute"},
	{Group: "gateway.networking.k8s.io", Kind: "ReferenceGrant"},
	{Group: "gateway.networking.k8s.io", Kind: "BackendTLSPolicy"},
	{Group: "gateway.networking.k8s.io", Kind: "ListenerSet"},
	// Linkerd, for clusters that run it.
	{Group: "policy.linkerd.io", Kind: "HTTPRoute"},
	{Group: "policy.linkerd.io", Kind: "Server"},
	{Group: "policy.linkerd.io", Kind: "AuthorizationPolicy"},
	{Group: "linkerd.io", Kind: "ServiceProfile"},
}

// meshGroups are the API groups of meshKinds.
func meshGroups() map[string]bool {
	groups := map[string]bool{}
	for _, gk := range meshKinds {
		groups[gk.Group] = true
	}
	return groups
}

// discovered is what one discovery round found.
type discovered struct {
	// Resources holds the version to watch of every mesh kind that is served.
	Resources map[schema.GroupKind]schema.GroupVersionResource
	// FailedGroups are mesh groups that could not be read: their kinds may or may not be
	// served, so watches of them are left as they are.
	FailedGroups map[string]bool
}

// discover asks the API server which mesh kinds it serves. A failure of one group
// (an unavailable aggregated API, say) fails only that group; other groups' failures
// are none of our business and are ignored.
func discover(dc discovery.DiscoveryInterface) (discovered, error) {
	if c, ok := dc.(discovery.CachedDiscoveryInterface); ok {
		// A cached client would hide a CRD installed after the first call.
		c.Invalidate()
	}
	wanted := meshGroups()
	groups, lists, err := dc.ServerGroupsAndResources()
	d := discovered{FailedGroups: map[string]bool{}}
	if err != nil {
		var partial *discovery.ErrGroupDiscoveryFailed
		if !errors.As(err, &partial) {
			for g := range wanted {
				d.FailedGroups[g] = true
			}
			return d, fmt.Errorf("discovering mesh kinds: %w", err)
		}
		var errs []error
		for _, gv := range sortedGroupVersions(partial.Groups) {
			if wanted[gv.Group] {
				d.FailedGroups[gv.Group] = true
				errs = append(errs, fmt.Errorf("discovering %s: %w", gv, partial.Groups[gv]))
			}
		}
		err = errors.Join(errs...)
	}
	d.Resources = pickVersions(groups, lists, d.FailedGroups)
	return d, err
}

func sortedGroupVersions(m map[schema.GroupVersion]error) []schema.GroupVersion {
	gvs := make([]schema.GroupVersion, 0, len(m))
	for gv := range m {
		gvs = append(gvs, gv)
	}
	slices.SortFunc(gvs, func(a, b schema.GroupVersion) int { return strings.Compare(a.String(), b.String()) })
	return gvs
}

// pickVersions chooses, for every served mesh kind, the version to watch: v1 where the
// kind is served in v1, else the group's preferred version where it serves the kind,
// else the highest version (in Kubernetes' ordering, v1 > v1beta1 > v1alpha3) that does.
// Kinds in skip are left out.
func pickVersions(groups []*metav1.APIGroup, lists []*metav1.APIResourceList, skip map[string]bool) map[schema.GroupKind]schema.GroupVersionResource {
	preferred := map[string]string{}
	for _, g := range groups {
		if g != nil {
			preferred[g.Name] = g.PreferredVersion.Version
		}
	}
	wanted := map[schema.GroupKind]bool{}
	for _, gk := range meshKinds {
		wanted[gk] = true
	}
	// served[kind][version] = resource
	served := map[schema.GroupKind]map[string]string{}
	for _, list := range lists {
		if list == nil {
			continue
		}
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil || skip[gv.Group] {
			continue
		}
		for _, r := range list.APIResources {
			gk := schema.GroupKind{Group: gv.Group, Kind: r.Kind}
			// Subresources ("virtualservices/status") share the kind; informers need
			// list and watch.
			if !wanted[gk] || strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") {
				continue
			}
			if served[gk] == nil {
				served[gk] = map[string]string{}
			}
			served[gk][gv.Version] = r.Name
		}
	}
	out := make(map[schema.GroupKind]schema.GroupVersionResource, len(served))
	for gk, versions := range served {
		v := ""
		switch {
		case versions["v1"] != "":
			v = "v1"
		case versions[preferred[gk.Group]] != "":
			v = preferred[gk.Group]
		default:
			for cand := range versions {
				if v == "" || version.CompareKubeAwareVersionStrings(cand, v) > 0 {
					v = cand
				}
			}
		}
		out[gk] = schema.GroupVersionResource{Group: gk.Group, Version: v, Resource: versions[v]}
	}
	return out
}
