package istio

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// TestParseSynczHTTPMalformed pairs each malformed body with the exact error it gives.
func TestParseSynczHTTPMalformed(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
	}{
		{"not an array", `{}`, "decode syncz body: json: cannot unmarshal object into Go value of type []istio.synczHTTPProxy"},
		{"truncated", `[{"proxy":"a.default"`, "decode syncz body: unexpected end of JSON input"},
		{"trailing data", `[] []`, "decode syncz body: invalid character '[' after top-level value"},
		{"empty body", ``, "decode syncz body: unexpected end of JSON input"},
		{"proxy without id", `[{"cluster_id":"Kubernetes"}]`, "syncz entry 0: proxy has no id"},
		{"null proxy", `[{"proxy":"a.default"},null]`, "syncz entry 1: proxy has no id"},
		{"wrong field type", `[{"proxy":1}]`, "decode syncz body: json: cannot unmarshal number into Go struct field synczHTTPProxy.proxy of type string"},
		{
			"empty type url",
			`[{"proxy":"a.default","resources":{"":{}}}]`,
			`syncz entry 0: proxy "a.default": resource with an empty type url`,
		},
		{
			"bad sent nonce",
			`[{"proxy":"a.default","resources":{"T":{"sent":"short","acked":"short"}}}]`,
			`syncz entry 0: proxy "a.default": type "T": sent: nonce "short" has no push version before its 36-character uuid`,
		},
		{
			"bad acked nonce",
			`[{"proxy":"a.default","resources":{"T":{"sent":"2026-11-25T15:33:06Z/2` + goldenUUID + `","acked":"x` + goldenUUID + `"}}}]`,
			`syncz entry 0: proxy "a.default": type "T": acked: nonce "x260b9beb-7a1c-42cc-9707-6a0b50926d5f": push version "x" has no '/'`,
		},
		{
			"bad sent time",
			`[{"proxy":"a.default","resources":{"T":{"sentTime":"yesterday"}}}]`,
			`decode syncz body: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSynczHTTP(strings.NewReader(tt.body), "istiod-0")
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("error = %v\nwant %s", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("got %+v with an error", got)
			}
		})
	}
}

func TestParseSynczHTTPEdges(t *testing.T) {
	const (
		nonce   = "2026-11-25T15:33:06Z/2" + goldenUUID
		cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	)
	tests := []struct {
		name, body string
		want       []reconcile.ProxyStatus
	}{
		{"no proxies", `[]`, []reconcile.ProxyStatus{}},
		{"null: a nil slice marshalled by istiod", `null`, []reconcile.ProxyStatus{}},
		{
			"proxy watching nothing yet",
			`[{"proxy":"a.default","proxy_type":"router"}]`,
			[]reconcile.ProxyStatus{{ID: "a.default", ProxyType: "router", Istiod: "istiod-0", Types: []reconcile.XDSStatus{}}},
		},
		{
			"unknown fields from a newer istiod are ignored",
			`[{"proxy":"a.default","proxy_version":"1.40","resources":{"` + cluster + `":{"sent":"` + nonce + `","acked":"` + nonce + `","sentTime":"2026-11-25T16:33:06+01:00","retries":3}}}]`,
			[]reconcile.ProxyStatus{{ID: "a.default", Istiod: "istiod-0", Types: []reconcile.XDSStatus{{
				TypeURL:      cluster,
				State:        reconcile.StateSynced,
				SentVersion:  "2026-11-25T15:33:06Z/2",
				AckedVersion: "2026-11-25T15:33:06Z/2",
				SentAt:       time.Date(2026, 11, 25, 15, 33, 6, 0, time.UTC),
			}}}},
		},
		{
			"a proxy listed twice while it reconnects keeps istiod's order",
			`[{"proxy":"b.default","cluster_id":"second"},{"proxy":"a.default"},{"proxy":"b.default","cluster_id":"first"}]`,
			[]reconcile.ProxyStatus{
				{ID: "a.default", Istiod: "istiod-0", Types: []reconcile.XDSStatus{}},
				{ID: "b.default", ClusterID: "second", Istiod: "istiod-0", Types: []reconcile.XDSStatus{}},
				{ID: "b.default", ClusterID: "first", Istiod: "istiod-0", Types: []reconcile.XDSStatus{}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSynczHTTP(strings.NewReader(tt.body), "istiod-0")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// endless is a body that never ends, as from a broken or hostile endpoint.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestParseSynczHTTPLimit(t *testing.T) {
	const limit = 1024
	atLimit := "[]" + strings.Repeat(" ", limit-2)
	if _, err := parseSynczHTTP(strings.NewReader(atLimit), "istiod-0", limit); err != nil {
		t.Errorf("body of exactly the limit: %v", err)
	}
	for name, r := range map[string]io.Reader{
		"one byte over": strings.NewReader(atLimit + " "),
		"endless":       endless{},
	} {
		_, err := parseSynczHTTP(r, "istiod-0", limit)
		if !errors.Is(err, ErrSynczTooLarge) || err.Error() != "syncz body exceeds 1024 bytes: syncz body too large" {
			t.Errorf("%s: error = %v, want ErrSynczTooLarge", name, err)
		}
	}
}

func TestParseSynczHTTPReadError(t *testing.T) {
	_, err := ParseSynczHTTP(iotest.ErrReader(errors.New("connection reset")), "istiod-0")
	if err == nil || err.Error() != "read syncz body: connection reset" {
		t.Errorf("error = %v", err)
	}
}

func FuzzParseSynczHTTP(f *testing.F) {
	for _, step := range synczSteps() {
		f.Add(readGolden(f, "syncz-http-"+step+".json"))
	}
	f.Add(readGolden(f, "syncz-http-ns-default.json"))
	for _, s := range []string{
		`[]`,
		`null`,
		`[{"proxy":"a.default","resources":{"T":{"sent":"2026-11-25T15:33:06Z/2` + goldenUUID + `","lastError":"nack"}}}]`,
		`[{"proxy":"a.default","resources":{"T":{"sentTime":"0001-01-01T00:00:00Z"}}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ParseSynczHTTP(bytes.NewReader(body), "istiod-0")
		if err != nil {
			if got != nil {
				t.Fatalf("results %+v with error %v", got, err)
			}
			return
		}
		checkSynczInvariants(t, got, true)
		// The streaming decoder agrees with decoding the whole body, or leaves it to it.
		if streamed, ok := decodeSynczHTTP(body, "istiod-0"); ok {
			whole, err := decodeSynczHTTPWhole(body, "istiod-0")
			if err != nil || !reflect.DeepEqual(streamed, whole) {
				t.Fatalf("streamed %+v\nwhole %+v (%v)", streamed, whole, err)
			}
		}
		again, err := ParseSynczHTTP(bytes.NewReader(body), "istiod-0")
		if err != nil || !reflect.DeepEqual(got, again) {
			t.Fatalf("second parse differs: %v\n%+v\n%+v", err, got, again)
		}
	})
}
