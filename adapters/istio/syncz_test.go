package istio

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// goldenIstiod is the istiod pod the captures were taken from; for the HTTP form the
// caller supplies it, the xDS form must find it in the response.
const goldenIstiod = "istiod-local"

// synczSteps are the capture steps described in testdata/istiod-1.31/README.md.
func synczSteps() []string {
	return []string{"1-initial", "2-after-vs", "3-after-vs-edit", "4-after-disconnect"}
}

func readGolden(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "istiod-1.31", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func parseGoldenHTTP(tb testing.TB, step string) []reconcile.ProxyStatus {
	tb.Helper()
	got, err := ParseSynczHTTP(bytes.NewReader(readGolden(tb, "syncz-http-"+step+".json")), goldenIstiod)
	if err != nil {
		tb.Fatalf("step %s: %v", step, err)
	}
	return got
}

func parseGoldenXDS(tb testing.TB, name string) []reconcile.ProxyStatus {
	tb.Helper()
	resp, err := UnmarshalSynczXDSJSON(readGolden(tb, name))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	// A wrong caller-side name proves the replica's own identifier wins.
	got, err := ParseSynczXDS(resp, "istiod.istio-system.svc")
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return got
}

func TestSynczState(t *testing.T) {
	const (
		n1 = "2026-11-25T15:33:04Z/1a0669e41-2317-4c30-91fe-3a74cf1643e6"
		n2 = "2026-11-25T15:33:06Z/237ce6aa2-4d3b-4041-b8ba-a4a4fd874681"
	)
	tests := []struct {
		name                   string
		sent, acked, lastError string
		want                   reconcile.SyncState
	}{
		{"nothing sent", "", "", "", reconcile.StateNotSent},
		{"acked what was sent", n1, n1, "", reconcile.StateSynced},
		{"sent, no answer yet", n1, "", "", reconcile.StateStale},
		{"newer push not acked", n2, n1, "", reconcile.StateStale},
		{"nack keeps the old ack", n2, n1, "rejected", reconcile.StateError},
		{"error wins over equal nonces", n1, n1, "rejected", reconcile.StateError},
		{"error with nothing sent", "", "", "rejected", reconcile.StateError},
		{"ack without send is not sent", "", n1, "", reconcile.StateNotSent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := synczState(tt.sent, tt.acked, tt.lastError); got != tt.want {
				t.Errorf("synczState(%q, %q, %q) = %q, want %q", tt.sent, tt.acked, tt.lastError, got, tt.want)
			}
		})
	}
}

// TestSynczMatchesIstioctl checks both forms against what the real istioctl printed at
// every step: same proxies, same types (IGNORED = absent), same states.
func TestSynczMatchesIstioctl(t *testing.T) {
	for _, step := range synczSteps() {
		want := parseIstioctlTable(t, string(readGolden(t, "istioctl-ps-"+step+".txt")))
		t.Run("http/"+step, func(t *testing.T) {
			got := parseGoldenHTTP(t, step)
			checkSynczInvariants(t, got, true)
			compareWithIstioctl(t, got, want)
		})
		t.Run("xds/"+step, func(t *testing.T) {
			got := parseGoldenXDS(t, "syncz-xds-"+step+".json")
			checkSynczInvariants(t, got, false)
			compareWithIstioctl(t, got, want)
		})
	}
}

// TestSynczFormsAgree checks that the two forms give the same facts where both carry them.
func TestSynczFormsAgree(t *testing.T) {
	for _, step := range synczSteps() {
		t.Run(step, func(t *testing.T) {
			fromHTTP := parseGoldenHTTP(t, step)
			fromXDS := parseGoldenXDS(t, "syncz-xds-"+step+".json")
			if got, want := xdsView(fromHTTP), fromXDS; !reflect.DeepEqual(got, want) {
				t.Errorf("http form, reduced to what xds carries:\n%+v\nxds form:\n%+v", got, want)
			}
		})
	}
}

// xdsView drops what only the HTTP form carries and adds what only the xDS form carries.
func xdsView(proxies []reconcile.ProxyStatus) []reconcile.ProxyStatus {
	out := make([]reconcile.ProxyStatus, 0, len(proxies))
	for _, p := range proxies {
		p.ProxyType = ""
		p.ControlPlaneVersion = "1.31-dev+eed52ebb66ad"
		types := make([]reconcile.XDSStatus, 0, len(p.Types))
		for _, x := range p.Types {
			x.SentVersion, x.AckedVersion = "", ""
			types = append(types, x)
		}
		p.Types = types
		out = append(out, p)
	}
	return out
}

