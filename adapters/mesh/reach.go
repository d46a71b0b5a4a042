package mesh

import (
	"math"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/reconcile"
)

// DefaultRootNamespace is Istio's default root namespace (meshConfig.rootNamespace):
// workload policies there apply to the whole mesh.
const DefaultRootNamespace = "istio-system"

// Istio's and Gateway API's groups, for the kinds whose spec says where they land.
const (
	groupNetworking = "networking.istio.io"
	groupSecurity   = "security.istio.io"
	groupTelemetry  = "telemetry.istio.io"
	groupExtensions = "extensions.istio.io"
	groupGatewayAPI = "gateway.networking.k8s.io"
)

// reachOf reads what an object's spec says about the proxies and resources it can
// affect. The spec is written by anyone who can edit the object and is read as
// untyped JSON: a field of the wrong shape is skipped, never trusted, and a kind this
// function does not know gives the zero Reach, which narrows nothing.
func reachOf(gk schema.GroupKind, namespace string, obj map[string]any, rootNamespace string) reconcile.Reach {
	spec, _ := obj["spec"].(map[string]any)
	if spec == nil {
		return reconcile.Reach{}
	}
	r := &reachBuilder{Reach: reconcile.Reach{Known: true}}
	switch {
	case gk.Group == groupNetworking && gk.Kind == "VirtualService":
		r.ExportTo = stringList(spec["exportTo"])
		r.Gateways = stringList(spec["gateways"])
		r.Hosts = stringList(spec["hosts"])
		for _, section := range []string{"http", "tcp", "tls"} {
			for _, rule := range objectList(spec[section]) {
				for _, route := range objectList(rule["route"]) {
					r.addDestination(route["destination"])
				}
				r.addDestination(rule["mirror"])
				for _, m := range objectList(rule["mirrors"]) {
					r.addDestination(m["destination"])
				}
			}
		}
	case gk.Group == groupNetworking && gk.Kind == "DestinationRule":
		r.ExportTo = stringList(spec["exportTo"])
		if h, ok := spec["host"].(string); ok {
			r.Hosts = []string{h}
		}
		r.Selector = spec["workloadSelector"] != nil
		policies := []map[string]any{mapOf(spec["trafficPolicy"])}
		for _, s := range objectList(spec["subsets"]) {
			policies = append(policies, mapOf(s["trafficPolicy"]))
		}
		for _, p := range policies {
			r.RouteHashing = r.RouteHashing || hashes(p)
			for _, pl := range objectList(p["portLevelSettings"]) {
				r.addPort(mapOf(pl["port"])["number"])
				r.RouteHashing = r.RouteHashing || hashes(pl)
			}
		}
	case gk.Group == groupNetworking && gk.Kind == "ServiceEntry":
		// A ServiceEntry's workloadSelector picks its endpoints, not the proxies it
		// reaches: every proxy it is exported to gets its clusters.
		r.ExportTo = stringList(spec["exportTo"])
		r.Hosts = stringList(spec["hosts"])
		for _, p := range objectList(spec["ports"]) {
			r.addPort(p["number"])
		}
	case gk.Group == groupNetworking && gk.Kind == "Gateway":
		r.Selector = spec["selector"] != nil
		for _, s := range objectList(spec["servers"]) {
			r.addPort(mapOf(s["port"])["number"])
			for _, h := range stringList(s["hosts"]) {
				// "namespace/host": the namespace part filters VirtualServices.
				if _, host, ok := strings.Cut(h, "/"); ok {
					h = host
				}
				if h != "" {
					r.Hosts = append(r.Hosts, h)
				}
			}
			if mapOf(s["tls"])["mode"] == "AUTO_PASSTHROUGH" {
				r.AutoPassthrough = true
			}
		}
	case gk.Group == groupNetworking && (gk.Kind == "Sidecar" || gk.Kind == "EnvoyFilter"):
		r.Selector = spec["workloadSelector"] != nil || spec["targetRefs"] != nil
		r.RootNamespace = namespace == rootNamespace
	case gk.Group == groupSecurity || gk.Group == groupTelemetry || gk.Group == groupExtensions:
		// PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry,
		// WasmPlugin: selector or targetRef(s) narrow them to some workloads.
		r.Selector = spec["selector"] != nil || spec["targetRef"] != nil || spec["targetRefs"] != nil
		r.RootNamespace = namespace == rootNamespace
	case gk.Group == groupGatewayAPI && (gk.Kind == "Gateway" || gk.Kind == "ListenerSet"):
		for _, l := range objectList(spec["listeners"]) {
			r.addPort(l["port"])
			if h, ok := l["hostname"].(string); ok && h != "" {
				r.Hosts = append(r.Hosts, h)
			}
		}
	case gk.Group == groupGatewayAPI && strings.HasSuffix(gk.Kind, "Route"):
		r.Hosts = stringList(spec["hostnames"])
		for _, p := range objectList(spec["parentRefs"]) {
			group, _ := p["group"].(string)
			kind, _ := p["kind"].(string)
			ns, _ := p["namespace"].(string)
			name, _ := p["name"].(string)
			if ns == "" {
				ns = namespace
			}
			r.addPort(p["port"])
			switch {
			case kind == "Service" && (group == "" || group == "core"):
				r.Gateways = appendNew(r.Gateways, "mesh")
				r.ServiceParentNamespaces = appendNew(r.ServiceParentNamespaces, ns)
			case (kind == "" || kind == "Gateway") && (group == "" || group == groupGatewayAPI) && name != "":
				r.Gateways = appendNew(r.Gateways, ns+"/"+name)
			default:
				// A parent meshdrift does not model (a ListenerSet, another
				// implementation's kind): the route may land anywhere.
				return reconcile.Reach{Hosts: r.Hosts}
			}
		}
		for _, rule := range objectList(spec["rules"]) {
			for _, b := range objectList(rule["backendRefs"]) {
				kind, _ := b["kind"].(string)
				name, _ := b["name"].(string)
				ns, _ := b["namespace"].(string)
				if ns == "" {
					ns = namespace
				}
				if (kind == "" || kind == "Service") && name != "" {
					r.Hosts = append(r.Hosts, name+"."+ns+".svc.cluster.local")
				}
				r.addPort(b["port"])
			}
		}
	default:
		return reconcile.Reach{}
	}
	return r.Reach
}

