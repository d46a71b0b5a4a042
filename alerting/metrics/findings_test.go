package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

type staticFindings []findings.Finding

func (s staticFindings) Findings() []findings.Finding { return s }

func TestFindingsMetrics(t *testing.T) {
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	fs := staticFindings{
		{ID: "a", Code: "MD0201", Severity: findings.SeverityCritical, State: findings.StateFiring, StartsAt: start},
		{ID: "b", Code: "MD0201", Severity: findings.SeverityCritical, State: findings.StateFiring, StartsAt: start},
		{ID: "c", Code: "MD0202", Severity: findings.SeverityWarning, State: findings.StatePending, StartsAt: start},
	}
	reg := prometheus.NewRegistry()
	m, err := NewFindings(reg, fs)
	if err != nil {
		t.Fatal(err)
	}
	// Firing 300 ms after the evidence: counted once; a repeat of firing and a pending
	// finding are not detections.
	m.Transitioned(findings.Transition{From: findings.StatePending, Finding: fs[0]}, start.Add(300*time.Millisecond))
	m.Transitioned(findings.Transition{From: findings.StateFiring, Finding: fs[0]}, start.Add(time.Minute))
	m.Transitioned(findings.Transition{From: "", Finding: fs[2]}, start.Add(time.Second))
	want := `
# HELP meshdrift_findings Findings by code, severity and lifecycle state (pending, firing, recently resolved).
# TYPE meshdrift_findings gauge
meshdrift_findings{code="MD0201",severity="critical",state="firing"} 2
meshdrift_findings{code="MD0202",severity="warning",state="pending"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshdrift_findings"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "meshdrift_finding_detection_seconds" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("detection series = %d, want 1 (MD0201 only)", len(mf.GetMetric()))
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 1 || h.GetSampleSum() < 0.29 || h.GetSampleSum() > 0.31 {
			t.Errorf("detection = %d samples, sum %g; want 1 sample of 0.3 s", h.GetSampleCount(), h.GetSampleSum())
		}
		return
	}
	t.Error("no meshdrift_finding_detection_seconds")
}