func TestSynczGoldenFacts(t *testing.T) {
	const (
		ratings     = "ratings-v1-xyz.default"
		productpage = "productpage-v1-silent.default"
		details     = "details-v1-notsent.default"
		cds         = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
		lds         = "type.googleapis.com/envoy.config.listener.v3.Listener"
		rds         = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
		eds         = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
		pcds        = "type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig"
		nack        = "fakeenvoy: rejected cds version 2026-11-25T15:33:06Z/2: Error adding/updating listener(s) simulated"
	)
	forms := []struct {
		name  string
		parse func(tb testing.TB, step string) []reconcile.ProxyStatus
	}{
		{"http", parseGoldenHTTP},
		{"xds", func(tb testing.TB, step string) []reconcile.ProxyStatus {
			return parseGoldenXDS(tb, "syncz-xds-"+step+".json")
		}},
	}
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			step2 := form.parse(t, "2-after-vs")
			cdsStatus := typeStatus(t, step2, ratings, cds)
			if cdsStatus.State != reconcile.StateError || cdsStatus.Error != nack {
				t.Errorf("step 2 ratings CDS = %s %q, want %s %q", cdsStatus.State, cdsStatus.Error, reconcile.StateError, nack)
			}
			if got := typeStatus(t, step2, ratings, eds).State; got != reconcile.StateSynced {
				t.Errorf("step 2 ratings EDS = %s, want SYNCED (a VirtualService does not push EDS)", got)
			}
			if got := typeStatus(t, step2, productpage, lds).State; got != reconcile.StateStale {
				t.Errorf("step 2 productpage LDS = %s, want STALE", got)
			}
			pc := typeStatus(t, step2, details, pcds)
			if pc.State != reconcile.StateNotSent || !pc.SentAt.IsZero() || pc.SentVersion != "" || pc.AckedVersion != "" {
				t.Errorf("step 2 details PCDS = %+v, want NOT SENT, never sent", pc)
			}

			step3 := form.parse(t, "3-after-vs-edit")
			for _, typeURL := range []string{cds, lds, rds} {
				if got := typeStatus(t, step3, productpage, typeURL).State; got != reconcile.StateStale {
					t.Errorf("step 3 productpage %s = %s, want STALE", typeURL, got)
				}
				if got := typeStatus(t, step3, ratings, typeURL); got.State != reconcile.StateSynced || got.Error != "" {
					t.Errorf("step 3 ratings %s = %s %q, want SYNCED without error", typeURL, got.State, got.Error)
				}
			}

			step4 := form.parse(t, "4-after-disconnect")
			ids := make([]string, 0, len(step4))
			for _, p := range step4 {
				ids = append(ids, p.ID)
			}
			if want := []string{details, ratings, "reviews-v1-abc.default"}; !slices.Equal(ids, want) {
				t.Errorf("step 4 proxies = %q, want %q (productpage gone)", ids, want)
			}
		})
	}
}

// TestSynczHTTPVersions checks what only the HTTP form has: the push versions in the
// nonces, which show that a NACK keeps the previous ACK and a silent proxy falls behind.
func TestSynczHTTPVersions(t *testing.T) {
	step2 := parseGoldenHTTP(t, "2-after-vs")
	want := reconcile.XDSStatus{
		TypeURL:      "type.googleapis.com/envoy.config.cluster.v3.Cluster",
		State:        reconcile.StateError,
		SentVersion:  "2026-11-25T15:33:06Z/2",
		AckedVersion: "2026-11-25T15:33:04Z/1",
		SentAt:       time.Date(2026, 11, 25, 15, 33, 6, 584785464, time.UTC),
		Error:        "fakeenvoy: rejected cds version 2026-11-25T15:33:06Z/2: Error adding/updating listener(s) simulated",
	}
	if got := typeStatus(t, step2, "ratings-v1-xyz.default", want.TypeURL); !reflect.DeepEqual(got, want) {
		t.Errorf("step 2 ratings CDS =\n%+v\nwant\n%+v", got, want)
	}
	p := proxyStatus(t, step2, "productpage-v1-silent.default")
	if p.ProxyType != "sidecar" || p.Istiod != goldenIstiod || p.Revision != "" || p.ControlPlaneVersion != "" {
		t.Errorf("productpage = %+v", p)
	}
}

