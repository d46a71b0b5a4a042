package istio

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/meshdrift/meshdrift/reconcile"
)

// Field numbers of what meshdrift reads from a CSDS ClientConfig
// (envoy/service/status/v3/csds.proto and the messages it uses). Everything else is
// skipped unread: decoding the node's whole metadata Struct, its Any payloads and
// every string through protobuf reflection was most of the cost of a syncz read.
const (
	clientConfigNode           = 1 // core.v3.Node
	clientConfigGenericConfigs = 3 // repeated ClientConfig.GenericXdsConfig
	nodeID                     = 1 // string
	nodeMetadata               = 3 // google.protobuf.Struct
	structFields               = 1 // map<string, Value>
	mapEntryKey                = 1
	mapEntryValue              = 2
	valueNull                  = 1 // the six members of Value's "kind" oneof
	valueNumber                = 2
	valueString                = 3
	valueBool                  = 4
	valueStruct                = 5
	valueList                  = 6
	genericTypeURL             = 1 // string
	genericLastUpdated         = 5 // google.protobuf.Timestamp
	genericConfigStatus        = 6 // ConfigStatus
	genericErrorState          = 8 // admin.v3.UpdateFailureState
	timestampSeconds           = 1
	timestampNanos             = 2
	failureDetails             = 3 // string

	// The range google.protobuf.Timestamp allows: 0001-01-01 to 9999-12-31.
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// wireField is one field of a message in protobuf wire format.
type wireField struct {
	num    protowire.Number
	typ    protowire.Type
	bytes  []byte // BytesType: the field's content, aliasing the input
	varint uint64 // VarintType
}

// nextField reads the field at the start of b and returns it and its length.
// A field of a wire type the reader does not expect for its number is an unknown field
// to protobuf (it is kept aside, not an error), so readers compare both num and typ.
func nextField(b []byte) (wireField, int, error) {
	// Most tags of a ClientConfig are one byte; their varints and lengths are short.
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 8 {
		num, typ := protowire.Number(b[0]>>3), protowire.Type(b[0]&7)
		switch typ {
		case protowire.VarintType:
			if v, n := shortVarint(b[1:]); n > 0 {
				return wireField{num: num, typ: typ, varint: v}, 1 + n, nil
			}
		case protowire.BytesType:
			if l, n := shortVarint(b[1:]); n > 0 && l <= uint64(len(b)-1-n) {
				end := 1 + n + int(l)
				return wireField{num: num, typ: typ, bytes: b[1+n : end]}, end, nil
			}
		}
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return wireField{}, 0, protowire.ParseError(n)
	}
	f := wireField{num: num, typ: typ}
	var m int
	switch typ {
	case protowire.BytesType:
		f.bytes, m = protowire.ConsumeBytes(b[n:])
	case protowire.VarintType:
		f.varint, m = protowire.ConsumeVarint(b[n:])
	default:
		m = protowire.ConsumeFieldValue(num, typ, b[n:])
	}
	if m < 0 {
		return wireField{}, 0, fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
	}
	return f, n + m, nil
}

// shortVarint decodes a varint of up to nine bytes (63 bits); n is 0 for anything else,
// which protowire then reads or rejects.
func shortVarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 9; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// wireXDSConfig is one ClientConfig.GenericXdsConfig as read from the wire, before it
// is checked: protobuf lets a field repeat (the last wins) and a message field repeat
// (they merge), so a config is known only once all its bytes are read.
type wireXDSConfig struct {
	typeURL        []byte
	status         int32
	hasLastUpdated bool
	seconds        int64
	nanos          int32
	details        []byte
}

// metadataValue is what a node metadata entry meshdrift reads holds: present, and
// whether its kind is a string.
type metadataValue struct {
	present  bool
	isString bool
	str      []byte
}

// check refuses a value of another kind than string: guessing would misname a proxy.
func (v *metadataValue) check(id []byte, key string) error {
	if v.present && !v.isString {
		return fmt.Errorf("proxy %q: node metadata %s is not a string", id, key)
	}
	return nil
}

// wireClientConfig is what meshdrift reads of one ClientConfig. Its slices alias the
// input; configs is reused from proxy to proxy.
type wireClientConfig struct {
	id           []byte
	clusterID    metadataValue
	istioVersion metadataValue
	configs      []wireXDSConfig
}

// likelyNodeID returns the node id of an encoded ClientConfig as istiod writes it: the
// node first, its id first. It is only a key to find the proxy's last read by; the bytes
// are then compared whole, so a ClientConfig encoded otherwise is decoded, never misread.
func likelyNodeID(b []byte) []byte {
	f, _, err := nextField(b)
	if err != nil || f.num != clientConfigNode || f.typ != protowire.BytesType {
		return nil
	}
	g, _, err := nextField(f.bytes)
	if err != nil || g.num != nodeID || g.typ != protowire.BytesType {
		return nil
	}
	return g.bytes
}

// synczNodeID returns the node id an encoded ClientConfig decodes to, without decoding
// the rest. ok is false when the bytes do not parse; id is then the id read before the
// fault, if any, to name the proxy in an error.
func synczNodeID(b []byte) (id []byte, ok bool) {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return id, false
		}
		b = b[n:]
		if f.num != clientConfigNode || f.typ != protowire.BytesType {
			continue
		}
		// A repeated node field merges: the last id wins.
		for nb := f.bytes; len(nb) > 0; {
			g, m, err := nextField(nb)
			if err != nil {
				return id, false
			}
			nb = nb[m:]
			if g.num == nodeID && g.typ == protowire.BytesType {
				id = g.bytes
			}
		}
	}
	return id, true
}

