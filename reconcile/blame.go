package reconcile

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Reach is what a mesh object's spec says about where it lands, read by the adapter so
// that a change is held responsible only for proxies and xDS resources it can affect.
// Fields narrow only when Known is set: the zero Reach narrows nothing.
type Reach struct {
	// Known is set when the adapter read the object's spec; without it the object reaches
	// every proxy of the kind's proxy class in every namespace.
	Known bool `json:"known,omitempty"`
	// ExportTo is the object's exportTo as written ("." its own namespace, "*" every
	// namespace, "~" none, or namespace names); empty is Istio's default, every namespace
	// (a mesh whose defaultExportTo says otherwise is not modelled).
	ExportTo []string `json:"exportTo,omitempty"`
	// Gateways are a VirtualService's gateways as written ("mesh", "name",
	// "namespace/name"; empty means "mesh": sidecars only), or a Gateway API route's
	// parent Gateways as "namespace/name", plus "mesh" for a Service parent (GAMMA).
	Gateways []string `json:"gateways,omitempty"`
	// ServiceParentNamespaces are the namespaces of a Gateway API route's Service
	// parents: a route in its Service's namespace applies to every client (producer
	// route), one elsewhere only to clients in the route's own namespace.
	ServiceParentNamespaces []string `json:"serviceParentNamespaces,omitempty"`
	// Hosts are the host names the object configures or routes to, as written (short
	// names are relative to the object's namespace).
	Hosts []string `json:"hosts,omitempty"`
	// Ports are the port numbers the object names; Istio names route configurations
	// ("9080", "http.8080") and listeners ("0.0.0.0_9080") after them.
	Ports []uint32 `json:"ports,omitempty"`
	// Selector is set when the object applies only to workloads it selects
	// (workloadSelector, selector, targetRef(s)). Istio's per-proxy status carries no
	// labels, so every proxy otherwise in reach counts.
	Selector bool `json:"selector,omitempty"`
	// RootNamespace is set when the object lives in Istio's root namespace, where the
	// workload policy kinds apply mesh-wide.
	RootNamespace bool `json:"rootNamespace,omitempty"`
	// RouteHashing is set on a DestinationRule with a consistent-hash load balancer,
	// which Istio writes into routes (RDS) as hash policies.
	RouteHashing bool `json:"routeHashing,omitempty"`
	// AutoPassthrough is set on a Gateway with an AUTO_PASSTHROUGH server, for which
	// Istio builds clusters (CDS) on the gateway proxies.
	AutoPassthrough bool `json:"autoPassthrough,omitempty"`
}

// The xDS types a kind's content can land in.
const (
	typeCluster   = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeListener  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	typeRoute     = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	typeEndpoint  = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	typeExtension = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
)

// proxyClass is which kind of proxy an object's config is built for.
type proxyClass int

const (
	anyProxy proxyClass = iota
	sidecarsOnly
	gatewaysOnly
)

// scope is how an object's namespace relates to the proxies it reaches.
type scope int

const (
	// everywhere: proxies in every namespace.
	everywhere scope = iota
	// exported: exportTo decides (VirtualService, DestinationRule, ServiceEntry).
	exported
	// namespaced: the object's namespace, or every namespace from the root namespace
	// (the workload policy kinds: Istio's clusterScopedKnownConfigTypes, and Sidecar).
	namespaced
	// ownNamespace: gateway proxies Istio deploys in the object's namespace (Gateway API
	// Gateway, ListenerSet).
	ownNamespace
	// routeParents: a Gateway API route's parents decide.
	routeParents
)

// kindRule is what a kind's changes can explain. The types follow istiod's per-generator
// push filters (which kinds CDS, EDS, LDS, RDS and ECDS skip), narrowed to the types the
// kind's content is written into where istiod pushes more than that (a DestinationRule
// change also re-sends listeners and routes, but a DestinationRule writes clusters and
// endpoints).
type kindRule struct {
	types   []string // nil: every type
	proxies proxyClass
	scope   scope
}

