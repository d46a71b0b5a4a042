package istio

import (
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshdrift/meshdrift/reconcile"
)

// goldenSynczXDS is every captured xDS syncz answer of the real istiod.
func goldenSynczXDS(tb testing.TB) map[string]*discoveryv3.DiscoveryResponse {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "istiod-1.31", "syncz-xds-*.json"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no captured syncz: %v", err)
	}
	out := map[string]*discoveryv3.DiscoveryResponse{}
	for _, f := range files {
		resp, err := UnmarshalSynczXDSJSON(readGolden(tb, filepath.Base(f)))
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(f)] = resp
	}
	return out
}

// deterministic is a copy of resp whose resources are marshalled as istiod marshals
// them (protoconv.MessageToAny: deterministic), which protojson does not promise.
func deterministic(tb testing.TB, resp *discoveryv3.DiscoveryResponse) *discoveryv3.DiscoveryResponse {
	tb.Helper()
	out := proto.CloneOf(resp)
	for i, a := range out.Resources {
		var cc statusv3.ClientConfig
		if err := a.UnmarshalTo(&cc); err != nil {
			tb.Fatal(err)
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&cc)
		if err != nil {
			tb.Fatal(err)
		}
		out.Resources[i] = &anypb.Any{TypeUrl: a.TypeUrl, Value: b}
	}
	return out
}

func TestDecodeGoldenMatchesProto(t *testing.T) {
	golden := goldenSynczXDS(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range golden {
			if !yield(n) {
				return
			}
		}
	})
	var d synczDecoder
	// Forwards, backwards, and each twice: one decoder reads them all as one istiod.
	order := append(slices.Clone(names), names...)
	for i := len(names) - 1; i >= 0; i-- {
		order = append(order, names[i], names[i])
	}
	for _, name := range order {
		resp := deterministic(t, golden[name])
		want, err := protoParseSynczXDS(resp, goldenIstiod)
		if err != nil {
			t.Fatalf("%s: proto decode: %v", name, err)
		}
		got, err := ParseSynczXDS(resp, goldenIstiod)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: wire decode = %v\n%+v\nwant\n%+v", name, err, got, want)
		}
		again, err := d.Decode(resp, goldenIstiod)
		if err != nil || !reflect.DeepEqual(again, want) {
			t.Fatalf("%s: decoder = %v\n%+v\nwant\n%+v", name, err, again, want)
		}
		checkSynczInvariants(t, got, false)
	}
}

// Every proxy of a read whose bytes did not change is the last read's value, its
// types the same memory; changed proxies are decoded; vanished ones are forgotten.
func TestSynczDecoderReuse(t *testing.T) {
	golden := goldenSynczXDS(t)
	before := deterministic(t, golden["syncz-xds-2-after-vs.json"])
	// One proxy as the next capture has it, the others as they were.
	after := proto.CloneOf(before)
	next := deterministic(t, golden["syncz-xds-3-after-vs-edit.json"])
	for i, a := range after.Resources {
		id, _ := synczNodeID(a.Value)
		for _, b := range next.Resources {
			if nid, _ := synczNodeID(b.Value); string(nid) == string(id) && i == 1 {
				after.Resources[i] = b
			}
		}
	}
	gone := deterministic(t, golden["syncz-xds-4-after-disconnect.json"])

	var d synczDecoder
	first, err := d.Decode(before, goldenIstiod)
	if err != nil {
		t.Fatal(err)
	}
	// What the reader does to a read must not reach the decoder's copy.
	for i := range first {
		first[i].Revision = "mutated"
	}
	second, err := d.Decode(before, goldenIstiod)
	if err != nil {
		t.Fatal(err)
	}
	for i := range second {
		if second[i].Revision != "" {
			t.Fatalf("a change to the last read's output reached the next read: %+v", second[i])
		}
		if !sameTypes(first[i].Types, second[i].Types) {
			t.Errorf("proxy %s decoded again though unchanged", second[i].ID)
		}
	}

	rawByID := func(resp *discoveryv3.DiscoveryResponse) map[string][]byte {
		m := map[string][]byte{}
		for _, a := range resp.Resources {
			id, _ := synczNodeID(a.Value)
			m[string(id)] = a.Value
		}
		return m
	}
	prevRaw, nextRaw := rawByID(before), rawByID(after)
	third, err := d.Decode(after, goldenIstiod)
	if err != nil {
		t.Fatal(err)
	}
	want, err := protoParseSynczXDS(after, goldenIstiod)
	if err != nil || !reflect.DeepEqual(third, want) {
		t.Fatalf("after a change = %v\n%+v\nwant\n%+v", err, third, want)
	}
	reused, changed := 0, 0
	for i := range third {
		id := third[i].ID
		if string(prevRaw[id]) == string(nextRaw[id]) {
			reused++
			if !sameTypes(second[i].Types, third[i].Types) {
				t.Errorf("proxy %s decoded again though unchanged", id)
			}
		} else {
			changed++
			if sameTypes(second[i].Types, third[i].Types) {
				t.Errorf("proxy %s changed but was not decoded again", id)
			}
		}
	}
	if reused == 0 || changed == 0 {
		t.Fatalf("the captures should hold both changed (%d) and unchanged (%d) proxies", changed, reused)
	}

	if _, err := d.Decode(gone, goldenIstiod); err != nil {
		t.Fatal(err)
	}
	if len(d.cached) != len(gone.Resources) || len(d.index) != len(gone.Resources) {
		t.Errorf("after a proxy vanished the decoder holds %d proxies (index %d), want %d", len(d.cached), len(d.index), len(gone.Resources))
	}
}

