package checks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

func loadFixture(t *testing.T, name string) *Snapshot {
	t.Helper()
	path := filepath.Join("testdata", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ParseManifests(path, data)
	if err != nil {
		t.Fatal(err)
	}
	s := NewSnapshot()
	for _, m := range ms {
		s.Add(m.Object, m.Origin)
	}
	return s
}

func resultLines(rs []Result) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s %s/%s %s %s", r.Object.Kind, r.Object.Namespace, r.Object.Name, r.Path, r.Code))
	}
	return out
}

// fixtureNow is when live fixtures' snapshots are taken.
var fixtureNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// TestFixtures runs every check on the fixture grid, as a live snapshot (the fixtures'
// Pods and status stand for the cluster's), and asserts exactly what fires where. Every
// fixture also holds objects on which nothing may fire.
func TestFixtures(t *testing.T) {
	cases := []struct {
		file string
		live bool
		want []string
	}{
		{"destinationhost.yaml", false, []string{
			"VirtualService default/bad spec.http[0].mirror.host MD0501",
			"VirtualService default/bad spec.http[0].route[0].destination.host MD0501",
			"VirtualService default/bad spec.http[0].route[1].destination.host MD0501",
			"VirtualService default/bad spec.tcp[0].route[0].destination.host MD0501",
		}},
		{"subset.yaml", false, []string{
			"VirtualService default/bad spec.http[0].route[0].destination.subset MD0502",
			"VirtualService default/bad spec.http[0].route[1].destination.subset MD0502",
		}},
		{"gateway.yaml", false, []string{
			"VirtualService default/bad spec.gateways[0] MD0503",
			"VirtualService default/bad spec.gateways[1] MD0503",
			"VirtualService default/bad spec.http[0].match[0].gateways[0] MD0503",
		}},
		{"hostconflict.yaml", false, []string{
			"VirtualService default/fqdn spec.hosts[0] MD0504",
			"VirtualService default/short spec.hosts[0] MD0504",
		}},
		{"workloads.yaml", true, []string{
			"DestinationRule default/reviews spec.subsets[1].labels MD0505",
			"Gateway default/bad spec.selector MD0506",
			"Sidecar default/bad spec.workloadSelector.labels MD0507",
			"AuthorizationPolicy default/bad spec.selector.matchLabels MD0507",
			"RequestAuthentication other/bad spec.selector.matchLabels MD0507",
		}},
		{"mtls.yaml", false, []string{
			"DestinationRule default/db spec.subsets[0].trafficPolicy.tls.mode MD0508",
			"DestinationRule default/db spec.trafficPolicy.portLevelSettings[0].tls.mode MD0508",
			"DestinationRule default/reviews-plain spec.trafficPolicy.tls.mode MD0508",
		}},
		{"mtlsselector.yaml", false, []string{
			"DestinationRule shop/legacy-bad spec.trafficPolicy.portLevelSettings[0].tls.mode MD0508",
			"DestinationRule shop/pay spec.trafficPolicy.tls.mode MD0508",
			"DestinationRule vault/open-mtls spec.trafficPolicy.tls.mode MD0508",
		}},
		// Live, the pods behind cart show that one of them requires mTLS.
		{"mtlsselector.yaml", true, []string{
			"DestinationRule shop/cart spec.trafficPolicy.tls.mode MD0508",
			"DestinationRule shop/legacy-bad spec.trafficPolicy.portLevelSettings[0].tls.mode MD0508",
			"DestinationRule shop/pay spec.trafficPolicy.tls.mode MD0508",
			"DestinationRule vault/open-mtls spec.trafficPolicy.tls.mode MD0508",
		}},
		{"gatewayhosts.yaml", false, []string{
			"VirtualService default/none spec.gateways[0] MD0510",
			"VirtualService default/partial spec.hosts[1] MD0510",
		}},
		{"routestale.yaml", true, []string{
			"GRPCRoute default/new status.parents[1].conditions[0].observedGeneration MD0603",
			"HTTPRoute default/stale status.parents[0].conditions[0].observedGeneration MD0603",
		}},
		{"status.yaml", true, []string{
			"GRPCRoute default/bad status.parents[0].conditions[1] MD0602",
			"HTTPRoute default/bad status.parents[0].conditions[0] MD0601",
			"HTTPRoute default/bad status.parents[0].conditions[1] MD0602",
			"VirtualService default/flagged status.validationMessages[0] MD0509",
		}},
	}
	seen := map[findings.Code]bool{}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			s := loadFixture(t, tc.file)
			s.Live = tc.live
			if tc.live {
				s.Now = fixtureNow
			}
			results, skipped := Run(context.Background(), s, All())
			if tc.live && len(skipped) > 0 {
				t.Errorf("skipped: %+v", skipped)
			}
			if got := resultLines(results); !slices.Equal(got, tc.want) {
				t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.want, "\n\t"))
			}
			for _, r := range results {
				seen[r.Code] = true
			}
		})
	}
	for _, c := range All() {
		if code := c.Metadata().Code; !seen[code] {
			t.Errorf("%s (%s) fires on no fixture", code, c.Metadata().Name)
		}
	}
}

