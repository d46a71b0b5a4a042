package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// mtlsConflict: MD0508.
type mtlsConflict struct{}

func (mtlsConflict) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeMTLSConflict, Name: "security.mtlsconflict",
		Description: "A DestinationRule's TLS mode contradicts the PeerAuthentication that applies to its host's pods (DISABLE against STRICT, ISTIO_MUTUAL against DISABLE): selector-level (with portLevelMtls), else namespace-wide, else mesh-wide.",
		Inputs:      []schemaGVK{gvk(gkDestinationRule, "v1"), gvk(gkPeerAuthn, "v1"), gvk(gkService, "v1")},
		Beyond: "istioctl analyze retired its mTLS conflict check (IST0113); meshdrift keeps one for the two contradictions that always fail, " +
			"port by port, and on a live snapshot against the labels of the pods actually behind the host.",
	}
}

// peerPolicy is one PeerAuthentication as the mTLS check reads it.
type peerPolicy struct {
	from     string // "PeerAuthentication ns/name"
	ns       string
	selector map[string]string
	mode     string           // "" when UNSET
	ports    map[int64]string // portLevelMtls, selector policies only
	created  string
}

// peerPolicies indexes PeerAuthentications: by namespace for the namespace-wide ones
// (the root namespace's is the mesh's), and the selector ones in a list.
type peerPolicies struct {
	wide     map[string]peerPolicy
	selected []peerPolicy
	root     string
}

