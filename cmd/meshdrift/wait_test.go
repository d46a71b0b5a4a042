package main

import (
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

const (
	sha40  = "0123456789abcdef0123456789abcdef01234567"
	sha40b = "fedcba9876543210fedcba9876543210fedcba98"
	sha64  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func TestNewRevisionMatcherRefuses(t *testing.T) {
	for _, tt := range []struct {
		revision, prefix, want string
	}{
		{revision: "abc", want: `--revision "abc" looks like an abbreviated commit SHA; give the full SHA, the Flux revision (<ref>@sha1:<sha>), or --revision-prefix abc`},
		{revision: sha40[:7], want: `--revision "0123456" looks like an abbreviated commit SHA`},
		{revision: sha40[:39], want: "looks like an abbreviated commit SHA"},
		{revision: sha40 + "0", want: "looks like an abbreviated commit SHA"},
		{revision: " main@sha1:" + sha40, want: "leading or trailing white space"},
		{revision: sha40, prefix: sha40[:7], want: "--revision and --revision-prefix: give one"},
		{prefix: "abc", want: `--revision-prefix "abc": must be 7 to 64 hex digits of a commit SHA`},
		{prefix: "main@sha1:0123456", want: "must be 7 to 64 hex digits"},
		{prefix: sha64 + "0", want: "must be 7 to 64 hex digits"},
	} {
		_, err := newRevisionMatcher(tt.revision, tt.prefix)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("newRevisionMatcher(%q, %q) = %v, want an error containing %q", tt.revision, tt.prefix, err, tt.want)
		}
	}
}

func TestRevisionMatcher(t *testing.T) {
	for _, tt := range []struct {
		name             string
		revision, prefix string
		match, noMatch   []string
	}{
		{
			name:     "full SHA matches Argo CD's bare SHA and Flux's revisions of that commit",
			revision: sha40,
			match:    []string{sha40, "main@sha1:" + sha40, "refs/heads/main@sha1:" + sha40, "v1.2.0@sha1:" + sha40, "sha1:" + sha40, sha40b + "," + sha40},
			noMatch: []string{"", sha40b, "main@sha1:" + sha40b, "main@sha1:" + sha40[:39], "x" + sha40, sha40 + "0",
				"main@sha256:" + sha40, "main@md5:" + sha40, "main@" + sha40, "main"},
		},
		{
			name:     "upper-case SHA",
			revision: strings.ToUpper(sha40),
			match:    []string{sha40, "main@sha1:" + sha40},
		},
		{
			name:     "sha256 digest",
			revision: sha64,
			match:    []string{sha64, "latest@sha256:" + sha64, "sha256:" + sha64},
			noMatch:  []string{"main@sha1:" + sha40, "sha1:" + sha64},
		},
		{
			name:     "Flux revision is exact",
			revision: "main@sha1:" + sha40,
			match:    []string{"main@sha1:" + sha40},
			// The old suffix match let any ref of the commit, or a longer string, match.
			noMatch: []string{"feature/main@sha1:" + sha40, "sha1:" + sha40, sha40, "main@sha1:" + sha40b},
		},
		{
			name:     "chart version is exact",
			revision: "6.7.1",
			match:    []string{"6.7.1"},
			noMatch:  []string{"16.7.1", "6.7.10", "6.7"},
		},
		{
			name:     "multi-source: one source's revision",
			revision: "6.7.1",
			match:    []string{sha40 + ",6.7.1"},
			noMatch:  []string{sha40 + ",16.7.1"},
		},
		{
			name:    "explicit prefix",
			prefix:  sha40[:7],
			match:   []string{sha40, "main@sha1:" + sha40, "sha1:" + sha40, strings.ToUpper(sha40)},
			noMatch: []string{sha40b, "main@sha1:" + sha40b, sha40[:7], "main@sha1:" + sha40[:7], "0123456.1.0", "x" + sha40},
		},
		{
			name:  "no revision: whatever is applied",
			match: []string{sha40, "6.7.1"},
			// Nothing applied is nothing to wait on.
			noMatch: []string{""},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newRevisionMatcher(tt.revision, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			for _, rev := range tt.match {
				if !m.matches(rev) {
					t.Errorf("%s does not match %q", m, rev)
				}
			}
			for _, rev := range tt.noMatch {
				if m.matches(rev) {
					t.Errorf("%s matches %q", m, rev)
				}
			}
		})
	}
}

func TestWaiterState(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	key := reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "apps", Name: "shop"}
	other := reconcile.AppKey{Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "apps", Name: "other"}
	revA, revB := "main@sha1:"+sha40b, "main@sha1:"+sha40
	vs := func(name string) reconcile.ObjectRef {
		return reconcile.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "apps", Name: name}
	}
	app := func(rev string, appliedAt time.Time) reconcile.App {
		return reconcile.App{Key: key, AppliedRevision: rev, DesiredRevision: rev, AppliedAt: appliedAt, State: reconcile.AppSynced,
			Objects: []reconcile.OwnedObject{{Ref: vs("listed")}}}
	}
	// change is a change of the VirtualService name observed at, owned through its Flux
	// labels (or, for "listed", through the app's inventory).
	change := func(name string, at time.Time, state reconcile.PropagationState, owner reconcile.AppKey) reconcile.Propagation {
		p := reconcile.Propagation{Change: reconcile.MeshChange{Ref: vs(name), Generation: 2, ObservedAt: at}, State: state}
		if name != "listed" {
			p.Change.GitOpsOwner = owner
		}
		switch state {
		case reconcile.PropagationPropagated:
			p.Targeted, p.ACKed = 2, 2
		case reconcile.PropagationNACKed:
			p.Targeted, p.ACKed, p.NACKed = 2, 1, 1
			p.Proxies = []reconcile.ProxyOutcome{{Proxy: "shop-v1.apps", State: reconcile.PropagationNACKed, Error: "route: invalid timeout"}}
		case reconcile.PropagationUnknown:
			p.Unreachable = []string{"istiod-1"}
		default:
			p.Targeted, p.ACKed, p.Pending = 2, 1, 1
		}
		return p
	}
	snap := func(a *reconcile.App, changes ...reconcile.Propagation) reconcile.Snapshot {
		s := reconcile.Snapshot{Changes: changes}
		if a != nil {
			s.Apps = []reconcile.App{*a}
		}
		return s
	}
	ptr := func(a reconcile.App) *reconcile.App { return &a }
	const settle = 3 * time.Second
	old := t0.Add(-10 * time.Minute) // long before wait started: an older apply's change

	type step struct {
		at    time.Duration // after t0, wait's start
		snap  reconcile.Snapshot
		state reconcile.PropagationState
		msg   string
	}
	tests := []struct {
		name     string
		revision string
		steps    []step
	}{
		{
			name:     "app not seen",
			revision: revB,
			steps:    []step{{at: time.Second, snap: snap(nil), state: reconcile.PropagationPending, msg: "flux/Kustomization/apps/shop: not seen yet"}},
		},
		{
			name:     "older revision applied and propagated: keep waiting",
			revision: revB,
			steps: []step{{at: time.Second, snap: snap(ptr(app(revA, old)), change("shop", old, reconcile.PropagationPropagated, key)),
				state: reconcile.PropagationPending,
				msg:   "flux/Kustomization/apps/shop: applied revision " + revA + ", waiting for commit " + sha40 + " (Synced)"}},
		},
		{
			name:     "new revision applied, only an older change propagated: not satisfied by it",
			revision: revB,
			steps: []step{
				{at: 10 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", old, reconcile.PropagationPropagated, key)),
					state: reconcile.PropagationPending, msg: "settling, no mesh object changed for this apply"},
				// The new revision's change arrives after the app's: it holds the wait.
				{at: 11 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", t0.Add(11*time.Second), reconcile.PropagationPending, key)),
					state: reconcile.PropagationPending, msg: "Pending, 1 mesh object change: VirtualService apps/shop Pending, 1/2 proxies ACKed"},
				{at: 15 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", t0.Add(11*time.Second), reconcile.PropagationPropagated, key)),
					state: reconcile.PropagationPropagated, msg: revB + " applied 2026-12-03T14:00:09Z: Propagated, 1 mesh object change: VirtualService apps/shop Propagated, 2/2 proxies ACKed"},
			},
		},
		{
			name:     "revision that changes no mesh object: propagated after the settle period",
			revision: revB,
			steps: []step{
				{at: 10 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", old, reconcile.PropagationPropagated, key)),
					state: reconcile.PropagationPending, msg: "settling"},
				{at: 12 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", old, reconcile.PropagationPropagated, key)),
					state: reconcile.PropagationPending, msg: "settling"},
				{at: 13 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", old, reconcile.PropagationPropagated, key)),
					state: reconcile.PropagationPropagated, msg: "Propagated, no mesh object changed for this apply"},
			},
		},
		{
			name:     "propagated change still settles",
			revision: revB,
			steps: []step{
				{at: 10 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", t0.Add(8*time.Second), reconcile.PropagationPropagated, key)),
					state: reconcile.PropagationPending, msg: "settling, 1 mesh object change"},
				// A second object of the revision shows up late; it counts.
				{at: 12 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))),
					change("shop", t0.Add(8*time.Second), reconcile.PropagationPropagated, key), change("listed", t0.Add(12*time.Second), reconcile.PropagationPending, key)),
					state: reconcile.PropagationPending, msg: "Pending, 2 mesh object changes: VirtualService apps/listed Pending"},
			},
		},
		{
			name:     "NACK of this apply fails at once",
			revision: revB,
			steps: []step{{at: 10 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))),
				change("shop", t0.Add(8*time.Second), reconcile.PropagationNACKed, key), change("cart", t0.Add(8*time.Second), reconcile.PropagationPropagated, key)),
				state: reconcile.PropagationNACKed,
				msg:   "NACKed, 2 mesh object changes: VirtualService apps/shop NACKed, 1/2 proxies ACKed, shop-v1.apps NACKed: route: invalid timeout; VirtualService apps/cart Propagated"}},
		},
		{
			name:     "stale and not pushed fail",
			revision: revB,
			steps: []step{
				{at: 40 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", t0.Add(8*time.Second), reconcile.PropagationStale, key)),
					state: reconcile.PropagationStale, msg: "Stale"},
			},
		},
		{
			name:     "an older apply's NACK does not count",
			revision: revB,
			steps: []step{{at: 10 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))),
				change("cart", old, reconcile.PropagationNACKed, key), change("shop", t0.Add(8*time.Second), reconcile.PropagationPropagated, key)),
				state: reconcile.PropagationPending, msg: "settling, 1 mesh object change: VirtualService apps/shop Propagated"}},
		},
		{
			name:     "another app's change does not count",
			revision: revB,
			steps: []step{
				{at: 10 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", t0.Add(8*time.Second), reconcile.PropagationNACKed, other)),
					state: reconcile.PropagationPending, msg: "settling, no mesh object changed"},
				{at: 13 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", t0.Add(8*time.Second), reconcile.PropagationNACKed, other)),
					state: reconcile.PropagationPropagated},
			},
		},
		{
			name:     "wait started after the apply: changes written before the tool recorded it count",
			revision: revB,
			steps: []step{
				// Flux wrote the object, ran health checks for 30 s, then recorded the apply.
				{at: time.Second, snap: snap(ptr(app(revB, t0.Add(-20*time.Second))), change("shop", t0.Add(-50*time.Second), reconcile.PropagationPending, key)),
					state: reconcile.PropagationPending, msg: "Pending, 1 mesh object change"},
				{at: 5 * time.Second, snap: snap(ptr(app(revB, t0.Add(-20*time.Second))), change("shop", t0.Add(-50*time.Second), reconcile.PropagationNACKed, key)),
					state: reconcile.PropagationNACKed},
			},
		},
		{
			name:     "istiod unreadable: Unknown, never propagated",
			revision: revB,
			steps: []step{{at: 20 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), change("shop", t0.Add(8*time.Second), reconcile.PropagationUnknown, key)),
				state: reconcile.PropagationUnknown, msg: "istiod unreachable: istiod-1"}},
		},
		{
			name:     "a NACK the change cannot have caused is told, not counted",
			revision: revB,
			steps: func() []step {
				p := change("shop", t0.Add(8*time.Second), reconcile.PropagationPropagated, key)
				p.Concurrent = []reconcile.ProxyOutcome{
					{Proxy: "ratings-v1.shop", Istiod: "istiod-1", State: reconcile.PropagationNACKed, Error: "listener 0.0.0.0_9080: bad filter"},
					{Proxy: "reviews-v1.shop", Istiod: "istiod-1", State: reconcile.PropagationNACKed, Error: "listener 0.0.0.0_9080: bad filter"},
				}
				s := snap(ptr(app(revB, t0.Add(9*time.Second))), p)
				return []step{
					{at: 10 * time.Second, snap: s, state: reconcile.PropagationPending, msg: "not caused by it: ratings-v1.shop NACKed: listener 0.0.0.0_9080: bad filter (and 1 more)"},
					{at: 13 * time.Second, snap: s, state: reconcile.PropagationPropagated, msg: "not caused by it: ratings-v1.shop"},
				}
			}(),
		},
		{
			name:     "restricted istiod view: Unknown, never propagated",
			revision: revB,
			steps: []step{{at: 20 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second))), func() reconcile.Propagation {
				p := change("shop", t0.Add(8*time.Second), reconcile.PropagationUnknown, key)
				p.Unreachable, p.Restricted = nil, []string{"istiod-2"}
				return p
			}()),
				state: reconcile.PropagationUnknown, msg: "istiod shows only part of the mesh: istiod-2"}},
		},
		{
			name:     "revision moves back: the settle period starts again",
			revision: revB,
			steps: []step{
				{at: 10 * time.Second, snap: snap(ptr(app(revB, t0.Add(9*time.Second)))), state: reconcile.PropagationPending, msg: "settling"},
				{at: 11 * time.Second, snap: snap(ptr(app(revA, t0.Add(11*time.Second)))), state: reconcile.PropagationPending, msg: "waiting for"},
				{at: 12 * time.Second, snap: snap(ptr(app(revB, t0.Add(12*time.Second)))), state: reconcile.PropagationPending, msg: "settling"},
				{at: 14 * time.Second, snap: snap(ptr(app(revB, t0.Add(12*time.Second)))), state: reconcile.PropagationPending, msg: "settling"},
				{at: 15 * time.Second, snap: snap(ptr(app(revB, t0.Add(12*time.Second)))), state: reconcile.PropagationPropagated},
			},
		},
		{
			name: "no --revision: a newer applied revision restarts the settle period",
			steps: []step{
				{at: time.Second, snap: snap(ptr(app(revA, old))), state: reconcile.PropagationPending, msg: revA},
				{at: 2 * time.Second, snap: snap(ptr(app(revB, t0.Add(2*time.Second)))), state: reconcile.PropagationPending, msg: revB},
				{at: 4 * time.Second, snap: snap(ptr(app(revB, t0.Add(2*time.Second)))), state: reconcile.PropagationPending, msg: "settling"},
				{at: 5 * time.Second, snap: snap(ptr(app(revB, t0.Add(2*time.Second)))), state: reconcile.PropagationPropagated, msg: revB},
			},
		},
		{
			name:     "nothing applied yet",
			revision: revB,
			steps: []step{{at: time.Second, snap: snap(ptr(reconcile.App{Key: key, DesiredRevision: revB, State: reconcile.AppFailed, Reason: "HealthCheckFailed"})),
				state: reconcile.PropagationPending, msg: "applied revision none, waiting for commit " + sha40 + " (Failed HealthCheckFailed, attempting " + revB + ")"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newRevisionMatcher(tt.revision, "")
			if err != nil {
				t.Fatal(err)
			}
			// --revision as a bare SHA: it must match Flux's main@sha1:<sha>.
			if tt.revision == revB {
				if m, err = newRevisionMatcher(sha40, ""); err != nil {
					t.Fatal(err)
				}
			}
			w := &waiter{key: key, match: m, settle: settle, start: t0}
			for i, s := range tt.steps {
				state, msg := w.state(s.snap, t0.Add(s.at))
				if state != s.state || !strings.Contains(msg, s.msg) {
					t.Errorf("step %d at +%s: %s %q, want %s containing %q", i, s.at, state, msg, s.state, s.msg)
				}
			}
		})
	}
}