// read fills w from an encoded ClientConfig, with protobuf's rules for repeated and
// unknown fields, so that it reads what proto.Unmarshal would. It fails where the bytes
// are not protobuf or a string it keeps is not UTF-8 (proto.Unmarshal fails there too).
func (w *wireClientConfig) read(b []byte) error {
	*w = wireClientConfig{configs: w.configs[:0]}
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case clientConfigNode:
			if err := w.readNode(f.bytes); err != nil {
				return fmt.Errorf("node: %w", err)
			}
		case clientConfigGenericConfigs:
			w.configs = append(w.configs, wireXDSConfig{})
			if err := w.configs[len(w.configs)-1].read(f.bytes); err != nil {
				return fmt.Errorf("generic xds config %d: %w", len(w.configs)-1, err)
			}
		}
	}
	if !utf8.Valid(w.id) {
		return errors.New("node id is not valid UTF-8")
	}
	return nil
}

func (w *wireClientConfig) readNode(b []byte) error {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case nodeID:
			w.id = f.bytes
		case nodeMetadata:
			if err := w.readMetadata(f.bytes); err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
		}
	}
	return nil
}

// readMetadata reads the Struct's entries for the keys meshdrift uses. A later entry
// of the same key replaces the earlier one, as in a protobuf map.
func (w *wireClientConfig) readMetadata(b []byte) error {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if f.num != structFields || f.typ != protowire.BytesType {
			continue
		}
		key, err := mapEntryKeyOf(f.bytes)
		if err != nil {
			return err
		}
		var dst *metadataValue
		switch string(key) {
		case "CLUSTER_ID":
			dst = &w.clusterID
		case "ISTIO_VERSION":
			dst = &w.istioVersion
		default:
			continue
		}
		// An entry without a value holds an empty Value: present, of no kind. A value
		// field that repeats merges, so each occurrence is read into the same Value.
		*dst = metadataValue{present: true}
		for eb := f.bytes; len(eb) > 0; {
			g, m, _ := nextField(eb) // mapEntryKeyOf has parsed these bytes
			eb = eb[m:]
			if g.num == mapEntryValue && g.typ == protowire.BytesType {
				if err := dst.read(g.bytes); err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
			}
		}
		if dst.isString && !utf8.Valid(dst.str) {
			return fmt.Errorf("%s is not valid UTF-8", key)
		}
	}
	return nil
}

