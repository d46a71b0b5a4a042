package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// destination is one destination a VirtualService routes or mirrors to.
type destination struct {
	path   string // of the host field
	host   string
	subset string
}

// destinations lists a VirtualService's route and mirror destinations, in spec order.
func destinations(vs *unstructured.Unstructured) []destination {
	var out []destination
	add := func(m map[string]any, path string) {
		host, _, _ := unstructured.NestedString(m, "host")
		subset, _, _ := unstructured.NestedString(m, "subset")
		if host != "" {
			out = append(out, destination{path: path + ".host", host: host, subset: subset})
		}
	}
	for _, proto := range []string{"http", "tls", "tcp"} {
		rules, _, _ := unstructured.NestedSlice(vs.Object, "spec", proto)
		for i, r := range rules {
			rule, ok := r.(map[string]any)
			if !ok {
				continue
			}
			routes, _, _ := unstructured.NestedSlice(rule, "route")
			for j, rt := range routes {
				if d, ok := nestedMap(rt, "destination"); ok {
					add(d, fmt.Sprintf("spec.%s[%d].route[%d].destination", proto, i, j))
				}
			}
			if proto != "http" {
				continue
			}
			if m, ok := nestedMap(rule, "mirror"); ok {
				add(m, fmt.Sprintf("spec.http[%d].mirror", i))
			}
			mirrors, _, _ := unstructured.NestedSlice(rule, "mirrors")
			for j, mr := range mirrors {
				if d, ok := nestedMap(mr, "destination"); ok {
					add(d, fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j))
				}
			}
		}
	}
	return out
}

func nestedMap(v any, field string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	d, ok := m[field].(map[string]any)
	return d, ok
}

// vsDestinationHost: MD0501.
type vsDestinationHost struct{}

func (vsDestinationHost) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeVSDestinationNotFound, Name: "virtualservice.destinationhost",
		Description: "A VirtualService route or mirror destination host matches no Service or ServiceEntry visible from the VirtualService's namespace.",
		Inputs:      []schemaGVK{gvk(gkVirtualService, "v1"), gvk(gkService, "v1"), gvk(gkServiceEntry, "v1")},
		IST:         "IST0101",
		Beyond:      "Says which Service a literal \"name.namespace\" host probably meant (Istio does not expand it); live, re-evaluated on every change of the objects and tied to the GitOps app that applied them.",
	}
}

func (c vsDestinationHost) Run(_ context.Context, s *Snapshot) []Result {
	reg := newRegistry(s)
	var out []Result
	for _, vs := range s.List(gkVirtualService) {
		ns := vs.GetNamespace()
		for _, d := range destinations(vs) {
			host := fqdn(d.host, ns, s.Domain)
			if reg.lookup(host, ns) {
				continue
			}
			out = append(out, Result{Code: c.Metadata().Code, Object: refOf(vs), Path: d.path,
				Message: fmt.Sprintf("destination host %q matches no Service or ServiceEntry visible from namespace %s%s", d.host, ns, reg.hint(d.host, ns))})
		}
	}
	return out
}

// vsSubset: MD0502.
type vsSubset struct{}

func (vsSubset) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeVSSubsetNotFound, Name: "virtualservice.subset",
		Description: "A VirtualService destination names a subset that no DestinationRule for its host defines.",
		Inputs:      []schemaGVK{gvk(gkVirtualService, "v1"), gvk(gkDestinationRule, "v1")},
		IST:         "IST0101",
		Beyond:      "Resolves the DestinationRule's and the route's hosts in their own namespaces and honours the DestinationRule's exportTo.",
	}
}

// drSubsets is a DestinationRule as vsSubset reads it, resolved once per run.
type drSubsets struct {
	host    string
	vis     registryHost
	subsets []string
}

// destinationRulesByHost resolves every DestinationRule's host: those of exact hosts by
// host, those of wildcard hosts apart, so that a route's subset is looked up without
// walking every DestinationRule.
func destinationRulesByHost(s *Snapshot) (exact map[string][]drSubsets, wild []drSubsets) {
	exact = map[string][]drSubsets{}
	for _, dr := range s.List(gkDestinationRule) {
		drHost, _, _ := unstructured.NestedString(dr.Object, "spec", "host")
		export, _, _ := unstructured.NestedStringSlice(dr.Object, "spec", "exportTo")
		d := drSubsets{host: fqdn(drHost, dr.GetNamespace(), s.Domain), vis: registryHost{ns: dr.GetNamespace(), exportTo: export}, subsets: subsetNames(dr)}
		if strings.HasPrefix(d.host, "*") {
			wild = append(wild, d)
		} else {
			exact[d.host] = append(exact[d.host], d)
		}
	}
	return exact, wild
}