var (
	allEnvoyTypes = []string{typeCluster, typeEndpoint, typeListener, typeRoute, typeExtension}
	kindRules     = map[ObjectRef]kindRule{
		{Group: "networking.istio.io", Kind: "VirtualService"}:  {types: []string{typeCluster, typeListener, typeRoute}, scope: exported},
		{Group: "networking.istio.io", Kind: "DestinationRule"}: {types: []string{typeCluster, typeEndpoint}, scope: exported},
		{Group: "networking.istio.io", Kind: "ServiceEntry"}:    {types: []string{typeCluster, typeEndpoint, typeListener, typeRoute}, scope: exported},
		// Gateways select their pods by label in any namespace (unless istiod runs
		// with PILOT_SCOPE_GATEWAY_TO_NAMESPACE); sidecars ignore them.
		{Group: "networking.istio.io", Kind: "Gateway"}:           {types: []string{typeListener, typeRoute}, proxies: gatewaysOnly, scope: everywhere},
		{Group: "networking.istio.io", Kind: "Sidecar"}:           {types: []string{typeCluster, typeEndpoint, typeListener, typeRoute}, proxies: sidecarsOnly, scope: namespaced},
		{Group: "networking.istio.io", Kind: "EnvoyFilter"}:       {types: allEnvoyTypes, scope: namespaced},
		{Group: "networking.istio.io", Kind: "WorkloadEntry"}:     {types: []string{typeEndpoint}, scope: everywhere},
		{Group: "security.istio.io", Kind: "PeerAuthentication"}:  {types: []string{typeCluster, typeEndpoint, typeListener}, scope: namespaced},
		{Group: "security.istio.io", Kind: "AuthorizationPolicy"}: {types: []string{typeListener}, scope: namespaced},
		// On gateways, a RequestAuthentication also shapes clusters when Envoy fetches
		// the JWKS itself (istiod's JWKS fetch mode is not the default one): not modelled.
		{Group: "security.istio.io", Kind: "RequestAuthentication"}: {types: []string{typeListener}, scope: namespaced},
		{Group: "telemetry.istio.io", Kind: "Telemetry"}:            {types: []string{typeListener}, scope: namespaced},
		{Group: "extensions.istio.io", Kind: "WasmPlugin"}:          {types: []string{typeListener, typeExtension}, scope: namespaced},
		// Gateway API, as istiod translates it: a Gateway into an Istio Gateway on the
		// proxies it deploys in the Gateway's namespace, routes into VirtualServices.
		{Group: "gateway.networking.k8s.io", Kind: "Gateway"}:          {types: []string{typeListener, typeRoute}, proxies: gatewaysOnly, scope: ownNamespace},
		{Group: "gateway.networking.k8s.io", Kind: "ListenerSet"}:      {types: []string{typeListener, typeRoute}, proxies: gatewaysOnly, scope: ownNamespace},
		{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"}:        {types: []string{typeCluster, typeListener, typeRoute}, scope: routeParents},
		{Group: "gateway.networking.k8s.io", Kind: "GRPCRoute"}:        {types: []string{typeCluster, typeListener, typeRoute}, scope: routeParents},
		{Group: "gateway.networking.k8s.io", Kind: "TCPRoute"}:         {types: []string{typeCluster, typeListener}, scope: routeParents},
		{Group: "gateway.networking.k8s.io", Kind: "TLSRoute"}:         {types: []string{typeCluster, typeListener}, scope: routeParents},
		{Group: "gateway.networking.k8s.io", Kind: "BackendTLSPolicy"}: {types: []string{typeCluster}, scope: everywhere},
		{Group: "gateway.networking.k8s.io", Kind: "ReferenceGrant"}:   {types: []string{typeCluster, typeListener, typeRoute}, scope: everywhere},
	}
)

// ruleFor is the kind's rule with what the object's spec adds. An unknown kind (a
// WorkloadGroup, Linkerd's kinds, anything new) can explain every type on every proxy:
// meshdrift would rather hold a change responsible for a NACK it did not cause than call
// a change it cannot reason about propagated while a proxy rejects config.
func ruleFor(c MeshChange) kindRule {
	r, ok := kindRules[ObjectRef{Group: c.Ref.Group, Kind: c.Ref.Kind}]
	if !ok {
		return kindRule{scope: everywhere}
	}
	switch {
	case r.scope == exported && c.Ref.Kind == "DestinationRule" && c.Reach.RouteHashing:
		r.types = append(slices.Clone(r.types), typeRoute)
	case c.Ref.Kind == "Gateway" && c.Ref.Group == "networking.istio.io" && c.Reach.AutoPassthrough:
		r.types = append(slices.Clone(r.types), typeCluster)
	}
	return r
}

// settledAtStart reports whether a change is baseline (see isBaseline) and was written
// at least grace before meshdrift started: whatever istiod and the proxies did with it
// happened before meshdrift looked, so a proxy's error or silence now is the proxy's own
// state, not news about the object, unless the error names it. A baseline object
// written less than grace before start is still in flight and is judged like any change,
// so that `wait` started right after an apply still sees its NACKs.
func settledAtStart(c MeshChange, started time.Time, grace time.Duration) bool {
	return isBaseline(c) && !c.ObservedAt.Add(grace).After(started)
}

// isBaseline is the one rule for objects that existed when meshdrift started: the mesh
// adapter marks the objects of its first list that were written before it started. The
// store uses it both for attribution and to keep their "latency" (which would measure
// meshdrift's own start) out of the latency histogram.
func isBaseline(c MeshChange) bool { return c.Baseline }

// blame decides which of a proxy's outcomes one change can explain: the xDS type is one
// the object's kind writes, the proxy is within the object's reach, and a NACK's text
// does not name only resources of other objects.
type blame struct {
	change  MeshChange
	rule    kindRule
	settled bool
	ns      string
	// hosts are the object's host names, fully qualified and lower case; wildcards
	// ("*.example.com") are kept as suffixes (".example.com").
	hosts     []string
	wildcards []string
	ports     []uint32
	// markers are resource names derived from the object itself (a WasmPlugin's
	// extension config "<namespace>.<name>").
	markers []string
}

func newBlame(c MeshChange, settled bool) *blame {
	b := &blame{change: c, rule: ruleFor(c), settled: settled, ns: c.Ref.Namespace, ports: c.Reach.Ports}
	for _, h := range c.Reach.Hosts {
		h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
		switch {
		case h == "" || h == "*":
			// Matches everything, so it names nothing in particular.
		case strings.HasPrefix(h, "*."):
			b.wildcards = append(b.wildcards, h[1:])
		case !strings.Contains(h, ".") && b.ns != "":
			// Istio resolves a short name in the object's namespace; the cluster domain
			// is assumed to be cluster.local.
			b.hosts = append(b.hosts, h+"."+b.ns+".svc.cluster.local")
		default:
			b.hosts = append(b.hosts, h)
		}
	}
	switch c.Ref.Kind {
	case "WasmPlugin", "EnvoyFilter":
		b.markers = append(b.markers, strings.ToLower(c.Ref.Namespace+"."+c.Ref.Name))
	}
	return b
}

// typeApplies reports whether the change can have produced a response of typeURL.
func (b *blame) typeApplies(typeURL string) bool {
	return b.rule.types == nil || slices.Contains(b.rule.types, typeURL)
}

// reaches reports whether the object can affect the proxy, as far as the proxy's
// namespace (from its id "<pod>.<namespace>") and type (sidecar, router, waypoint; empty
// when the transport does not say, as the xDS syncz does not) tell.
func (b *blame) reaches(proxyID, proxyType string) bool {
	return b.reachesNS(proxyID[strings.LastIndexByte(proxyID, '.')+1:], classOf(proxyType))
}

// reachesNS is reaches for a proxy of namespace pns and class.
func (b *blame) reachesNS(pns string, class proxyClass) bool {
	switch b.rule.proxies {
	case sidecarsOnly:
		if class == gatewaysOnly {
			return false
		}
	case gatewaysOnly:
		if class == sidecarsOnly {
			return false
		}
	}
	r := b.change.Reach
	switch b.rule.scope {
	case exported:
		if !r.Known {
			return true
		}
		if !exportedTo(r.ExportTo, b.ns, pns) {
			return false
		}
		if r.Selector && pns != b.ns {
			// A DestinationRule's workloadSelector picks workloads of its own namespace.
			return false
		}
		if b.change.Ref.Kind != "VirtualService" {
			return true
		}
		toMesh, toGateways := len(r.Gateways) == 0, false
		for _, g := range r.Gateways {
			if g == "mesh" {
				toMesh = true
			} else {
				toGateways = true
			}
		}
		switch class {
		case sidecarsOnly:
			return toMesh
		case gatewaysOnly:
			return toGateways
		}
		return toMesh || toGateways
	case namespaced:
		return r.RootNamespace || b.ns == "" || pns == b.ns
	case ownNamespace:
		return b.ns == "" || pns == b.ns
	case routeParents:
		if !r.Known || len(r.Gateways) == 0 {
			return true
		}
		for _, g := range r.Gateways {
			if g == "mesh" {
				if class == gatewaysOnly {
					continue
				}
				if pns == b.ns || slices.Contains(r.ServiceParentNamespaces, b.ns) {
					return true
				}
				continue
			}
			if class == sidecarsOnly {
				continue
			}
			gns, _, ok := strings.Cut(g, "/")
			if !ok || gns == pns {
				return true
			}
		}
		return false
	}
	return true
}

// classOf is istiod's proxy type as a class. A waypoint takes both mesh routes and
// gateway config, so it counts as either.
func classOf(proxyType string) proxyClass {
	switch proxyType {
	case "sidecar":
		return sidecarsOnly
	case "router":
		return gatewaysOnly
	}
	return anyProxy
}

// exportedTo applies Istio's exportTo: empty or "*" every namespace, "." the object's
// own, "~" none, else the namespaces listed.
func exportedTo(exportTo []string, objectNS, proxyNS string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if proxyNS == objectNS {
				return true
			}
		case proxyNS:
			return true
		}
	}
	return false
}

