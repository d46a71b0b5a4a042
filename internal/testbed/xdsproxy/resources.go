package xdsproxy

import (
	"bytes"
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

const typeHCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

type namedResource struct {
	name string
	msg  proto.Message
	// raw is the resource as istiod encoded it; string fields appear in it verbatim.
	raw []byte
}

// decodeResources decodes each Any into its go-control-plane type (the imports above register
// them), keeping the Any when the type is unknown here, e.g. Istio's own types.
func decodeResources(anys []*anypb.Any) []namedResource {
	out := make([]namedResource, 0, len(anys))
	for i, a := range anys {
		name, msg := decodeResource(a)
		if name == "" {
			name = fmt.Sprintf("#%d", i) // unnamed or undecodable: keep it addressable
		}
		out = append(out, namedResource{name: name, msg: msg, raw: a.GetValue()})
	}
	return out
}

func decodeResource(a *anypb.Any) (string, proto.Message) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return "", a
	}
	// Servers may wrap resources (TTL, per-resource versions); Envoy unwraps them.
	if r, ok := m.(*discoveryv3.Resource); ok {
		if r.GetResource() == nil {
			return r.GetName(), r
		}
		name, inner := decodeResource(r.GetResource())
		if name == "" {
			name = r.GetName()
		}
		return name, inner
	}
	return resourceName(m), m
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *clusterv3.Cluster:
		return r.GetName()
	case *listenerv3.Listener:
		return r.GetName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case *corev3.TypedExtensionConfig:
		return r.GetName()
	}
	f := m.ProtoReflect().Descriptor().Fields().ByName("name")
	if f == nil || f.Kind() != protoreflect.StringKind || f.IsList() {
		return ""
	}
	return m.ProtoReflect().Get(f).String()
}

// rejectedNames is the start of an Envoy-like rejection message for the resources of a
// response that contain substr: "Error adding/updating cluster(s) a, b" (Envoy's CDS and
// LDS wording; the other types are worded alike), with the virtual hosts that contain it
// for route configurations. "" when no resource contains substr.
func rejectedNames(typeURL string, res []namedResource, substr string) string {
	var names []string
	for _, r := range res {
		if !bytes.Contains(r.raw, []byte(substr)) {
			continue
		}
		name := r.name
		if rc, ok := r.msg.(*routev3.RouteConfiguration); ok {
			var hosts []string
			for _, vh := range rc.GetVirtualHosts() {
				if b, err := proto.Marshal(vh); err == nil && bytes.Contains(b, []byte(substr)) {
					hosts = append(hosts, vh.GetName())
				}
			}
			if len(hosts) > 0 {
				name += " (virtual host " + strings.Join(hosts, ", ") + ")"
			}
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return ""
	}
	noun := typeURL[strings.LastIndexByte(typeURL, '.')+1:]
	switch typeURL {
	case TypeCluster:
		noun = "cluster"
	case TypeListener:
		noun = "listener"
	case TypeRoute:
		noun = "route configuration"
	case TypeEndpoint:
		noun = "cluster load assignment"
	}
	return "Error adding/updating " + noun + "(s) " + strings.Join(names, ", ")
}

// edsNames are the EDS resources the clusters need: eds_cluster_config.service_name, or the
// cluster name when it is empty.
func edsNames(res []namedResource) []string {
	var names []string
	for _, r := range res {
		c, ok := r.msg.(*clusterv3.Cluster)
		if !ok || c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
			names = append(names, n)
		} else {
			names = append(names, c.GetName())
		}
	}
	return names
}

type listenerReferences struct {
	routes     []string // rds.route_config_name of HTTP connection managers
	extensions []string // filters configured through ECDS (config_discovery)
}

func listenerRefs(res []namedResource) listenerReferences {
	var refs listenerReferences
	addHCM := func(a *anypb.Any) {
		if a.GetTypeUrl() != typeHCM {
			return
		}
		var h hcmv3.HttpConnectionManager
		if err := a.UnmarshalTo(&h); err != nil {
			return // Envoy would reject it; nothing to subscribe to
		}
		if n := h.GetRds().GetRouteConfigName(); n != "" {
			refs.routes = append(refs.routes, n)
		}
		for _, f := range h.GetHttpFilters() {
			if f.GetConfigDiscovery() != nil {
				refs.extensions = append(refs.extensions, f.GetName())
			}
		}
	}
	for _, r := range res {
		l, ok := r.msg.(*listenerv3.Listener)
		if !ok {
			continue
		}
		for _, lf := range l.GetListenerFilters() {
			if lf.GetConfigDiscovery() != nil {
				refs.extensions = append(refs.extensions, lf.GetName())
			}
		}
		chains := l.GetFilterChains()
		if dc := l.GetDefaultFilterChain(); dc != nil {
			chains = append(chains[:len(chains):len(chains)], dc)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				if f.GetConfigDiscovery() != nil {
					refs.extensions = append(refs.extensions, f.GetName())
					continue
				}
				addHCM(f.GetTypedConfig())
			}
		}
		if al := l.GetApiListener().GetApiListener(); al != nil {
			addHCM(al)
		}
	}
	return refs
}

// Clusters are the CDS resources the proxy holds.
func (s Snapshot) Clusters() map[string]*clusterv3.Cluster {
	return typed[*clusterv3.Cluster](s, TypeCluster)
}

// Listeners are the LDS resources the proxy holds.
func (s Snapshot) Listeners() map[string]*listenerv3.Listener {
	return typed[*listenerv3.Listener](s, TypeListener)
}

// RouteConfigs are the RDS resources the proxy holds.
func (s Snapshot) RouteConfigs() map[string]*routev3.RouteConfiguration {
	return typed[*routev3.RouteConfiguration](s, TypeRoute)
}

// Endpoints are the EDS resources the proxy holds, by service name.
func (s Snapshot) Endpoints() map[string]*endpointv3.ClusterLoadAssignment {
	return typed[*endpointv3.ClusterLoadAssignment](s, TypeEndpoint)
}

func typed[T proto.Message](s Snapshot, typeURL string) map[string]T {
	res := s.Types[typeURL].Resources
	out := make(map[string]T, len(res))
	for name, m := range res {
		if v, ok := m.(T); ok {
			out[name] = v
		}
	}
	return out
}
