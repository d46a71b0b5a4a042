package reconcile

import (
	"reflect"
	"testing"
	"time"
)

// setField gives field i of the struct v points to a non-zero value of its type.
func setField(t *testing.T, v reflect.Value, i int) {
	t.Helper()
	f := v.Field(i)
	switch f.Kind() {
	case reflect.String:
		f.SetString("x")
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Int, reflect.Int64:
		f.SetInt(7)
	case reflect.Slice:
		f.Set(reflect.MakeSlice(f.Type(), 1, 1))
	case reflect.Pointer:
		f.Set(reflect.New(f.Type().Elem()))
	case reflect.Map:
		m := reflect.MakeMap(f.Type())
		m.SetMapIndex(reflect.ValueOf("k"), reflect.Zero(f.Type().Elem()))
		f.Set(m)
	case reflect.Struct:
		if f.Type() == reflect.TypeFor[time.Time]() {
			f.Set(reflect.ValueOf(t0))
			return
		}
		setField(t, f, 0)
	default:
		t.Fatalf("field %s: kind %s not handled", v.Type().Field(i).Name, f.Kind())
	}
}

// eachFieldCounts fails when a field of T, other than those ignored, can change without
// same noticing: a field added later must be compared, or named here as not mattering.
func eachFieldCounts[T any](t *testing.T, same func(a, b T) bool, ignored ...string) {
	t.Helper()
	var zero T
	typ := reflect.TypeFor[T]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		var b T
		setField(t, reflect.ValueOf(&b).Elem(), i)
		want := !contains(ignored, name)
		if got := !same(zero, b); got != want {
			t.Errorf("%s.%s: a change is noticed = %v, want %v", typ.Name(), name, got, want)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestSameComparesEveryField(t *testing.T) {
	eachFieldCounts(t, sameApp, "ObservedAt")
	eachFieldCounts(t, sameView, "ObservedAt", "ReadStartedAt", "ServerDate", "ClockOffset")
	eachFieldCounts(t, samePropagation, "Change")
	proxy := func(a, b ProxyStatus) bool {
		return sameView(IstiodView{Proxies: []ProxyStatus{a}}, IstiodView{Proxies: []ProxyStatus{b}})
	}
	eachFieldCounts(t, proxy)
	xds := func(a, b XDSStatus) bool {
		return proxy(ProxyStatus{Types: []XDSStatus{a}}, ProxyStatus{Types: []XDSStatus{b}})
	}
	eachFieldCounts(t, xds)
	signals := func(a, b IstiodSignals) bool { return sameSignals(&a, &b) }
	eachFieldCounts(t, signals, "ObservedAt")
	// The clock's bounds count once they are beyond tolerance: then they are evidence.
	off := IstiodView{ClockProblem: "ahead", ClockOffset: ClockOffset{Min: time.Minute, HasMin: true}}
	if sameView(IstiodView{ClockProblem: "ahead"}, off) {
		t.Error("a clock problem's bounds moved unnoticed")
	}
}

// A read that repeats an app's state wakes nobody and keeps the snapshot; one that says
// something new does both.
func TestStoreObserveAppRepeated(t *testing.T) {
	s := NewStore(PropagationConfig{}, nil)
	k := AppKey{Source: SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: "shop"}
	app := App{Key: k, State: AppSynced, AppliedRevision: "abc", ObservedAt: t0, Objects: []OwnedObject{{Ref: ObjectRef{Kind: "VirtualService", Name: "v"}}}}
	s.ObserveApp(app)
	<-s.Changed()
	v := *s.Snapshot().Versions
	again := app
	again.ObservedAt = t0.Add(3 * time.Minute)
	again.Objects = []OwnedObject{{Ref: ObjectRef{Kind: "VirtualService", Name: "v"}}}
	s.ObserveApp(again)
	select {
	case <-s.Changed():
		t.Fatal("a repeated read signalled a change")
	default:
	}
	if snap := s.Snapshot(); *snap.Versions != v || !snap.Apps[0].ObservedAt.Equal(t0) {
		t.Fatalf("a repeated read moved the snapshot: %+v, observed %s", *snap.Versions, snap.Apps[0].ObservedAt)
	}
	again.State = AppOutOfSync
	s.ObserveApp(again)
	<-s.Changed()
	if snap := s.Snapshot(); snap.Versions.Apps == v.Apps || snap.Apps[0].State != AppOutOfSync {
		t.Fatalf("a new state did not show: %+v", snap.Apps[0])
	}
}
