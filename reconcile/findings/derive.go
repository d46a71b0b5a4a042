package findings

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Problem is one problem Derive found in a snapshot: what the engine turns into a
// Finding. Two problems with the same code and subject are the same problem.
type Problem struct {
	Code    Code
	Subject Subject
	// Detail is a short phrase for the summary ("3 of 50 proxies", "cds (+2)").
	Detail string
	// Evidence is what the source said (a NACK text, an app's message); from the cluster.
	Evidence string
	// StartsAt is the evidence's own time; zero when the evidence has none, and the
	// engine then uses when it first saw the problem.
	StartsAt time.Time
	// Suppressed is set when an annotation or a configured rule ignores the problem.
	Suppressed bool
}

// Hold keeps findings from resolving while their source is dark: an active finding that
// matches a hold and is not derived again stays as it was. Every non-empty field must
// match.
type Hold struct {
	AppSource reconcile.Source
	AppKind   string
	Istiod    string
	Object    reconcile.ObjectRef
	Code      Code
	// Reason names the dark source, for logs.
	Reason string
}

func (h Hold) matches(f Finding) bool {
	return (h.AppSource == "" || f.Subject.App.Source == h.AppSource) &&
		(h.AppKind == "" || f.Subject.App.Kind == h.AppKind) &&
		(h.Istiod == "" || f.Subject.Istiod == h.Istiod) &&
		(h.Object == reconcile.ObjectRef{} || f.Subject.Object == h.Object) &&
		(h.Code == "" || f.Code == h.Code)
}

// Result is what Derive found.
type Result struct {
	// Problems are sorted by code and subject, one per (code, subject).
	Problems []Problem
	Holds    []Hold
}

// maxListed bounds the proxies or objects an evidence text names.
const maxListed = 3

// Derive turns a snapshot into the current problems. It is a pure function of its
// arguments: increases come from a SignalHistory (istiod's counters need the previous
// read), and times come from the evidence, never from a clock, so that a restarted
// meshdrift derives the same problems with the same start times.
//
// Nothing resolves because a source went dark: apps of a source that is down are kept as
// last seen by the store and their findings are held; a change an unreachable istiod may
// serve gives MD0204 and its other findings are held.
func Derive(snap reconcile.Snapshot, increases []Increase, cfg Config) Result {
	return derive(snap, increases, cfg, newOwnerIndex(snap.Apps))
}

// derive is Derive with the apps' owner index made by the caller, who may keep it while
// the apps do not change (Engine).
func derive(snap reconcile.Snapshot, increases []Increase, cfg Config, owners ownerIndex) Result {
	d := deriver{byKey: map[problemKey]int{}, supp: newSuppression(snap, cfg.Ignore)}
	d.apps(snap, owners)
	explained := rejecting(snap.Istiods, increases)
	d.unexplained = len(explained)
	d.changes(snap, owners, explained)
	d.istiods(snap, explained, increases)
	d.sources(snap)
	d.outOfBand(snap, owners, cfg.AllowedManagers)
	d.orphans(snap, owners)
	d.revisions(snap)
	d.checks(snap, owners)
	slices.SortFunc(d.out.Problems, compareProblems)
	return d.out
}

type problemKey struct {
	code    Code
	subject Subject
}

type deriver struct {
	// unexplained counts the rejecting proxies no NACKed change explains yet.
	unexplained int
	supp        suppression
	byKey       map[problemKey]int
	out         Result
}

// add records a problem; a second report of the same (code, subject) from another source
// merges into the first: the earliest start, the first evidence, both details.
func (d *deriver) add(p Problem) {
	k := problemKey{p.Code, p.Subject}
	if i, ok := d.byKey[k]; ok {
		q := &d.out.Problems[i]
		if !p.StartsAt.IsZero() && (q.StartsAt.IsZero() || p.StartsAt.Before(q.StartsAt)) {
			q.StartsAt = p.StartsAt
		}
		if q.Evidence == "" {
			q.Evidence = p.Evidence
		}
		if p.Detail != "" && !strings.Contains(q.Detail, p.Detail) {
			q.Detail = joinNonEmpty("; ", q.Detail, p.Detail)
		}
		return
	}
	p.Suppressed = d.supp.suppressed(p.Code, p.Subject)
	d.byKey[k] = len(d.out.Problems)
	d.out.Problems = append(d.out.Problems, p)
}