func newPeerPolicies(s *Snapshot) peerPolicies {
	pp := peerPolicies{wide: map[string]peerPolicy{}, root: s.RootNamespace}
	for _, pa := range s.List(gkPeerAuthn) {
		mode, _, _ := unstructured.NestedString(pa.Object, "spec", "mtls", "mode")
		if mode == "UNSET" {
			mode = ""
		}
		p := peerPolicy{from: "PeerAuthentication " + pa.GetNamespace() + "/" + pa.GetName(), ns: pa.GetNamespace(), mode: mode,
			created: pa.GetCreationTimestamp().UTC().Format("20060102150405")}
		p.selector, _, _ = unstructured.NestedStringMap(pa.Object, "spec", "selector", "matchLabels")
		if len(p.selector) == 0 {
			if mode != "" {
				pp.wide[pa.GetNamespace()] = p
			}
			continue
		}
		ports, _, _ := unstructured.NestedMap(pa.Object, "spec", "portLevelMtls")
		for k, v := range ports {
			var n int64
			if _, err := fmt.Sscan(k, &n); err != nil {
				continue
			}
			if m, _, _ := unstructured.NestedString(asMap(v), "mode"); m != "" && m != "UNSET" {
				if p.ports == nil {
					p.ports = map[int64]string{}
				}
				p.ports[n] = m
			}
		}
		pp.selected = append(pp.selected, p)
	}
	// Istio takes the oldest of several selector policies for one workload.
	slices.SortFunc(pp.selected, func(a, b peerPolicy) int {
		return cmpJoin(strings.Compare(a.created, b.created), strings.Compare(a.from, b.from))
	})
	return pp
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// serverMode is the mTLS mode a workload's sidecar enforces on a port, and why.
type serverMode struct {
	mode, from, scope string
}

// resolve returns the mode a workload with labels in ns enforces on targetPort (0:
// unknown): a selector policy of its namespace, else one of the root namespace, else
// the namespace-wide policy, else the mesh-wide one. UNSET at one level inherits the
// next. An empty mode is Istio's default, PERMISSIVE.
func (pp peerPolicies) resolve(ns string, labels map[string]string, targetPort int64) serverMode {
scopes:
	for _, scopeNS := range []string{ns, pp.root} {
		for _, p := range pp.selected {
			if p.ns != scopeNS || !matchesAll(labels, p.selector) {
				continue
			}
			if m := p.ports[targetPort]; targetPort != 0 && m != "" {
				return serverMode{m, p.from, fmt.Sprintf("port %d of", targetPort)}
			}
			if p.mode != "" {
				return serverMode{p.mode, p.from, ""}
			}
			break scopes // the workload's policy inherits: the namespace's decides
		}
	}
	if p, ok := pp.wide[ns]; ok {
		return serverMode{p.mode, p.from, "namespace"}
	}
	if p, ok := pp.wide[pp.root]; ok {
		return serverMode{p.mode, p.from, "namespace"}
	}
	return serverMode{}
}

// hostNamespace returns the namespace of the Kubernetes service(s) a resolved host names
// ("reviews.default.svc.cluster.local", "*.default.svc.cluster.local"), "" for others.
func hostNamespace(host, domain string) string {
	rest, ok := strings.CutSuffix(host, ".svc."+domain)
	if !ok {
		return ""
	}
	i := strings.LastIndex(rest, ".")
	if i < 0 {
		return ""
	}
	return rest[i+1:]
}

// hostPort is one port of a host's Service: the port clients name and the pods' port.
type hostPort struct{ port, target int64 }

// servicePorts lists a Service's ports; target is 0 for a named targetPort (pods'
// specs are never read, so a name cannot be resolved).
func servicePorts(svc *unstructured.Unstructured) []hostPort {
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	var out []hostPort
	for _, p := range ports {
		m := asMap(p)
		port, _, _ := unstructured.NestedInt64(m, "port")
		hp := hostPort{port: port, target: port}
		switch t := m["targetPort"].(type) {
		case int64:
			hp.target = t
		case string:
			hp.target = 0
		}
		out = append(out, hp)
	}
	return out
}

// workload is a set of pods behind a host that share labels.
type workload struct {
	ns     string
	labels map[string]string
}

func (c mtlsConflict) Run(_ context.Context, s *Snapshot) []Result {
	pp := newPeerPolicies(s)
	var out []Result
	for _, dr := range s.List(gkDestinationRule) {
		host, _, _ := unstructured.NestedString(dr.Object, "spec", "host")
		fq := fqdn(host, dr.GetNamespace(), s.Domain)
		svc := serviceForHost(s, fq)
		var ports []hostPort
		var svcSelector map[string]string
		ns := hostNamespace(fq, s.Domain)
		if svc != nil {
			ports = servicePorts(svc)
			svcSelector, _, _ = unstructured.NestedStringMap(svc.Object, "spec", "selector")
		}
		if ns == "" {
			continue // not a Kubernetes service host: not the mesh's servers
		}
		for _, t := range drTLSModes(dr) {
			if t.mode != "DISABLE" && t.mode != "ISTIO_MUTUAL" {
				continue
			}
			if r, ok := c.conflict(s, pp, t, ns, svc, svcSelector, ports); ok {
				out = append(out, Result{Code: c.Metadata().Code, Object: refOf(dr), Path: t.path,
					Message: fmt.Sprintf("clients use TLS mode %s for host %s, but %s", t.mode, host, r)})
			}
		}
	}
	return out
}

// conflict finds the first server mode the client mode t contradicts and describes it.
func (c mtlsConflict) conflict(s *Snapshot, pp peerPolicies, t tlsMode, ns string, svc *unstructured.Unstructured,
	svcSelector map[string]string, ports []hostPort) (string, bool) {
	// The pods behind the host: live pods of the Service (of the subset), or offline the
	// labels every such pod carries (the Service's selector and the subset's labels).
	selector := map[string]string{}
	for k, v := range svcSelector {
		selector[k] = v
	}
	for k, v := range t.subsetLabels {
		selector[k] = v
	}
	var pods []workload
	live := false
	if svc != nil && s.Live && len(svcSelector) > 0 {
		for _, p := range s.Pods {
			if p.Namespace == ns && matchesAll(p.Labels, selector) {
				pods = append(pods, workload{ns, p.Labels})
			}
		}
		live = len(pods) > 0
	}
	if !live {
		pods = []workload{{ns, selector}}
	}
	// The ports the client mode applies to.
	var targets []hostPort
	for _, p := range ports {
		if t.port != 0 && p.port != t.port {
			continue
		}
		if t.port == 0 && slices.Contains(t.overridden, p.port) {
			continue
		}
		targets = append(targets, p)
	}
	if len(targets) == 0 {
		targets = []hostPort{{port: t.port}}
	}
	for _, hp := range targets {
		var first serverMode
		n := 0
		for _, w := range pods {
			sm := pp.resolve(w.ns, w.labels, hp.target)
			if (sm.mode == "STRICT" && t.mode == "DISABLE") || (sm.mode == "DISABLE" && t.mode == "ISTIO_MUTUAL") {
				if n == 0 {
					first = sm
				}
				n++
			}
		}
		if n == 0 {
			continue
		}
		var where string
		switch {
		case first.scope == "namespace":
			where = "namespace " + ns
		case live:
			where = fmt.Sprintf("%d of %d pods of Service %s/%s", n, len(pods), svc.GetNamespace(), svc.GetName())
		default:
			where = fmt.Sprintf("the pods of Service %s/%s", svc.GetNamespace(), svc.GetName())
		}
		if first.scope != "" && first.scope != "namespace" {
			where = first.scope + " " + where
		}
		return fmt.Sprintf("%s sets mTLS %s for %s", first.from, first.mode, where), true
	}
	return "", false
}

// tlsMode is one client TLS mode a DestinationRule sets: port 0 for a whole traffic
// policy, whose portLevelSettings override it on the ports in overridden; subsetLabels
// for a subset's policy.
type tlsMode struct {
	path, mode   string
	port         int64
	overridden   []int64
	subsetLabels map[string]string
}

// drTLSModes lists every client TLS mode a DestinationRule sets.
func drTLSModes(dr *unstructured.Unstructured) []tlsMode {
	var out []tlsMode
	policy := func(tp map[string]any, path string, subset map[string]string) {
		var portModes []tlsMode
		var overridden []int64
		ports, _, _ := unstructured.NestedSlice(tp, "portLevelSettings")
		for i, p := range ports {
			pm := asMap(p)
			m, _, _ := unstructured.NestedString(pm, "tls", "mode")
			if m == "" {
				continue
			}
			n, _, _ := unstructured.NestedInt64(pm, "port", "number")
			overridden = append(overridden, n)
			portModes = append(portModes, tlsMode{path: fmt.Sprintf("%s.portLevelSettings[%d].tls.mode", path, i), mode: m, port: n, subsetLabels: subset})
		}
		if m, _, _ := unstructured.NestedString(tp, "tls", "mode"); m != "" {
			out = append(out, tlsMode{path: path + ".tls.mode", mode: m, overridden: overridden, subsetLabels: subset})
		}
		out = append(out, portModes...)
	}
	if tp, ok, _ := unstructured.NestedMap(dr.Object, "spec", "trafficPolicy"); ok {
		policy(tp, "spec.trafficPolicy", nil)
	}
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for i, sub := range subsets {
		if tp, ok := nestedMap(sub, "trafficPolicy"); ok {
			labels, _, _ := unstructured.NestedStringMap(asMap(sub), "labels")
			policy(tp, fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), labels)
		}
	}
	return out
}

