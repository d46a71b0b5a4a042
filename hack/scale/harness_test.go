package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// The harness end to end at a small scale, on the real bed: its table holds every figure
// issue 10 names, next to its target, and the detections are measured. Timings are not
// asserted here: make bench judges them against the targets at full scale.
func TestHarnessPrintsEveryFigure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole bed")
	}
	if _, err := testbed.LoadAssets(); err != nil {
		if testbed.Required() {
			t.Fatal(err)
		}
		t.Skipf("test bed not available: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "meshdrift")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshdrift/meshdrift/cmd/meshdrift").CombinedOutput(); err != nil {
		t.Fatalf("building meshdrift: %v\n%s", err, out)
	}
	o := options{meshdrift: bin, apps: 20, objects: 40, proxies: 10, synczProxies: 100, injections: 2,
		grace: 2 * time.Second, steady: 10 * time.Second, workers: 4, istioctlRuns: 1, maxRPS: 200,
		readyTimeout: 2 * time.Minute, logDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rep := &report{}
	if err := runScale(ctx, o, rep); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.print(&b)
	for _, want := range []struct{ figure, target string }{
		{"setup: test proxies connected to the real istiod", ">= 1000"},
		{"meshdrift serve: start to ready", "-"},
		{"RSS after initial sync", "<= 256 MiB"},
		{"Go heap in use after initial sync", "-"},
		{"API requests/min, steady (meshdrift's kinds", "watches only (+ Event writes)"},
		{"single-object GETs/min, steady", "0"},
		{"syncz reads per istiod per minute, steady", "<= 6 (one per 10 s poll)"},
		{"RSS, steady state", "<= 256 MiB"},
		{"Go heap in use, steady state", "-"},
		{"istiod CPU per meshdrift read", "-"},
		{"istioctl proxy-status -v 1", "-"},
		{"meshdrift cycle", "-"},
		{"CPU: istioctl run / meshdrift cycle", ">= 10x"},
		{"CPU per 1,000 proxies read", ">= 10x"},
		{"istiod CPU per read: istioctl / meshdrift ratio", ">= 10x"},
		{"NACK -> alert in Alertmanager", "p99 <= 2 s"},
		{"never-pushed change -> alert", "p99 <= 2 s (grace + 2 s)"},
		{"RSS after the injections", "<= 256 MiB"},
	} {
		r, ok := findRow(rep, want.figure)
		if !ok {
			t.Errorf("no row %q in the table:\n%s", want.figure, b.String())
			continue
		}
		if r.target != want.target || r.measured == "" {
			t.Errorf("row %q: measured %q, target %q; want a measurement against %q", r.figure, r.measured, r.target, want.target)
		}
	}
	// A detection that never alerted reads "without alert" or "not measured".
	for _, f := range []string{"NACK -> alert in Alertmanager", "never-pushed change -> alert"} {
		if r, _ := findRow(rep, f); !strings.Contains(r.measured, "(n=2)") || strings.Contains(r.measured, "without alert") {
			t.Errorf("%s: %q, want both injections alerted", f, r.measured)
		}
	}
}

func findRow(rep *report, prefix string) (row, bool) {
	for _, r := range rep.rows {
		if strings.HasPrefix(r.figure, prefix) {
			return r, true
		}
	}
	return row{}, false
}
