package istio

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/meshdrift/meshdrift/reconcile"
)

// istioctlRow is one proxy line of `istioctl proxy-status -v 1`.
type istioctlRow struct {
	Cluster, Istiod, Version string
	// States maps a type URL to the state istioctl printed, age dropped;
	// "IGNORED" (the proxy does not watch the type) is left out.
	States map[string]reconcile.SyncState
}

// istioctlTypeURLs maps istioctl's column names to the type URLs istiod reports.
func istioctlTypeURLs() map[string]string {
	return map[string]string{
		"CDS":  "type.googleapis.com/envoy.config.cluster.v3.Cluster",
		"LDS":  "type.googleapis.com/envoy.config.listener.v3.Listener",
		"RDS":  "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
		"EDS":  "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
		"ECDS": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
		"PCDS": "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig",
	}
}

// istioctlCell is a state cell: the state, then the time since istiod last sent it.
var istioctlCell = regexp.MustCompile(`^(SYNCED|STALE|NOT SENT|ERROR|IGNORED)(?: \([0-9a-z.]+\))?$`)

// parseIstioctlTable parses istioctl's table by the header's column offsets: cells hold
// spaces ("NOT SENT", "SYNCED (1s)"), so splitting on blanks would misread them.
func parseIstioctlTable(t *testing.T, text string) map[string]istioctlRow {
	t.Helper()
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	header := strings.Fields(lines[0])
	want := []string{"NAME", "CLUSTER", "CDS", "ECDS", "EDS", "LDS", "RDS", "PCDS", "ISTIOD", "VERSION"}
	if !slices.Equal(header, want) {
		t.Fatalf("istioctl header %q, want %q", header, want)
	}
	starts := make([]int, len(header))
	from := 0
	for i, name := range header {
		at := strings.Index(lines[0][from:], name)
		starts[i] = from + at
		from = starts[i] + len(name)
	}
	typeURLs := istioctlTypeURLs()
	rows := map[string]istioctlRow{}
	for _, line := range lines[1:] {
		cells := make(map[string]string, len(header))
		for i, name := range header {
			end := len(line)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(line))
			}
			if starts[i] > end {
				t.Fatalf("istioctl line %q is shorter than its header", line)
			}
			cells[name] = strings.TrimSpace(line[starts[i]:end])
		}
		row := istioctlRow{
			Cluster: cells["CLUSTER"],
			Istiod:  cells["ISTIOD"],
			Version: cells["VERSION"],
			States:  map[string]reconcile.SyncState{},
		}
		for column, typeURL := range typeURLs {
			m := istioctlCell.FindStringSubmatch(cells[column])
			if m == nil {
				t.Fatalf("istioctl line %q: %s cell %q is not a state", line, column, cells[column])
			}
			if m[1] != "IGNORED" {
				row.States[typeURL] = reconcile.SyncState(m[1])
			}
		}
		rows[cells["NAME"]] = row
	}
	return rows
}

// compareWithIstioctl reports every difference between our statuses and istioctl's table.
// Every type we report must be one of istioctl's columns: that is what proves the column
// to type URL mapping (PCDS in particular) against istiod's own output.
func compareWithIstioctl(t *testing.T, got []reconcile.ProxyStatus, want map[string]istioctlRow) {
	t.Helper()
	columns := map[string]bool{}
	for _, typeURL := range istioctlTypeURLs() {
		columns[typeURL] = true
	}
	seen := map[string]bool{}
	for _, p := range got {
		seen[p.ID] = true
		row, ok := want[p.ID]
		if !ok {
			t.Errorf("proxy %s: istioctl does not list it", p.ID)
			continue
		}
		if p.ClusterID != row.Cluster || p.Istiod != row.Istiod || p.IstioVersion != row.Version {
			t.Errorf("proxy %s: cluster, istiod, version = %q, %q, %q; istioctl %q, %q, %q",
				p.ID, p.ClusterID, p.Istiod, p.IstioVersion, row.Cluster, row.Istiod, row.Version)
		}
		states := map[string]reconcile.SyncState{}
		for _, x := range p.Types {
			states[x.TypeURL] = x.State
			wantState, ok := row.States[x.TypeURL]
			switch {
			case !columns[x.TypeURL]:
				t.Errorf("proxy %s: type %s has no istioctl column", p.ID, x.TypeURL)
			case !ok:
				t.Errorf("proxy %s: type %s is %s, istioctl says IGNORED", p.ID, x.TypeURL, x.State)
			case x.State != wantState:
				t.Errorf("proxy %s: type %s is %s, istioctl says %s", p.ID, x.TypeURL, x.State, wantState)
			}
		}
		for typeURL, wantState := range row.States {
			if _, ok := states[typeURL]; !ok {
				t.Errorf("proxy %s: type %s missing, istioctl says %s", p.ID, typeURL, wantState)
			}
		}
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("proxy %s: listed by istioctl, missing from ours", id)
		}
	}
}

// TestParseIstioctlTable pins the table parser itself, so that a comparison failure
// points at our parsers and not at the test helper.
func TestParseIstioctlTable(t *testing.T) {
	rows := parseIstioctlTable(t, string(readGolden(t, "istioctl-ps-2-after-vs.txt")))
	if len(rows) != 4 {
		t.Fatalf("got %d rows, want 4", len(rows))
	}
	details := rows["details-v1-notsent.default"]
	urls := istioctlTypeURLs()
	if got := details.States[urls["PCDS"]]; got != reconcile.StateNotSent {
		t.Errorf("details PCDS = %q, want %q", got, reconcile.StateNotSent)
	}
	if got := rows["ratings-v1-xyz.default"].States[urls["CDS"]]; got != reconcile.StateError {
		t.Errorf("ratings CDS = %q, want %q", got, reconcile.StateError)
	}
	if _, ok := rows["ratings-v1-xyz.default"].States[urls["ECDS"]]; ok {
		t.Error("ratings ECDS: IGNORED must be absent")
	}
	if details.Istiod != "istiod-local" || details.Version != "1.31.0" || details.Cluster != "Kubernetes" {
		t.Errorf("details row = %+v", details)
	}
}
