package findings

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Drift checks: objects written outside Git (MD0801), objects Git does not describe
// (MD0802), and proxies on another control plane than their namespace selects (MD07xx).
// They judge objects rather than changes, so they read snap.Objects (every mesh object
// that exists), not snap.Changes (which forgets a change once it has propagated).

// outOfBand derives MD0801: for each object a GitOps app owns, the spec writes of other
// managers later than the app's last apply. An app whose apply time is unknown (not seen
// yet, or the tool does not say) counts every such write: the GitOps controller's own
// forced apply takes edited fields back from their editor, so an editor that still owns
// spec fields edited after it or wrote fields Git never mentions.
func (d *deriver) outOfBand(snap reconcile.Snapshot, owners ownerIndex, allowed []string) {
	for _, c := range snap.Objects {
		app, ok := owners.owner(c)
		if !ok {
			continue
		}
		var edits []string
		var start time.Time
		var managers []string
		for _, w := range c.SpecWrites {
			if w.Manager == "" || gitOpsManagers[w.Manager] || slices.Contains(allowed, w.Manager) {
				continue
			}
			if !app.AppliedAt.IsZero() && !w.At.After(app.AppliedAt) {
				continue
			}
			if !slices.Contains(managers, w.Manager) {
				managers = append(managers, w.Manager)
			}
			edits = append(edits, describeWrite(w))
			if start.IsZero() || (!w.At.IsZero() && w.At.Before(start)) {
				start = w.At
			}
		}
		if len(edits) == 0 {
			continue
		}
		ev := strings.Join(edits, "; ")
		if !app.AppliedAt.IsZero() {
			ev += "; app last applied " + app.AppliedAt.UTC().Format(time.RFC3339)
		}
		d.add(Problem{Code: CodeOutOfBandEdit, Subject: Subject{Object: c.Ref, App: app.Key},
			Detail: strings.Join(managers, ", "), Evidence: ev, StartsAt: start})
	}
}

// describeWrite: "kubectl-edit (Update) at 2026-05-04T10:01:00Z: spec.http".
func describeWrite(w reconcile.SpecWrite) string {
	s := w.Manager + " (" + w.Operation + ")"
	if !w.At.IsZero() {
		s += " at " + w.At.UTC().Format(time.RFC3339)
	}
	if len(w.Fields) > 0 {
		s += ": " + strings.Join(w.Fields, ", ")
	}
	return s
}

// notTraffic are watched kinds that neither route nor secure traffic: no orphan finding.
var notTraffic = map[string]bool{"telemetry.istio.io/Telemetry": true}

// orphans derives MD0802, only while every GitOps source is read in full: an app the
// store has not seen (a source that is down or still listing) would make its objects
// look orphaned. Otherwise the findings are held as they were.
func (d *deriver) orphans(snap reconcile.Snapshot, owners ownerIndex) {
	if snap.Objects == nil {
		// Not filled in: there is nothing to judge, and nothing to hold.
		return
	}
	if len(snap.Unsynced) > 0 {
		d.out.Holds = append(d.out.Holds, Hold{Code: CodeOrphanObject, Reason: "not read yet: " + strings.Join(snap.Unsynced, ", ")})
		return
	}
	if why, ok := gitOpsComplete(snap.Sources); !ok {
		d.out.Holds = append(d.out.Holds, Hold{Code: CodeOrphanObject, Reason: why})
		return
	}
	for _, c := range snap.Objects {
		if notTraffic[c.Ref.Group+"/"+c.Ref.Kind] {
			continue
		}
		if _, ok := owners.owner(c); ok {
			continue
		}
		d.add(Problem{Code: CodeOrphanObject, Subject: Subject{Object: c.Ref},
			Evidence: "no Argo CD tracking annotation or label, in no Flux inventory"})
	}
}

// gitOpsComplete reports whether the GitOps sources and the mesh watch are all read in
// full: at least one GitOps source reported, each up (or its CRD not installed), at
// least one installed, and the mesh watch up. It says why not otherwise.
func gitOpsComplete(sources []reconcile.SourceStatus) (string, bool) {
	installed := false
	for _, st := range sources {
		first, _, _ := strings.Cut(st.Name, "/")
		gitOps := strings.HasPrefix(first, string(reconcile.SourceArgoCD)) || reconcile.Source(first) == reconcile.SourceFlux
		if !gitOps && st.Name != meshSource {
			continue
		}
		if !st.Up {
			return "source " + st.Name + " is down", false
		}
		if gitOps && !st.NotInstalled {
			installed = true
		}
	}
	if !installed {
		return "no GitOps source read yet", false
	}
	return "", true
}

// Labels that select a namespace's control-plane revision, as istiod's injection webhook
// reads them: istio-injection takes precedence over istio.io/rev.
const (
	labelInjection  = "istio-injection"
	labelRevision   = "istio.io/rev"
	defaultRevision = "default"
)

// selectedRevision is the revision a namespace's labels select, false when they select
// none (no label, or injection disabled).
func selectedRevision(labels map[string]string) (string, bool) {
	switch labels[labelInjection] {
	case "enabled":
		return defaultRevision, true
	case "":
	default:
		return "", false
	}
	if rev := labels[labelRevision]; rev != "" {
		return rev, true
	}
	return "", false
}

// revisions derives MD0701 (a namespace's proxies on another revision than its labels
// select) and MD0702 (a proxy's Istio version differs from its istiod's). A proxy whose
// istiod's revision is unknown is not judged.
func (d *deriver) revisions(snap reconcile.Snapshot) {
	selected := map[string]string{}
	for _, ns := range snap.Namespaces {
		if rev, ok := selectedRevision(ns.Labels); ok {
			selected[ns.Name] = rev
		}
	}
	type drift struct {
		proxies []string
		revs    []string
	}
	byNS := map[string]*drift{}
	for _, v := range snap.Istiods {
		for _, px := range v.Proxies {
			if versionsDiffer(px.IstioVersion, px.ControlPlaneVersion) {
				d.add(Problem{Code: CodeProxyVersionDrift, Subject: Subject{Proxy: px.ID},
					Detail:   fmt.Sprintf("%s, its istiod %s runs %s", px.IstioVersion, v.Istiod, px.ControlPlaneVersion),
					StartsAt: v.ObservedAt})
			}
			rev := px.Revision
			if rev == "" {
				rev = v.Revision
			}
			ns := proxyNamespace(px.ID)
			want, ok := selected[ns]
			if !ok || rev == "" || rev == want {
				continue
			}
			dr := byNS[ns]
			if dr == nil {
				dr = &drift{}
				byNS[ns] = dr
			}
			dr.proxies = append(dr.proxies, px.ID+" on "+rev)
			if !slices.Contains(dr.revs, rev) {
				dr.revs = append(dr.revs, rev)
			}
		}
	}
	for ns, dr := range byNS {
		slices.Sort(dr.proxies)
		slices.Sort(dr.revs)
		d.add(Problem{Code: CodeNamespaceRevisionDrift,
			Subject:  Subject{Object: reconcile.ObjectRef{Kind: "Namespace", Name: ns}},
			Detail:   fmt.Sprintf("selects %s, %s on %s", selected[ns], proxies(len(dr.proxies)), strings.Join(dr.revs, ", ")),
			Evidence: listed(dr.proxies)})
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