// ownerIndex finds the app that manages an object, as the store's roll-up does: the
// object's tracking label or annotation, else the app that lists it.
type ownerIndex struct {
	byObject map[reconcile.ObjectRef]reconcile.AppKey
	byName   map[string][]reconcile.AppKey
	apps     map[reconcile.AppKey]reconcile.App
}

func newOwnerIndex(apps []reconcile.App) ownerIndex {
	objects := 0
	for _, a := range apps {
		objects += len(a.Objects)
	}
	ix := ownerIndex{
		byObject: make(map[reconcile.ObjectRef]reconcile.AppKey, objects),
		byName:   make(map[string][]reconcile.AppKey, len(apps)),
		apps:     make(map[reconcile.AppKey]reconcile.App, len(apps)),
	}
	for _, a := range apps {
		ix.apps[a.Key] = a
		ix.byName[a.Key.Name] = append(ix.byName[a.Key.Name], a.Key)
		for _, o := range a.Objects {
			if _, ok := ix.byObject[o.Ref]; !ok {
				ix.byObject[o.Ref] = a.Key
			}
		}
	}
	return ix
}

func (ix ownerIndex) owner(c reconcile.MeshChange) (reconcile.App, bool) {
	if o := c.GitOpsOwner; o.Name != "" {
		if o.Namespace != "" {
			if a, ok := ix.apps[o]; ok {
				return a, true
			}
			// The tracking names an app meshdrift has not seen (yet): still the owner.
			return reconcile.App{Key: o}, true
		}
		// Label tracking (Argo CD's app.kubernetes.io/instance) does not carry the app's
		// namespace.
		for _, k := range ix.byName[o.Name] {
			if k.Source == o.Source && k.Kind == o.Kind {
				return ix.apps[k], true
			}
		}
		return reconcile.App{Key: o}, true
	}
	if k, ok := ix.byObject[c.Ref]; ok {
		return ix.apps[k], true
	}
	return reconcile.App{}, false
}

// Reasons of a failed app that mean its workloads are unhealthy rather than that the apply
// failed: Argo CD's health status, Flux's failed health check.
var degradedReasons = map[string]bool{"Degraded": true, "HealthCheckFailed": true}

// gitOpsManagers are the field managers GitOps controllers write with (as adapters/mesh
// classifies them): a later write by any other manager is a drift from Git.
var gitOpsManagers = map[string]bool{
	"kustomize-controller":          true,
	"helm-controller":               true,
	"argocd-controller":             true,
	"argocd-application-controller": true,
}

func (d *deriver) apps(snap reconcile.Snapshot, owners ownerIndex) {
	// Hand edits of the objects of each app, for MD0105.
	edits := map[reconcile.AppKey][]reconcile.MeshChange{}
	for _, p := range snap.Changes {
		c := p.Change
		if c.Manager == "" || gitOpsManagers[c.Manager] {
			continue
		}
		if a, ok := owners.owner(c); ok {
			edits[a.Key] = append(edits[a.Key], c)
		}
	}
	for _, a := range snap.Apps {
		subj := Subject{App: a.Key}
		suspended := a.Suspended || a.State == reconcile.AppSuspended
		if suspended {
			if p, ok := suspendedDrift(a, edits[a.Key]); ok {
				d.add(p)
			}
			// An Argo CD app without automated sync still fails or degrades when someone
			// syncs it; being out of sync is what it is meant to be until then.
			if a.State != reconcile.AppFailed {
				continue
			}
		}
		switch a.State {
		case reconcile.AppFailed:
			if degradedReasons[a.Reason] {
				d.add(Problem{Code: CodeAppDegraded, Subject: subj, Evidence: appEvidence(a)})
				continue
			}
			subj.Revision = cmp.Or(a.DesiredRevision, a.AppliedRevision)
			d.add(Problem{Code: CodeAppSyncFailed, Subject: subj, Evidence: appEvidence(a)})
		case reconcile.AppOutOfSync:
			d.add(Problem{Code: CodeAppOutOfSync, Subject: subj, Evidence: appEvidence(a)})
		case reconcile.AppProgressing, reconcile.AppUnknown:
			if a.DesiredRevision != "" && a.AppliedRevision != "" && !sameRevision(a.DesiredRevision, a.AppliedRevision) {
				subj.Revision = a.DesiredRevision
				d.add(Problem{Code: CodeAppRevisionMismatch, Subject: subj,
					Evidence: joinNonEmpty(": ", "applied "+a.AppliedRevision, appEvidence(a))})
			}
		}
	}
}

