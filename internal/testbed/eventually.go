package testbed

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds or within has passed, then fails the test with
// what was awaited and the last state cond described. Integration tests wait on real
// programs this way instead of sleeping.
func Eventually(t testing.TB, within time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last state: %s", what, within, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