// named reads a proxy's error text for the resources it names: ours when one of them
// is the object's (a cluster or virtual host of its hosts, a route configuration or
// listener of its ports, its extension config), foreign when it names a cluster or
// virtual host of hosts that are not the object's.
func (b *blame) named(text string) (ours, foreign bool) {
	for _, tok := range strings.FieldsFunc(text, isSeparator) {
		tok = strings.ToLower(strings.Trim(tok, ":."))
		if tok == "" {
			continue
		}
		if slices.Contains(b.markers, tok) || slices.ContainsFunc(b.markers, func(m string) bool { return strings.HasSuffix(tok, "/"+m) }) {
			return true, foreign
		}
		host, port, strong := resourceName(tok)
		switch {
		case host != "" && b.ownsHost(host):
			return true, foreign
		case host == "" && port != 0 && slices.Contains(b.ports, port):
			return true, foreign
		case host != "" && (strong || strings.Contains(host, ".svc.")):
			foreign = true
		}
	}
	return false, foreign
}

func isSeparator(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\r', ',', ';', '\'', '"', '`', '(', ')', '[', ']', '{', '}', '=':
		return true
	}
	return false
}

func (b *blame) ownsHost(h string) bool {
	if slices.Contains(b.hosts, h) {
		return true
	}
	for _, w := range b.wildcards {
		if strings.HasSuffix(h, w) {
			return true
		}
	}
	return false
}