// TestSynczXDSIstioctlJSON parses the response istioctl itself received at the end of the
// capture; it lists proxies in another order, which must not matter.
func TestSynczXDSIstioctlJSON(t *testing.T) {
	got := parseGoldenXDS(t, "istioctl-ps-json.json")
	want := parseGoldenXDS(t, "syncz-xds-4-after-disconnect.json")
	for i := range want {
		for j := range want[i].Types {
			// Only send times moved on between the two captures.
			want[i].Types[j].SentAt = time.Time{}
		}
	}
	for i := range got {
		for j := range got[i].Types {
			got[i].Types[j].SentAt = time.Time{}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("istioctl's response:\n%+v\nour step 4 capture:\n%+v", got, want)
	}
	if got[0].ControlPlaneVersion != "1.31-dev+eed52ebb66ad" || got[0].Revision != "" {
		t.Errorf("control plane = %q / %q", got[0].ControlPlaneVersion, got[0].Revision)
	}
}

func TestSynczHTTPCompact(t *testing.T) {
	got, err := ParseSynczHTTP(bytes.NewReader(readGolden(t, "syncz-http-ns-default.json")), goldenIstiod)
	if err != nil {
		t.Fatal(err)
	}
	if want := parseGoldenHTTP(t, "4-after-disconnect"); !reflect.DeepEqual(xdsView(got), xdsView(want)) {
		t.Errorf("compact body differs from step 4 beyond nonces:\n%+v\n%+v", got, want)
	}
}

func proxyStatus(t *testing.T, proxies []reconcile.ProxyStatus, id string) reconcile.ProxyStatus {
	t.Helper()
	for _, p := range proxies {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("proxy %s not found", id)
	return reconcile.ProxyStatus{}
}

func typeStatus(t *testing.T, proxies []reconcile.ProxyStatus, id, typeURL string) reconcile.XDSStatus {
	t.Helper()
	for _, x := range proxyStatus(t, proxies, id).Types {
		if x.TypeURL == typeURL {
			return x
		}
	}
	t.Fatalf("proxy %s has no type %s", id, typeURL)
	return reconcile.XDSStatus{}
}

// checkSynczInvariants holds for any successful parse, golden or fuzzed: it is what
// "an error, not garbage" means for callers.
func checkSynczInvariants(t *testing.T, proxies []reconcile.ProxyStatus, fromHTTP bool) {
	t.Helper()
	if !slices.IsSortedFunc(proxies, func(a, b reconcile.ProxyStatus) int { return strings.Compare(a.ID, b.ID) }) {
		t.Error("proxies not sorted by id")
	}
	for _, p := range proxies {
		if p.ID == "" {
			t.Error("proxy with an empty id")
		}
		if !slices.IsSortedFunc(p.Types, func(a, b reconcile.XDSStatus) int { return strings.Compare(a.TypeURL, b.TypeURL) }) {
			t.Errorf("proxy %q: types not sorted", p.ID)
		}
		for _, x := range p.Types {
			if x.TypeURL == "" {
				t.Errorf("proxy %q: type with an empty url", p.ID)
			}
			switch x.State {
			case reconcile.StateSynced, reconcile.StateStale, reconcile.StateNotSent, reconcile.StateError:
			default:
				t.Errorf("proxy %q type %q: state %q", p.ID, x.TypeURL, x.State)
			}
			if x.Error != "" && x.State != reconcile.StateError {
				t.Errorf("proxy %q type %q: error %q in state %s", p.ID, x.TypeURL, x.Error, x.State)
			}
			if !x.SentAt.IsZero() && x.SentAt.Location() != time.UTC {
				t.Errorf("proxy %q type %q: sent at %v not in UTC", p.ID, x.TypeURL, x.SentAt)
			}
			for _, v := range []string{x.SentVersion, x.AckedVersion} {
				if v == "" {
					continue
				}
				if !fromHTTP {
					t.Errorf("proxy %q type %q: xds form has no versions, got %q", p.ID, x.TypeURL, v)
				} else if err := checkPushVersion(v); err != nil {
					t.Errorf("proxy %q type %q: %v", p.ID, x.TypeURL, err)
				}
			}
			if !fromHTTP {
				continue
			}
			if (x.State == reconcile.StateError) != (x.Error != "") {
				t.Errorf("proxy %q type %q: state %s with error %q", p.ID, x.TypeURL, x.State, x.Error)
			}
			if x.State == reconcile.StateSynced && (x.SentVersion == "" || x.SentVersion != x.AckedVersion) {
				t.Errorf("proxy %q type %q: SYNCED with sent %q acked %q", p.ID, x.TypeURL, x.SentVersion, x.AckedVersion)
			}
			if x.State == reconcile.StateNotSent && x.SentVersion != "" {
				t.Errorf("proxy %q type %q: NOT SENT with sent %q", p.ID, x.TypeURL, x.SentVersion)
			}
			if x.State == reconcile.StateStale && x.SentVersion == "" {
				t.Errorf("proxy %q type %q: STALE with nothing sent", p.ID, x.TypeURL)
			}
		}
	}
}
