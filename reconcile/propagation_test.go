package reconcile

import (
	"strings"
	"testing"
	"time"
)

const (
	cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
	rds = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	eds = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

var (
	t0    = time.Date(2026, 11, 25, 12, 3, 4, 0, time.UTC)
	vsRef = ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "payments", Name: "api"}
)

// proxy builds a proxy whose CDS/LDS/RDS were sent at sent with state st; EDS is old.
func proxy(id string, sent time.Time, st SyncState, errText string) ProxyStatus {
	p := ProxyStatus{ID: id}
	for _, typ := range []string{cds, lds, rds} {
		x := XDSStatus{TypeURL: typ, State: st, SentAt: sent}
		if st == StateError {
			x.Error = errText
		}
		p.Types = append(p.Types, x)
	}
	p.Types = append(p.Types, XDSStatus{TypeURL: eds, State: StateSynced, SentAt: t0.Add(-time.Hour)})
	return p
}

func view(name, pushVersion string, proxies ...ProxyStatus) IstiodView {
	return IstiodView{Istiod: name, PushVersion: pushVersion, Proxies: proxies, ObservedAt: t0.Add(time.Second)}
}

func TestPropagation(t *testing.T) {
	const nackText = "Proto constraint validation failed: route: invalid regex"
	cases := []struct {
		name    string
		views   []IstiodView
		nacks   []NACKEvent
		down    []string
		now     time.Duration // since the change
		want    PropagationState
		latency time.Duration
		acked   int
		targets int
		proxies []ProxyOutcome
	}{
		{
			name:    "every targeted proxy ACKed",
			views:   []IstiodView{view("istiod-a", "", proxy("a.ns", t0.Add(120*time.Millisecond), StateSynced, ""), proxy("b.ns", t0.Add(110*time.Millisecond), StateSynced, ""))},
			now:     2 * time.Second,
			want:    PropagationPropagated,
			latency: 120 * time.Millisecond, acked: 2, targets: 2,
		},
		{
			name:  "pending within the grace period",
			views: []IstiodView{view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateStale, ""))},
			now:   5 * time.Second, want: PropagationPending, targets: 1,
			proxies: []ProxyOutcome{{Proxy: "a.ns", Istiod: "istiod-a", State: PropagationPending}},
		},
		{
			name:  "stale after the grace period",
			views: []IstiodView{view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateStale, ""), proxy("b.ns", t0.Add(100*time.Millisecond), StateSynced, ""))},
			now:   31 * time.Second, want: PropagationStale, targets: 2, acked: 1,
			proxies: []ProxyOutcome{{Proxy: "a.ns", Istiod: "istiod-a", State: PropagationStale}},
		},
		{
			name:  "a NACK is never pending",
			views: []IstiodView{view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateError, nackText))},
			now:   time.Second, want: PropagationNACKed, targets: 1,
			proxies: []ProxyOutcome{{Proxy: "a.ns", Istiod: "istiod-a", State: PropagationNACKed, Error: nackText}},
		},
		{
			name:  "a streamed NACK counts before the next poll",
			views: []IstiodView{view("istiod-a", "", proxy("a.ns", t0.Add(-time.Minute), StateSynced, ""))},
			nacks: []NACKEvent{{Istiod: "istiod-a", Proxy: "a.ns", TypeURL: rds, Error: nackText, At: t0.Add(150 * time.Millisecond)}},
			now:   time.Second, want: PropagationNACKed, targets: 1,
			proxies: []ProxyOutcome{{Proxy: "a.ns", Istiod: "istiod-a", State: PropagationNACKed, Error: nackText}},
		},
		{
			name:  "a NACK from before the change is history",
			views: []IstiodView{view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, ""))},
			nacks: []NACKEvent{{Istiod: "istiod-a", Proxy: "a.ns", TypeURL: rds, Error: nackText, At: t0.Add(-time.Minute)}},
			now:   time.Second, want: PropagationPropagated, targets: 1, acked: 1, latency: 100 * time.Millisecond,
		},
		{
			name:  "proxies not sent anything since are not targeted; nothing pushed at all",
			views: []IstiodView{view("istiod-a", "2026-11-25T12:00:00Z/7", proxy("a.ns", t0.Add(-time.Minute), StateSynced, ""))},
			now:   31 * time.Second, want: PropagationNotPushed,
		},
		{
			name:  "pushed to nobody (scoped out) resolves without targets",
			views: []IstiodView{view("istiod-a", "2026-11-25T12:03:05Z/8", proxy("a.ns", t0.Add(-time.Minute), StateSynced, ""))},
			now:   31 * time.Second, want: PropagationPropagated,
		},
		{
			name:  "an unreachable istiod makes an unresolved change unknown",
			views: []IstiodView{view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateStale, ""))},
			down:  []string{"istiod-b"},
			now:   time.Minute, want: PropagationUnknown, targets: 1,
			proxies: []ProxyOutcome{{Proxy: "a.ns", Istiod: "istiod-a", State: PropagationPending}},
		},
		{
			name: "one replica pushed, the other has not yet",
			views: []IstiodView{
				view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, "")),
				view("istiod-b", "2026-11-25T12:03:04Z/12", proxy("b.ns", t0.Add(-time.Minute), StateSynced, "")),
			},
			now: time.Second, want: PropagationPending, targets: 1, acked: 1,
		},
		{
			name: "the other replica's newer push version shows it had nothing to send",
			views: []IstiodView{
				view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, "")),
				view("istiod-b", "2026-11-25T12:03:05Z/13", proxy("b.ns", t0.Add(-time.Minute), StateSynced, "")),
			},
			now: 2 * time.Second, want: PropagationPropagated, targets: 1, acked: 1, latency: 100 * time.Millisecond,
		},
		{
			name: "a replica read before the change has not settled, even without proxies",
			views: []IstiodView{
				view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, "")),
				{Istiod: "istiod-b", ObservedAt: t0.Add(-time.Second)},
			},
			now: time.Second, want: PropagationPending, targets: 1, acked: 1,
		},
		{
			name: "replicas are merged; a restarted istiod's reset counter does not matter",
			views: []IstiodView{
				view("istiod-a", "2026-11-25T12:03:04Z/1", proxy("a.ns", t0.Add(300*time.Millisecond), StateSynced, "")),
				view("istiod-b", "2026-11-25T12:03:04Z/9127", proxy("b.ns", t0.Add(200*time.Millisecond), StateSynced, "")),
			},
			now: time.Second, want: PropagationPropagated, targets: 2, acked: 2, latency: 300 * time.Millisecond,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := &trackedChange{change: MeshChange{Ref: vsRef, ObservedAt: t0}}
			views := map[string]IstiodView{}
			for _, v := range tc.views {
				views[v.Istiod] = v
			}
			got := ch.evaluate(PropagationConfig{}.withDefaults(), views, latestNACKs(tc.nacks), tc.down, t0.Add(tc.now))
			if got.State != tc.want || got.Latency != tc.latency || got.ACKed != tc.acked || got.Targeted != tc.targets {
				t.Errorf("got %s latency %s acked %d/%d, want %s latency %s acked %d/%d",
					got.State, got.Latency, got.ACKed, got.Targeted, tc.want, tc.latency, tc.acked, tc.targets)
			}
			if len(got.Proxies) != len(tc.proxies) {
				t.Fatalf("proxies = %+v, want %+v", got.Proxies, tc.proxies)
			}
			for i := range tc.proxies {
				if got.Proxies[i] != tc.proxies[i] {
					t.Errorf("proxy %d = %+v, want %+v", i, got.Proxies[i], tc.proxies[i])
				}
			}
		})
	}
}

