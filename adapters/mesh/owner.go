package mesh

import (
	"strings"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Labels and annotations the GitOps tools put on what they apply.
const (
	// argoTrackingAnnotation is Argo CD's annotation tracking (the default since Argo CD 3.0):
	// "<app>:<group>/<kind>:<namespace>/<name>".
	argoTrackingAnnotation = "argocd.argoproj.io/tracking-id"
	// argoInstanceLabel is Argo CD's label tracking (the default before 3.0; the key is
	// configurable in argocd-cm, this is the default key). Helm charts set the same label
	// to their release name, so it is the weakest evidence and is read last.
	argoInstanceLabel = "app.kubernetes.io/instance"

	fluxKustomizationName      = "kustomize.toolkit.fluxcd.io/name"
	fluxKustomizationNamespace = "kustomize.toolkit.fluxcd.io/namespace"
	fluxHelmReleaseName        = "helm.toolkit.fluxcd.io/name"
	fluxHelmReleaseNamespace   = "helm.toolkit.fluxcd.io/namespace"
)

// trackingID is a parsed Argo CD tracking-id annotation.
type trackingID struct {
	// App is the app's instance name: "<name>" for an Application in Argo CD's own
	// namespace, "<namespace>_<name>" for one elsewhere (apps in any namespace).
	App       string
	Group     string
	Kind      string
	Namespace string
	Name      string
}

func (t trackingID) String() string {
	return t.App + ":" + t.Group + "/" + t.Kind + ":" + t.Namespace + "/" + t.Name
}

// parseTrackingID parses "<app>:<group>/<kind>:<namespace>/<name>" exactly as Argo CD's
// resourceTracking.ParseAppInstanceValue does (split on the first two colons, then each
// of the last two parts on its one slash; the name part may hold colons), and also
// rejects an empty app, kind or name, which would attribute nothing.
func parseTrackingID(s string) (trackingID, bool) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return trackingID{}, false
	}
	group, kind, ok := splitOnce(parts[1])
	if !ok {
		return trackingID{}, false
	}
	ns, name, ok := splitOnce(parts[2])
	if !ok {
		return trackingID{}, false
	}
	t := trackingID{App: parts[0], Group: group, Kind: kind, Namespace: ns, Name: name}
	if t.App == "" || t.Kind == "" || t.Name == "" {
		return trackingID{}, false
	}
	return t, true
}

// splitOnce splits s on its only slash; Argo CD rejects a part with more or fewer.
func splitOnce(s string) (string, string, bool) {
	before, after, ok := strings.Cut(s, "/")
	if !ok || strings.Contains(after, "/") {
		return "", "", false
	}
	return before, after, true
}

// argoAppKey turns an Argo CD instance name into an AppKey. Argo CD writes
// "<namespace>_<name>" for an Application outside its control-plane namespace
// (Application.InstanceName); neither part can hold "_", so the first one splits them.
// A bare name belongs to the control-plane namespace, which the object does not say:
// Namespace stays "" and reconcile must resolve it against the apps it knows.
func argoAppKey(instance string) reconcile.AppKey {
	k := reconcile.AppKey{Source: reconcile.SourceArgoCD, Kind: "Application", Name: instance}
	if ns, name, ok := strings.Cut(instance, "_"); ok && ns != "" && name != "" {
		k.Namespace, k.Name = ns, name
	}
	return k
}

// gitOpsOwner says which GitOps app tracks an object, from its labels and annotations,
// or the zero AppKey. ref is the object itself: an Argo CD tracking id that names another
// object was copied (by a controller or a human) and, as in Argo CD's
// isSelfReferencedObj, does not make this object the app's. Precedence, strongest
// evidence first: the Argo CD tracking id, Flux's Kustomization labels, Flux's
// HelmRelease labels, then the Argo CD instance label.
func gitOpsOwner(ref reconcile.ObjectRef, labels, annotations map[string]string) reconcile.AppKey {
	if t, ok := parseTrackingID(annotations[argoTrackingAnnotation]); ok &&
		t.Group == ref.Group && t.Kind == ref.Kind && t.Name == ref.Name &&
		(ref.Namespace == "" || t.Namespace == ref.Namespace) {
		return argoAppKey(t.App)
	}
	// Flux always writes both labels of a pair; a lone one was not written by Flux.
	if name, ns := labels[fluxKustomizationName], labels[fluxKustomizationNamespace]; name != "" && ns != "" {
		return reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: ns, Name: name}
	}
	if name, ns := labels[fluxHelmReleaseName], labels[fluxHelmReleaseNamespace]; name != "" && ns != "" {
		return reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "HelmRelease", Namespace: ns, Name: name}
	}
	if instance := labels[argoInstanceLabel]; instance != "" {
		return argoAppKey(instance)
	}
	return reconcile.AppKey{}
}
