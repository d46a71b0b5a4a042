package checks

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

func formatLabels(sel map[string]string) string {
	parts := make([]string, 0, len(sel))
	for k, v := range sel {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// drSubsetPods: MD0505.
type drSubsetPods struct{}

func (drSubsetPods) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeDRSubsetNoPods, Name: "destinationrule.subsetpods",
		Description: "A DestinationRule subset's labels, with the host Service's selector, match no pod.",
		Inputs:      []schemaGVK{gvk(gkDestinationRule, "v1"), gvk(gkService, "v1")},
		NeedsLive:   true, IST: "IST0173",
		Beyond: "Evaluated continuously on live pod labels: fires when a rollout removes the last pod of a version a subset still names.",
	}
}

func (c drSubsetPods) Run(_ context.Context, s *Snapshot) []Result {
	var out []Result
	for _, dr := range s.List(gkDestinationRule) {
		host, _, _ := unstructured.NestedString(dr.Object, "spec", "host")
		svc := serviceForHost(s, fqdn(host, dr.GetNamespace(), s.Domain))
		if svc == nil {
			continue // a ServiceEntry host, or no Service: not this check's business
		}
		selector, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
		subsets, _, _ := unstructured.NestedSlice(dr.Object, "spec", "subsets")
		for i, sub := range subsets {
			m, _ := sub.(map[string]any)
			name, _ := m["name"].(string)
			labels, _, _ := unstructured.NestedStringMap(m, "labels")
			if len(labels) == 0 || s.podsMatching(svc.GetNamespace(), selector, labels) > 0 {
				continue
			}
			out = append(out, Result{Code: c.Metadata().Code, Object: refOf(dr), Path: fmt.Sprintf("spec.subsets[%d].labels", i),
				Message: fmt.Sprintf("subset %q (%s) matches no pod of Service %s/%s", name, formatLabels(labels), svc.GetNamespace(), svc.GetName())})
		}
	}
	return out
}

// serviceForHost returns the Kubernetes Service a resolved host names, nil when none.
func serviceForHost(s *Snapshot, host string) *unstructured.Unstructured {
	name, rest, ok := strings.Cut(host, ".")
	if !ok {
		return nil
	}
	ns, suffix, ok := strings.Cut(rest, ".")
	if !ok || suffix != "svc."+s.Domain {
		return nil
	}
	return s.Get(gkService, ns, name)
}

// gatewaySelectorPods: MD0506.
type gatewaySelectorPods struct{}

func (gatewaySelectorPods) Metadata() Metadata {
	return Metadata{
		Code: findings.CodeGatewaySelectorNoPods, Name: "gateway.selectorpods",
		Description: "An Istio Gateway's selector matches no pod in any namespace.",
		Inputs:      []schemaGVK{gvk(gkGateway, "v1")},
		NeedsLive:   true, IST: "IST0101",
		Beyond: "Evaluated continuously on live pod labels, so a gateway Deployment scaled to zero or relabelled fires.",
	}
}

func (c gatewaySelectorPods) Run(_ context.Context, s *Snapshot) []Result {
	var out []Result
	for _, gw := range s.List(gkGateway) {
		sel, _, _ := unstructured.NestedStringMap(gw.Object, "spec", "selector")
		if len(sel) == 0 || s.podsMatching("", sel) > 0 {
			continue
		}
		out = append(out, Result{Code: c.Metadata().Code, Object: refOf(gw), Path: "spec.selector",
			Message: fmt.Sprintf("selector %s matches no pod", formatLabels(sel))})
	}
	return out
}

// policySelectorPods: MD0507.
type policySelectorPods struct{}

func (policySelectorPods) Metadata() Metadata {
	return Metadata{
		Code: findings.CodePolicySelectorNoPods, Name: "policy.selectorpods",
		Description: "An AuthorizationPolicy, PeerAuthentication, RequestAuthentication or Sidecar selects no pod.",
		Inputs: []schemaGVK{gvk(gkAuthzPolicy, "v1"), gvk(gkPeerAuthn, "v1"), gvk(gkRequestAuthn, "v1"),
			gvk(gkSidecar, "v1")},
		NeedsLive: true, IST: "IST0127",
		Beyond: "Evaluated continuously on live pod labels; covers Sidecar's workloadSelector too.",
	}
}

func (c policySelectorPods) Run(_ context.Context, s *Snapshot) []Result {
	var out []Result
	type source struct {
		objs []*unstructured.Unstructured
		path []string
	}
	for _, src := range []source{
		{s.List(gkAuthzPolicy), []string{"spec", "selector", "matchLabels"}},
		{s.List(gkPeerAuthn), []string{"spec", "selector", "matchLabels"}},
		{s.List(gkRequestAuthn), []string{"spec", "selector", "matchLabels"}},
		{s.List(gkSidecar), []string{"spec", "workloadSelector", "labels"}},
	} {
		for _, obj := range src.objs {
			sel, _, _ := unstructured.NestedStringMap(obj.Object, src.path...)
			if len(sel) == 0 {
				continue
			}
			ns := obj.GetNamespace()
			where := "namespace " + ns
			if ns == s.RootNamespace {
				ns, where = "", "any namespace (root namespace policy)"
			}
			if s.podsMatching(ns, sel) > 0 {
				continue
			}
			out = append(out, Result{Code: c.Metadata().Code, Object: refOf(obj), Path: strings.Join(src.path, "."),
				Message: fmt.Sprintf("selector %s matches no pod in %s", formatLabels(sel), where)})
		}
	}
	return out
}
