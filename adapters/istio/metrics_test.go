package istio

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The signals of the real istiod's /metrics at the end of the capture: ratings-v1-xyz
// NACKed CDS, LDS and RDS once each; three proxies were connected.
func TestParseIstiodMetricsGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/istiod-1.31/metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseIstiodMetrics(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	want := IstiodSignals{
		Version:          "1.31-dev+eed52ebb66ad-eed52ebb66ad-Modified",
		ConnectedProxies: map[string]float64{"": 0, "1.31.0": 3, "65536.65536.65536": 0},
		XDSRejects:       map[string]float64{"cds": 1, "lds": 1, "rds": 1},
		ProxyRejects: []ProxyReject{
			{Type: "cds", Proxy: "ratings-v1-xyz.default", Code: "Internal", Count: 1},
			{Type: "lds", Proxy: "ratings-v1-xyz.default", Code: "Internal", Count: 1},
			{Type: "rds", Proxy: "ratings-v1-xyz.default", Code: "Internal", Count: 1},
		},
		Conflicts: map[string]float64{
			"pilot_conflict_inbound_listener":                       0,
			"pilot_conflict_outbound_listener_tcp_over_current_tcp": 0,
			"pilot_vservice_dup_domain":                             0,
		},
		Pushes: map[string]float64{
			"cds": 12, "ecds": 1, "eds": 4, "istio.io/debug/syncz": 8, "lds": 12, "rds": 12,
		},
		PushErrors:    map[string]float64{},
		ExpiredNonces: map[string]float64{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("signals:\n got %+v\nwant %+v", got, want)
	}
}

// Families istiod only writes in some situations (rejected gateways, push errors, expired
// nonces) are read from the shape istiod gives them.
func TestParseIstiodMetricsOccasionalFamilies(t *testing.T) {
	const text = `# TYPE pilot_total_rejected_configs counter
pilot_total_rejected_configs{name="istio-system/bad-gw",type="gateway"} 2
pilot_total_rejected_configs{name="default/a-gw",type="gateway"} 1
# TYPE pilot_xds_pushes counter
pilot_xds_pushes{type="cds"} 5
pilot_xds_pushes{type="cds_senderr"} 2
pilot_xds_pushes{type="lds_builderr"} 1
# TYPE pilot_xds_expired_nonce counter
pilot_xds_expired_nonce{type="eds"} 3
# TYPE pilot_total_xds_internal_errors counter
pilot_total_xds_internal_errors 4
# TYPE pilot_xds_write_timeout counter
pilot_xds_write_timeout 6
# TYPE pilot_duplicate_envoy_clusters gauge
pilot_duplicate_envoy_clusters 7
# TYPE pilot_xds_eds_reject gauge
pilot_xds_eds_reject{err="Internal",node="a.ns"} 2
`
	got, err := ParseIstiodMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if want := []RejectedConfig{{"gateway", "default/a-gw", 1}, {"gateway", "istio-system/bad-gw", 2}}; !reflect.DeepEqual(got.RejectedConfigs, want) {
		t.Errorf("rejected configs %+v, want %+v", got.RejectedConfigs, want)
	}
	if want := map[string]float64{"cds_senderr": 2, "lds_builderr": 1}; !reflect.DeepEqual(got.PushErrors, want) {
		t.Errorf("push errors %v, want %v", got.PushErrors, want)
	}
	if got.Pushes["cds"] != 5 || got.ExpiredNonces["eds"] != 3 || got.InternalErrors != 4 || got.WriteTimeouts != 6 || got.DuplicateEnvoyClusters != 7 {
		t.Errorf("signals %+v", got)
	}
	if want := []ProxyReject{{"eds", "a.ns", "Internal", 2}}; !reflect.DeepEqual(got.ProxyRejects, want) {
		t.Errorf("proxy rejects %+v, want %+v", got.ProxyRejects, want)
	}
}

func TestParseIstiodMetricsErrors(t *testing.T) {
	tests := []struct {
		name, text, wantErr string
	}{
		{"not the text format", "{\"pilot_xds\": 1}\n", "parse metrics: "},
		{"reject without node", "# TYPE pilot_xds_cds_reject gauge\npilot_xds_cds_reject{err=\"Internal\"} 1\n", `metrics: pilot_xds_cds_reject: sample without label "node"`},
		{"rejects without type", "pilot_total_xds_rejects 1\n", `metrics: pilot_total_xds_rejects: sample without label "type"`},
		{"a histogram where a counter belongs", "# TYPE pilot_xds_pushes histogram\npilot_xds_pushes_bucket{type=\"cds\",le=\"+Inf\"} 1\npilot_xds_pushes_sum{type=\"cds\"} 1\npilot_xds_pushes_count{type=\"cds\"} 1\n", "metrics: pilot_xds_pushes: type HISTOGRAM, want counter or gauge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseIstiodMetrics(strings.NewReader(tt.text))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want prefix %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseIstiodMetricsBounded(t *testing.T) {
	text := "# TYPE pilot_xds gauge\n" + strings.Repeat("pilot_xds{version=\"1.31.0\"} 1\n", 10)
	_, err := parseIstiodMetrics(strings.NewReader(text), int64(len(text)-1))
	if !errors.Is(err, ErrMetricsTooLarge) {
		t.Fatalf("error %v, want ErrMetricsTooLarge", err)
	}
	if _, err := parseIstiodMetrics(strings.NewReader(text), int64(len(text))); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}

func FuzzParseIstiodMetrics(f *testing.F) {
	golden, err := os.ReadFile("testdata/istiod-1.31/metrics.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add([]byte("pilot_total_xds_rejects{type=\"cds\"} 1\n"))
	f.Add([]byte("# TYPE pilot_xds_pushes counter\npilot_xds_pushes{type=\"cds_senderr\"} NaN\n"))
	f.Add([]byte("pilot_total_rejected_configs{name=\"\",type=\"\"} +Inf\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseIstiodMetrics(bytes.NewReader(b))
		if err != nil {
			return
		}
		for typ := range s.PushErrors {
			if _, ok := s.Pushes[typ]; !ok {
				t.Fatalf("push error type %q not among pushes", typ)
			}
		}
		for _, pr := range s.ProxyRejects {
			if pr.Type == "" {
				t.Fatalf("proxy reject without type: %+v", pr)
			}
		}
	})
}