// sameTypes reports whether a and b are the same memory.
func sameTypes(a, b []reconcile.XDSStatus) bool {
	if cap(a) == 0 || cap(b) == 0 {
		return cap(a) == cap(b)
	}
	return &a[:1][0] == &b[:1][0]
}

// istiod lists a proxy twice while it reconnects: both entries are kept, in istiod's
// order, whether the proxy is new to the decoder or not and whether its entries differ.
func TestSynczDecoderDuplicates(t *testing.T) {
	resp := deterministic(t, goldenSynczXDS(t)["syncz-xds-2-after-vs.json"])
	var d synczDecoder
	if _, err := d.Decode(resp, goldenIstiod); err != nil {
		t.Fatal(err)
	}
	other := deterministic(t, goldenSynczXDS(t)["syncz-xds-3-after-vs-edit.json"])
	dup := proto.CloneOf(resp)
	dup.Resources = append(dup.Resources, other.Resources...) // every proxy twice, some different
	dup.Resources = append(dup.Resources, resp.Resources[0])  // and one three times
	newcomer := renamedClientConfig(t, resp.Resources[1], "new.default")
	dup.Resources = append(dup.Resources, newcomer, renamedClientConfig(t, other.Resources[1], "new.default"), newcomer)
	for range 3 {
		want, err := protoParseSynczXDS(dup, goldenIstiod)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Decode(dup, goldenIstiod)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("duplicates = %v\n%+v\nwant\n%+v", err, got, want)
		}
	}
	if want := len(resp.Resources) + 1; len(d.cached) != want {
		t.Errorf("decoder holds %d proxies, want one per id (%d)", len(d.cached), want)
	}
}

func renamedClientConfig(t *testing.T, a *anypb.Any, id string) *anypb.Any {
	t.Helper()
	var cc statusv3.ClientConfig
	if err := a.UnmarshalTo(&cc); err != nil {
		t.Fatal(err)
	}
	cc.Node.Id = id
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&cc)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: clientConfigTypeURL, Value: b}
}

// A read that fails leaves nothing behind, and the next read decodes every proxy.
func TestSynczDecoderForgetsOnError(t *testing.T) {
	resp := deterministic(t, goldenSynczXDS(t)["syncz-xds-2-after-vs.json"])
	var d synczDecoder
	if _, err := d.Decode(resp, goldenIstiod); err != nil {
		t.Fatal(err)
	}
	bad := proto.CloneOf(resp)
	bad.Resources = append(bad.Resources, &anypb.Any{TypeUrl: clientConfigTypeURL, Value: bad.Resources[0].Value[:5]})
	got, err := d.Decode(bad, goldenIstiod)
	if err == nil || got != nil {
		t.Fatalf("truncated resource = %+v, %v", got, err)
	}
	if len(d.cached) != 0 {
		t.Errorf("decoder holds %d proxies after a failed read", len(d.cached))
	}
	want, _ := protoParseSynczXDS(resp, goldenIstiod)
	if got, err := d.Decode(resp, goldenIstiod); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("read after a failed one = %v\n%+v", err, got)
	}
}

