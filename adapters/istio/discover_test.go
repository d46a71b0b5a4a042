package istio

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

func testPod(name, rev string, phase corev1.PodPhase, ip string, ready bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system", Labels: map[string]string{"app": "istiod"}},
		Status:     corev1.PodStatus{Phase: phase, PodIP: ip},
	}
	if rev != "" {
		p.Labels[RevisionLabel] = rev
	}
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}}
	return p
}

func TestPodTargetSet(t *testing.T) {
	cfg := PodTargetsConfig{Transport: TransportXDSPlaintext}.withDefaults()
	terminating := testPod("istiod-term", "", corev1.PodRunning, "10.0.0.5", true)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	pods := []*corev1.Pod{
		testPod("istiod-b", "canary", corev1.PodRunning, "10.0.0.2", true),
		testPod("istiod-a", "", corev1.PodRunning, "10.0.0.1", true),
		testPod("istiod-starting", "", corev1.PodRunning, "10.0.0.3", false),
		testPod("istiod-was-ready", "", corev1.PodRunning, "10.0.0.4", false),
		terminating,
		testPod("istiod-pending", "", corev1.PodPending, "", false),
		testPod("istiod-failed", "", corev1.PodFailed, "10.0.0.6", false),
		testPod("istiod-no-ip", "", corev1.PodRunning, "", true),
	}
	known := map[string]bool{"istiod-was-ready": true, "istiod-term": true, "istiod-failed": true}
	got := podTargetSet(pods, known, cfg)
	want := []Target{
		{Name: "istiod-a", Revision: "default", Addr: "10.0.0.1:15010", MonitoringAddr: "10.0.0.1:15014"},
		{Name: "istiod-b", Revision: "canary", Addr: "10.0.0.2:15010", MonitoringAddr: "10.0.0.2:15014"},
		{Name: "istiod-was-ready", Revision: "default", Addr: "10.0.0.4:15010", MonitoringAddr: "10.0.0.4:15014"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("targets\n got %+v\nwant %+v", got, want)
	}
}

func TestPodTargetsConfig(t *testing.T) {
	client := fake.NewClientset()
	for _, tt := range []struct {
		cfg     PodTargetsConfig
		wantErr string
	}{
		{PodTargetsConfig{Selector: "app in (istiod"}, `pod targets: selector "app in (istiod": `},
		{PodTargetsConfig{Transport: "grpc"}, `transport "grpc": must be one of xds-tls, xds-plaintext, http`},
		{PodTargetsConfig{Port: 70000}, "pod targets: port 70000 out of range"},
	} {
		_, err := PodTargets(client, tt.cfg)
		if err == nil || len(err.Error()) < len(tt.wantErr) || err.Error()[:len(tt.wantErr)] != tt.wantErr {
			t.Errorf("config %+v: error %v, want prefix %q", tt.cfg, err, tt.wantErr)
		}
	}
	for tr, port := range map[Transport]int{TransportXDSTLS: 15012, TransportXDSPlaintext: 15010, TransportHTTP: 15014, "": 15012} {
		if got := (PodTargetsConfig{Transport: tr}).withDefaults().Port; got != port {
			t.Errorf("transport %q: port %d, want %d", tr, got, port)
		}
	}
}

// forbidding is an API server client transport that answers 403 while forbid is set, as
// the API server does for a service account without RBAC on pods.
type forbidding struct {
	next   http.RoundTripper
	forbid atomic.Bool
}

func (f *forbidding) RoundTrip(req *http.Request) (*http.Response, error) {
	if !f.forbid.Load() {
		return f.next.RoundTrip(req)
	}
	body := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods is forbidden: rbac says no","reason":"Forbidden","code":403}`
	return &http.Response{
		StatusCode: http.StatusForbidden, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": []string{"application/json"}},
		Body:    io.NopCloser(strings.NewReader(body)),
		Request: req,
	}, nil
}

// Discovery that cannot list pods is reported down, then up once it can, against the
// real API server.
func TestPodTargetsReportListFailure(t *testing.T) {
	needBed(t)
	cfg := rest.CopyConfig(bed.kube.Config)
	shim := &forbidding{}
	shim.forbid.Store(true)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { shim.next = rt; return shim }
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src, err := PodTargets(client, PodTargetsConfig{Selector: "app=istiod,meshdrift-test=" + t.Name(), Transport: TransportHTTP})
	if err != nil {
		t.Fatal(err)
	}
	r, rec, _, _ := newTestReaderFrom(t, ReaderConfig{Transport: TransportHTTP}, src)
	runReader(t, r)
	discovery := func() []string {
		var out []string
		for _, st := range rec.snapshot().statuses {
			out = append(out, fmt.Sprintf("%s up=%v %s", st.Name, st.Up, st.Error))
		}
		return out
	}
	const forbidden = "istiod up=false istiod discovery: list/watch pods app=istiod,meshdrift-test=TestPodTargetsReportListFailure in istio-system: failed to list *v1.Pod: pods is forbidden: rbac says no"
	testbed.Eventually(t, 10*time.Second, "discovery down", func() (bool, string) {
		return slices.Equal(discovery(), []string{forbidden}), fmt.Sprintf("%q", discovery())
	})
	shim.forbid.Store(false)
	// Allowed again, it finds no istiod pod with this selector: still down, for that reason.
	testbed.Eventually(t, 15*time.Second, "discovery works again", func() (bool, string) {
		return slices.Equal(discovery(), []string{forbidden, "istiod up=false no istiod found"}), fmt.Sprintf("%q", discovery())
	})
}

// Discovery against the real API server: an istiod pod that runs and is ready is read,
// with its revision label; one that turns unready is still read (and would be reported
// down, not vanish); a deleted one is forgotten.
func TestPodTargetsFollowPods(t *testing.T) {
	needBed(t)
	ctx := context.Background()
	// The bed's istiods are processes on loopback: pods with IP 127.0.0.1 and the port of
	// istiod-a's monitoring address stand for them.
	_, portText, err := net.SplitHostPort(bed.istiodA.MonitoringAddr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portText)
	selector := "app=istiod,meshdrift-test=" + t.Name()
	src, err := PodTargets(bed.client, PodTargetsConfig{Namespace: "istio-system", Selector: selector, Transport: TransportHTTP, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	r, rec, _, _ := newTestReaderFrom(t, ReaderConfig{Transport: TransportHTTP, Interval: 200 * time.Millisecond}, src)
	runReader(t, r)

	pods := bed.client.CoreV1().Pods("istio-system")
	create := func(name, rev string) {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "istiod", "meshdrift-test": t.Name(), RevisionLabel: rev}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: "istio/pilot"}}},
		}
		if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pods.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	setStatus := func(name string, phase corev1.PodPhase, ready bool) {
		t.Helper()
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cond := corev1.ConditionFalse
		if ready {
			cond = corev1.ConditionTrue
		}
		pod.Status = corev1.PodStatus{
			Phase: phase, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}},
		}
		if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	create("istiod-canary-7d9f", "canary")
	create("istiod-canary-starting", "canary")
	setStatus("istiod-canary-starting", corev1.PodRunning, false)
	time.Sleep(300 * time.Millisecond)
	if _, ok := rec.lastView("istiod-canary-7d9f"); ok {
		t.Fatal("a pod without status was read")
	}
	setStatus("istiod-canary-7d9f", corev1.PodRunning, true)
	testbed.Eventually(t, 10*time.Second, "ready pod read", func() (bool, string) {
		v, ok := rec.lastView("istiod-canary-7d9f")
		return ok && v.Revision == "canary", fmt.Sprintf("%+v", v)
	})
	got, err := src.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{Name: "istiod-canary-7d9f", Revision: "canary", Addr: bed.istiodA.MonitoringAddr, MonitoringAddr: "127.0.0.1:15014"}}
	if !slices.Equal(got, want) {
		t.Errorf("Targets %+v, want %+v", got, want)
	}

	setStatus("istiod-canary-7d9f", corev1.PodRunning, false)
	n := len(rec.snapshot().views)
	testbed.Eventually(t, 5*time.Second, "unready pod still read", func() (bool, string) {
		return len(rec.snapshot().views) > n+2, ""
	})
	if _, ok := rec.lastView("istiod-canary-starting"); ok {
		t.Error("a pod that was never ready was read")
	}

	if err := pods.Delete(ctx, "istiod-canary-7d9f", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 10*time.Second, "deleted pod forgotten", func() (bool, string) {
		got := rec.snapshot().forgotten
		return slices.Equal(got, []string{"istiod-canary-7d9f"}), fmt.Sprint(got)
	})
}
