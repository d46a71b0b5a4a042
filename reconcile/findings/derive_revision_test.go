package findings

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshdrift/meshdrift/reconcile"
)

func TestDeriveRevisions(t *testing.T) {
	proxy := func(id, rev, version, cp string) reconcile.ProxyStatus {
		return reconcile.ProxyStatus{ID: id, Revision: rev, IstioVersion: version, ControlPlaneVersion: cp}
	}
	on := func(ids ...string) []reconcile.ProxyStatus {
		out := make([]reconcile.ProxyStatus, 0, len(ids))
		for _, id := range ids {
			out = append(out, reconcile.ProxyStatus{ID: id})
		}
		return out
	}
	view := func(istiod, rev string, pxs []reconcile.ProxyStatus) reconcile.IstiodView {
		return reconcile.IstiodView{Istiod: istiod, Revision: rev, ObservedAt: t0, Proxies: pxs}
	}
	labels := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	ns := func(name string, kv ...string) reconcile.Namespace {
		return reconcile.Namespace{Name: name, Labels: labels(kv...)}
	}
	pod := func(namespace, name string, kv ...string) reconcile.PodMeta {
		return reconcile.PodMeta{Namespace: namespace, Name: name, Labels: labels(kv...)}
	}
	annotated := func(p reconcile.PodMeta, kv ...string) reconcile.PodMeta {
		p.Annotations = labels(kv...)
		return p
	}
	nsRef := func(name string) Subject { return Subject{Object: reconcile.ObjectRef{Kind: "Namespace", Name: name}} }
	noTags := []reconcile.RevisionTag{}
	noPods := []reconcile.PodMeta{}
	cpPod := func(namespace, name, version string) reconcile.PodMeta {
		return annotated(pod(namespace, name, labelLinkerdComponent, "destination", labelLinkerdNamespace, namespace),
			annotLinkerdProxyVer, version, annotLinkerdCreatedBy, "linkerd/helm "+version)
	}
	dataPod := func(namespace, name, version string, kv ...string) reconcile.PodMeta {
		return annotated(pod(namespace, name, labelLinkerdNamespace, "linkerd"), append([]string{annotLinkerdProxyVer, version}, kv...)...)
	}

	cases := []struct {
		name  string
		snap  reconcile.Snapshot
		want  []Problem
		holds []Hold
	}{
		{
			name: "namespace labels: proxies on another revision than their namespace selects; version skew per proxy",
			snap: reconcile.Snapshot{
				Namespaces: []reconcile.Namespace{
					ns("shop", "istio.io/rev", "canary"),
					ns("legacy", "istio-injection", "enabled", "istio.io/rev", "canary"),
					ns("off", "istio-injection", "disabled"),
					ns("plain"),
				},
				Pods: noPods, RevisionTags: noTags,
				Istiods: []reconcile.IstiodView{
					view("istiod-canary-0", "canary", []reconcile.ProxyStatus{
						proxy("reviews-1.shop", "", "1.24.0", "1.24.0"),
						proxy("web-1.legacy", "", "1.24.0", "1.24.0"),
						proxy("x-1.off", "", "1.24.0", "1.24.0"),
						proxy("y-1.plain", "", "1.24.0", "1.24.0"),
						proxy("z-1.remote", "", "1.24.0", "1.24.0"),
					}),
					view("istiod-0", "default", []reconcile.ProxyStatus{
						proxy("ratings-1.shop", "", "1.23.2", "1.24.0"),
						proxy("web-2.legacy", "default", "1.24.0", "1.24.0"),
					}),
					view("istiod-unknown", "", []reconcile.ProxyStatus{proxy("details-1.shop", "", "", "")}),
				},
			},
			want: []Problem{
				{Code: CodeNamespaceRevisionDrift, Subject: nsRef("legacy"),
					Detail: "selects default, 1 proxy on canary", Evidence: "web-1.legacy on canary"},
				{Code: CodeNamespaceRevisionDrift, Subject: nsRef("shop"),
					Detail: "selects canary, 1 proxy on default", Evidence: "ratings-1.shop on default"},
				{Code: CodeProxyVersionDrift, Subject: Subject{Proxy: "ratings-1.shop"},
					Detail: "1.23.2, its istiod istiod-0 runs 1.24.0", StartsAt: t0},
			},
		},
		{
			name: "a namespace on a tag is judged by the tag's revision; the revision nothing selects is left behind",
			snap: reconcile.Snapshot{
				Namespaces:   []reconcile.Namespace{ns("shop", "istio.io/rev", "prod")},
				Pods:         noPods,
				RevisionTags: []reconcile.RevisionTag{{Tag: "prod", Revision: "1-24"}},
				Istiods: []reconcile.IstiodView{
					view("istiod-1-24-0", "1-24", on("web-1.shop")),
					view("istiod-1-23-0", "1-23", on("web-2.shop", "web-3.shop")),
				},
			},
			want: []Problem{
				{Code: CodeNamespaceRevisionDrift, Subject: nsRef("shop"),
					Detail: "selects prod (1-24), 2 proxies on 1-23", Evidence: "web-2.shop on 1-23, web-3.shop on 1-23"},
				{Code: CodeRevisionLeftBehind, Subject: Subject{Revision: "1-23"},
					Detail: "2 proxies still connected", Evidence: "web-2.shop, web-3.shop"},
			},
		},
		{
			name: "the default tag: istio-injection=enabled and sidecar.istio.io/inject=true select the revision it names",
			snap: reconcile.Snapshot{
				Namespaces: []reconcile.Namespace{ns("shop", "istio-injection", "enabled"), ns("plain")},
				Pods: []reconcile.PodMeta{
					pod("plain", "opt-in-1", "sidecar.istio.io/inject", "true"),
					pod("plain", "opt-in-2", "sidecar.istio.io/inject", "true"),
				},
				RevisionTags: []reconcile.RevisionTag{{Tag: "default", Revision: "1-24"}},
				Istiods: []reconcile.IstiodView{
					view("istiod-1-24-0", "1-24", on("web-1.shop", "opt-in-1.plain")),
					view("istiod-1-23-0", "1-23", on("opt-in-2.plain")),
				},
			},
			want: []Problem{
				{Code: CodeNamespaceRevisionDrift, Subject: nsRef("plain"),
					Detail:   "its pods select their own revisions, 1 proxy on 1-23",
					Evidence: "opt-in-2.plain on 1-23 (its pod selects default (1-24))"},
				{Code: CodeRevisionLeftBehind, Subject: Subject{Revision: "1-23"},
					Detail: "1 proxy still connected", Evidence: "opt-in-2.plain"},
			},
		},
		{
			name: "before the tags are read, a name no istiod runs may be a tag: not judged, and MD0703 held",
			snap: reconcile.Snapshot{
				Namespaces: []reconcile.Namespace{ns("shop", "istio.io/rev", "prod"), ns("web", "istio.io/rev", "1-24")},
				Pods:       noPods,
				Istiods: []reconcile.IstiodView{
					view("istiod-1-24-0", "1-24", on("a-1.shop")),
					view("istiod-1-23-0", "1-23", on("b-1.shop", "c-1.web")),
				},
			},
			want: []Problem{{Code: CodeNamespaceRevisionDrift, Subject: nsRef("web"),
				Detail: "selects 1-24, 1 proxy on 1-23", Evidence: "c-1.web on 1-23"}},
			holds: []Hold{{Code: CodeRevisionLeftBehind, Reason: "pods or revision tags not read yet"}},
		},
		{
			name: "a pod's own labels: istio.io/rev where the namespace has none, either where both differ, inject=false opts out",
			snap: reconcile.Snapshot{
				Namespaces: []reconcile.Namespace{ns("plain"), ns("shop", "istio.io/rev", "canary")},
				Pods: []reconcile.PodMeta{
					pod("plain", "a-1", "istio.io/rev", "canary"),
					pod("plain", "b-1", "istio.io/rev", "canary"),
					pod("shop", "c-1", "istio.io/rev", "stable"),
					pod("shop", "d-1", "istio.io/rev", "stable"),
					pod("shop", "e-1", "sidecar.istio.io/inject", "false"),
					annotated(pod("shop", "f-1"), "sidecar.istio.io/inject", "false"),
				},
				RevisionTags: noTags,
				Istiods: []reconcile.IstiodView{
					view("istiod-0", "default", on("a-1.plain", "d-1.shop", "e-1.shop", "f-1.shop")),
					view("istiod-canary-0", "canary", on("b-1.plain")),
					view("istiod-stable-0", "stable", on("c-1.shop")),
				},
			},
			want: []Problem{
				{Code: CodeNamespaceRevisionDrift, Subject: nsRef("plain"),
					Detail: "its pods select their own revisions, 1 proxy on default", Evidence: "a-1.plain on default (its pod selects canary)"},
				{Code: CodeNamespaceRevisionDrift, Subject: nsRef("shop"),
					Detail: "selects canary, 1 proxy on default", Evidence: "d-1.shop on default (its pod selects canary or stable)"},
			},
		},
		{
			name: "a revision only remote clusters' proxies use is not left behind here",
			snap: reconcile.Snapshot{
				Namespaces: []reconcile.Namespace{ns("shop", "istio.io/rev", "1-24")},
				Pods:       noPods, RevisionTags: noTags,
				Istiods: []reconcile.IstiodView{
					view("istiod-1-24-0", "1-24", on("a-1.shop")),
					view("istiod-1-23-0", "1-23", on("b-1.remote-only")),
				},
			},
		},
		{
			name: "left behind only where nothing selects the revision: a canary in progress, a pod, a tag and the default keep theirs",
			snap: reconcile.Snapshot{
				Namespaces: []reconcile.Namespace{ns("shop", "istio.io/rev", "1-24"), ns("web", "istio.io/rev", "1-23"), ns("plain")},
				Pods:       []reconcile.PodMeta{pod("plain", "gw-1", "istio.io/rev", "1-22")},
				RevisionTags: []reconcile.RevisionTag{
					{Tag: "old", Revision: "1-21"},
				},
				Istiods: []reconcile.IstiodView{
					view("istiod-1-24-0", "1-24", on("a-1.shop")),
					view("istiod-1-23-0", "1-23", on("b-1.web")),
					view("istiod-1-22-0", "1-22", on("gw-1.plain")),
					view("istiod-1-21-0", "1-21", on("c-1.plain")),
					view("istiod-0", "default", on("d-1.plain")),
					view("istiod-1-20-0", "1-20", on("e-1.plain", "f-1.remote")),
				},
			},
			want: []Problem{{Code: CodeRevisionLeftBehind, Subject: Subject{Revision: "1-20"},
				Detail: "1 proxy still connected", Evidence: "e-1.plain"}},
		},
		{
			name: "linkerd: proxies on another version than their control plane injects, per namespace; pinned ones marked",
			snap: reconcile.Snapshot{
				Pods: []reconcile.PodMeta{
					cpPod("linkerd", "linkerd-destination-1", "stable-2.14.10"),
					cpPod("linkerd", "linkerd-identity-1", "stable-2.14.10"),
					dataPod("shop", "web-1", "stable-2.14.9"),
					dataPod("shop", "web-2", "stable-2.14.10"),
					dataPod("shop", "web-3", "stable-2.14.8", annotLinkerdPinnedProxy, "stable-2.14.8"),
					dataPod("books", "api-1", "stable-2.14.10"),
					pod("plain", "no-proxy-1"),
					// The heartbeat job has no proxy; its installer's version is not the proxies'.
					annotated(pod("linkerd", "linkerd-heartbeat-1", labelLinkerdComponent, "heartbeat"), annotLinkerdCreatedBy, "linkerd/helm stable-2.14.11"),
				},
			},
			want: []Problem{{Code: CodeLinkerdProxyVersionDrift, Subject: nsRef("shop"),
				Detail:   "2 proxies on stable-2.14.8, stable-2.14.9, control plane linkerd injects stable-2.14.10",
				Evidence: "web-1 on stable-2.14.9, web-3 on stable-2.14.8 (pinned by config.linkerd.io/proxy-version)"}},
		},
		{
			name: "linkerd: no reference while the control plane's pods disagree, none for an unknown control plane; created-by as fallback",
			snap: reconcile.Snapshot{
				Pods: []reconcile.PodMeta{
					cpPod("linkerd", "linkerd-destination-1", "stable-2.14.10"),
					cpPod("linkerd", "linkerd-destination-2", "stable-2.14.9"),
					dataPod("shop", "web-1", "stable-2.14.8"),
					annotated(pod("linkerd-b", "linkerd-identity-1", labelLinkerdComponent, "identity"), annotLinkerdCreatedBy, "linkerd/cli edge-24.11.8"),
					annotated(pod("books", "api-1", labelLinkerdNamespace, "linkerd-b"), annotLinkerdProxyVer, "edge-24.11.1"),
					annotated(pod("books", "api-2", labelLinkerdNamespace, "linkerd-c"), annotLinkerdProxyVer, "edge-24.11.1"),
				},
			},
			want: []Problem{{Code: CodeLinkerdProxyVersionDrift, Subject: nsRef("books"),
				Detail: "1 proxy on edge-24.11.1, control plane linkerd-b injects edge-24.11.8", Evidence: "api-1 on edge-24.11.1"}},
		},
		{
			name: "linkerd: without any control-plane pod, nothing is compared",
			snap: reconcile.Snapshot{Pods: []reconcile.PodMeta{dataPod("shop", "web-1", "stable-2.14.9")}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Derive(tc.snap, nil, Config{})
			if diff := cmp.Diff(tc.want, got.Problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.holds, got.Holds); diff != "" {
				t.Errorf("holds (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInjectionNames(t *testing.T) {
	cases := []struct {
		ns, pod  map[string]string
		podKnown bool
		want     []string
	}{
		{ns: map[string]string{"istio-injection": "enabled", "istio.io/rev": "canary"}, want: []string{"default"}},
		{ns: map[string]string{"istio-injection": "disabled", "istio.io/rev": "canary"}, want: nil},
		{ns: map[string]string{"istio.io/rev": "canary"}, want: []string{"canary"}},
		{ns: nil, want: nil},
		{ns: map[string]string{"istio-injection": "enabled"}, pod: map[string]string{"istio.io/rev": "canary"}, podKnown: true, want: []string{"default"}},
		{ns: map[string]string{"istio.io/rev": "canary"}, pod: map[string]string{"istio.io/rev": "canary"}, podKnown: true, want: []string{"canary"}},
		{ns: map[string]string{"istio.io/rev": "canary"}, pod: map[string]string{"sidecar.istio.io/inject": "true"}, podKnown: true, want: []string{"canary"}},
		{ns: nil, pod: map[string]string{"sidecar.istio.io/inject": "true", "istio.io/rev": "canary"}, podKnown: true, want: []string{"canary"}},
		{ns: nil, pod: map[string]string{"sidecar.istio.io/inject": "false", "istio.io/rev": "canary"}, podKnown: true, want: nil},
		{ns: nil, pod: map[string]string{}, podKnown: true, want: nil},
	}
	for _, tc := range cases {
		var p *reconcile.PodMeta
		if tc.podKnown {
			p = &reconcile.PodMeta{Labels: tc.pod}
		}
		if got := injectionNames(tc.ns, p); !cmp.Equal(got, tc.want) {
			t.Errorf("namespace %v, pod %v: %v, want %v", tc.ns, tc.pod, got, tc.want)
		}
	}
}