// Proxies that change a few at a time leave each read's arena pinned by the proxies
// still unchanged; the decoder then moves them, so that it holds about the last read.
func TestSynczDecoderCompacts(t *testing.T) {
	const proxies = 500
	base := deterministic(t, goldenSynczXDS(t)["syncz-xds-2-after-vs.json"])
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: SynczTypeURL}
	for i := range proxies {
		resp.Resources = append(resp.Resources, renamedClientConfig(t, base.Resources[i%len(base.Resources)], "p"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+".default"))
	}
	d := synczDecoder{compactSlack: 1}
	compactions := 0
	for read := range 200 {
		// Each read changes three proxies, a different three each time.
		for k := range 3 {
			i := (read*3 + k) * 7 % proxies
			resp.Resources[i] = touchedClientConfigT(t, resp.Resources[i])
		}
		before := d.arenasHeld()
		got, err := d.Decode(resp, goldenIstiod)
		if err != nil || len(got) != proxies {
			t.Fatalf("read %d: %d proxies, %v", read, len(got), err)
		}
		if d.arenasHeld() < before {
			compactions++
		}
		if held, used := d.arenaBytes(); held > 2*used+d.compactSlack {
			t.Fatalf("read %d: arenas hold %d bytes for %d used", read, held, used)
		}
	}
	if compactions == 0 {
		t.Error("no compaction in 200 reads")
	}
	want, _ := protoParseSynczXDS(resp, goldenIstiod)
	if got, err := d.Decode(resp, goldenIstiod); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after compactions = %v", err)
	}
}

func touchedClientConfigT(t *testing.T, a *anypb.Any) *anypb.Any {
	t.Helper()
	var cc statusv3.ClientConfig
	if err := a.UnmarshalTo(&cc); err != nil {
		t.Fatal(err)
	}
	for _, gc := range cc.GetGenericXdsConfigs() {
		if gc.LastUpdated != nil {
			gc.LastUpdated.Seconds++
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&cc)
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: clientConfigTypeURL, Value: b}
}

// arenasHeld is how many arenas the cache points into.
func (d *synczDecoder) arenasHeld() int {
	seen := map[*synczArena]bool{}
	for i := range d.cached {
		seen[d.cached[i].arena] = true
	}
	return len(seen)
}

// arenaBytes is what the arenas the cache points into hold, and what it uses of them.
func (d *synczDecoder) arenaBytes() (held, used int) {
	seen := map[*synczArena]bool{}
	for i := range d.cached {
		c := &d.cached[i]
		used += len(c.status.ID) + cap(c.status.Types)*xdsStatusSize
		if !seen[c.arena] {
			seen[c.arena] = true
			held += c.arena.size
		}
	}
	return held, used
}

// wire builds protobuf bytes by hand, for encodings a marshaller never makes but a
// decoder must read as protobuf does.
type wire []byte

func (w wire) bytes(num protowire.Number, v []byte) wire {
	return protowire.AppendBytes(protowire.AppendTag(w, num, protowire.BytesType), v)
}

func (w wire) str(num protowire.Number, s string) wire { return w.bytes(num, []byte(s)) }

func (w wire) varint(num protowire.Number, v uint64) wire {
	return protowire.AppendVarint(protowire.AppendTag(w, num, protowire.VarintType), v)
}

func (w wire) fixed64(num protowire.Number, v uint64) wire {
	return protowire.AppendFixed64(protowire.AppendTag(w, num, protowire.Fixed64Type), v)
}

func (w wire) group(num protowire.Number, body wire) wire {
	w = append(protowire.AppendTag(w, num, protowire.StartGroupType), body...)
	return protowire.AppendTag(w, num, protowire.EndGroupType)
}

func mdEntry(key string, value wire) wire {
	e := wire(nil).str(mapEntryKey, key)
	if value != nil {
		e = e.bytes(mapEntryValue, value)
	}
	return wire(nil).bytes(structFields, e)
}

// varintOf is how protobuf encodes an int64 as a varint.
func varintOf(v int64) uint64 { return uint64(v) }

func strValue(s string) wire { return wire(nil).str(valueString, s) }

// syncedConfig is one generic xds config, SYNCED at a valid time.
func syncedConfig(typeURL string) wire {
	ts := wire(nil).varint(timestampSeconds, 1764084786).varint(timestampNanos, 5)
	return wire(nil).str(genericTypeURL, typeURL).bytes(genericLastUpdated, ts).varint(genericConfigStatus, uint64(statusv3.ConfigStatus_SYNCED))
}

