package metrics

import (
	"os/exec"
	"testing"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// The shipped alert rules are checked and unit-tested with the real promtool.
func TestShippedAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testbed.Required() {
			t.Fatalf("promtool not found (make testbed installs Debian's prometheus): %v", err)
		}
		t.Skip("promtool not installed")
	}
	for _, args := range [][]string{
		{"check", "rules", "meshdrift.rules.yaml"},
		{"test", "rules", "meshdrift.rules_test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../manifests/rules"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
