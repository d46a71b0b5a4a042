package istio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/proto"
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
// proxy is distinct), never from a committed payload. xds is a first read (every proxy
// decoded), xds-repeat a reader's next read, xds-proto the protobuf decode it replaced.
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
		resp := scaledSynczXDS(b, benchProxies)
		b.SetBytes(int64(synczValueBytes(resp)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			proxies, err := ParseSynczXDS(resp, "istiod-0")
			if err != nil || len(proxies) != benchProxies {
				b.Fatalf("%d proxies, %v", len(proxies), err)
			}
		}
	})
	// How ParseSynczXDS decoded before it read the wire format itself, for comparison.
	b.Run("xds-proto", func(b *testing.B) {
		resp := scaledSynczXDS(b, benchProxies)
		b.SetBytes(int64(synczValueBytes(resp)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			proxies, err := protoParseSynczXDS(resp, "istiod-0")
			if err != nil || len(proxies) != benchProxies {
				b.Fatalf("%d proxies, %v", len(proxies), err)
			}
		}
	})
	// A reader's read after a read: one proxy in a hundred changed since the last one
	// (reads alternate between two answers that differ in those proxies).
	b.Run("xds-repeat", func(b *testing.B) {
		resps := [2]*discoveryv3.DiscoveryResponse{scaledSynczXDS(b, benchProxies), scaledSynczXDS(b, benchProxies)}
		for i := 0; i < benchProxies; i += 100 {
			resps[1].Resources[i] = touchedClientConfig(b, resps[1].Resources[i])
		}
		var d synczDecoder
		if _, err := d.Decode(resps[1], "istiod-0"); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(synczValueBytes(resps[0])))
		b.ReportAllocs()
		b.ResetTimer()
		n := 0
		for b.Loop() {
			proxies, err := d.Decode(resps[n%2], "istiod-0")
			if err != nil || len(proxies) != benchProxies {
				b.Fatalf("%d proxies, %v", len(proxies), err)
			}
			n++
		}
	})
}

// scaledSynczXDS is an xDS syncz answer of n proxies: the captured ones repeated, each
// under a new name.
func scaledSynczXDS(b *testing.B, n int) *discoveryv3.DiscoveryResponse {
	b.Helper()
	raw, err := os.ReadFile("testdata/istiod-1.31/syncz-xds-2-after-vs.json")
	if err != nil {
		b.Fatal(err)
	}
	resp, err := UnmarshalSynczXDSJSON(raw)
	if err != nil {
		b.Fatal(err)
	}
	captured := resp.GetResources()
	resp.Resources = make([]*anypb.Any, 0, n)
	for i := range n {
		var cc statusv3.ClientConfig
		if err := captured[i%len(captured)].UnmarshalTo(&cc); err != nil {
			b.Fatal(err)
		}
		cc.Node.Id = fmt.Sprintf("app-%d-%s", i, cc.Node.Id)
		resp.Resources = append(resp.Resources, deterministicAny(b, &cc))
	}
	return resp
}

// deterministicAny marshals as istiod does (protoconv.MessageToAny): with map entries
// in order, so that an unchanged proxy is the same bytes read after read.
func deterministicAny(b *testing.B, cc *statusv3.ClientConfig) *anypb.Any {
	b.Helper()
	value, err := proto.MarshalOptions{Deterministic: true}.Marshal(cc)
	if err != nil {
		b.Fatal(err)
	}
	return &anypb.Any{TypeUrl: clientConfigTypeURL, Value: value}
}

// touchedClientConfig is the proxy of a after istiod pushed it one more time.
func touchedClientConfig(b *testing.B, a *anypb.Any) *anypb.Any {
	b.Helper()
	var cc statusv3.ClientConfig
	if err := a.UnmarshalTo(&cc); err != nil {
		b.Fatal(err)
	}
	for _, gc := range cc.GetGenericXdsConfigs() {
		if gc.LastUpdated != nil {
			gc.LastUpdated.Seconds++
		}
	}
	return deterministicAny(b, &cc)
}

func synczValueBytes(resp *discoveryv3.DiscoveryResponse) int {
	n := 0
	for _, a := range resp.GetResources() {
		n += len(a.GetValue())
	}
	return n
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