// resourceName reads one token of an Envoy error as an Istio resource name: a cluster
// ("outbound|9080|v1|reviews.ns.svc.cluster.local", "outbound_.9080_.v1_.reviews...")
// or a virtual host ("reviews.ns.svc.cluster.local:9080") give a host and are strong
// evidence; a route configuration ("9080", "http.8080", "https.443.tls.gw.ns") or a
// listener ("0.0.0.0_9080") gives a port; any other host-like token gives a host that
// is weak evidence (it may be a filter name like envoy.filters.http.router).
func resourceName(tok string) (host string, port uint32, strong bool) {
	if parts := strings.Split(tok, "|"); len(parts) == 4 && (parts[0] == "outbound" || parts[0] == "inbound") {
		return parts[3], parsePort(parts[1]), true
	}
	if parts := strings.Split(tok, "_."); len(parts) == 4 && (parts[0] == "outbound" || parts[0] == "inbound") {
		return parts[3], parsePort(parts[1]), true
	}
	if i := strings.LastIndexByte(tok, ':'); i > 0 {
		if p := parsePort(tok[i+1:]); p != 0 && hostLike(tok[:i]) {
			return tok[:i], p, true
		}
	}
	if p := parsePort(tok); p != 0 {
		return "", p, false
	}
	if rest, ok := strings.CutPrefix(tok, "http."); ok {
		return "", parsePort(rest), false
	}
	if rest, ok := strings.CutPrefix(tok, "https."); ok {
		p, _, _ := strings.Cut(rest, ".")
		return "", parsePort(p), false
	}
	if i := strings.LastIndexByte(tok, '_'); i > 0 && strings.Count(tok[:i], ".") == 3 {
		if p := parsePort(tok[i+1:]); p != 0 {
			return "", p, false
		}
	}
	if hostLike(tok) {
		return tok, 0, false
	}
	return "", 0, false
}

