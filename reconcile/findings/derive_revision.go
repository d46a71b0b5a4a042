package findings

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Control-plane revision checks: proxies on another Istio revision than their labels
// select (MD0701), on another Istio version than their istiod (MD0702), on a revision
// nothing selects any more (MD0703), and Linkerd proxies on another version than their
// control plane injects (MD0704).

// Labels and annotations Istio's injection webhooks read.
const (
	labelInjection  = "istio-injection"
	labelRevision   = "istio.io/rev"
	labelInject     = "sidecar.istio.io/inject"
	defaultRevision = "default"
)

// injectionNames are the revisions or tags Istio's injection webhooks inject a pod with,
// from its namespace's labels and, when the pod is known, its own; none when no webhook
// injects it. As the webhooks order it: the pod's sidecar.istio.io/inject=false and the
// namespace's istio-injection decide first (enabled selects the default revision), then
// istio.io/rev. A pod's istio.io/rev counts in a namespace without one; where both carry
// different ones, Istio's webhooks follow the namespace's by default and the pod's with
// revisionLabelPreference=pod, so either is accepted.
func injectionNames(nsLabels map[string]string, pod *reconcile.PodMeta) []string {
	var podLabels, podAnnotations map[string]string
	if pod != nil {
		podLabels, podAnnotations = pod.Labels, pod.Annotations
	}
	// The injector reads the label, else the legacy annotation.
	inject, ok := podLabels[labelInject]
	if !ok {
		inject = podAnnotations[labelInject]
	}
	if inject == "false" {
		return nil
	}
	switch nsLabels[labelInjection] {
	case "enabled":
		return []string{defaultRevision}
	case "":
	default:
		return nil
	}
	nsRev, podRev := nsLabels[labelRevision], podLabels[labelRevision]
	switch {
	case nsRev != "" && podRev != "" && podRev != nsRev:
		return []string{nsRev, podRev}
	case nsRev != "":
		return []string{nsRev}
	case podRev != "":
		return []string{podRev}
	case inject == "true":
		return []string{defaultRevision}
	}
	return nil
}

// revisionResolver turns the names labels use (revisions or revision tags) into
// revisions.
type revisionResolver struct {
	// tags maps a tag to its revisions (one, unless tags of the same name in several
	// injector namespaces disagree); nil while the tags are not known.
	tags map[string][]string
	// known are the revisions of the istiods read.
	known map[string]bool
}

func newRevisionResolver(snap reconcile.Snapshot) revisionResolver {
	r := revisionResolver{known: map[string]bool{}}
	if snap.RevisionTags != nil {
		r.tags = map[string][]string{}
		for _, t := range snap.RevisionTags {
			r.tags[t.Tag] = append(r.tags[t.Tag], t.Revision)
		}
	}
	for _, v := range snap.Istiods {
		if v.Revision != "" {
			r.known[v.Revision] = true
		}
	}
	return r
}