// suspendedDrift: objects the tool says are out of sync (Argo CD), or were last written by
// someone other than the GitOps controller (any tool).
func suspendedDrift(a reconcile.App, edits []reconcile.MeshChange) (Problem, bool) {
	var names []string
	for _, o := range a.Objects {
		if o.Sync == "OutOfSync" {
			names = append(names, o.Ref.String()+" out of sync")
		}
	}
	var start time.Time
	for _, c := range edits {
		names = append(names, c.Ref.String()+" changed by "+c.Manager)
		if start.IsZero() || c.ObservedAt.Before(start) {
			start = c.ObservedAt
		}
	}
	if len(names) == 0 && a.State != reconcile.AppOutOfSync {
		return Problem{}, false
	}
	if len(names) == 0 {
		names = append(names, "app out of sync")
	}
	// An object the tool reports out of sync carries no time; the edit times are only a
	// start when they are all there is.
	if len(edits) != len(names) {
		start = time.Time{}
	}
	return Problem{Code: CodeAppSuspendedDrift, Subject: Subject{App: a.Key}, Evidence: listed(names), StartsAt: start}, true
}

func appEvidence(a reconcile.App) string {
	return joinNonEmpty(": ", a.Reason, a.Message)
}

// sameRevision treats a revision with a digest appended ("1.2.3@sha256:...", Flux's
// attempted revision of an OCI chart) as the revision it extends.
func sameRevision(a, b string) bool {
	return a == b || strings.HasPrefix(a, b+"@") || strings.HasPrefix(b, a+"@")
}

type proxyKey struct{ istiod, proxy string }

// rejecting indexes the proxies that reject config (ERROR in a view, or rejects counted
// by istiod), each false until a NACKed change explains it. Changes then look proxies up
// in it rather than every proxy being searched for in every change: a pass reads each
// change's outcomes once (2×1,000 proxies × 200 NACKed changes in BenchmarkEvaluate).
func rejecting(views []reconcile.IstiodView, increases []Increase) map[proxyKey]bool {
	m := map[proxyKey]bool{}
	for _, v := range views {
		for _, px := range v.Proxies {
			for _, t := range px.Types {
				if t.State == reconcile.StateError {
					m[proxyKey{v.Istiod, px.ID}] = false
					break
				}
			}
		}
	}
	for _, inc := range increases {
		if inc.Code == CodeProxyRejecting {
			m[proxyKey{inc.Istiod, inc.Proxy}] = false
		}
	}
	return m
}

// changes derives MD02xx and marks in explained the proxies whose NACKs a change explains.
func (d *deriver) changes(snap reconcile.Snapshot, owners ownerIndex, explained map[proxyKey]bool) {
	for _, p := range snap.Changes {
		c := p.Change
		subj := Subject{Object: c.Ref}
		var rev string
		if a, ok := owners.owner(c); ok {
			subj.App = a.Key
			rev = cmp.Or(a.AppliedRevision, a.DesiredRevision)
		}
		context := ""
		if subj.App.Name != "" {
			context = "app " + subj.App.String()
			if rev != "" {
				context += " revision " + rev
			}
		}
		switch p.State {
		case reconcile.PropagationNACKed:
			var first string
			for _, o := range p.Proxies {
				if o.State != reconcile.PropagationNACKed {
					continue
				}
				if first == "" {
					first = "proxy " + o.Proxy + " (istiod " + o.Istiod + "): " + o.Error
				}
				if d.unexplained == 0 {
					// Every rejecting proxy is explained: nothing more to look up.
					break
				}
				k := proxyKey{o.Istiod, o.Proxy}
				if done, ok := explained[k]; ok && !done {
					explained[k] = true
					d.unexplained--
				}
			}
			d.add(Problem{Code: CodeChangeNACKed, Subject: subj, StartsAt: c.ObservedAt,
				Detail:   fmt.Sprintf("%d of %d proxies", p.NACKed, p.Targeted),
				Evidence: joinNonEmpty("; ", first, context)})
		case reconcile.PropagationStale:
			var stale []string
			for _, o := range p.Proxies {
				if o.State == reconcile.PropagationStale {
					stale = append(stale, o.Proxy)
				}
			}
			d.add(Problem{Code: CodeChangeStale, Subject: subj, StartsAt: c.ObservedAt,
				Detail:   fmt.Sprintf("%d of %d proxies", len(stale), p.Targeted),
				Evidence: joinNonEmpty("; ", "stale: "+listed(stale), context)})
		case reconcile.PropagationNotPushed:
			d.add(Problem{Code: CodeChangeNotPushed, Subject: subj, StartsAt: c.ObservedAt, Evidence: context})
		case reconcile.PropagationUnknown:
			why := unknownBecause(p)
			d.add(Problem{Code: CodeChangeUnknown, Subject: subj, StartsAt: c.ObservedAt, Detail: why, Evidence: context})
			// The change's stale or not-pushed finding stays as it was until istiod is read.
			d.out.Holds = append(d.out.Holds, Hold{Object: c.Ref, Reason: why})
		}
	}
}

