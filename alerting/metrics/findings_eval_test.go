package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEvaluationByStage(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := NewEvaluation(reg)
	if err != nil {
		t.Fatal(err)
	}
	e.Observe("propagation", 3*time.Millisecond)
	e.Observe("findings", 40*time.Millisecond)
	e.Observe("findings", 2*time.Second)
	want := `
# HELP meshdrift_evaluation_seconds Duration of one evaluation pass, by stage (propagation, findings).
# TYPE meshdrift_evaluation_seconds histogram
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.001"} 0
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.0025"} 0
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.005"} 0
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.01"} 0
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.025"} 0
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.05"} 1
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.1"} 1
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.25"} 1
meshdrift_evaluation_seconds_bucket{stage="findings",le="0.5"} 1
meshdrift_evaluation_seconds_bucket{stage="findings",le="1"} 1
meshdrift_evaluation_seconds_bucket{stage="findings",le="2.5"} 2
meshdrift_evaluation_seconds_bucket{stage="findings",le="+Inf"} 2
meshdrift_evaluation_seconds_sum{stage="findings"} 2.04
meshdrift_evaluation_seconds_count{stage="findings"} 2
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.001"} 0
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.0025"} 0
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.005"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.01"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.025"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.05"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.1"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.25"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="0.5"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="1"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="2.5"} 1
meshdrift_evaluation_seconds_bucket{stage="propagation",le="+Inf"} 1
meshdrift_evaluation_seconds_sum{stage="propagation"} 0.003
meshdrift_evaluation_seconds_count{stage="propagation"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "meshdrift_evaluation_seconds"); err != nil {
		t.Error(err)
	}
}