type recordingObserver struct{ transitions []string }

func (r *recordingObserver) PropagationChanged(prev, next Propagation, baseline bool) {
	r.transitions = append(r.transitions, string(prev.State)+"->"+string(next.State))
}

// Through the store: a change pending while the proxy has not ACKed, propagated once it
// does, and a proxy that disconnects while stale raises no alarm.
func TestStorePropagationLifecycle(t *testing.T) {
	obs := &recordingObserver{}
	s := NewStore(PropagationConfig{Grace: 30 * time.Second}, obs)
	app := App{Key: AppKey{Source: SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: "payments"},
		AppliedRevision: "main@sha1:abc123", AppliedAt: t0.Add(-time.Second),
		Objects: []OwnedObject{{Ref: vsRef}}}
	s.ObserveApp(app)
	s.ReportSource(SourceStatus{Name: "istiod/istiod-a", Up: true})
	s.ObserveMeshChange(MeshChange{Ref: vsRef, ObservedAt: t0, Manager: "kustomize-controller"})
	s.ObserveIstiod(view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, ""), proxy("silent.ns", t0.Add(100*time.Millisecond), StateStale, "")))
	if !s.Evaluate(t0.Add(time.Second)) {
		t.Fatal("Evaluate reported nothing unresolved while a proxy is pending")
	}
	r := s.Snapshot().Propagation
	if len(r) != 1 || r[0].State != PropagationPending || r[0].ACKed != 1 || r[0].Targeted != 2 {
		t.Fatalf("rollup = %+v", r)
	}
	if n := s.Transitions(); n != 0 {
		t.Errorf("Transitions() = %d while the change is pending as it was first judged", n)
	}
	s.Evaluate(t0.Add(40 * time.Second))
	if n := s.Transitions(); n != 1 {
		t.Errorf("Transitions() = %d after Pending->Stale, want 1", n)
	}
	r = s.Snapshot().Propagation
	want := "flux/Kustomization/flux-system/payments revision main@sha1:abc123 applied 2026-11-25T12:03:03Z: Stale, 1/2 proxies ACKed, 1 STALE"
	if got := r[0].Summary(); got != want {
		t.Fatalf("summary = %q, want %q", got, want)
	}
	// The silent proxy disconnects: it vanishes from istiod's view. A stale change is
	// evaluated again at the recheck interval (10 s), not on every read.
	s.ObserveIstiod(view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, "")))
	s.Evaluate(t0.Add(41 * time.Second))
	if got := s.Snapshot().Changes[0].State; got != PropagationStale {
		t.Fatalf("re-evaluated a stale change within the recheck interval: %s", got)
	}
	if s.Evaluate(t0.Add(51 * time.Second)) {
		t.Fatal("still unresolved after the stale proxy disconnected")
	}
	if got := s.Snapshot().Propagation[0]; got.State != PropagationPropagated || got.Stale != 0 {
		t.Fatalf("rollup after disconnect = %+v", got)
	}
	if got := strings.Join(obs.transitions, ","); got != "Pending->Stale,Stale->Propagated" {
		t.Fatalf("transitions = %s", got)
	}
	if n := s.Transitions(); n != 2 {
		t.Errorf("Transitions() = %d, want the observer's 2", n)
	}
}

