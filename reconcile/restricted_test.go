package reconcile

import (
	"slices"
	"testing"
	"time"
)

// A view that shows fewer proxies than istiod has connected must never make a change
// Propagated (nor NotPushed): istiod shows a caller outside its allowlist an empty or
// partial list without an error, and "pushed to nobody" or "every visible proxy ACKed"
// through it is the silent wrong verdict meshdrift must never give.
func TestRestrictedViewIsNeverPropagated(t *testing.T) {
	restriction := func(visible, connected int) *ViewRestriction {
		return &ViewRestriction{Reason: "istiod shows 0 of 1 connected proxies", Fix: "set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES", Visible: visible, Connected: connected}
	}
	// A push version from a later second than the change: istiod pushed after it.
	newer := t0.Add(2*time.Second).Format(time.RFC3339) + "/42"
	const nackText = "route: invalid timeout"
	cases := []struct {
		name  string
		views []IstiodView
		now   time.Duration // since the change
		want  PropagationState
	}{
		{
			name: "empty restricted view and a newer push version, past the grace period",
			views: []IstiodView{func() IstiodView {
				v := view("istiod-a", newer)
				v.ObservedAt = t0.Add(3 * time.Second)
				v.Restriction = restriction(0, 1)
				return v
			}()},
			now: time.Minute, want: PropagationUnknown,
		},
		{
			name: "empty restricted view within the grace period",
			views: []IstiodView{func() IstiodView {
				v := view("istiod-a", newer)
				v.Restriction = restriction(0, 1)
				return v
			}()},
			now: time.Second, want: PropagationUnknown,
		},
		{
			name: "partial view whose one visible proxy ACKed",
			views: []IstiodView{func() IstiodView {
				v := view("istiod-a", newer, proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, ""))
				v.Restriction = restriction(1, 2)
				return v
			}()},
			now: 2 * time.Second, want: PropagationUnknown,
		},
		{
			name: "partial view past the grace period",
			views: []IstiodView{func() IstiodView {
				v := view("istiod-a", newer, proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, ""))
				v.Restriction = restriction(1, 2)
				return v
			}()},
			now: time.Minute, want: PropagationUnknown,
		},
		{
			name: "a full replica beside a restricted one",
			views: []IstiodView{
				view("istiod-a", newer, proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, "")),
				func() IstiodView {
					v := view("istiod-b", newer)
					v.Restriction = restriction(0, 3)
					return v
				}(),
			},
			now: time.Minute, want: PropagationUnknown,
		},
		{
			name: "a NACK seen through a restricted view is still reported",
			views: []IstiodView{func() IstiodView {
				v := view("istiod-a", newer, proxy("a.ns", t0.Add(100*time.Millisecond), StateError, nackText))
				v.Restriction = restriction(1, 2)
				return v
			}()},
			now: time.Second, want: PropagationNACKed,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			views := map[string]IstiodView{}
			for _, v := range tc.views {
				views[v.Istiod] = v
			}
			tr := &trackedChange{change: MeshChange{Ref: vsRef, ObservedAt: t0}}
			got := tr.evaluate(PropagationConfig{Grace: 2 * time.Second}.withDefaults(), views, nil, nil, t0.Add(tc.now))
			if got.State != tc.want {
				t.Fatalf("state %s, want %s (%+v)", got.State, tc.want, got)
			}
			if want := restrictedIstiods(views); !slices.Equal(got.Restricted, want) || len(want) == 0 {
				t.Errorf("restricted %v, want %v", got.Restricted, want)
			}
		})
	}

	// Through the store too: the restriction keeps the change unresolved, and once the
	// view is full again (allowlist fixed) the change propagates.
	s := NewStore(PropagationConfig{Grace: 2 * time.Second}, nil)
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 1, ObservedAt: t0})
	restricted := view("istiod-a", newer)
	restricted.ObservedAt = t0.Add(3 * time.Second)
	restricted.Restriction = restriction(0, 1)
	s.ObserveIstiod(restricted)
	for _, at := range []time.Duration{time.Second, 3 * time.Second, time.Hour} {
		if !s.Evaluate(t0.Add(at)) {
			t.Fatalf("at +%s: no change unresolved behind a restricted view", at)
		}
		if got := s.Snapshot().Changes[0]; got.State != PropagationUnknown {
			t.Fatalf("at +%s through the store: %s", at, got.State)
		}
	}
	full := view("istiod-a", newer, proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, ""))
	full.ObservedAt = t0.Add(2 * time.Hour)
	s.ObserveIstiod(full)
	s.Evaluate(t0.Add(2 * time.Hour))
	if got := s.Snapshot().Changes[0]; got.State != PropagationPropagated || len(got.Restricted) != 0 {
		t.Fatalf("with the full view: %s restricted %v", got.State, got.Restricted)
	}
}

// Before any istiod has been read (meshdrift just started, or `check` evaluated before its
// read), a change past its grace is Unknown: nothing says istiod did not push it.
func TestNoIstiodReadYetIsNotNotPushed(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	tc := &trackedChange{change: MeshChange{Ref: ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "shop", Name: "reviews"}, ObservedAt: t0}}
	cfg := PropagationConfig{Grace: 5 * time.Second}.withDefaults()
	if got := tc.evaluate(cfg, nil, nil, nil, t0.Add(time.Second)).State; got != PropagationPending {
		t.Errorf("within the grace: %s, want Pending", got)
	}
	if got := tc.evaluate(cfg, nil, nil, nil, t0.Add(time.Minute)).State; got != PropagationUnknown {
		t.Errorf("past the grace with no istiod read: %s, want Unknown", got)
	}
}