func TestMessages(t *testing.T) {
	s := loadFixture(t, "destinationhost.yaml")
	results, _ := Run(context.Background(), s, All())
	var got []string
	for _, r := range results {
		got = append(got, r.Message)
	}
	want := []string{
		`destination host "private.example.com" matches no Service or ServiceEntry visible from namespace default`,
		`destination host "ratings" matches no Service or ServiceEntry visible from namespace default`,
		`destination host "ratings.other" matches no Service or ServiceEntry visible from namespace default; Istio does not expand "ratings.other": did you mean "ratings.other.svc.cluster.local"?`,
		`destination host "nowhere.example.org" matches no Service or ServiceEntry visible from namespace default`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestMTLSMessages(t *testing.T) {
	s := loadFixture(t, "mtlsselector.yaml")
	s.Live = true
	results, _ := Run(context.Background(), s, []Check{mtlsConflict{}})
	var got []string
	for _, r := range results {
		got = append(got, r.Message)
	}
	want := []string{
		"clients use TLS mode DISABLE for host cart, but PeerAuthentication shop/canary sets mTLS STRICT for 1 of 2 pods of Service shop/cart",
		"clients use TLS mode ISTIO_MUTUAL for host legacy.shop.svc.cluster.local, but PeerAuthentication shop/legacy sets mTLS DISABLE for port 8080 of 1 of 1 pods of Service shop/legacy",
		"clients use TLS mode DISABLE for host pay, but PeerAuthentication istio-system/pay sets mTLS STRICT for 1 of 1 pods of Service shop/pay",
		"clients use TLS mode ISTIO_MUTUAL for host open.vault.svc.cluster.local, but PeerAuthentication vault/open sets mTLS DISABLE for 1 of 1 pods of Service vault/open",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestRouteStatusGrace(t *testing.T) {
	s := loadFixture(t, "routestale.yaml")
	s.Live, s.Now, s.RouteStatusGrace = true, fixtureNow, 20*time.Minute
	results, _ := Run(context.Background(), s, []Check{routeStatusStale{}})
	if got := resultLines(results); !slices.Equal(got, []string{"GRPCRoute default/new status.parents[1].conditions[0].observedGeneration MD0603"}) {
		t.Errorf("with a 20m grace: %q", got)
	}
	want := "parent Gateway default/mesh-gw: ResolvedRefs condition observed generation 0, the route is at generation 1 since 2026-12-03T11:00:00Z (grace 20m0s); example.com/other has not processed the latest spec"
	if len(results) == 1 && results[0].Message != want {
		t.Errorf("message %q\nwant %q", results[0].Message, want)
	}
	// default/stale (spec written 11:50) and default/fresh (11:59:30) lag within the
	// grace: the earlier becomes stale after 12:10 with no write. Routes that do not lag
	// (default/current) or are not judged (default/unknown) change nothing with time.
	if got, want := s.Recheck(), time.Date(2026, 12, 3, 12, 10, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("recheck at %s, want %s", got, want)
	}

	// Live but without a time: skipped, not silent.
	s.Now = time.Time{}
	results, skipped := Run(context.Background(), s, []Check{routeStatusStale{}})
	if len(results) != 0 || len(skipped) != 1 || skipped[0].Reason != "needs the snapshot's time" {
		t.Errorf("without Now: results %v, skipped %+v", resultLines(results), skipped)
	}
}

func TestSkips(t *testing.T) {
	s := loadFixture(t, "workloads.yaml")
	results, skipped := Run(context.Background(), s, All())
	if len(results) != 0 {
		t.Errorf("offline results on live-only problems: %v", resultLines(results))
	}
	var live []string
	for _, sk := range skipped {
		live = append(live, string(sk.Code)+" "+sk.Reason)
	}
	want := []string{"MD0505 needs live pods or status", "MD0506 needs live pods or status", "MD0507 needs live pods or status",
		"MD0509 needs live pods or status", "MD0601 needs live pods or status", "MD0602 needs live pods or status",
		"MD0603 needs live pods or status"}
	if !slices.Equal(live, want) {
		t.Errorf("skipped %q, want %q", live, want)
	}

	s = loadFixture(t, "subset.yaml")
	s.Served = map[schema.GroupKind]bool{gkService: true, gkVirtualService: true, gkServiceEntry: true}
	_, skipped = Run(context.Background(), s, []Check{vsSubset{}, vsDestinationHost{}})
	if len(skipped) != 1 || skipped[0].Code != findings.CodeVSSubsetNotFound || skipped[0].Reason != "kinds not served: DestinationRule.networking.istio.io" {
		t.Errorf("skipped = %+v", skipped)
	}
}

func TestCatalogEntries(t *testing.T) {
	names := map[string]bool{}
	for _, c := range All() {
		md := c.Metadata()
		e, ok := findings.Lookup(md.Code)
		if !ok || e.Retired {
			t.Errorf("%s: no live catalog entry", md.Code)
		}
		if md.Code[2:4] != "05" && md.Code[2:4] != "06" {
			t.Errorf("%s: checks here use MD05xx and MD06xx", md.Code)
		}
		if md.Name == "" || md.Description == "" || md.Beyond == "" || len(md.Inputs) == 0 || names[md.Name] {
			t.Errorf("%s: incomplete or duplicate metadata %+v", md.Code, md)
		}
		names[md.Name] = true
	}
}

func TestHosts(t *testing.T) {
	for _, tc := range []struct {
		host, ns, want string
	}{
		{"reviews", "default", "reviews.default.svc.cluster.local"},
		{"reviews.other", "default", "reviews.other"},
		{"reviews.other.svc.cluster.local", "default", "reviews.other.svc.cluster.local"},
		{"*.example.com", "default", "*.example.com"},
		{"*", "default", "*"},
		{"10.0.0.1", "default", "10.0.0.1"},
		{"::1", "default", "::1"},
	} {
		if got := fqdn(tc.host, tc.ns, DefaultDomain); got != tc.want {
			t.Errorf("fqdn(%q, %q) = %q, want %q", tc.host, tc.ns, got, tc.want)
		}
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"a.example.com", "a.example.com", true},
		{"a.example.com", "*.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.a.example.com", "*.example.com", true},
		{"example.com", "*.example.com", false},
		{"a.example.org", "*.example.com", false},
		{"anything", "*", true},
	} {
		if got := hostsOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("hostsOverlap(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