// istiodValidation: MD0509.
type istiodValidation struct{}

func (istiodValidation) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeIstiodValidationMessage, Name: "istiod.validationmessages",
		Description: "istiod's own analysis wrote a message into an Istio object's status.validationMessages.",
		Inputs:      []schemaGVK{gvk(gkVirtualService, "v1")},
		NeedsLive:   true, IST: "(any)",
		Beyond: "Brings istiod's in-cluster analysis next to meshdrift's findings and alerts, per GitOps app.",
	}
}

func (c istiodValidation) Run(_ context.Context, s *Snapshot) []Result {
	var out []Result
	for _, gk := range sortedKinds(s) {
		if !istioGroup(gk.Group) {
			continue
		}
		for _, obj := range s.List(gk) {
			msgs, _, _ := unstructured.NestedSlice(obj.Object, "status", "validationMessages")
			for i, m := range msgs {
				mm, _ := m.(map[string]any)
				code, _, _ := unstructured.NestedString(mm, "type", "code")
				name, _, _ := unstructured.NestedString(mm, "type", "name")
				level, _, _ := unstructured.NestedString(mm, "level")
				doc, _, _ := unstructured.NestedString(mm, "documentationUrl")
				text := fmt.Sprintf("istiod reports %s %s", code, name)
				if level != "" {
					text += " (" + level + ")"
				}
				if doc != "" {
					text += ": " + doc
				}
				out = append(out, Result{Code: c.Metadata().Code, Object: refOf(obj),
					Path: fmt.Sprintf("status.validationMessages[%d]", i), Message: text})
			}
		}
	}
	return out
}