// resolve returns the revisions names stand for, false when one of them cannot be
// resolved: while the tags are not known, a name no istiod runs may be a tag.
func (r revisionResolver) resolve(names []string) ([]string, bool) {
	var out []string
	for _, n := range names {
		if revs, ok := r.tags[n]; ok {
			out = append(out, revs...)
			continue
		}
		if r.tags == nil && !r.known[n] {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// describe names what names select: "canary", "prod (1-24)", "a or b".
func (r revisionResolver) describe(names []string) string {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		revs, ok := r.tags[n]
		if ok && !(len(revs) == 1 && revs[0] == n) {
			n += " (" + strings.Join(revs, ", ") + ")"
		}
		parts = append(parts, n)
	}
	return strings.Join(parts, " or ")
}

// revisions derives MD0701 and MD0702, then MD0703 and MD0704. A proxy whose istiod's
// revision is unknown is not judged, nor one in a namespace the snapshot does not hold
// (a remote cluster's).
func (d *deriver) revisions(snap reconcile.Snapshot) {
	for _, v := range snap.Istiods {
		for _, px := range v.Proxies {
			if versionsDiffer(px.IstioVersion, px.ControlPlaneVersion) {
				d.add(Problem{Code: CodeProxyVersionDrift, Subject: Subject{Proxy: px.ID},
					Detail:   fmt.Sprintf("%s, its istiod %s runs %s", px.IstioVersion, v.Istiod, px.ControlPlaneVersion),
					StartsAt: v.ObservedAt})
			}
		}
	}
	d.linkerdVersions(snap)
	if snap.Namespaces == nil {
		return
	}
	r := newRevisionResolver(snap)
	nsLabels := make(map[string]map[string]string, len(snap.Namespaces))
	for _, ns := range snap.Namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	pods := make(map[string]*reconcile.PodMeta, len(snap.Pods))
	for i := range snap.Pods {
		p := &snap.Pods[i]
		pods[p.Name+"."+p.Namespace] = p
	}
	type drift struct {
		proxies []string
		revs    []string
	}
	byNS := map[string]*drift{}
	for _, v := range snap.Istiods {
		for _, px := range v.Proxies {
			rev := cmp.Or(px.Revision, v.Revision)
			ns := proxyNamespace(px.ID)
			labels, ok := nsLabels[ns]
			if rev == "" || !ok {
				continue
			}
			pod := pods[px.ID]
			names := injectionNames(labels, pod)
			wants, ok := r.resolve(names)
			if len(names) == 0 || !ok || slices.Contains(wants, rev) {
				continue
			}
			dr := byNS[ns]
			if dr == nil {
				dr = &drift{}
				byNS[ns] = dr
			}
			item := px.ID + " on " + rev
			if nsNames := injectionNames(labels, nil); !slices.Equal(names, nsNames) {
				item += " (its pod selects " + r.describe(names) + ")"
			}
			dr.proxies = append(dr.proxies, item)
			if !slices.Contains(dr.revs, rev) {
				dr.revs = append(dr.revs, rev)
			}
		}
	}
	for ns, dr := range byNS {
		slices.Sort(dr.proxies)
		slices.Sort(dr.revs)
		sel := "its pods select their own revisions"
		if names := injectionNames(nsLabels[ns], nil); len(names) > 0 {
			sel = "selects " + r.describe(names)
		}
		d.add(Problem{Code: CodeNamespaceRevisionDrift,
			Subject:  Subject{Object: reconcile.ObjectRef{Kind: "Namespace", Name: ns}},
			Detail:   fmt.Sprintf("%s, %s on %s", sel, proxies(len(dr.proxies)), strings.Join(dr.revs, ", ")),
			Evidence: listed(dr.proxies)})
	}
	d.leftBehind(snap, r, nsLabels)
}

// leftBehind derives MD0703: proxies of this cluster's namespaces connected to a
// revision that no namespace, pod or tag selects and that is not the default revision,
// the remains of a finished canary upgrade. A revision some namespace still selects is a canary in progress, not
// reported. Without every pod's labels and the tags, a revision could look unselected
// when it is not: the finding is held instead.
func (d *deriver) leftBehind(snap reconcile.Snapshot, r revisionResolver, nsLabels map[string]map[string]string) {
	if snap.Pods == nil || snap.RevisionTags == nil {
		d.out.Holds = append(d.out.Holds, Hold{Code: CodeRevisionLeftBehind, Reason: "pods or revision tags not read yet"})
		return
	}
	selected := map[string]bool{}
	sel := func(names []string) {
		revs, _ := r.resolve(names)
		for _, rev := range revs {
			selected[rev] = true
		}
	}
	sel([]string{defaultRevision})
	for _, t := range snap.RevisionTags {
		selected[t.Revision] = true
	}
	for _, labels := range nsLabels {
		sel(injectionNames(labels, nil))
	}
	for i := range snap.Pods {
		p := &snap.Pods[i]
		sel(injectionNames(nsLabels[p.Namespace], p))
	}
	onRev := map[string][]string{}
	for _, v := range snap.Istiods {
		for _, px := range v.Proxies {
			// A proxy of a namespace this cluster does not have is a remote cluster's,
			// whose labels may well select the revision.
			if _, local := nsLabels[proxyNamespace(px.ID)]; !local {
				continue
			}
			if rev := cmp.Or(px.Revision, v.Revision); rev != "" && !selected[rev] {
				onRev[rev] = append(onRev[rev], px.ID)
			}
		}
	}
	for _, rev := range slices.Sorted(maps.Keys(onRev)) {
		ids := onRev[rev]
		slices.Sort(ids)
		ids = slices.Compact(ids)
		d.add(Problem{Code: CodeRevisionLeftBehind, Subject: Subject{Revision: rev},
			Detail: proxies(len(ids)) + " still connected", Evidence: listed(ids)})
	}
}

// Where Linkerd records versions: its control-plane pods carry the component label and,
// like every injected pod, the version of their proxy; the created-by annotation names
// the installer and the control plane's version ("linkerd/helm stable-2.14.10").
const (
	labelLinkerdComponent   = "linkerd.io/control-plane-component"
	labelLinkerdNamespace   = "linkerd.io/control-plane-ns"
	annotLinkerdProxyVer    = "linkerd.io/proxy-version"
	annotLinkerdCreatedBy   = "linkerd.io/created-by"
	annotLinkerdPinnedProxy = "config.linkerd.io/proxy-version"
)

// linkerdVersions derives MD0704: per namespace, the Linkerd proxies whose version
// differs from the one their control plane injects, which is the version of the
// control plane's own proxies (its created-by version when they carry none). A control
// plane whose pods disagree (an upgrade rolling out) is not a reference.
func (d *deriver) linkerdVersions(snap reconcile.Snapshot) {
	// Per control-plane namespace, the versions of its proxies and, for a plane whose
	// pods carry none, of its installer. Pods without a proxy (the heartbeat job) only
	// name the latter, which differs from the former when the proxy version is overridden.
	proxied, created := map[string][]string{}, map[string][]string{}
	for _, p := range snap.Pods {
		if p.Labels[labelLinkerdComponent] == "" {
			continue
		}
		cpNS := cmp.Or(p.Labels[labelLinkerdNamespace], p.Namespace)
		if v := p.Annotations[annotLinkerdProxyVer]; v != "" && !slices.Contains(proxied[cpNS], v) {
			proxied[cpNS] = append(proxied[cpNS], v)
		}
		if _, v, _ := strings.Cut(p.Annotations[annotLinkerdCreatedBy], " "); v != "" && !slices.Contains(created[cpNS], v) {
			created[cpNS] = append(created[cpNS], v)
		}
	}
	planes := proxied
	for cpNS, vs := range created {
		if _, ok := planes[cpNS]; !ok {
			planes[cpNS] = vs
		}
	}
	if len(planes) == 0 {
		return
	}
	type drift struct {
		pods, versions []string
		plane, want    string
	}
	byNS := map[string]*drift{}
	for _, p := range snap.Pods {
		have := p.Annotations[annotLinkerdProxyVer]
		if have == "" || p.Labels[labelLinkerdComponent] != "" {
			continue
		}
		cpNS := p.Labels[labelLinkerdNamespace]
		if cpNS == "" && len(planes) == 1 {
			for ns := range planes {
				cpNS = ns
			}
		}
		want := planes[cpNS]
		if len(want) != 1 || want[0] == have {
			continue
		}
		dr := byNS[p.Namespace]
		if dr == nil {
			dr = &drift{plane: cpNS, want: want[0]}
			byNS[p.Namespace] = dr
		}
		item := p.Name + " on " + have
		if p.Annotations[annotLinkerdPinnedProxy] != "" {
			item += " (pinned by " + annotLinkerdPinnedProxy + ")"
		}
		dr.pods = append(dr.pods, item)
		if !slices.Contains(dr.versions, have) {
			dr.versions = append(dr.versions, have)
		}
	}
	for ns, dr := range byNS {
		slices.Sort(dr.pods)
		slices.Sort(dr.versions)
		d.add(Problem{Code: CodeLinkerdProxyVersionDrift,
			Subject: Subject{Object: reconcile.ObjectRef{Kind: "Namespace", Name: ns}},
			Detail: fmt.Sprintf("%s on %s, control plane %s injects %s",
				proxies(len(dr.pods)), strings.Join(dr.versions, ", "), dr.plane, dr.want),
			Evidence: listed(dr.pods)})
	}
}

// proxyNamespace: istiod names proxies "<pod>.<namespace>".
func proxyNamespace(id string) string {
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return ""
	}
	return id[i+1:]
}

// versionsDiffer compares two Istio versions by the numeric parts both carry: "1.24.0"
// and "1.24.1" differ, "1.31-dev" (a build without a patch number) and "1.31.0" do not.
// Versions that are not numeric ("master") must be equal. An unknown version differs
// from nothing.
func versionsDiffer(a, b string) bool {
	if a == "" || b == "" || a == b {
		return false
	}
	na, okA := versionNumbers(a)
	nb, okB := versionNumbers(b)
	if !okA || !okB {
		return true
	}
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return true
		}
	}
	return false
}

// versionNumbers parses the leading "major.minor[.patch]" of a version, ignoring a "v"
// prefix and any "-suffix" or "+build"; false without at least major and minor.
func versionNumbers(v string) ([]int, bool) {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, false
	}
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// proxies: "1 proxy", "3 proxies".
func proxies(n int) string {
	if n == 1 {
		return "1 proxy"
	}
	return strconv.Itoa(n) + " proxies"
}
