package mesh

import (
	"errors"
	"maps"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

var listWatch = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

func group(name, preferred string, versions ...string) *metav1.APIGroup {
	g := &metav1.APIGroup{Name: name, PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: name + "/" + preferred, Version: preferred}}
	for _, v := range versions {
		g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: name + "/" + v, Version: v})
	}
	return g
}

// resources lists "kind=plural" pairs served in one group version, with their status
// subresources, as the API server lists CRDs.
func resources(gv string, kinds ...string) *metav1.APIResourceList {
	l := &metav1.APIResourceList{GroupVersion: gv}
	for _, k := range kinds {
		kind, plural, _ := strings.Cut(k, "=")
		l.APIResources = append(l.APIResources,
			metav1.APIResource{Name: plural, Kind: kind, Namespaced: true, Verbs: listWatch},
			metav1.APIResource{Name: plural + "/status", Kind: kind, Namespaced: true, Verbs: []string{"get", "patch", "update"}})
	}
	return l
}

// The discovery of the Istio and Gateway API CRDs the test bed installs.
func istioDiscovery() ([]*metav1.APIGroup, []*metav1.APIResourceList) {
	groups := []*metav1.APIGroup{
		group("networking.istio.io", "v1", "v1", "v1beta1", "v1alpha3"),
		group("security.istio.io", "v1", "v1", "v1beta1"),
		group("telemetry.istio.io", "v1", "v1", "v1alpha1"),
		group("gateway.networking.k8s.io", "v1", "v1", "v1beta1", "v1alpha2"),
		group("apps", "v1", "v1"),
	}
	networking := []string{"VirtualService=virtualservices", "DestinationRule=destinationrules", "Gateway=gateways",
		"ServiceEntry=serviceentries", "Sidecar=sidecars", "WorkloadEntry=workloadentries", "WorkloadGroup=workloadgroups"}
	lists := []*metav1.APIResourceList{
		resources("networking.istio.io/v1", networking...),
		resources("networking.istio.io/v1beta1", append(networking, "ProxyConfig=proxyconfigs")...),
		resources("networking.istio.io/v1alpha3", append(networking, "EnvoyFilter=envoyfilters")...),
		resources("security.istio.io/v1", "AuthorizationPolicy=authorizationpolicies", "PeerAuthentication=peerauthentications", "RequestAuthentication=requestauthentications"),
		resources("security.istio.io/v1beta1", "AuthorizationPolicy=authorizationpolicies", "PeerAuthentication=peerauthentications", "RequestAuthentication=requestauthentications"),
		resources("telemetry.istio.io/v1", "Telemetry=telemetries"),
		resources("telemetry.istio.io/v1alpha1", "Telemetry=telemetries"),
		resources("gateway.networking.k8s.io/v1", "Gateway=gateways", "HTTPRoute=httproutes", "GRPCRoute=grpcroutes", "GatewayClass=gatewayclasses"),
		resources("gateway.networking.k8s.io/v1beta1", "Gateway=gateways", "HTTPRoute=httproutes", "ReferenceGrant=referencegrants"),
		resources("gateway.networking.k8s.io/v1alpha2", "TCPRoute=tcproutes", "TLSRoute=tlsroutes"),
		resources("apps/v1", "Deployment=deployments"),
	}
	return groups, lists
}

func gvr(g, v, r string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: g, Version: v, Resource: r}
}

