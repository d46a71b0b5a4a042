package istio

import (
	"bytes"
	"fmt"
	"testing"
)

// istiod's /debug/syncz for 1,000 proxies is about 1.5 MB; one read per istiod per cycle
// must parse it in milliseconds.
func BenchmarkParseSynczHTTP1000Proxies(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("[")
	for i := range 1000 {
		if i > 0 {
			buf.WriteString(",")
		}
		nonce := "2026-11-25T15:33:06Z/22" + "60b9beb-7a1c-42cc-9707-6a0b50926d5f"
		fmt.Fprintf(&buf, `{"cluster_id":"Kubernetes","proxy":"p%d.default","proxy_type":"sidecar","istio_version":"1.31.0","resources":{`, i)
		for j, typ := range []string{
			"type.googleapis.com/envoy.config.cluster.v3.Cluster",
			"type.googleapis.com/envoy.config.listener.v3.Listener",
			"type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
			"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
		} {
			if j > 0 {
				buf.WriteString(",")
			}
			fmt.Fprintf(&buf, `%q:{"sent":%q,"acked":%q,"sentTime":"2026-11-25T15:33:06.584635433Z"}`, typ, nonce, nonce)
		}
		buf.WriteString("}}")
	}
	buf.WriteString("]")
	body := buf.Bytes()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		proxies, err := ParseSynczHTTP(bytes.NewReader(body), "istiod-0")
		if err != nil || len(proxies) != 1000 {
			b.Fatalf("%d proxies, %v", len(proxies), err)
		}
	}
}