func (d *deriver) istiods(snap reconcile.Snapshot, explained map[proxyKey]bool, increases []Increase) {
	for _, v := range snap.Istiods {
		if r := v.Restriction; r != nil {
			d.add(Problem{Code: CodeIstiodRestricted, Subject: Subject{Istiod: v.Istiod}, StartsAt: v.ObservedAt,
				Detail: restrictionDetail(*r), Evidence: joinNonEmpty("; fix: ", r.Reason, r.Fix)})
			// The proxies it hides may still reject config: their findings are held.
			d.out.Holds = append(d.out.Holds, Hold{Code: CodeProxyRejecting, Reason: "istiod " + v.Istiod + " view restricted"})
		}
		if ev, ok := clockProblem(v); ok {
			d.add(Problem{Code: CodeIstiodClockOffset, Subject: Subject{Istiod: v.Istiod}, Evidence: ev})
		}
		for _, px := range v.Proxies {
			if explained[proxyKey{v.Istiod, px.ID}] {
				continue
			}
			for _, t := range px.Types {
				if t.State != reconcile.StateError {
					continue
				}
				// The proxy, not the istiod it happens to be connected to, is the subject:
				// it keeps its finding when it reconnects elsewhere.
				d.add(Problem{Code: CodeProxyRejecting, Subject: Subject{Proxy: px.ID}, StartsAt: t.SentAt,
					Detail:   "istiod " + v.Istiod,
					Evidence: reconcile.ShortType(t.TypeURL) + ": " + t.Error})
				break
			}
		}
	}
	for _, inc := range increases {
		switch inc.Code {
		case CodeIstiodRejected:
			// Every replica rejects the same config: one finding about the config.
			d.add(Problem{Code: inc.Code, Subject: Subject{Object: rejectedObject(inc)},
				Detail: inc.describe(), Evidence: "istiod " + inc.Istiod, StartsAt: inc.FirstAt})
		case CodeIstiodPushErrors:
			d.add(Problem{Code: inc.Code, Subject: Subject{Istiod: inc.Istiod}, Detail: inc.describe(), StartsAt: inc.FirstAt})
		case CodeProxyRejecting:
			if explained[proxyKey{inc.Istiod, inc.Proxy}] {
				continue
			}
			d.add(Problem{Code: inc.Code, Subject: Subject{Proxy: inc.Proxy}, Detail: "istiod " + inc.Istiod,
				Evidence: fmt.Sprintf("%s rejects +%g (istiod metrics)", inc.Kind, inc.Delta), StartsAt: inc.FirstAt})
		}
	}
}

// unknownBecause says why a change's propagation is unknown: the istiods that could not
// be read, or that show only part of their proxies.
func unknownBecause(p reconcile.Propagation) string {
	var why []string
	if len(p.Unreachable) > 0 {
		why = append(why, "istiod "+strings.Join(p.Unreachable, ", ")+" cannot be read")
	}
	if len(p.Restricted) > 0 {
		why = append(why, "the view of istiod "+strings.Join(p.Restricted, ", ")+" is restricted")
	}
	if len(why) == 0 {
		return "an istiod view is incomplete"
	}
	return strings.Join(why, "; ")
}