// mapEntryKeyOf returns a map entry's key; it fails where the entry does not parse.
func mapEntryKeyOf(b []byte) (key []byte, err error) {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return nil, fmt.Errorf("map entry: %w", err)
		}
		b = b[n:]
		if f.num == mapEntryKey && f.typ == protowire.BytesType {
			key = f.bytes
		}
	}
	return key, nil
}

// read merges one occurrence of a google.protobuf.Value: the last member of its kind
// oneof that appears decides the kind.
func (v *metadataValue) read(b []byte) error {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch {
		case f.num == valueString && f.typ == protowire.BytesType:
			v.isString, v.str = true, f.bytes
		case (f.num == valueNull || f.num == valueBool) && f.typ == protowire.VarintType,
			f.num == valueNumber && f.typ == protowire.Fixed64Type,
			(f.num == valueStruct || f.num == valueList) && f.typ == protowire.BytesType:
			v.isString, v.str = false, nil
		}
	}
	return nil
}

func (c *wireXDSConfig) read(b []byte) error {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch {
		case f.num == genericTypeURL && f.typ == protowire.BytesType:
			c.typeURL = f.bytes
		case f.num == genericConfigStatus && f.typ == protowire.VarintType:
			c.status = int32(f.varint) // as protobuf reads an enum
		case f.num == genericLastUpdated && f.typ == protowire.BytesType:
			c.hasLastUpdated = true
			if err := c.readTimestamp(f.bytes); err != nil {
				return fmt.Errorf("last updated: %w", err)
			}
		case f.num == genericErrorState && f.typ == protowire.BytesType:
			if err := c.readErrorState(f.bytes); err != nil {
				return fmt.Errorf("error state: %w", err)
			}
		}
	}
	if !utf8.Valid(c.details) {
		return errors.New("error details are not valid UTF-8")
	}
	return nil
}

func (c *wireXDSConfig) readTimestamp(b []byte) error {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if f.typ != protowire.VarintType {
			continue
		}
		switch f.num {
		case timestampSeconds:
			c.seconds = int64(f.varint)
		case timestampNanos:
			c.nanos = int32(f.varint)
		}
	}
	return nil
}

func (c *wireXDSConfig) readErrorState(b []byte) error {
	for len(b) > 0 {
		f, n, err := nextField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if f.num == failureDetails && f.typ == protowire.BytesType {
			c.details = f.bytes
		}
	}
	return nil
}

// synczArena holds the proxies decoded in one read: their ids and types are carved
// from a few large allocations rather than one or two per proxy. size is what it holds
// on to; swept marks it counted in the decoder's last sweep.
type synczArena struct {
	ids   strings.Builder
	types []reconcile.XDSStatus
	size  int
	swept uint64
}

const (
	// synczArenaIDBytes and synczArenaMaxTypes size the arena's blocks: large enough
	// that a fleet's read takes few allocations, small enough that a read changing a
	// handful of proxies does not allocate much.
	synczArenaIDBytes  = 16 << 10
	synczArenaMinTypes = 64
	synczArenaMaxTypes = 2048
)

// id returns b as a string stored in the arena. A strings.Builder never changes the
// bytes it has handed out, so each id stays valid when a new block starts.
func (a *synczArena) id(b []byte) string {
	start := a.reserveID(len(b))
	a.ids.Write(b)
	return a.ids.String()[start:]
}

func (a *synczArena) idString(s string) string {
	start := a.reserveID(len(s))
	a.ids.WriteString(s)
	return a.ids.String()[start:]
}

// reserveID makes room for n bytes without the builder growing (which would copy what
// it holds) and returns where they go.
func (a *synczArena) reserveID(n int) int {
	if a.ids.Cap()-a.ids.Len() < n {
		a.ids = strings.Builder{}
		size := max(synczArenaIDBytes, n)
		a.ids.Grow(size)
		a.size += size
	}
	return a.ids.Len()
}

// typeSlice returns an empty, never nil slice with room for n types.
func (a *synczArena) typeSlice(n int) []reconcile.XDSStatus {
	if n == 0 {
		return []reconcile.XDSStatus{}
	}
	if len(a.types)+n > cap(a.types) {
		size := min(max(2*cap(a.types), synczArenaMinTypes), synczArenaMaxTypes)
		size = max(size, n)
		a.types = make([]reconcile.XDSStatus, 0, size)
		a.size += size * xdsStatusSize
	}
	start := len(a.types)
	a.types = a.types[:start+n]
	return a.types[start : start : start+n]
}

