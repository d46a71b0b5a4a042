package flux

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// deliveryTimeout bounds waits on notification-controller's deliveries: it dispatches
// each event asynchronously and retries failed posts with a backoff.
const deliveryTimeout = 30 * time.Second

// timedRequeueCall is a requeueCall with when the receiver made it.
type timedRequeueCall struct {
	requeueCall
	at time.Time
}

// forwardingRequeuer records each call the receiver makes, then passes it to the watcher,
// which is how cmd/meshdrift wires them.
type forwardingRequeuer struct {
	next Requeuer

	mu    sync.Mutex
	calls []timedRequeueCall
}

func (q *forwardingRequeuer) Requeue(ctx context.Context, key reconcile.AppKey, n Notification) {
	q.mu.Lock()
	q.calls = append(q.calls, timedRequeueCall{requeueCall: requeueCall{key: key, n: n}, at: time.Now()})
	q.mu.Unlock()
	q.next.Requeue(ctx, key, n)
}

func (q *forwardingRequeuer) recorded() []timedRequeueCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.calls)
}

// liveReceiver is a Receiver served on loopback, mounted as cmd/meshdrift mounts it, for
// the real notification-controller to post to.
type liveReceiver struct {
	url      string // the Provider address
	requeuer *forwardingRequeuer
	registry *prometheus.Registry
}

// startReceiver serves a Receiver with HMAC key key, requeueing through next, until the
// test ends.
func startReceiver(t *testing.T, key string, next Requeuer) *liveReceiver {
	t.Helper()
	logs := &testLogWriter{t: t}
	t.Cleanup(func() {
		logs.mu.Lock()
		logs.done = true
		logs.mu.Unlock()
	})
	lr := &liveReceiver{requeuer: &forwardingRequeuer{next: next}, registry: prometheus.NewRegistry()}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	recv, err := NewReceiver(ReceiverConfig{HMACKey: []byte(key)}, lr.requeuer, lr.registry, log)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/flux/events", recv)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	lr.url = srv.URL + "/flux/events"
	return lr
}

// counts reads meshdrift_flux_receiver_requests_total per outcome from the registry.
func (lr *liveReceiver) counts(t testing.TB) map[string]float64 {
	t.Helper()
	// requestCounts reads nothing of the rig but its registry.
	return (&receiverTestRig{registry: lr.registry}).requestCounts(t)
}

// settled reports whether sample gives the same value twice a second apart, i.e. the
// controllers' writes and notification-controller's deliveries have stopped for now.
func settled[T comparable](sample func() T) func() bool {
	return func() bool {
		before := sample()
		time.Sleep(time.Second)
		return sample() == before
	}
}

// The real notification-controller, with a generic-hmac Provider pointing at the
// receiver, delivers kustomize-controller's events about a Kustomization: the receiver
// verifies them, requeues exactly that app with the applied revision, and the watcher
// emits the app again at once.
func TestReceiverRequeuesOnFluxEvents(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	// control sees the same watch events as rw but gets no requeues, so whatever rw emits
	// beyond it came from a requeue.
	control := startWatcher(t, bed.kube, WatcherConfig{})
	const token = "receiver-integration-token"
	recv := startReceiver(t, token, rw)
	if err := bed.flux.ForwardEvents(ctx, ns, recv.url, token); err != nil {
		t.Fatal(err)
	}
	rev := revision("d")
	deployGood(t, rw, ns, rev)
	key := appKey(KindKustomization, ns, "app")

	// kustomize-controller sends ReconciliationSucceeded after its last status write of a
	// successful apply, so the requeue it causes reads the final object.
	succeeded := func(c timedRequeueCall) bool {
		return c.n.Reason == "ReconciliationSucceeded" && c.n.Revision == rev
	}
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		counts := recv.counts(t)
		g.Expect(counts[receiverOutcomeAccepted]).To(BeNumerically(">", 0), "%v", counts)
		g.Expect(slices.ContainsFunc(recv.requeuer.recorded(), succeeded)).To(BeTrue(), "%+v", recv.requeuer.recorded())
	}).WithTimeout(deliveryTimeout).WithPolling(100*time.Millisecond).Should(Succeed(), fluxLogs)

	sample := func() [3]int {
		return [3]int{len(recv.requeuer.recorded()), len(control.sink.observations(key)), len(rw.sink.observations(key))}
	}
	g.Eventually(settled(sample)).WithTimeout(deliveryTimeout).Should(BeTrue(), "deliveries and emissions never settled")

	// Every delivery was accepted.
	counts := recv.counts(t)
	for _, o := range receiverOutcomes {
		if o != receiverOutcomeAccepted {
			g.Expect(counts[o]).To(BeZero(), "outcome %s: %v", o, counts)
		}
	}

	calls := recv.requeuer.recorded()
	g.Expect(calls).NotTo(BeEmpty())
	for _, c := range calls {
		g.Expect(c.key).To(Equal(key), "%+v", c)
		g.Expect(c.n.App).To(Equal(key), "%+v", c)
		g.Expect(c.n.Controller).To(Equal("kustomize-controller"), "%+v", c)
	}
	i := slices.IndexFunc(calls, succeeded)
	asked := calls[i].at

	obs := rw.sink.observations(key)
	t.Logf("%d requeues; the requeued watcher emitted %s %d times, the control watcher %d", len(calls), key, len(obs), len(control.sink.observations(key)))
	g.Expect(slices.ContainsFunc(obs, func(a reconcile.App) bool {
		return !a.ObservedAt.Before(asked) && a.State == reconcile.AppSynced && a.AppliedRevision == rev
	})).To(BeTrue(), "no Synced observation at %s after the requeue at %s: %s", rev, asked, rw.sink.calls(key))
	g.Expect(len(obs)).To(BeNumerically(">", len(control.sink.observations(key))),
		"no emission beyond the watch's: requeued %s; control %s", rw.sink.calls(key), control.sink.calls(key))
}

// A receiver whose key is not the Provider's token refuses every delivery of the real
// notification-controller with 401 and requeues nothing.
func TestReceiverRejectsFluxEventsSignedWithAnotherKey(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	rw := startWatcher(t, bed.kube, WatcherConfig{})
	recv := startReceiver(t, "not-the-provider-token", rw)
	if err := bed.flux.ForwardEvents(context.Background(), ns, recv.url, "the-provider-token"); err != nil {
		t.Fatal(err)
	}
	deployGood(t, rw, ns, revision("e"))

	g := NewWithT(t)
	g.Eventually(func() float64 {
		return recv.counts(t)[receiverOutcomeUnauthorized]
	}).WithTimeout(deliveryTimeout).WithPolling(100*time.Millisecond).Should(BeNumerically(">", 0), fluxLogs)
	total := func() float64 {
		var n float64
		for _, v := range recv.counts(t) {
			n += v
		}
		return n
	}
	g.Eventually(settled(total)).WithTimeout(deliveryTimeout).Should(BeTrue(), "deliveries never settled")

	counts := recv.counts(t)
	for _, o := range receiverOutcomes {
		if o != receiverOutcomeUnauthorized {
			g.Expect(counts[o]).To(BeZero(), "outcome %s: %v", o, counts)
		}
	}
	g.Expect(recv.requeuer.recorded()).To(BeEmpty())
}