func TestPickVersions(t *testing.T) {
	groups, lists := istioDiscovery()
	istio := map[schema.GroupKind]schema.GroupVersionResource{
		{Group: "networking.istio.io", Kind: "VirtualService"}:       gvr("networking.istio.io", "v1", "virtualservices"),
		{Group: "networking.istio.io", Kind: "DestinationRule"}:      gvr("networking.istio.io", "v1", "destinationrules"),
		{Group: "networking.istio.io", Kind: "Gateway"}:              gvr("networking.istio.io", "v1", "gateways"),
		{Group: "networking.istio.io", Kind: "ServiceEntry"}:         gvr("networking.istio.io", "v1", "serviceentries"),
		{Group: "networking.istio.io", Kind: "Sidecar"}:              gvr("networking.istio.io", "v1", "sidecars"),
		{Group: "networking.istio.io", Kind: "WorkloadEntry"}:        gvr("networking.istio.io", "v1", "workloadentries"),
		{Group: "networking.istio.io", Kind: "WorkloadGroup"}:        gvr("networking.istio.io", "v1", "workloadgroups"),
		{Group: "networking.istio.io", Kind: "EnvoyFilter"}:          gvr("networking.istio.io", "v1alpha3", "envoyfilters"),
		{Group: "security.istio.io", Kind: "AuthorizationPolicy"}:    gvr("security.istio.io", "v1", "authorizationpolicies"),
		{Group: "security.istio.io", Kind: "PeerAuthentication"}:     gvr("security.istio.io", "v1", "peerauthentications"),
		{Group: "security.istio.io", Kind: "RequestAuthentication"}:  gvr("security.istio.io", "v1", "requestauthentications"),
		{Group: "telemetry.istio.io", Kind: "Telemetry"}:             gvr("telemetry.istio.io", "v1", "telemetries"),
		{Group: "gateway.networking.k8s.io", Kind: "Gateway"}:        gvr("gateway.networking.k8s.io", "v1", "gateways"),
		{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"}:      gvr("gateway.networking.k8s.io", "v1", "httproutes"),
		{Group: "gateway.networking.k8s.io", Kind: "GRPCRoute"}:      gvr("gateway.networking.k8s.io", "v1", "grpcroutes"),
		{Group: "gateway.networking.k8s.io", Kind: "ReferenceGrant"}: gvr("gateway.networking.k8s.io", "v1beta1", "referencegrants"),
		{Group: "gateway.networking.k8s.io", Kind: "TCPRoute"}:       gvr("gateway.networking.k8s.io", "v1alpha2", "tcproutes"),
		{Group: "gateway.networking.k8s.io", Kind: "TLSRoute"}:       gvr("gateway.networking.k8s.io", "v1alpha2", "tlsroutes"),
	}
	withoutGroup := func(m map[schema.GroupKind]schema.GroupVersionResource, g string) map[schema.GroupKind]schema.GroupVersionResource {
		out := maps.Clone(m)
		for gk := range out {
			if gk.Group == g {
				delete(out, gk)
			}
		}
		return out
	}

	for _, tc := range []struct {
		name   string
		groups []*metav1.APIGroup
		lists  []*metav1.APIResourceList
		skip   map[string]bool
		want   map[schema.GroupKind]schema.GroupVersionResource
	}{
		{"istio and gateway api", groups, lists, nil, istio},
		{"nothing installed", []*metav1.APIGroup{group("apps", "v1", "v1")}, []*metav1.APIResourceList{resources("apps/v1", "Deployment=deployments")}, nil,
			map[schema.GroupKind]schema.GroupVersionResource{}},
		{"failed group left out", groups, lists, map[string]bool{"security.istio.io": true}, withoutGroup(istio, "security.istio.io")},
		{
			"no v1: the group's preferred version",
			[]*metav1.APIGroup{group("telemetry.istio.io", "v1alpha1", "v1alpha1", "v1alpha2")},
			[]*metav1.APIResourceList{resources("telemetry.istio.io/v1alpha2", "Telemetry=telemetries"), resources("telemetry.istio.io/v1alpha1", "Telemetry=telemetries")},
			nil,
			map[schema.GroupKind]schema.GroupVersionResource{{Group: "telemetry.istio.io", Kind: "Telemetry"}: gvr("telemetry.istio.io", "v1alpha1", "telemetries")},
		},
		{
			"linkerd",
			[]*metav1.APIGroup{group("policy.linkerd.io", "v1beta3", "v1beta3", "v1alpha1"), group("linkerd.io", "v1alpha2", "v1alpha2", "v1alpha1")},
			[]*metav1.APIResourceList{
				resources("policy.linkerd.io/v1beta3", "HTTPRoute=httproutes", "Server=servers"),
				resources("policy.linkerd.io/v1alpha1", "AuthorizationPolicy=authorizationpolicies", "HTTPRoute=httproutes", "MeshTLSAuthentication=meshtlsauthentications"),
				resources("linkerd.io/v1alpha2", "ServiceProfile=serviceprofiles"),
			},
			nil,
			map[schema.GroupKind]schema.GroupVersionResource{
				{Group: "policy.linkerd.io", Kind: "HTTPRoute"}:           gvr("policy.linkerd.io", "v1beta3", "httproutes"),
				{Group: "policy.linkerd.io", Kind: "Server"}:              gvr("policy.linkerd.io", "v1beta3", "servers"),
				{Group: "policy.linkerd.io", Kind: "AuthorizationPolicy"}: gvr("policy.linkerd.io", "v1alpha1", "authorizationpolicies"),
				{Group: "linkerd.io", Kind: "ServiceProfile"}:             gvr("linkerd.io", "v1alpha2", "serviceprofiles"),
			},
		},
		{
			"a kind without list and watch is not watched",
			[]*metav1.APIGroup{group("networking.istio.io", "v1", "v1")},
			[]*metav1.APIResourceList{{GroupVersion: "networking.istio.io/v1", APIResources: []metav1.APIResource{
				{Name: "virtualservices", Kind: "VirtualService", Verbs: []string{"get", "create"}},
			}}},
			nil,
			map[schema.GroupKind]schema.GroupVersionResource{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pickVersions(tc.groups, tc.lists, tc.skip)
			for gk, want := range tc.want {
				if got[gk] != want {
					t.Errorf("%s: got %v, want %v", gk, got[gk], want)
				}
			}
			for gk, g := range got {
				if _, ok := tc.want[gk]; !ok {
					t.Errorf("%s: watched as %v, want not watched", gk, g)
				}
			}
		})
	}
}

// partialDiscovery answers ServerGroupsAndResources like the API server does when some
// group versions cannot be read (an aggregated API that is down).
type partialDiscovery struct {
	discovery.DiscoveryInterface
	groups []*metav1.APIGroup
	lists  []*metav1.APIResourceList
	err    error
}

func (p partialDiscovery) ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	return p.groups, p.lists, p.err
}