// An istiod that goes dark must not turn a stale change into a resolved one.
func TestStoreUnreachableIstiodIsNotResolved(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	s.ObserveMeshChange(MeshChange{Ref: vsRef, ObservedAt: t0})
	s.ObserveIstiod(view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateStale, "")))
	s.ReportSource(SourceStatus{Name: "istiod/istiod-a", Up: false, Error: "connection refused"})
	s.Evaluate(t0.Add(time.Minute))
	if got := s.Snapshot().Changes[0]; got.State != PropagationUnknown || len(got.Unreachable) != 1 {
		t.Fatalf("change = %+v", got)
	}
}

func TestPushVersionTime(t *testing.T) {
	for v, ok := range map[string]bool{
		"2026-11-25T15:33:06Z/2": true, "": false, "/2": false, "garbage/3": false, "2026-11-25T15:33:06Z": false,
	} {
		if _, got := pushVersionTime(v); got != ok {
			t.Errorf("pushVersionTime(%q) ok = %v, want %v", v, got, ok)
		}
	}
}

// A relist reports objects again with the generation already held: not a new change.
func TestStoreIgnoresRepeatedChanges(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 3, ResourceVersion: "100", ObservedAt: t0})
	s.ObserveIstiod(view("istiod-a", "", proxy("a.ns", t0.Add(100*time.Millisecond), StateSynced, "")))
	s.Evaluate(t0.Add(time.Second))
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 3, ResourceVersion: "100", ObservedAt: t0.Add(time.Hour)})
	if got := s.Snapshot().Changes[0]; got.State != PropagationPropagated || !got.Change.ObservedAt.Equal(t0) {
		t.Fatalf("repeat replaced the change: %+v", got)
	}
	s.ObserveMeshChange(MeshChange{Ref: vsRef, Generation: 4, ResourceVersion: "120", ObservedAt: t0.Add(time.Hour)})
	if got := s.Snapshot().Changes[0]; got.State != PropagationPending || got.Change.Generation != 4 {
		t.Fatalf("new generation not tracked: %+v", got)
	}
}
