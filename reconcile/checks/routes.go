package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

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
		NeedsLive:   true, IST: "IST0171",
		Beyond: "analyze reports any negative condition of a live cluster's objects as IST0171 (measured on the bed); meshdrift tells Accepted from ResolvedRefs, " +
			"re-evaluates on every status change for every implementation (Istio, Linkerd) and ties the finding to the GitOps app.",
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

// routeStatusStale: MD0603.
//
// How long a route's status has lagged is measured from the route's last spec write as
// the API server recorded it: the newest managedFields entry of the main resource (not
// the status subresource) that owns spec fields. Only spec writes bump
// metadata.generation, and the API server stamps each entry with the time of its
// manager's last write, so no extra watch or memory is needed and the answer is the same
// for every meshdrift replica and after a restart. A manager's later write of metadata
// alone also moves its entry's time: that makes the lag look shorter, so the check errs
// towards silence. A route without such an entry (written by a client that drops
// managedFields) falls back to its creation time when its generation is 1, and is
// otherwise not judged.
type routeStatusStale struct{}

func (routeStatusStale) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeRouteStatusStale, Name: "gatewayapi.routestatusstale",
		Description: "A Gateway API route's conditions for a parent carry an observedGeneration older than the route's generation for longer than the grace since its last spec write.",
		Inputs:      []schemaGVK{gvk(routeKinds[0], "v1")},
		NeedsLive:   true, NeedsNow: true,
		Beyond: "analyze reports negative route conditions (IST0171) but not conditions that lag the generation; meshdrift tells a route the implementation has not processed " +
			"(controller down, namespace not watched) from one it rejected, with how long it has lagged.",
	}
}

func (c routeStatusStale) Run(_ context.Context, s *Snapshot) []Result {
	grace := s.RouteStatusGrace
	if grace <= 0 {
		grace = DefaultRouteStatusGrace
	}
	var out []Result
	for _, gk := range routeKinds {
		for _, route := range s.List(gk) {
			gen := route.GetGeneration()
			written, ok := lastSpecWrite(route)
			if gen == 0 || !ok {
				continue
			}
			stale := s.Now.Sub(written) > grace
			parents, _, _ := unstructured.NestedSlice(route.Object, "status", "parents")
			for i, p := range parents {
				pm, _ := p.(map[string]any)
				conds, _, _ := unstructured.NestedSlice(pm, "conditions")
				for j, cd := range conds {
					cm, _ := cd.(map[string]any)
					observed, _, _ := unstructured.NestedInt64(cm, "observedGeneration")
					if observed >= gen {
						continue
					}
					if !stale {
						// Lagging within the grace: the answer changes once it has passed,
						// with or without any write.
						s.RecheckAt(written.Add(grace))
						break
					}
					ctrl, _ := pm["controllerName"].(string)
					// The message names when the lag began, not how long ago: a result
					// stays the same between runs, which Live may skip while nothing
					// changes.
					out = append(out, Result{Code: c.Metadata().Code, Object: refOf(route),
						Path: fmt.Sprintf("status.parents[%d].conditions[%d].observedGeneration", i, j),
						Message: fmt.Sprintf("parent %s: %s condition observed generation %d, the route is at generation %d since %s (grace %s); %s has not processed the latest spec",
							parentName(pm, route.GetNamespace()), cm["type"], observed, gen, written.UTC().Format(time.RFC3339), grace, orController(ctrl))})
					break // one result per parent: its other conditions lag alike
				}
			}
		}
	}
	return out
}

func orController(name string) string {
	if name == "" {
		return "its controller"
	}
	return name
}

// lastSpecWrite returns when the object's spec was last written (see routeStatusStale).
func lastSpecWrite(obj *unstructured.Unstructured) (time.Time, bool) {
	var last time.Time
	for _, mf := range obj.GetManagedFields() {
		if mf.Subresource != "" || mf.Time == nil || mf.FieldsV1 == nil {
			continue
		}
		if !strings.Contains(mf.FieldsV1.GetRawString(), `"f:spec"`) {
			continue
		}
		if mf.Time.After(last) {
			last = mf.Time.Time
		}
	}
	if !last.IsZero() {
		return last, true
	}
	if created := obj.GetCreationTimestamp(); obj.GetGeneration() == 1 && !created.IsZero() {
		return created.Time, true
	}
	return time.Time{}, false
}
