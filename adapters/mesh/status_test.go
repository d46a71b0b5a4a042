package mesh

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/reconcile"
)

type statusRecorder struct {
	mu  sync.Mutex
	got []reconcile.SourceStatus
}

func (r *statusRecorder) ReportSource(s reconcile.SourceStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, s)
}

func (r *statusRecorder) all() []reconcile.SourceStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]reconcile.SourceStatus(nil), r.got...)
}

func TestSourceStatus(t *testing.T) {
	vs := schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}
	hr := schema.GroupKind{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute"}
	clock := t0
	rec := &statusRecorder{}
	s := newSourceStatus(rec, func() time.Time { clock = clock.Add(time.Second); return clock })

	type step struct {
		do   func()
		want *reconcile.SourceStatus // nil: nothing reported
	}
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	for i, st := range []step{
		{func() { s.setDiscovery(nil) }, &reconcile.SourceStatus{Name: "mesh", Up: true, Since: at(1)}},
		{func() { s.setDiscovery(nil) }, nil},
		// Recovery of a kind that never failed says nothing.
		{func() { s.setWatch(vs, nil) }, nil},
		{func() { s.setWatch(vs, errors.New("forbidden")) },
			&reconcile.SourceStatus{Name: "mesh", Error: "watching VirtualService.networking.istio.io: forbidden", Since: at(2)}},
		{func() { s.setWatch(hr, errors.New("forbidden")) },
			&reconcile.SourceStatus{Name: "mesh", Error: "watching HTTPRoute.gateway.networking.k8s.io: forbidden; watching VirtualService.networking.istio.io: forbidden", Since: at(2)}},
		{func() { s.setWatch(hr, errors.New("forbidden")) }, nil},
		{func() { s.setWatch(vs, nil) },
			&reconcile.SourceStatus{Name: "mesh", Error: "watching HTTPRoute.gateway.networking.k8s.io: forbidden", Since: at(2)}},
		{func() { s.setDiscovery(errors.New("discovering mesh kinds: connection refused")) },
			&reconcile.SourceStatus{Name: "mesh", Error: "discovering mesh kinds: connection refused; watching HTTPRoute.gateway.networking.k8s.io: forbidden", Since: at(2)}},
		{func() { s.setWatch(hr, nil) },
			&reconcile.SourceStatus{Name: "mesh", Error: "discovering mesh kinds: connection refused", Since: at(2)}},
		{func() { s.setDiscovery(nil) }, &reconcile.SourceStatus{Name: "mesh", Up: true, Since: at(7)}},
	} {
		before := len(rec.all())
		st.do()
		got := rec.all()
		switch {
		case st.want == nil && len(got) != before:
			t.Fatalf("step %d: reported %+v, want nothing", i, got[len(got)-1])
		case st.want != nil && len(got) != before+1:
			t.Fatalf("step %d: %d reports, want one: %+v", i, len(got)-before, got[before:])
		case st.want != nil && got[before] != *st.want:
			t.Fatalf("step %d: reported %+v, want %+v", i, got[before], *st.want)
		}
	}
}

func TestSourceStatusBoundsError(t *testing.T) {
	rec := &statusRecorder{}
	s := newSourceStatus(rec, time.Now)
	s.setDiscovery(errors.New(strings.Repeat("é", maxStatusError)))
	got := rec.all()[0].Error
	if len(got) > maxStatusError+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "éé") {
		t.Errorf("error of %d bytes not truncated on a rune boundary: %q...", len(got), got[:10])
	}
}

func TestSpecChanged(t *testing.T) {
	obj := func(gen int64, rv string, deleting bool) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetGeneration(gen)
		u.SetResourceVersion(rv)
		if deleting {
			now := metav1.NewTime(t0)
			u.SetDeletionTimestamp(&now)
		}
		return u
	}
	for _, tc := range []struct {
		name     string
		old, new *unstructured.Unstructured
		want     bool
	}{
		{"spec change raises generation", obj(1, "10", false), obj(2, "11", false), true},
		{"status or metadata write moves only the resource version", obj(2, "11", false), obj(2, "12", false), false},
		{"resync replays the same object", obj(2, "12", false), obj(2, "12", false), false},
		{"kind without generation: any write", obj(0, "12", false), obj(0, "13", false), true},
		{"kind without generation, resync", obj(0, "13", false), obj(0, "13", false), false},
		{"start of a graceful deletion raises generation", obj(3, "13", false), obj(4, "14", true), false},
		{"spec change while terminating", obj(4, "14", true), obj(5, "15", true), true},
	} {
		if got := specChanged(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: specChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSpecWriteTime(t *testing.T) {
	created := &unstructured.Unstructured{Object: map[string]any{}}
	created.SetCreationTimestamp(metav1.NewTime(t0.Add(-time.Hour)))
	bare := &unstructured.Unstructured{Object: map[string]any{}}
	now := t0.Add(time.Hour)
	for _, tc := range []struct {
		name  string
		write specWrite
		obj   *unstructured.Unstructured
		want  time.Time
	}{
		{"managedFields time", specWrite{"kustomize-controller", t0}, created, t0},
		{"no time: creation", specWrite{"kustomize-controller", time.Time{}}, created, t0.Add(-time.Hour)},
		{"nothing: now", specWrite{}, bare, now},
	} {
		if got := specWriteTime(tc.write, tc.obj, now); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
