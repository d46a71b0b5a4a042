package mesh

import (
	"testing"

	"github.com/meshdrift/meshdrift/reconcile"
)

func TestParseTrackingID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want trackingID
		ok   bool
	}{
		{"reviews:networking.istio.io/VirtualService:bookinfo/reviews",
			trackingID{"reviews", "networking.istio.io", "VirtualService", "bookinfo", "reviews"}, true},
		// Apps in any namespace: the instance name is <namespace>_<name>.
		{"team-a_reviews:networking.istio.io/VirtualService:bookinfo/reviews",
			trackingID{"team-a_reviews", "networking.istio.io", "VirtualService", "bookinfo", "reviews"}, true},
		// Core group and cluster-scoped object: both parts empty, as Argo CD writes them.
		{"infra:/Namespace:/bookinfo", trackingID{"infra", "", "Namespace", "", "bookinfo"}, true},
		// Argo CD splits on the first two colons only; the rest belongs to the name part.
		{"app:g/K:ns/a:b", trackingID{"app", "g", "K", "ns", "a:b"}, true},
		{"", trackingID{}, false},
		{"reviews", trackingID{}, false},
		{"reviews:networking.istio.io/VirtualService", trackingID{}, false},
		{"reviews:VirtualService:bookinfo/reviews", trackingID{}, false},
		{"reviews:networking.istio.io/v1/VirtualService:bookinfo/reviews", trackingID{}, false},
		{"reviews:networking.istio.io/VirtualService:reviews", trackingID{}, false},
		{"reviews:networking.istio.io/VirtualService:bookinfo/reviews/x", trackingID{}, false},
		{":networking.istio.io/VirtualService:bookinfo/reviews", trackingID{}, false},
		{"reviews:networking.istio.io/:bookinfo/reviews", trackingID{}, false},
		{"reviews:networking.istio.io/VirtualService:bookinfo/", trackingID{}, false},
	} {
		got, ok := parseTrackingID(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseTrackingID(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestGitOpsOwner(t *testing.T) {
	vs := reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "bookinfo", Name: "reviews"}
	argo := func(ns, name string) reconcile.AppKey {
		return reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: ns, Name: name}
	}
	ks := func(ns, name string) reconcile.AppKey {
		return reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: ns, Name: name}
	}
	hr := func(ns, name string) reconcile.AppKey {
		return reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "HelmRelease", Namespace: ns, Name: name}
	}
	fluxKS := map[string]string{fluxKustomizationName: "apps", fluxKustomizationNamespace: "flux-system"}
	for _, tc := range []struct {
		name        string
		ref         reconcile.ObjectRef
		labels      map[string]string
		annotations map[string]string
		want        reconcile.AppKey
	}{
		{"untracked", vs, nil, nil, reconcile.AppKey{}},
		{"argo cd tracking id, app in argo cd's namespace", vs, nil,
			map[string]string{argoTrackingAnnotation: "bookinfo:networking.istio.io/VirtualService:bookinfo/reviews"},
			argo("", "bookinfo")},
		{"argo cd tracking id, app in any namespace", vs, nil,
			map[string]string{argoTrackingAnnotation: "team-a_bookinfo:networking.istio.io/VirtualService:bookinfo/reviews"},
			argo("team-a", "bookinfo")},
		{"tracking id copied from another object is ignored", vs, nil,
			map[string]string{argoTrackingAnnotation: "bookinfo:networking.istio.io/VirtualService:bookinfo/ratings"},
			reconcile.AppKey{}},
		{"tracking id of another kind with the same name is ignored", vs, nil,
			map[string]string{argoTrackingAnnotation: "bookinfo:gateway.networking.k8s.io/HTTPRoute:bookinfo/reviews"},
			reconcile.AppKey{}},
		{"tracking id of another namespace is ignored", vs, nil,
			map[string]string{argoTrackingAnnotation: "bookinfo:networking.istio.io/VirtualService:other/reviews"},
			reconcile.AppKey{}},
		{"malformed tracking id falls through to labels", vs, fluxKS,
			map[string]string{argoTrackingAnnotation: "bookinfo"},
			ks("flux-system", "apps")},
		{"flux kustomization", vs, fluxKS, nil, ks("flux-system", "apps")},
		{"flux helm release", vs,
			map[string]string{fluxHelmReleaseName: "istio-config", fluxHelmReleaseNamespace: "mesh", argoInstanceLabel: "istio-config"},
			nil, hr("mesh", "istio-config")},
		{"flux name without namespace is not flux's", vs,
			map[string]string{fluxKustomizationName: "apps"}, nil, reconcile.AppKey{}},
		{"flux labels beat the instance label (helm charts set it too)", vs,
			map[string]string{fluxKustomizationName: "apps", fluxKustomizationNamespace: "flux-system", argoInstanceLabel: "reviews"},
			nil, ks("flux-system", "apps")},
		{"tracking id beats flux labels", vs, fluxKS,
			map[string]string{argoTrackingAnnotation: "bookinfo:networking.istio.io/VirtualService:bookinfo/reviews"},
			argo("", "bookinfo")},
		{"argo cd instance label", vs, map[string]string{argoInstanceLabel: "bookinfo"}, nil, argo("", "bookinfo")},
		{"argo cd instance label, app in any namespace", vs,
			map[string]string{argoInstanceLabel: "team-a_bookinfo"}, nil, argo("team-a", "bookinfo")},
		{"instance label with an empty part keeps it whole", vs,
			map[string]string{argoInstanceLabel: "_bookinfo"}, nil, argo("", "_bookinfo")},
		{"cluster-scoped object: tracking id namespace not compared",
			reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Name: "reviews"}, nil,
			map[string]string{argoTrackingAnnotation: "bookinfo:networking.istio.io/VirtualService:bookinfo/reviews"},
			argo("", "bookinfo")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gitOpsOwner(tc.ref, tc.labels, tc.annotations); got != tc.want {
				t.Errorf("gitOpsOwner = %v, want %v", got, tc.want)
			}
		})
	}
}
