package checks

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// fqdn resolves a host written in an object of namespace ns as Istio does: a short name
// (no dot) is the Service of that name in ns; anything with a dot, a wildcard or an IP is
// taken literally. So "reviews.other" is not the Service reviews in other.
func fqdn(host, ns, domain string) string {
	if host == "" || host == "*" || strings.HasPrefix(host, "*") || strings.Contains(host, ".") {
		return host
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return host
	}
	return host + "." + ns + ".svc." + domain
}

// hostsOverlap says whether two resolved hosts can name the same name: equal, or one a
// wildcard ("*.example.com", "*") covering the other.
func hostsOverlap(a, b string) bool {
	if a == b || a == "*" || b == "*" {
		return true
	}
	covers := func(wild, h string) bool {
		if !strings.HasPrefix(wild, "*") {
			return false
		}
		suffix := wild[1:] // ".example.com"
		return strings.HasSuffix(strings.TrimPrefix(h, "*"), suffix)
	}
	return covers(a, b) || covers(b, a)
}

// registryHost is one host a Service or ServiceEntry defines, with the namespaces it is
// visible in.
type registryHost struct {
	host     string
	owner    string // "Service default/reviews"
	exportTo []string
	ns       string
}

// visibleFrom applies Istio's exportTo: empty or "*" everywhere, "." its own namespace,
// "~" nowhere, else the listed namespaces.
func (h registryHost) visibleFrom(ns string) bool {
	if len(h.exportTo) == 0 {
		return true
	}
	for _, e := range h.exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if ns == h.ns {
				return true
			}
		default:
			if e == ns {
				return true
			}
		}
	}
	return false
}

// registry is the service registry as checks see it: Kubernetes Services and
// ServiceEntries.
type registry struct {
	hosts  []registryHost
	domain string
}

func newRegistry(s *Snapshot) *registry {
	r := &registry{domain: s.Domain}
	for _, svc := range s.List(gkService) {
		var export []string
		if v := svc.GetAnnotations()["networking.istio.io/exportTo"]; v != "" {
			for _, e := range strings.Split(v, ",") {
				export = append(export, strings.TrimSpace(e))
			}
		}
		r.hosts = append(r.hosts, registryHost{
			host:  svc.GetName() + "." + svc.GetNamespace() + ".svc." + s.Domain,
			owner: "Service " + svc.GetNamespace() + "/" + svc.GetName(), exportTo: export, ns: svc.GetNamespace(),
		})
	}
	for _, se := range s.List(gkServiceEntry) {
		hosts, _, _ := unstructured.NestedStringSlice(se.Object, "spec", "hosts")
		export, _, _ := unstructured.NestedStringSlice(se.Object, "spec", "exportTo")
		for _, h := range hosts {
			r.hosts = append(r.hosts, registryHost{
				host:  fqdn(h, se.GetNamespace(), s.Domain),
				owner: "ServiceEntry " + se.GetNamespace() + "/" + se.GetName(), exportTo: export, ns: se.GetNamespace(),
			})
		}
	}
	return r
}

// lookup says whether a resolved host is defined by something visible from ns.
func (r *registry) lookup(host, ns string) bool {
	for _, h := range r.hosts {
		if h.visibleFrom(ns) && hostsOverlap(host, h.host) {
			return true
		}
	}
	return false
}

// hint suggests the Service a literal "name.namespace" host probably meant.
func (r *registry) hint(host, ns string) string {
	parts := strings.Split(host, ".")
	if len(parts) != 2 && !(len(parts) == 3 && parts[2] == "svc") {
		return ""
	}
	full := parts[0] + "." + parts[1] + ".svc." + r.domain
	if r.lookup(full, ns) {
		return fmt.Sprintf("; Istio does not expand %q: did you mean %q?", host, full)
	}
	return ""
}
