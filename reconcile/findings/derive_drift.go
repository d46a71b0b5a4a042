package findings

import (
	"slices"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Drift checks: objects written outside Git (MD0801) and objects Git does not describe
// (MD0802). The control-plane revision checks (MD07xx) are in derive_revision.go.
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
