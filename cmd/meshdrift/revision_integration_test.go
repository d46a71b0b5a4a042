package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

var mutatingWebhooks = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}

// applyTag creates or moves a revision tag as `istioctl tag set` leaves it: a
// MutatingWebhookConfiguration labelled istio.io/tag and istio.io/rev. It has no
// webhooks, since meshdrift reads only the labels and a real one would intercept the
// bed's pods.
func applyTag(t *testing.T, tag, revision string) {
	t.Helper()
	name := "istio-revision-tag-" + tag
	manifest := fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: %s
  labels: {istio.io/tag: %s, istio.io/rev: %s, app: sidecar-injector}
webhooks: []
`, name, tag, revision)
	if _, err := bed.kube.Apply(context.Background(), "istioctl", manifest); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = bed.kube.Dynamic.Resource(mutatingWebhooks).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// setNamespaceLabels merge-patches a namespace's labels as `kubectl label` does; a nil value
// removes the label.
func setNamespaceLabels(t *testing.T, ns string, labels map[string]any) {
	t.Helper()
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion("v1")
	obj.SetKind("Namespace")
	obj.SetName(ns)
	patch := map[string]any{"metadata": map[string]any{"labels": labels}}
	b, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bed.kube.MergePatch(context.Background(), "kubectl-label", obj, b); err != nil {
		t.Fatal(err)
	}
}

// applyPod creates a pod with one container; the bed has no kubelet, so it stays
// pending, which is all meshdrift reads (its metadata).
func applyPod(t *testing.T, ns, name string, labels, annotations map[string]string) {
	t.Helper()
	pod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "example.invalid/app:1"}}},
	}}
	pod.SetNamespace(ns)
	pod.SetName(name)
	pod.SetLabels(labels)
	pod.SetAnnotations(annotations)
	if _, err := bed.kube.ApplyObject(context.Background(), "kubectl", pod); err != nil {
		t.Fatal(err)
	}
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	zero := int64(0)
	if err := bed.kube.Dynamic.Resource(gvr).Namespace(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
}

// activeFindings are the code's findings that are not resolved, by summary.
func activeFindings(a *app, code findings.Code, match func(findings.Subject) bool) []findings.Finding {
	var out []findings.Finding
	for _, f := range a.engine.Findings() {
		if f.Code == code && f.State != findings.StateResolved && match(f.Subject) {
			out = append(out, f)
		}
	}
	return out
}

// Two real istiods of different revisions, meshdrift told their revisions as a user
// with static addresses does (istio.revisions). A namespace on a revision tag whose
// proxy is on the tag's revision is not drift, one on the other revision is (MD0701);
// a pod's own istio.io/rev label in an unlabelled namespace selects its revision; while
// the tag and a pod still select the second revision it is a canary in progress, not
// left behind; once the tag moves and no label selects it, its remaining proxies are
// MD0703, and restarting them onto the selected revision resolves it.
func TestRevisionTagsPodLabelsAndLeftBehindOnTwoIstiods(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	// A revision name of this test's own: another test's namespaces may select "canary".
	const oldRev = "rev-left-behind"
	opts := istiodOptions("istiod-" + oldRev)
	opts.Revision = oldRev
	old, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Stop() })
	a := startMeshdriftWith(t, 30*time.Second, func(c *config.Config) {
		c.Istio.Revisions = []string{bed.istiod.Revision, old.Revision}
		c.Findings.For = map[string]config.Duration{"MD0701": 0, "MD0703": 0}
		c.Findings.ResolveAfter = config.Duration(time.Second)
	}, bed.istiod, old)

	base := newNamespace(t)
	tagged, podSel := base, base+"-pods"
	if err := bed.kube.CreateNamespace(ctx, podSel); err != nil {
		t.Fatal(err)
	}
	tag := "prod-" + fmt.Sprint(time.Now().UnixNano()%1e9)
	applyTag(t, tag, oldRev)
	setNamespaceLabels(t, tagged, map[string]any{"istio.io/rev": tag})
	// The pods of the second namespace, as the injection webhooks saw them.
	applyPod(t, podSel, "own-rev-1", map[string]string{"app": "own", "istio.io/rev": oldRev}, nil)
	applyPod(t, podSel, "opt-in-1", map[string]string{"app": "opt", "sidecar.istio.io/inject": "true"}, nil)

	onTag := startProxy(t, old, "web-tag", tagged, xdsproxy.ModeACK)
	offTag := startProxy(t, bed.istiod, "web-off", tagged, xdsproxy.ModeACK)
	ownRev := startProxy(t, old, "own-rev-1", podSel, xdsproxy.ModeACK)
	optIn := startProxy(t, old, "opt-in-1", podSel, xdsproxy.ModeACK)

	inNS := func(ns string) func(findings.Subject) bool {
		ref := reconcile.ObjectRef{Kind: "Namespace", Name: ns}
		return func(s findings.Subject) bool { return s.Object == ref }
	}
	onOld := func(s findings.Subject) bool { return s.Revision == oldRev && s.App == (reconcile.AppKey{}) }
	firing := func(what string, code findings.Code, match func(findings.Subject) bool, summary string, in, notIn []string) findings.Finding {
		t.Helper()
		var last findings.Finding
		testbed.Eventually(t, 30*time.Second, what, func() (bool, string) {
			fs := activeFindings(a, code, match)
			if len(fs) != 1 {
				return false, fmt.Sprintf("%d findings", len(fs))
			}
			last = fs[0]
			return last.State == findings.StateFiring && strings.Contains(last.Summary, summary), last.Summary + ": " + last.Evidence
		})
		for _, p := range in {
			if !strings.Contains(last.Evidence, p) {
				t.Errorf("%s: evidence %q lacks %s", what, last.Evidence, p)
			}
		}
		for _, p := range notIn {
			if strings.Contains(last.Evidence, p) {
				t.Errorf("%s: evidence %q names %s", what, last.Evidence, p)
			}
		}
		t.Logf("%s: %s: %s", code, last.Summary, last.Evidence)
		return last
	}

	// The tag resolves to the old revision: its proxy is fine, the other one drifts.
	firing("MD0701 through the tag", findings.CodeNamespaceRevisionDrift, inNS(tagged),
		fmt.Sprintf("selects %s (%s), 1 proxy on %s", tag, oldRev, bed.istiod.Revision), []string{offTag.Name()}, []string{onTag.Name()})
	// The pod's own revision label is honoured; the opt-in pod wants the default revision.
	firing("MD0701 by pod labels", findings.CodeNamespaceRevisionDrift, inNS(podSel),
		"its pods select their own revisions, 1 proxy on "+oldRev, []string{optIn.Name() + " on " + oldRev}, []string{ownRev.Name()})
	// A canary in progress: the tag and a pod still select the old revision.
	if fs := activeFindings(a, findings.CodeRevisionLeftBehind, onOld); len(fs) != 0 {
		t.Fatalf("revision still selected reported as left behind: %s", fs[0].Summary)
	}

	// The rollout finishes: the tag moves, the namespace label too; the pods stay.
	applyTag(t, tag, bed.istiod.Revision)
	deletePod(t, podSel, "own-rev-1")
	applyPod(t, podSel, "own-rev-1", map[string]string{"app": "own", "sidecar.istio.io/inject": "true"}, nil)
	firing("MD0703 for the old revision", findings.CodeRevisionLeftBehind, onOld,
		"proxies still run on Istio revision "+oldRev+", which nothing selects: 3 proxies",
		[]string{onTag.Name(), ownRev.Name(), optIn.Name()}, []string{offTag.Name()})

	// Restarting the workloads onto the selected revision resolves it.
	for _, p := range []*xdsproxy.Proxy{onTag, ownRev, optIn} {
		_ = p.Close()
	}
	testbed.Eventually(t, 30*time.Second, "MD0703 resolved once its proxies are gone", func() (bool, string) {
		fs := activeFindings(a, findings.CodeRevisionLeftBehind, onOld)
		if len(fs) == 0 {
			return true, ""
		}
		return false, fs[0].Summary
	})
}

// Linkerd's control plane is not in the bed, but meshdrift reads only pods' metadata:
// control-plane pods and injected pods are created on the real API server with the
// labels and annotations Linkerd's chart and proxy injector give them. A pod whose proxy
// is older than the control plane injects is MD0704; restarting it onto the current
// version resolves it.
func TestLinkerdProxyVersionDrift(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	a := startMeshdriftWith(t, 30*time.Second, func(c *config.Config) {
		c.Findings.For = map[string]config.Duration{"MD0704": 0}
		c.Findings.ResolveAfter = config.Duration(time.Second)
	}, bed.istiod)
	apps := newNamespace(t)
	cp := apps + "-linkerd"
	if err := bed.kube.CreateNamespace(ctx, cp); err != nil {
		t.Fatal(err)
	}
	const current, old = "stable-2.14.10", "stable-2.14.9"
	for _, c := range []string{"destination", "identity", "proxy-injector"} {
		applyPod(t, cp, "linkerd-"+c+"-1",
			map[string]string{"linkerd.io/control-plane-component": c, "linkerd.io/control-plane-ns": cp},
			map[string]string{"linkerd.io/created-by": "linkerd/helm " + current, "linkerd.io/proxy-version": current})
	}
	injected := func(name, version string) {
		applyPod(t, apps, name, map[string]string{"app": "web", "linkerd.io/control-plane-ns": cp},
			map[string]string{"linkerd.io/created-by": "linkerd/proxy-injector " + version, "linkerd.io/proxy-version": version})
	}
	injected("web-old", old)
	injected("web-new", current)
	applyPod(t, apps, "no-mesh", map[string]string{"app": "batch"}, nil)

	inApps := func(s findings.Subject) bool { return s.Object == reconcile.ObjectRef{Kind: "Namespace", Name: apps} }
	var last findings.Finding
	testbed.Eventually(t, 30*time.Second, "MD0704 for the old proxy", func() (bool, string) {
		fs := activeFindings(a, findings.CodeLinkerdProxyVersionDrift, inApps)
		if len(fs) != 1 {
			return false, fmt.Sprintf("%d findings", len(fs))
		}
		last = fs[0]
		return last.State == findings.StateFiring, last.Summary
	})
	want := fmt.Sprintf("1 proxy on %s, control plane %s injects %s", old, cp, current)
	if !strings.Contains(last.Summary, want) || last.Evidence != "web-old on "+old {
		t.Errorf("finding %q / %q, want summary with %q and evidence web-old only", last.Summary, last.Evidence, want)
	}
	t.Logf("%s: %s", last.Summary, last.Evidence)

	// kubectl rollout restart: the new pod gets the current proxy.
	deletePod(t, apps, "web-old")
	injected("web-old-2", current)
	testbed.Eventually(t, 30*time.Second, "MD0704 resolved after the restart", func() (bool, string) {
		fs := activeFindings(a, findings.CodeLinkerdProxyVersionDrift, inApps)
		if len(fs) == 0 {
			return true, ""
		}
		return false, fs[0].Summary
	})
}