// rejectedObject names the config of a pilot_total_rejected_configs series: its type label
// (e.g. "gateway") and its "<namespace>/<name>" name label.
func rejectedObject(inc Increase) reconcile.ObjectRef {
	ref := reconcile.ObjectRef{Kind: inc.Kind, Name: inc.Name}
	if ns, name, ok := strings.Cut(inc.Name, "/"); ok {
		ref.Namespace, ref.Name = ns, name
	}
	return ref
}

// restrictionDetail: "shows 3 of 50 proxies", "refused the debug request".
func restrictionDetail(r reconcile.ViewRestriction) string {
	switch {
	case r.Denied:
		return "refused the debug request"
	case r.Visible >= 0 && r.Connected >= 0:
		return fmt.Sprintf("shows %d of %d proxies", r.Visible, r.Connected)
	}
	return "shows only part of its proxies"
}

// clockProblem says whether istiod's clock is off from meshdrift's by more than the
// verdicts tolerate, as the store judges it from its reads (reconcile/clock.go).
func clockProblem(v reconcile.IstiodView) (evidence string, tooLarge bool) {
	return v.ClockProblem, v.ClockProblem != ""
}

// Source names as the adapters report them.
const (
	istiodSourcePrefix = "istiod/"
	meshSource         = "mesh"
)

func (d *deriver) sources(snap reconcile.Snapshot) {
	for _, st := range snap.Sources {
		if name, ok := strings.CutPrefix(st.Name, istiodSourcePrefix); ok {
			if !st.Up {
				d.add(Problem{Code: CodeIstiodUnreachable, Subject: Subject{Istiod: name}, Evidence: st.Error, StartsAt: st.Since})
				d.out.Holds = append(d.out.Holds, Hold{Istiod: name, Reason: st.Name})
			}
			continue
		}
		if st.NotInstalled {
			d.add(Problem{Code: CodeSourceNotInstalled, Subject: Subject{Source: st.Name}, Evidence: st.Error, StartsAt: st.Since})
			continue
		}
		if st.Up {
			continue
		}
		d.add(Problem{Code: CodeSourceUnreachable, Subject: Subject{Source: st.Name}, Evidence: st.Error, StartsAt: st.Since})
		if h, ok := sourceHold(st.Name); ok {
			d.out.Holds = append(d.out.Holds, h)
		}
	}
}

// sourceHold holds the findings a dark source would otherwise let resolve: "argocd" (the
// watch) and "argocd-api" (the API server poller) their Argo CD apps, "flux/<Kind>" that
// kind's Flux apps, "mesh" the drift of suspended apps, which it observes.
func sourceHold(name string) (Hold, bool) {
	first, rest, _ := strings.Cut(name, "/")
	switch {
	case strings.HasPrefix(first, string(reconcile.SourceArgoCD)):
		return Hold{AppSource: reconcile.SourceArgoCD, Reason: name}, true
	case reconcile.Source(first) == reconcile.SourceFlux:
		return Hold{AppSource: reconcile.SourceFlux, AppKind: rest, Reason: name}, true
	case name == meshSource:
		return Hold{Code: CodeAppSuspendedDrift, Reason: name}, true
	}
	return Hold{}, false
}

func compareProblems(a, b Problem) int {
	return cmp.Or(strings.Compare(string(a.Code), string(b.Code)), compareSubjects(a.Subject, b.Subject))
}

func compareSubjects(a, b Subject) int {
	return cmp.Or(
		strings.Compare(string(a.App.Source), string(b.App.Source)),
		strings.Compare(a.App.Kind, b.App.Kind),
		strings.Compare(a.App.Namespace, b.App.Namespace),
		strings.Compare(a.App.Name, b.App.Name),
		strings.Compare(a.Revision, b.Revision),
		strings.Compare(a.Object.Group, b.Object.Group),
		strings.Compare(a.Object.Kind, b.Object.Kind),
		strings.Compare(a.Object.Namespace, b.Object.Namespace),
		strings.Compare(a.Object.Name, b.Object.Name),
		strings.Compare(a.Istiod, b.Istiod),
		strings.Compare(a.Proxy, b.Proxy),
		strings.Compare(a.Source, b.Source),
	)
}

// listed names the first few items and counts the rest: "a, b, c and 7 more".
func listed(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:maxListed], ", ") + " and " + strconv.Itoa(len(items)-maxListed) + " more"
}

func joinNonEmpty(sep string, parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(p)
	}
	return b.String()
}