func parsePort(s string) uint32 {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0
	}
	return uint32(p)
}

// hostLike reports whether s looks like a DNS name with at least one dot and a letter.
func hostLike(s string) bool {
	if !strings.Contains(s, ".") || strings.HasPrefix(s, ".") {
		return false
	}
	letter := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
			letter = true
		case r >= '0' && r <= '9', r == '-', r == '.', r == '*':
		default:
			return false
		}
	}
	return letter
}

// attribution is what blame made of one proxy.
type attribution struct {
	// own is the proxy with only the types the change can explain; no types when the
	// proxy is out of reach.
	own ProxyStatus
	// streamed is the text of a NACK from istiod's stream the change can explain.
	streamed string
	// pushed is set when istiod sent the proxy anything since from, whether the change
	// can explain it or not: istiod had processed config after the change, which is all
	// "not pushed" asks.
	pushed bool
	// concurrent are the proxy's NACKs (and, for a settled baseline change, its silence)
	// that the change cannot explain.
	concurrent []ProxyOutcome
}

// attribute splits what a proxy reports since from into what the change can explain and
// what is concurrent with it. events are the proxy's streamed NACKs since from.
func (b *blame) attribute(istiod string, px ProxyStatus, events []NACKEvent, from time.Time) attribution {
	a := attribution{own: px}
	inReach := b.reaches(px.ID, px.ProxyType)
	// Types not sent since from say nothing about the change; the others are kept when
	// the change can explain them. Most proxies keep every type: no copy then.
	keep := func(t XDSStatus) bool {
		if t.SentAt.Before(from) {
			return true
		}
		if !inReach || !b.typeApplies(t.TypeURL) {
			return false
		}
		return t.State != StateError || b.causes(t.Error)
	}
	stale := false
	drop := false
	for _, t := range px.Types {
		if !t.SentAt.Before(from) {
			a.pushed = true
		}
		if !keep(t) {
			drop = true
		} else if b.settled && !t.SentAt.Before(from) && t.State != StateSynced && t.State != StateError {
			stale = true
		}
	}
	if drop {
		a.own.Types = make([]XDSStatus, 0, len(px.Types))
		for _, t := range px.Types {
			switch {
			case keep(t):
				a.own.Types = append(a.own.Types, t)
			case t.State != StateError:
			case inReach && b.typeApplies(t.TypeURL):
				a.concurrent = append(a.concurrent, b.outcome(istiod, px.ID, PropagationNACKed, t.Error))
			default:
				a.concurrent = append(a.concurrent, ProxyOutcome{Proxy: px.ID, Istiod: istiod, State: PropagationNACKed, Error: t.Error})
			}
		}
	}
	if stale {
		// A baseline object settled long before meshdrift started: a proxy that has not
		// answered is stuck, which is its own problem, not news about the object.
		a.concurrent = append(a.concurrent, b.outcome(istiod, px.ID, PropagationStale, ""))
		a.own.Types = nil
	}
	for _, n := range events {
		// The stream may not say the type; then only reach and the text decide.
		applies := inReach && (n.TypeURL == "" || b.typeApplies(n.TypeURL))
		switch {
		case applies && b.causes(n.Error):
			a.streamed = n.Error
		case applies:
			a.concurrent = append(a.concurrent, b.outcome(istiod, px.ID, PropagationNACKed, n.Error))
		default:
			a.concurrent = append(a.concurrent, ProxyOutcome{Proxy: px.ID, Istiod: istiod, State: PropagationNACKed, Error: n.Error})
		}
	}
	return a
}

// causes reports whether a NACK of a type the change writes, on a proxy in its reach,
// is the change's: unless its text names only other objects' resources. A settled
// baseline change is held responsible only for a NACK that names it.
func (b *blame) causes(text string) bool {
	ours, foreign := b.named(text)
	if b.settled {
		return ours
	}
	return ours || !foreign
}

// outcome is a proxy outcome of a type the change writes on a proxy in its reach, with
// whether the proxy's text names the object.
func (b *blame) outcome(istiod, proxy string, state PropagationState, errText string) ProxyOutcome {
	o := ProxyOutcome{Proxy: proxy, Istiod: istiod, State: state, Error: errText}
	if errText != "" {
		o.Named, _ = b.named(errText)
	}
	return o
}
