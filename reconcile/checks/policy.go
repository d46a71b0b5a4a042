package checks

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// mtlsConflict: MD0508.
type mtlsConflict struct{}

func (mtlsConflict) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeMTLSConflict, Name: "security.mtlsconflict",
		Description: "A DestinationRule's TLS mode contradicts the namespace-wide or mesh-wide PeerAuthentication of its host's namespace (DISABLE against STRICT, ISTIO_MUTUAL against DISABLE).",
		Inputs:      []schemaGVK{gvk(gkDestinationRule, "v1"), gvk(gkPeerAuthn, "v1")},
		Beyond:      "istioctl analyze retired its mTLS conflict check (IST0113); meshdrift keeps one for the two contradictions that always fail.",
	}
}

// peerMode is the effective PeerAuthentication of a namespace and where it comes from.
type peerMode struct{ mode, from string }

func effectivePeerModes(s *Snapshot) (mesh peerMode, byNS map[string]peerMode) {
	mesh = peerMode{mode: "PERMISSIVE"}
	byNS = map[string]peerMode{}
	for _, pa := range s.List(gkPeerAuthn) {
		if sel, _, _ := unstructured.NestedStringMap(pa.Object, "spec", "selector", "matchLabels"); len(sel) > 0 {
			continue // workload-level: not compared yet
		}
		mode, _, _ := unstructured.NestedString(pa.Object, "spec", "mtls", "mode")
		if mode == "" || mode == "UNSET" {
			continue
		}
		pm := peerMode{mode: mode, from: "PeerAuthentication " + pa.GetNamespace() + "/" + pa.GetName()}
		if pa.GetNamespace() == s.RootNamespace {
			mesh = pm
		} else {
			byNS[pa.GetNamespace()] = pm
		}
	}
	return mesh, byNS
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

func (c mtlsConflict) Run(_ context.Context, s *Snapshot) []Result {
	mesh, byNS := effectivePeerModes(s)
	var out []Result
	for _, dr := range s.List(gkDestinationRule) {
		host, _, _ := unstructured.NestedString(dr.Object, "spec", "host")
		ns := hostNamespace(fqdn(host, dr.GetNamespace(), s.Domain), s.Domain)
		if ns == "" {
			continue
		}
		server, ok := byNS[ns]
		if !ok {
			server = mesh
		}
		if server.from == "" {
			continue // Istio's default PERMISSIVE accepts both
		}
		for _, t := range drTLSModes(dr) {
			if (server.mode == "STRICT" && t.mode == "DISABLE") || (server.mode == "DISABLE" && t.mode == "ISTIO_MUTUAL") {
				out = append(out, Result{Code: c.Metadata().Code, Object: refOf(dr), Path: t.path,
					Message: fmt.Sprintf("clients use TLS mode %s for host %s, but %s sets mTLS %s for namespace %s", t.mode, host, server.from, server.mode, ns)})
			}
		}
	}
	return out
}

type tlsMode struct{ path, mode string }

// drTLSModes lists every client TLS mode a DestinationRule sets.
func drTLSModes(dr *unstructured.Unstructured) []tlsMode {
	var out []tlsMode
	policy := func(tp map[string]any, path string) {
		if m, _, _ := unstructured.NestedString(tp, "tls", "mode"); m != "" {
			out = append(out, tlsMode{path + ".tls.mode", m})
		}
		ports, _, _ := unstructured.NestedSlice(tp, "portLevelSettings")
		for i, p := range ports {
			pm, _ := p.(map[string]any)
			if m, _, _ := unstructured.NestedString(pm, "tls", "mode"); m != "" {
				out = append(out, tlsMode{fmt.Sprintf("%s.portLevelSettings[%d].tls.mode", path, i), m})
			}
		}
	}
	if tp, ok, _ := unstructured.NestedMap(dr.Object, "spec", "trafficPolicy"); ok {
		policy(tp, "spec.trafficPolicy")
	}
	subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
	for i, sub := range subsets {
		if tp, ok := nestedMap(sub, "trafficPolicy"); ok {
			policy(tp, fmt.Sprintf("spec.subsets[%d].trafficPolicy", i))
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
