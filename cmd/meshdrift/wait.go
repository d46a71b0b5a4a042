package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

const (
	// minRevisionPrefix is the shortest --revision-prefix: git's own default abbreviation.
	minRevisionPrefix = 7
	// defaultSettle is how long wait watches an applied revision with nothing pending
	// before it believes no further mesh change of that apply is on its way. The app and
	// the mesh objects are separate watches of one API server; their events arrive
	// milliseconds apart, so seconds cover a busy API server too.
	defaultSettle = 3 * time.Second
	// applyLookback widens the window of changes that belong to an apply backwards from
	// the earlier of wait's start and the tool's apply time. Flux and Argo CD write the
	// objects before they record the apply (health checks, sync waves run in between),
	// and the apply time has one-second resolution and another clock.
	applyLookback = time.Minute
)

// runWait blocks until an app has applied a revision and the mesh changes of that apply
// have reached every proxy istiod sent them to, for CI pipelines that would otherwise
// trust a green Argo CD or Flux: exit 0 when propagated, 1 on a NACK, a stale or unpushed
// change, or the timeout, 2 on a usage error.
func runWait(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	var common commonFlags
	common.register(fs)
	appFlag := fs.String("app", "", "the app: argocd/<namespace>/<name>, flux/<namespace>/<name> (a Kustomization) or flux/HelmRelease/<namespace>/<name>")
	revision := fs.String("revision", "", "wait for this applied revision, matched exactly: a full commit SHA (40 or 64 hex digits; "+
		"it also matches Flux's <ref>@sha1:<sha>), a Flux revision such as main@sha1:<sha>, or any other revision string (a chart version) "+
		"(default: whatever is applied)")
	prefix := fs.String("revision-prefix", "", fmt.Sprintf("wait for the applied revision whose commit SHA starts with these hex digits (at least %d)", minRevisionPrefix))
	settle := fs.Duration("settle", defaultSettle, "how long an applied revision must show no pending mesh change before wait believes none is coming")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if !parseFlags(fs, args, stderr) {
		return exitUsage
	}
	key, err := parseAppKey(*appFlag)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift wait: --app: %v\n", err)
		return exitUsage
	}
	match, err := newRevisionMatcher(*revision, *prefix)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift wait: %v\n", err)
		return exitUsage
	}
	if *settle < 0 {
		fmt.Fprintf(stderr, "meshdrift wait: --settle %s: must not be negative\n", *settle)
		return exitUsage
	}
	cfg, log, err := common.load(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift wait: %v\n", err)
		return exitUsage
	}
	a, err := wire(readOnly(cfg), log)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift wait: %v\n", err)
		return exitProblem
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	w := &waiter{key: key, match: match, settle: *settle, start: time.Now()}
	a.start(ctx)
	// Until every watch has listed, a missing change would read as "nothing pending".
	if err := a.waitSynced(ctx); err != nil {
		fmt.Fprintf(stdout, "timed out after %s: %v\n", *timeout, err)
		return exitProblem
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		state, msg := w.state(a.store.Snapshot(), time.Now())
		if msg != last {
			fmt.Fprintln(stdout, msg)
			last = msg
		}
		switch state {
		case reconcile.PropagationPropagated:
			return exitOK
		case reconcile.PropagationNACKed, reconcile.PropagationStale, reconcile.PropagationNotPushed:
			return exitProblem
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "timed out after %s: %s\n", *timeout, last)
			return exitProblem
		case <-tick.C:
		}
	}
}

// revisionMatcher says whether an app's applied revision is the one wait was asked for.
// The zero value matches any revision.
type revisionMatcher struct {
	exact  string // compared with the whole revision, or one source's of a multi-source app
	sha    string // a full SHA, lower case: compared with the SHA part of a revision
	prefix string // lower-case hex: the start of the SHA part
}

// newRevisionMatcher reads --revision and --revision-prefix. A string of hex digits that
// is not a full SHA is refused as --revision: it is almost surely an abbreviated commit,
// and matching it as a suffix or prefix without being asked would let "abc" match any
// revision that happens to end or begin so.
func newRevisionMatcher(revision, prefix string) (revisionMatcher, error) {
	switch {
	case revision != "" && prefix != "":
		return revisionMatcher{}, errors.New("--revision and --revision-prefix: give one")
	case prefix != "":
		p := strings.ToLower(prefix)
		if !isHex(p) || len(p) < minRevisionPrefix || len(p) > 64 {
			return revisionMatcher{}, fmt.Errorf("--revision-prefix %q: must be %d to 64 hex digits of a commit SHA", prefix, minRevisionPrefix)
		}
		return revisionMatcher{prefix: p}, nil
	case revision == "":
		return revisionMatcher{}, nil
	case isHex(revision) && (len(revision) == 40 || len(revision) == 64):
		return revisionMatcher{sha: strings.ToLower(revision)}, nil
	case isHex(revision):
		return revisionMatcher{}, fmt.Errorf("--revision %q looks like an abbreviated commit SHA; give the full SHA, the Flux revision (<ref>@sha1:<sha>), or --revision-prefix %s", revision, revision)
	case strings.TrimSpace(revision) != revision:
		return revisionMatcher{}, fmt.Errorf("--revision %q: leading or trailing white space", revision)
	}
	return revisionMatcher{exact: revision}, nil
}

