package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseExposition(t *testing.T) {
	page := `# HELP apiserver_request_total Counter
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",group="argoproj.io",resource="applications",scope="resource",subresource="",verb="GET",version="v1alpha1"} 7
apiserver_request_total{code="200",group="",resource="namespaces",scope="cluster",subresource="",verb="LIST",version="v1"} 2
apiserver_request_total{code="200",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 40
apiserver_request_total{code="200",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"} 3
process_resident_memory_bytes 1.34217728e+08
meshdrift_istiod_reads_total{outcome="ok",transport="xds-tls"} 12
weird{label="a \"quoted\" value"} 1
`
	ss, err := parseExposition(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if got := ss.sum("process_resident_memory_bytes", nil); got != 128<<20 {
		t.Errorf("rss %v", got)
	}
	if got := ss.sum("meshdrift_istiod_reads_total", map[string]string{"outcome": "ok"}); got != 12 {
		t.Errorf("reads %v", got)
	}
	if got := ss.sum("weird", map[string]string{"label": `a \"quoted\" value`}); got != 1 {
		t.Errorf("quoted label %v", got)
	}
	verbs := requestsByVerb(ss, false)
	if verbs["GET"] != 7 || verbs["LIST"] != 2 || verbs["PUT"] != 0 || verbs["WATCH"] != 0 {
		t.Errorf("by verb %v: leases and pods are not meshdrift's kinds", verbs)
	}
	if gets := requestsByVerb(ss, true); gets["GET"] != 7 || gets["LIST"] != 0 {
		t.Errorf("single gets %v", gets)
	}
	if all := allRequests(ss); all != 49 {
		t.Errorf("all requests %v, want 49 (watches excluded)", all)
	}
}

func TestParseBenchFile(t *testing.T) {
	out := `goos: linux
pkg: github.com/meshdrift/meshdrift/reconcile
BenchmarkEvaluateInFlight-2   	      10	  42123456 ns/op	 1234567 B/op	   2345 allocs/op
BenchmarkEvaluateSteady-2     	      10	    512345 ns/op	       0 B/op	       0 allocs/op
BenchmarkParseSyncz10000Proxies 	      10	  9000000 ns/op	  5.00 MB/s	 2097152 B/op	   10 allocs/op
BenchmarkParseSyncz10000Proxies/xds-2 	       3	  93704343 ns/op	  59.08 MB/s	31186888 B/op	  440027 allocs/op
PASS
`
	path := filepath.Join(t.TempDir(), "bench.txt")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := parseBenchFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if r := res["BenchmarkEvaluateInFlight"]; r.nsPerOp != 42123456 || r.allocsPerOp != 2345 || r.bytesPerOp != 1234567 {
		t.Errorf("in flight %+v", r)
	}
	if r, ok := res["BenchmarkEvaluateSteady"]; !ok || r.nsPerOp != 512345 {
		t.Errorf("steady %+v", r)
	}
	if r := res["BenchmarkParseSyncz10000Proxies"]; r.nsPerOp != 9e6 || r.allocsPerOp != 10 {
		t.Errorf("syncz %+v (a MB/s column between)", r)
	}
	if r := res["BenchmarkParseSyncz10000Proxies/xds"]; r.nsPerOp != 93704343 || r.allocsPerOp != 440027 {
		t.Errorf("sub-benchmark %+v", r)
	}
	rep := &report{}
	if err := benchRows(rep, path); err != nil {
		t.Fatal(err)
	}
	if len(rep.rows) != 8 || rep.rows[6].figure != "syncz decode, 10k proxies (BenchmarkParseSyncz10000Proxies/xds)" {
		t.Errorf("sub-benchmarks not listed: %+v", rep.rows)
	}
	if rep.rows[0].measured != "42.1 ms" || rep.rows[0].met != "yes" || rep.rows[2].measured != "512 µs" {
		t.Errorf("rows %+v", rep.rows)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 20; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(ds, 0.5); p != 10*time.Millisecond {
		t.Errorf("p50 %s", p)
	}
	if p := percentile(ds, 0.99); p != 20*time.Millisecond {
		t.Errorf("p99 %s", p)
	}
}