// xdsStatusSize is the size of a reconcile.XDSStatus, for accounting only.
const xdsStatusSize = 104

// proxyStatus checks what read found and makes the proxy's status (without the istiod
// fields, which belong to the read), in the order and with the words of the checks
// ParseSynczXDS has always made.
func (w *wireClientConfig) proxyStatus(in *synczInterner, a *synczArena) (reconcile.ProxyStatus, error) {
	if len(w.id) == 0 {
		return reconcile.ProxyStatus{}, errors.New("client config has no node id")
	}
	if err := w.clusterID.check(w.id, "CLUSTER_ID"); err != nil {
		return reconcile.ProxyStatus{}, err
	}
	if err := w.istioVersion.check(w.id, "ISTIO_VERSION"); err != nil {
		return reconcile.ProxyStatus{}, err
	}
	clusterID, _ := in.slot(0, w.clusterID.str)
	istioVersion, _ := in.slot(1, w.istioVersion.str)
	types := a.typeSlice(len(w.configs))
	for i := range w.configs {
		st, err := w.configs[i].xdsStatus(in, 2+i)
		if err != nil {
			return reconcile.ProxyStatus{}, fmt.Errorf("proxy %q: %w", w.id, err)
		}
		types = append(types, st)
	}
	slices.SortStableFunc(types, func(a, b reconcile.XDSStatus) int {
		return strings.Compare(a.TypeURL, b.TypeURL)
	})
	return reconcile.ProxyStatus{
		ID:           a.id(w.id),
		ClusterID:    clusterID,
		IstioVersion: istioVersion,
		Types:        types,
	}, nil
}

// xdsStatus checks and converts one config, the slot-th string of its proxy.
func (c *wireXDSConfig) xdsStatus(in *synczInterner, slot int) (reconcile.XDSStatus, error) {
	if len(c.typeURL) == 0 {
		return reconcile.XDSStatus{}, errors.New("xds config with an empty type url")
	}
	typeURL, known := in.slot(slot, c.typeURL)
	if !known && !utf8.Valid(c.typeURL) {
		// protobuf refuses such bytes: so does this reader, before the rest is checked.
		return reconcile.XDSStatus{}, errors.New("xds config type url is not valid UTF-8")
	}
	state, err := configState(statusv3.ConfigStatus(c.status))
	if err != nil {
		return reconcile.XDSStatus{}, fmt.Errorf("type %q: %w", typeURL, err)
	}
	st := reconcile.XDSStatus{TypeURL: typeURL, State: state}
	if c.hasLastUpdated {
		if c.seconds < minTimestampSeconds || c.seconds > maxTimestampSeconds || c.nanos < 0 || c.nanos >= 1e9 {
			return reconcile.XDSStatus{}, fmt.Errorf("type %q: last updated: invalid timestamp: %d s %d ns is outside 0001-01-01 to 9999-12-31", typeURL, c.seconds, c.nanos)
		}
		st.SentAt = synczTime(time.Unix(c.seconds, int64(c.nanos)))
	}
	if state == reconcile.StateError {
		st.Error = in.bytes(c.details)
	}
	return st, nil
}

// configState maps the CSDS status istiod computed; UNKNOWN and values from a newer
// protocol are errors, because guessing would turn them into a false SYNCED or alarm.
func configState(s statusv3.ConfigStatus) (reconcile.SyncState, error) {
	switch s {
	case statusv3.ConfigStatus_SYNCED:
		return reconcile.StateSynced, nil
	case statusv3.ConfigStatus_STALE:
		return reconcile.StateStale, nil
	case statusv3.ConfigStatus_NOT_SENT:
		return reconcile.StateNotSent, nil
	case statusv3.ConfigStatus_ERROR:
		return reconcile.StateError, nil
	default:
		return "", fmt.Errorf("config status %v is not one istiod reports", s)
	}
}
