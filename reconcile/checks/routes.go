package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

const gatewayAPIGroup = "gateway.networking.k8s.io"

var routeKinds = []schema.GroupKind{
	{Group: gatewayAPIGroup, Kind: "HTTPRoute"},
	{Group: gatewayAPIGroup, Kind: "GRPCRoute"},
	{Group: gatewayAPIGroup, Kind: "TCPRoute"},
	{Group: gatewayAPIGroup, Kind: "TLSRoute"},
}

// routeCondition: MD0601 (Accepted) and MD0602 (ResolvedRefs). TCPRoute and TLSRoute are
// often not installed; the check reads whichever route kinds exist, so only HTTPRoute is
// a required input.
type routeCondition struct {
	code      findings.Code
	condition string
}

func (c routeCondition) Metadata() Metadata {
	return Metadata{
		Code: c.code, Name: "gatewayapi.route" + strings.ToLower(c.condition),
		Description: "A Gateway API route reports " + c.condition + "=False for a parent (status written by the mesh or gateway implementation).",
		Inputs:      []schemaGVK{gvk(routeKinds[0], "v1")},
		NeedsLive:   true,
		Beyond:      "istioctl analyze does not read Gateway API route status; meshdrift reads it for every implementation (Istio, Linkerd) and ties it to the GitOps app.",
	}
}

func (c routeCondition) Run(_ context.Context, s *Snapshot) []Result {
	var out []Result
	for _, gk := range routeKinds {
		for _, route := range s.List(gk) {
			parents, _, _ := unstructured.NestedSlice(route.Object, "status", "parents")
			for i, p := range parents {
				pm, _ := p.(map[string]any)
				parent := parentName(pm, route.GetNamespace())
				conds, _, _ := unstructured.NestedSlice(pm, "conditions")
				for j, cd := range conds {
					cm, _ := cd.(map[string]any)
					if cm["type"] != c.condition || cm["status"] != "False" {
						continue
					}
					reason, _ := cm["reason"].(string)
					msg, _ := cm["message"].(string)
					text := fmt.Sprintf("parent %s: %s=False (%s)", parent, c.condition, reason)
					if msg != "" {
						text += ": " + msg
					}
					out = append(out, Result{Code: c.code, Object: refOf(route),
						Path: fmt.Sprintf("status.parents[%d].conditions[%d]", i, j), Message: text})
				}
			}
		}
	}
	return out
}

func parentName(p map[string]any, routeNS string) string {
	ref, _ := p["parentRef"].(map[string]any)
	kind, _ := ref["kind"].(string)
	if kind == "" {
		kind = "Gateway"
	}
	ns, _ := ref["namespace"].(string)
	if ns == "" {
		ns = routeNS
	}
	name, _ := ref["name"].(string)
	s := kind + " " + ns + "/" + name
	if sec, _ := ref["sectionName"].(string); sec != "" {
		s += " section " + sec
	}
	return s
}

// sortedKinds returns the kinds present in s in a stable order.
func sortedKinds(s *Snapshot) []schema.GroupKind {
	gks := make([]schema.GroupKind, 0, len(s.objects))
	for gk := range s.objects {
		gks = append(gks, gk)
	}
	slices.SortFunc(gks, func(a, b schema.GroupKind) int { return strings.Compare(a.String(), b.String()) })
	return gks
}