type reachBuilder struct{ reconcile.Reach }

// addDestination records a VirtualService destination {host, port: {number}}.
func (r *reachBuilder) addDestination(v any) {
	d := mapOf(v)
	if h, ok := d["host"].(string); ok && h != "" {
		r.Hosts = appendNew(r.Hosts, h)
	}
	r.addPort(mapOf(d["port"])["number"])
}

func (r *reachBuilder) addPort(v any) {
	if p, ok := portNumber(v); ok && !slices.Contains(r.Ports, p) {
		r.Ports = append(r.Ports, p)
	}
}

// strings_ is a list of strings; anything else in it is skipped.
func stringList(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		if s, ok := e.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

// maps_ is a list of objects; anything else in it is skipped.
func objectList(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// hashes reports whether a traffic policy uses a consistent-hash load balancer.
func hashes(policy map[string]any) bool {
	return mapOf(policy["loadBalancer"])["consistentHash"] != nil
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// portNumber reads a port number as JSON decodes it (int64 from the API server's
// unstructured decoding, float64 from encoding/json); anything else, or out of range,
// is no port.
func portNumber(v any) (uint32, bool) {
	var f float64
	switch n := v.(type) {
	case int64:
		f = float64(n)
	case int:
		f = float64(n)
	case float64:
		f = n
	default:
		return 0, false
	}
	if f < 1 || f > math.MaxUint16 || f != math.Trunc(f) {
		return 0, false
	}
	return uint32(f), true
}
