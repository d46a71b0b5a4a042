package dispatch

import (
	"fmt"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// BenchmarkUpdateSteadyState is the cost the engine pays per pass when nothing changed:
// 1000 firing findings, already delivered, handed to two notifiers.
func BenchmarkUpdateSteadyState(b *testing.B) {
	c := clocktesting.NewFakeClock(t0)
	d, err := New([]Sink{{Notifier: newFake("am-0", c)}, {Notifier: newFake("am-1", c)}}, Options{Clock: c})
	if err != nil {
		b.Fatal(err)
	}
	fs := make([]findings.Finding, 1000)
	for i := range fs {
		fs[i] = firing(fmt.Sprintf("f%04d", i))
	}
	d.Update(fs)
	for _, s := range d.sinks { // as if delivered: nothing queued
		for id, k := range s.firing {
			k.sentAt = t0
			delete(s.queue, id)
		}
	}
	for i := 0; b.Loop(); i++ {
		for j := range fs {
			fs[j].LastSeen = t0.Add(time.Duration(i) * time.Second)
		}
		d.Update(fs)
	}
}