// A short SHA without --revision-prefix is a usage error, before anything is read.
func TestWaitUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"wait", "--app", "flux/apps/shop", "--revision", "abc"}, `--revision "abc" looks like an abbreviated commit SHA`},
		{[]string{"wait", "--app", "flux/apps/shop", "--revision", sha40[:8]}, "--revision-prefix " + sha40[:8]},
		{[]string{"wait", "--app", "flux/apps/shop", "--revision-prefix", "abc"}, "must be 7 to 64 hex digits"},
		{[]string{"wait", "--app", "flux/apps/shop", "--revision", sha40, "--revision-prefix", sha40[:7]}, "give one"},
		{[]string{"wait", "--app", "flux/apps/shop", "--settle", "-1s"}, "--settle -1s: must not be negative"},
	} {
		var out, errOut syncBuffer
		if code := run(tt.args, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tt.args, code, errOut.String(), exitUsage, tt.want)
		}
	}
}

// FuzzRevisionMatcher: revisions come from the cluster and flags. Nothing panics, a
// revision accepted as --revision matches itself, and a matcher never matches more than
// the SHA part it was given.
func FuzzRevisionMatcher(f *testing.F) {
	for _, s := range []string{"", "abc", sha40, sha64, "main@sha1:" + sha40, "latest@sha256:" + sha64, "sha1:" + sha40,
		"6.7.1", sha40 + ",6.7.1", "a@b@sha1:" + sha40, "main@sha1:", "@", ",", "sha1:" + strings.ToUpper(sha40)} {
		f.Add(s, sha40[:7])
	}
	f.Fuzz(func(t *testing.T, rev, prefix string) {
		sha := revisionSHA(rev)
		if sha != "" && (!isHex(sha) || strings.ToLower(sha) != sha || (len(sha) != 40 && len(sha) != 64)) {
			t.Fatalf("revisionSHA(%q) = %q", rev, sha)
		}
		if m, err := newRevisionMatcher(rev, ""); err == nil && rev != "" && !m.matches(rev) {
			t.Fatalf("--revision %q does not match itself", rev)
		}
		m, err := newRevisionMatcher("", prefix)
		if err != nil || prefix == "" {
			return
		}
		if got, want := m.matches(rev), sha != "" && strings.HasPrefix(sha, strings.ToLower(prefix)); got != want && !strings.Contains(rev, ",") {
			t.Fatalf("--revision-prefix %q on %q: %t, want %t", prefix, rev, got, want)
		}
	})
}