// wireCases are ClientConfigs encoded the ways protobuf allows and marshallers do not
// write: repeated and merged fields, unknown fields and wire types, odd values.
func wireCases() map[string][]byte {
	node := func(parts ...wire) wire {
		var n wire
		for _, p := range parts {
			n = append(n, p...)
		}
		return n
	}
	md := func(entries ...wire) wire { return node(entries...) }
	cc := func(n wire, configs ...wire) []byte {
		out := wire(nil).bytes(clientConfigNode, n)
		for _, c := range configs {
			out = out.bytes(clientConfigGenericConfigs, c)
		}
		return out
	}
	id := wire(nil).str(nodeID, "a.default")
	okMD := wire(nil).bytes(nodeMetadata, md(mdEntry("CLUSTER_ID", strValue("Kubernetes")), mdEntry("ISTIO_VERSION", strValue("1.31.0"))))
	cds := syncedConfig(testTypeURL)
	return map[string][]byte{
		"plain": cc(node(id, okMD), cds, syncedConfig("a.type")),
		"node twice merges": append(
			wire(nil).bytes(clientConfigNode, node(wire(nil).str(nodeID, "first.default"), wire(nil).bytes(nodeMetadata, md(mdEntry("CLUSTER_ID", strValue("c1")))))),
			cc(node(id, wire(nil).bytes(nodeMetadata, md(mdEntry("ISTIO_VERSION", strValue("1.30.0"))))), cds)...),
		"configs before node":               append(wire(nil).bytes(clientConfigGenericConfigs, cds), wire(nil).bytes(clientConfigNode, node(id, okMD))...),
		"metadata key twice, last a string": cc(node(id, wire(nil).bytes(nodeMetadata, md(mdEntry("CLUSTER_ID", wire(nil).varint(valueBool, 1)), mdEntry("CLUSTER_ID", strValue("c2")))))),
		"metadata key twice, last a bool":   cc(node(id, wire(nil).bytes(nodeMetadata, md(mdEntry("CLUSTER_ID", strValue("c2")), mdEntry("CLUSTER_ID", wire(nil).varint(valueBool, 1)))))),
		"metadata entry without value":      cc(node(id, wire(nil).bytes(nodeMetadata, md(mdEntry("ISTIO_VERSION", nil))))),
		"metadata value kinds, string last": cc(node(id, wire(nil).bytes(nodeMetadata, md(mdEntry("CLUSTER_ID", wire(nil).fixed64(valueNumber, math.Float64bits(1)).str(valueString, "c3")))))),
		"metadata value kinds, list last":   cc(node(id, wire(nil).bytes(nodeMetadata, md(mdEntry("CLUSTER_ID", wire(nil).str(valueString, "c3").bytes(valueList, nil)))))),
		"metadata value repeated merges": cc(node(id, wire(nil).bytes(nodeMetadata, md(
			wire(nil).bytes(structFields, wire(nil).str(mapEntryKey, "CLUSTER_ID").bytes(mapEntryValue, strValue("c4")).bytes(mapEntryValue, wire(nil).varint(valueNull, 0))),
		)))),
		"metadata value of the wrong wire type": cc(node(id, wire(nil).bytes(nodeMetadata, md(mdEntry("CLUSTER_ID", wire(nil).varint(valueString, 7)))))),
		"metadata key after value": cc(node(id, wire(nil).bytes(nodeMetadata, md(
			wire(nil).bytes(structFields, wire(nil).bytes(mapEntryValue, strValue("c5")).str(mapEntryKey, "ISTIO_VERSION")),
		)))),
		"metadata other kinds elsewhere": cc(node(id, wire(nil).bytes(nodeMetadata, md(mdEntry("LABELS", wire(nil).bytes(valueStruct, nil)), mdEntry("PROXY_CONFIG", wire(nil).fixed64(valueNumber, 3))))), cds),
		"id of the wrong wire type":      cc(node(wire(nil).varint(nodeID, 1), id, wire(nil).varint(nodeID, 2)), cds),
		"unknown fields and groups": append(cc(node(id, okMD, wire(nil).str(99, "x"), wire(nil).group(7, wire(nil).varint(1, 1).group(2, nil)))),
			wire(nil).bytes(clientConfigGenericConfigs, append(cds, wire(nil).fixed64(40, 1).str(2, "name").str(3, "v1")...)).group(12, nil).str(4, "scope")...),
		"status as a 64-bit varint": cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, 1<<32|uint64(statusv3.ConfigStatus_STALE))),
		"negative status":           cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, math.MaxUint64)),
		"status twice":              cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, 9).varint(genericConfigStatus, 3)),
		"status packed":             cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).bytes(genericConfigStatus, []byte{1})),
		"type url twice":            cc(node(id), wire(nil).str(genericTypeURL, "first").str(genericTypeURL, "second").varint(genericConfigStatus, 1)),
		"timestamp merges": cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, 1).
			bytes(genericLastUpdated, wire(nil).varint(timestampSeconds, 1764084786)).bytes(genericLastUpdated, wire(nil).varint(timestampNanos, 7))),
		"timestamp empty":        cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, 1).bytes(genericLastUpdated, nil)),
		"timestamp zero time":    cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, 1).bytes(genericLastUpdated, wire(nil).varint(timestampSeconds, varintOf(minTimestampSeconds)))),
		"timestamp out of range": cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, 1).bytes(genericLastUpdated, wire(nil).varint(timestampSeconds, maxTimestampSeconds+1))),
		"timestamp bad nanos":    cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, 1).bytes(genericLastUpdated, wire(nil).varint(timestampNanos, 1e9))),
		"error state merges": cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, uint64(statusv3.ConfigStatus_ERROR)).
			bytes(genericErrorState, wire(nil).str(failureDetails, "first")).bytes(genericErrorState, wire(nil).str(4, "v1")).bytes(genericErrorState, wire(nil).str(failureDetails, "nack: bad route"))),
		"error details without error": cc(node(id), wire(nil).str(genericTypeURL, testTypeURL).varint(genericConfigStatus, 1).bytes(genericErrorState, wire(nil).str(failureDetails, "old"))),
		"no node":                     cc(nil, cds),
		"empty type url":              cc(node(id), wire(nil).varint(genericConfigStatus, 1)),
		"id not utf-8":                cc(node(wire(nil).str(nodeID, "a\xff.default"))),
		"truncated after the id":      cc(node(id), cds)[:len(cc(node(id), cds))-3],
		"bad tag":                     append(cc(node(id)), 0x80),
		"end group alone":             protowire.AppendTag(cc(node(id)), 5, protowire.EndGroupType),
		"empty":                       {},
	}
}

