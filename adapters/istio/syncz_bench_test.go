package istio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/types/known/anypb"
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

// benchProxies is how many proxies one istiod serves in the fleet-scale benchmarks.
const benchProxies = 10000

// BenchmarkParseSyncz10000Proxies parses both syncz forms for 10,000 proxies, made at
// bench time from the proxies of the captured golden files (renamed, so that every
// proxy is distinct), never from a committed payload.
func BenchmarkParseSyncz10000Proxies(b *testing.B) {
	b.Run("http", func(b *testing.B) {
		body := scaledSynczHTTP(b, benchProxies)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			proxies, err := ParseSynczHTTP(bytes.NewReader(body), "istiod-0")
			if err != nil || len(proxies) != benchProxies {
				b.Fatalf("%d proxies, %v", len(proxies), err)
			}
		}
	})
	b.Run("xds", func(b *testing.B) {
		raw, err := os.ReadFile("testdata/istiod-1.31/syncz-xds-2-after-vs.json")
		if err != nil {
			b.Fatal(err)
		}
		resp, err := UnmarshalSynczXDSJSON(raw)
		if err != nil {
			b.Fatal(err)
		}
		captured := resp.GetResources()
		resp.Resources = make([]*anypb.Any, 0, benchProxies)
		size := 0
		for i := range benchProxies {
			var cc statusv3.ClientConfig
			if err := captured[i%len(captured)].UnmarshalTo(&cc); err != nil {
				b.Fatal(err)
			}
			cc.Node.Id = fmt.Sprintf("app-%d-%s", i, cc.Node.Id)
			a, err := anypb.New(&cc)
			if err != nil {
				b.Fatal(err)
			}
			size += len(a.Value)
			resp.Resources = append(resp.Resources, a)
		}
		b.SetBytes(int64(size))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			proxies, err := ParseSynczXDS(resp, "istiod-0")
			if err != nil || len(proxies) != benchProxies {
				b.Fatalf("%d proxies, %v", len(proxies), err)
			}
		}
	})
}

// scaledSynczHTTP is an HTTP syncz body of n proxies: the captured ones repeated,
// each under a new name.
func scaledSynczHTTP(b *testing.B, n int) []byte {
	b.Helper()
	raw, err := os.ReadFile("testdata/istiod-1.31/syncz-http-2-after-vs.json")
	if err != nil {
		b.Fatal(err)
	}
	var captured []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &captured); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, len(captured))
	for i, e := range captured {
		if err := json.Unmarshal(e["proxy"], &ids[i]); err != nil {
			b.Fatal(err)
		}
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range n {
		e := captured[i%len(captured)]
		e["proxy"], _ = json.Marshal(fmt.Sprintf("app-%d-%s", i, ids[i%len(captured)]))
		out, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(out)
	}
	buf.WriteByte(']')
	return buf.Bytes()
}