func (c vsSubset) Run(_ context.Context, s *Snapshot) []Result {
	var out []Result
	exact, wild := destinationRulesByHost(s)
	var all []drSubsets
	for _, vs := range s.List(gkVirtualService) {
		ns := vs.GetNamespace()
		for _, d := range destinations(vs) {
			if d.subset == "" {
				continue
			}
			host := fqdn(d.host, ns, s.Domain)
			candidates := slices.Concat(exact[host], wild)
			if strings.HasPrefix(host, "*") {
				if all == nil {
					for _, drs := range exact {
						all = append(all, drs...)
					}
					all = append(all, wild...)
				}
				candidates = all
			}
			found, anyDR := false, false
			for _, dr := range candidates {
				if !dr.vis.visibleFrom(ns) || !hostsOverlap(host, dr.host) {
					continue
				}
				anyDR = true
				if slices.Contains(dr.subsets, d.subset) {
					found = true
					break
				}
			}
			if found {
				continue
			}
			why := "no DestinationRule for host " + host + " is visible from namespace " + ns
			if anyDR {
				why = "no DestinationRule for host " + host + " defines it"
			}
			out = append(out, Result{Code: c.Metadata().Code, Object: refOf(vs), Path: strings.TrimSuffix(d.path, ".host") + ".subset",
				Message: fmt.Sprintf("subset %q of host %q is not defined: %s", d.subset, d.host, why)})
		}
	}
	return out
}

func subsetNames(dr *unstructured.Unstructured) []string {
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	var names []string
	for _, s := range subsets {
		if m, ok := s.(map[string]any); ok {
			if n, ok := m["name"].(string); ok {
				names = append(names, n)
			}
		}
	}
	return names
}

// gatewayRefs lists the gateways a VirtualService binds to, with their paths.
func gatewayRefs(vs *unstructured.Unstructured) (refs []string, paths []string) {
	gws, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways")
	for i, g := range gws {
		refs, paths = append(refs, g), append(paths, fmt.Sprintf("spec.gateways[%d]", i))
	}
	rules, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	for i, r := range rules {
		rule, _ := r.(map[string]any)
		matches, _, _ := unstructured.NestedSlice(rule, "match")
		for j, m := range matches {
			mm, _ := m.(map[string]any)
			gws, _, _ := unstructured.NestedStringSlice(mm, "gateways")
			for k, g := range gws {
				refs, paths = append(refs, g), append(paths, fmt.Sprintf("spec.http[%d].match[%d].gateways[%d]", i, j, k))
			}
		}
	}
	return refs, paths
}

// vsGateway: MD0503.
type vsGateway struct{}

func (vsGateway) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeVSGatewayNotFound, Name: "virtualservice.gateway",
		Description: "A VirtualService binds to an Istio Gateway that does not exist.",
		Inputs:      []schemaGVK{gvk(gkVirtualService, "v1"), gvk(gkGateway, "v1")},
		IST:         "IST0101",
		Beyond:      "Also checks the gateways of each HTTP match.",
	}
}

func (c vsGateway) Run(_ context.Context, s *Snapshot) []Result {
	var out []Result
	for _, vs := range s.List(gkVirtualService) {
		refs, paths := gatewayRefs(vs)
		for i, g := range refs {
			if g == "mesh" {
				continue
			}
			ns, name := vs.GetNamespace(), g
			if before, after, ok := strings.Cut(g, "/"); ok {
				ns, name = before, after
			}
			if s.Get(gkGateway, ns, name) != nil {
				continue
			}
			out = append(out, Result{Code: c.Metadata().Code, Object: refOf(vs), Path: paths[i],
				Message: fmt.Sprintf("gateway %q not found (no Gateway %s/%s)", g, ns, name)})
		}
	}
	return out
}

// onMesh says whether a VirtualService applies to sidecars: no gateways, or "mesh" among them.
func onMesh(vs *unstructured.Unstructured) bool {
	gws, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways")
	return len(gws) == 0 || slices.Contains(gws, "mesh")
}

// vsHostConflict: MD0504.
type vsHostConflict struct{}

func (vsHostConflict) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeVSHostConflict, Name: "virtualservice.meshhostconflict",
		Description: "Two or more VirtualServices bound to the mesh gateway claim the same host.",
		Inputs:      []schemaGVK{gvk(gkVirtualService, "v1")},
		IST:         "IST0109",
		Beyond:      "Live: fires when a second GitOps app (or a hand edit) adds the conflicting VirtualService, and names both.",
	}
}