// TestDecodeWireLikeProto decodes each hand-made encoding both ways.
func TestDecodeWireLikeProto(t *testing.T) {
	for name, raw := range wireCases() {
		t.Run(name, func(t *testing.T) { compareClientConfigDecode(t, raw) })
	}
}

func TestDecodeErrorNamesProxy(t *testing.T) {
	raw := wireCases()["truncated after the id"]
	_, err := ParseSynczXDS(&discoveryv3.DiscoveryResponse{TypeUrl: SynczTypeURL, Resources: []*anypb.Any{{TypeUrl: clientConfigTypeURL, Value: raw}}}, "istiod-0")
	const want = `syncz resource 0: proxy "a.default": decode client config: `
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error = %v, want it to start with %s", err, want)
	}
}

// compareClientConfigDecode decodes one ClientConfig with the wire decoder and with
// protobuf: where protobuf reads the bytes, both must agree, errors included; where it
// does not, the wire decoder may read what it needs or fail, but never panic.
func compareClientConfigDecode(t *testing.T, raw []byte) {
	t.Helper()
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: SynczTypeURL, Resources: []*anypb.Any{{TypeUrl: clientConfigTypeURL, Value: raw}}}
	got, err := ParseSynczXDS(resp, "istiod-0")
	if err != nil && got != nil {
		t.Fatalf("results %+v with error %v", got, err)
	}
	if proto.Unmarshal(raw, &statusv3.ClientConfig{}) != nil {
		return
	}
	want, wantErr := protoParseSynczXDS(resp, "istiod-0")
	if wantErr != nil {
		// Timestamp errors end in protobuf's own words; the rest must be the same.
		if err == nil || err.Error() != wantErr.Error() && !(strings.Contains(wantErr.Error(), "invalid timestamp") && strings.Contains(err.Error(), "invalid timestamp")) {
			t.Fatalf("error = %v\nwant %v", err, wantErr)
		}
		return
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("wire decode = %v\n%+v\nproto decode\n%+v", err, got, want)
	}
	// A decoder that has seen the proxy reads the same from the same bytes.
	var d synczDecoder
	for range 2 {
		again, err := d.Decode(resp, "istiod-0")
		if err != nil || !reflect.DeepEqual(again, want) {
			t.Fatalf("decoder = %v\n%+v\nwant\n%+v", err, again, want)
		}
	}
}

func FuzzDecodeClientConfig(f *testing.F) {
	for _, resp := range goldenSynczXDS(f) {
		for _, a := range deterministic(f, resp).Resources {
			f.Add(a.Value)
		}
	}
	for _, raw := range wireCases() {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		compareClientConfigDecode(t, raw)
	})
}