// any says whether the matcher accepts every revision (no --revision given).
func (m revisionMatcher) any() bool { return m == revisionMatcher{} }

func (m revisionMatcher) String() string {
	switch {
	case m.exact != "":
		return strconv.Quote(m.exact)
	case m.sha != "":
		return "commit " + m.sha
	case m.prefix != "":
		return "commit " + m.prefix + "…"
	}
	return "any revision"
}

// matches reports whether applied, an App's AppliedRevision, is the revision asked for.
// Argo CD joins a multi-source app's revisions with ","; one source's revision matching
// is enough, so a pipeline can wait for the commit of the repository it pushed to.
func (m revisionMatcher) matches(applied string) bool {
	if applied == "" {
		return false
	}
	if m.any() || (m.exact != "" && applied == m.exact) {
		return true
	}
	for _, rev := range strings.Split(applied, ",") {
		switch {
		case m.exact != "":
			if rev == m.exact {
				return true
			}
		case m.sha != "":
			if revisionSHA(rev) == m.sha {
				return true
			}
		case m.prefix != "":
			if sha := revisionSHA(rev); sha != "" && strings.HasPrefix(sha, m.prefix) {
				return true
			}
		}
	}
	return false
}

// revisionSHA is the commit or digest SHA of a revision, lower case, or "" when it has
// none: Argo CD's bare SHA, or Flux's "<ref>@sha1:<sha>", "sha1:<sha>" and their sha256
// forms (OCI and Bucket sources). The length must fit the algorithm.
func revisionSHA(rev string) string {
	if isHex(rev) && (len(rev) == 40 || len(rev) == 64) {
		return strings.ToLower(rev)
	}
	if i := strings.LastIndexByte(rev, '@'); i >= 0 {
		rev = rev[i+1:]
	}
	alg, sha, ok := strings.Cut(rev, ":")
	if !ok || !isHex(sha) {
		return ""
	}
	switch {
	case alg == "sha1" && len(sha) == 40, alg == "sha256" && len(sha) == 64:
		return strings.ToLower(sha)
	}
	return ""
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// waiter follows one app across snapshots. It needs memory: an applied revision counts
// only once it has been seen with nothing pending for the settle period.
type waiter struct {
	key    reconcile.AppKey
	match  revisionMatcher
	settle time.Duration
	// start is when wait began watching: every change observed since then is live.
	start time.Time

	// target is the applied revision being waited on and seenAt when it was first seen.
	target string
	seenAt time.Time
}

// state says where the app's revision stands as of now.
//
// The changes that count are the app's (reconcile.App.Owns) observed since the earlier of
// wait's start and the tool's AppliedAt, less applyLookback: older changes belong to an
// older apply and neither satisfy nor fail the wait. The revision is Propagated once the
// app reports it applied, every counted change has propagated, and that has held for the
// settle period since wait first saw the revision applied: the app's watch can deliver
// the new revision before the mesh watch delivers its objects, and a revision that
// changes no mesh object produces no change to wait for, so only time can tell the two
// apart. A counted NACK, stale proxy or unpushed change fails at once; Unknown (istiod
// unreadable) keeps waiting.
func (w *waiter) state(s reconcile.Snapshot, now time.Time) (reconcile.PropagationState, string) {
	var app *reconcile.App
	for i := range s.Apps {
		if s.Apps[i].Key == w.key {
			app = &s.Apps[i]
		}
	}
	if app == nil {
		w.target = ""
		return reconcile.PropagationPending, w.key.String() + ": not seen yet"
	}
	applied := app.AppliedRevision
	if !w.match.matches(applied) {
		w.target = ""
		if applied == "" {
			applied = "none"
		}
		msg := fmt.Sprintf("%s: applied revision %s, waiting for %s (%s", w.key, applied, w.match, app.State)
		if app.Reason != "" {
			msg += " " + app.Reason
		}
		if app.DesiredRevision != "" && app.DesiredRevision != app.AppliedRevision {
			msg += ", attempting " + app.DesiredRevision
		}
		return reconcile.PropagationPending, msg + ")"
	}
	if applied != w.target {
		w.target, w.seenAt = applied, now
	}

	since := w.start
	if !app.AppliedAt.IsZero() && app.AppliedAt.Before(since) {
		since = app.AppliedAt
	}
	since = since.Add(-applyLookback)
	var counted []reconcile.Propagation
	worst := reconcile.PropagationPropagated
	for _, p := range s.Changes {
		if !app.Owns(p.Change) || p.Change.ObservedAt.Before(since) {
			continue
		}
		counted = append(counted, p)
		if waitSeverity(p.State) > waitSeverity(worst) {
			worst = p.State
		}
	}

	head := fmt.Sprintf("%s revision %s", w.key, applied)
	if !app.AppliedAt.IsZero() {
		head += " applied " + app.AppliedAt.UTC().Format(time.RFC3339)
	}
	if worst == reconcile.PropagationPropagated {
		if left := w.settle - now.Sub(w.seenAt); left > 0 {
			return reconcile.PropagationPending, fmt.Sprintf("%s: settling, %s", head, describeChanges(counted))
		}
	}
	return worst, fmt.Sprintf("%s: %s, %s", head, worst, describeChanges(counted))
}

// waitSeverity orders states for wait: a final failure beats anything still open.
func waitSeverity(s reconcile.PropagationState) int {
	switch s {
	case reconcile.PropagationPropagated:
		return 0
	case reconcile.PropagationPending:
		return 1
	case reconcile.PropagationUnknown:
		return 2
	case reconcile.PropagationNotPushed:
		return 3
	case reconcile.PropagationStale:
		return 4
	case reconcile.PropagationNACKed:
		return 5
	}
	return 2
}

// maxDescribedChanges bounds the changes listed in one line.
const maxDescribedChanges = 5

// describeChanges lists counted changes, worst first: "1 mesh object change: VirtualService
// ns/name Propagated, 3/3 proxies ACKed".
func describeChanges(ps []reconcile.Propagation) string {
	if len(ps) == 0 {
		return "no mesh object changed for this apply"
	}
	sorted := slices.Clone(ps)
	slices.SortStableFunc(sorted, func(a, b reconcile.Propagation) int {
		return waitSeverity(b.State) - waitSeverity(a.State)
	})
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(ps)) + " mesh object change")
	if len(ps) > 1 {
		b.WriteString("s")
	}
	b.WriteString(": ")
	for i, p := range sorted {
		if i == maxDescribedChanges {
			fmt.Fprintf(&b, "; and %d more", len(sorted)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		ref := p.Change.Ref
		fmt.Fprintf(&b, "%s %s/%s", ref.Kind, ref.Namespace, ref.Name)
		if p.Change.Deleted {
			b.WriteString(" (deleted)")
		}
		fmt.Fprintf(&b, " %s, %d/%d proxies ACKed", p.State, p.ACKed, p.Targeted)
		for _, o := range p.Proxies {
			if o.State == reconcile.PropagationNACKed {
				fmt.Fprintf(&b, ", %s NACKed: %s", o.Proxy, o.Error)
				break
			}
		}
		if len(p.Unreachable) > 0 {
			fmt.Fprintf(&b, ", istiod unreachable: %s", strings.Join(p.Unreachable, ", "))
		}
		if len(p.Restricted) > 0 {
			fmt.Fprintf(&b, ", istiod shows only part of the mesh: %s", strings.Join(p.Restricted, ", "))
		}
		// Errors the change cannot have caused do not decide the wait, but whoever waits
		// should still hear of them: the proxy is broken for another reason.
		if n := len(p.Concurrent); n > 0 {
			o := p.Concurrent[0]
			fmt.Fprintf(&b, ", not caused by it: %s %s", o.Proxy, o.State)
			if o.Error != "" {
				fmt.Fprintf(&b, ": %s", o.Error)
			}
			if n > 1 {
				fmt.Fprintf(&b, " (and %d more)", n-1)
			}
		}
	}
	return b.String()
}

// parseAppKey reads "argocd/<ns>/<name>", "flux/<ns>/<name>" or "<source>/<Kind>/<ns>/<name>".
func parseAppKey(s string) (reconcile.AppKey, error) {
	parts := strings.Split(s, "/")
	var k reconcile.AppKey
	switch len(parts) {
	case 3:
		k = reconcile.AppKey{Source: reconcile.Source(parts[0]), Namespace: parts[1], Name: parts[2]}
		switch k.Source {
		case reconcile.SourceArgoCD:
			k.Kind = "Application"
		case reconcile.SourceFlux:
			k.Kind = "Kustomization"
		}
	case 4:
		k = reconcile.AppKey{Source: reconcile.Source(parts[0]), Kind: parts[1], Namespace: parts[2], Name: parts[3]}
	default:
		return k, fmt.Errorf("%q: want <source>/<namespace>/<name> or <source>/<Kind>/<namespace>/<name>", s)
	}
	if k.Source != reconcile.SourceArgoCD && k.Source != reconcile.SourceFlux {
		return k, fmt.Errorf("%q: source must be argocd or flux", s)
	}
	if k.Kind == "" || k.Namespace == "" || k.Name == "" {
		return k, fmt.Errorf("%q: empty kind, namespace or name", s)
	}
	return k, nil
}
