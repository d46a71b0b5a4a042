package testbed

import (
	"context"
	"testing"
	"time"
)

// RunInBackground runs a component's Run until the test ends, then cancels it and checks
// that it returned nil within 10 s. The returned channel is closed once Run has returned.
func RunInBackground(t testing.TB, run func(context.Context) error) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return 10 s after its context ended")
		}
	})
	return done
}