func (c vsHostConflict) Run(_ context.Context, s *Snapshot) []Result {
	type claim struct {
		vs   *unstructured.Unstructured
		path string
	}
	byHost := map[string][]claim{}
	for _, vs := range s.List(gkVirtualService) {
		if !onMesh(vs) {
			continue
		}
		hosts, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "hosts")
		for i, h := range hosts {
			fq := fqdn(h, vs.GetNamespace(), s.Domain)
			// One VirtualService naming a host twice is its own business.
			if cs := byHost[fq]; len(cs) > 0 && cs[len(cs)-1].vs == vs {
				continue
			}
			byHost[fq] = append(byHost[fq], claim{vs, fmt.Sprintf("spec.hosts[%d]", i)})
		}
	}
	var out []Result
	for host, claims := range byHost {
		if len(claims) < 2 {
			continue
		}
		for _, cl := range claims {
			var others []string
			for _, o := range claims {
				if o.vs != cl.vs {
					others = append(others, o.vs.GetNamespace()+"/"+o.vs.GetName())
				}
			}
			slices.Sort(others)
			out = append(out, Result{Code: c.Metadata().Code, Object: refOf(cl.vs), Path: cl.path,
				Message: fmt.Sprintf("host %s is also claimed on the mesh gateway by VirtualService %s", host, strings.Join(others, ", "))})
		}
	}
	return out
}

// vsHostInGateway: MD0510.
type vsHostInGateway struct{}

func (vsHostInGateway) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeVSHostNotInGateway, Name: "virtualservice.gatewayhosts",
		Description: "A VirtualService bound to an Istio Gateway names hosts none of the Gateway's servers serve to its namespace.",
		Inputs:      []schemaGVK{gvk(gkVirtualService, "v1"), gvk(gkGateway, "v1")},
		IST:         "IST0132",
		Beyond: "Also reports a single host that none of the VirtualService's gateways serves while its other hosts are served (analyze only fires when a gateway serves none); " +
			"a missing Gateway is MD0503's alone (analyze reports it twice, IST0101 and IST0132).",
	}
}

// gatewayHosts returns the hosts an Istio Gateway's servers serve to VirtualServices of
// namespace ns: a server host "ns/host" counts for ns only, "./host" for the Gateway's
// own namespace, "*/host" and a bare host for every namespace.
func gatewayHosts(gw *unstructured.Unstructured, ns, domain string) []string {
	servers, _, _ := unstructured.NestedSlice(gw.Object, "spec", "servers")
	var out []string
	for _, srv := range servers {
		m, _ := srv.(map[string]any)
		hosts, _, _ := unstructured.NestedStringSlice(m, "hosts")
		for _, h := range hosts {
			if scope, name, ok := strings.Cut(h, "/"); ok {
				if scope == "." {
					scope = gw.GetNamespace()
				}
				if scope != "*" && scope != ns {
					continue
				}
				h = name
			}
			out = append(out, fqdn(h, gw.GetNamespace(), domain))
		}
	}
	return out
}

func (c vsHostInGateway) Run(_ context.Context, s *Snapshot) []Result {
	var out []Result
	for _, vs := range s.List(gkVirtualService) {
		ns := vs.GetNamespace()
		hosts, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "hosts")
		gws, _, _ := unstructured.NestedStringSlice(vs.Object, "spec", "gateways")
		served := make([]bool, len(hosts))
		anyServed := false
		for i, g := range gws {
			if g == "mesh" {
				continue
			}
			gwNS, name := ns, g
			if before, after, ok := strings.Cut(g, "/"); ok {
				gwNS, name = before, after
			}
			gw := s.Get(gkGateway, gwNS, name)
			if gw == nil {
				continue // MD0503
			}
			gh := gatewayHosts(gw, ns, s.Domain)
			any := false
			for j, h := range hosts {
				fq := fqdn(h, ns, s.Domain)
				if slices.ContainsFunc(gh, func(g string) bool { return hostsOverlap(g, fq) }) {
					served[j], any = true, true
				}
			}
			anyServed = anyServed || any
			if !any {
				out = append(out, Result{Code: c.Metadata().Code, Object: refOf(vs), Path: fmt.Sprintf("spec.gateways[%d]", i),
					Message: fmt.Sprintf("Gateway %s/%s serves none of the hosts %s to namespace %s (its servers serve %s)",
						gwNS, name, strings.Join(hosts, ", "), ns, orNone(gh))})
			}
		}
		// A host left out by every gateway while others are served: analyze stays quiet.
		// On the mesh gateway a host need not be a gateway's.
		if !anyServed || onMesh(vs) {
			continue
		}
		for j, h := range hosts {
			if !served[j] {
				out = append(out, Result{Code: c.Metadata().Code, Object: refOf(vs), Path: fmt.Sprintf("spec.hosts[%d]", j),
					Message: fmt.Sprintf("host %q is served by none of the VirtualService's gateways (%s)", h, strings.Join(gws, ", "))})
			}
		}
	}
	return out
}

func orNone(hosts []string) string {
	if len(hosts) == 0 {
		return "no host"
	}
	return strings.Join(hosts, ", ")
}