func TestDiscoverFailures(t *testing.T) {
	groups, lists := istioDiscovery()
	for _, tc := range []struct {
		name       string
		err        error
		wantFailed []string
		wantErr    string
		wantKinds  int
	}{
		{"all good", nil, nil, "", 18},
		{"another group failing is not ours to report",
			&discovery.ErrGroupDiscoveryFailed{Groups: map[schema.GroupVersion]error{{Group: "metrics.k8s.io", Version: "v1beta1"}: errors.New("service unavailable")}},
			nil, "", 18},
		{"a mesh group failing",
			&discovery.ErrGroupDiscoveryFailed{Groups: map[schema.GroupVersion]error{{Group: "security.istio.io", Version: "v1"}: errors.New("service unavailable")}},
			[]string{"security.istio.io"}, "discovering security.istio.io/v1: service unavailable", 15},
		{"api server away", errors.New("connection refused"),
			[]string{"networking.istio.io", "security.istio.io", "gateway.networking.k8s.io", "linkerd.io"}, "discovering mesh kinds: connection refused", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dc := partialDiscovery{groups: groups, lists: lists, err: tc.err}
			if tc.name == "api server away" {
				dc.groups, dc.lists = nil, nil
			}
			d, err := discover(dc)
			if got := errText(err); got != tc.wantErr {
				t.Errorf("error %q, want %q", got, tc.wantErr)
			}
			for _, g := range tc.wantFailed {
				if !d.FailedGroups[g] {
					t.Errorf("group %s not marked failed: %v", g, d.FailedGroups)
				}
			}
			if tc.wantFailed == nil && len(d.FailedGroups) > 0 {
				t.Errorf("failed groups %v, want none", d.FailedGroups)
			}
			if len(d.Resources) != tc.wantKinds {
				t.Errorf("%d kinds, want %d: %v", len(d.Resources), tc.wantKinds, d.Resources)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
