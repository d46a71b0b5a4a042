package appview

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func fixtures(t testing.TB) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	return names
}

// TestFromUnstructured checks that an object read through a dynamic client decodes to the
// same view as its JSON.
func TestFromUnstructured(t *testing.T) {
	for _, name := range fixtures(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			fromJSON, err := FromJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(data); err != nil {
				t.Fatal(err)
			}
			fromU, err := FromUnstructured(u)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromU, fromJSON) {
				t.Errorf("FromUnstructured = %+v\nFromJSON = %+v", fromU, fromJSON)
			}
		})
	}
}

func TestFromUnstructuredNil(t *testing.T) {
	if _, err := FromUnstructured(nil); err == nil {
		t.Fatal("want an error for a nil object")
	}
}

func TestFromJSONErrors(t *testing.T) {
	tests := []struct {
		name, data, wantErr string
	}{
		{"malformed", `{"metadata":`, "decoding argo cd application: unexpected end of JSON input"},
		{"not an object", `[]`, "decoding argo cd application: json: cannot unmarshal array"},
		{"wrong kind", `{"apiVersion":"argoproj.io/v1alpha1","kind":"AppProject","metadata":{"name":"a","namespace":"argocd"}}`,
			`decoding argo cd application: kind "AppProject", want "Application"`},
		{"wrong apiVersion", `{"apiVersion":"argoproj.io/v1beta1","kind":"Application","metadata":{"name":"a","namespace":"argocd"}}`,
			`decoding argo cd application: apiVersion "argoproj.io/v1beta1", want "argoproj.io/v1alpha1"`},
		{"no name", `{"metadata":{"namespace":"argocd"}}`,
			`decoding argo cd application: metadata.name and metadata.namespace are required (got "argocd"/"")`},
		{"no namespace", `{"metadata":{"name":"a"}}`,
			`decoding argo cd application: metadata.name and metadata.namespace are required (got ""/"a")`},
		{"wrong field type", `{"metadata":{"name":"a","namespace":"argocd"},"status":{"sync":{"status":1}}}`,
			"decoding argo cd application: json: cannot unmarshal number"},
		{"bad time", `{"metadata":{"name":"a","namespace":"argocd"},"status":{"reconciledAt":"yesterday"}}`,
			"decoding argo cd application: parsing time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromJSON([]byte(tt.data))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want prefix %q", err, tt.wantErr)
			}
		})
	}
}

func TestFromJSONIgnoresUnknownFields(t *testing.T) {
	a, err := FromJSON([]byte(`{"metadata":{"name":"a","namespace":"argocd","managedFields":[{}]},
		"spec":{"sourceHydrator":{"drySource":{}}},"status":{"someFutureField":{"x":1},"sync":{"status":"Synced"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Status.Sync.Status != SyncSynced {
		t.Errorf("sync status = %q", a.Status.Sync.Status)
	}
}

func TestFromListJSON(t *testing.T) {
	var items []string
	for _, name := range []string{"synced-healthy.json", "other-namespace.json"} {
		items = append(items, string(readFixture(t, name)))
	}
	// The API server's list items carry no apiVersion/kind.
	list := `{"metadata":{"resourceVersion":"91004"},"items":[` + strings.Join(items, ",") + `,
		{"metadata":{"name":"bare","namespace":"argocd"},"spec":{}}]}`
	apps, err := FromListJSON([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range apps {
		got = append(got, a.Key().String())
	}
	want := []string{"argocd/Application/argocd/reviews", "argocd/Application/team-bookinfo/reviews", "argocd/Application/argocd/bare"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}

	tests := []struct {
		name, data, wantErr string
		wantLen             int
	}{
		{name: "empty list", data: `{"metadata":{},"items":[]}`},
		{name: "null items", data: `{"metadata":{},"items":null}`},
		{name: "no items field", data: `{"error":"not argo cd"}`, wantErr: "decoding argo cd application list: no items field"},
		{name: "malformed", data: `{"items":[{"metadata":`, wantErr: "decoding argo cd application list: unexpected end of JSON input"},
		{name: "items not a list", data: `{"items":{}}`, wantErr: "decoding argo cd application list: json: cannot unmarshal object"},
		{name: "item without name", data: `{"items":[{"metadata":{"name":"a","namespace":"argocd"}},{"metadata":{"namespace":"argocd"}}]}`,
			wantErr: "item 1: decoding argo cd application: metadata.name and metadata.namespace are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apps, err := FromListJSON([]byte(tt.data))
			if tt.wantErr == "" {
				if err != nil || len(apps) != tt.wantLen {
					t.Fatalf("got %d apps, err %v; want %d", len(apps), err, tt.wantLen)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want prefix %q", err, tt.wantErr)
			}
			if apps != nil {
				t.Errorf("got %d apps with an error", len(apps))
			}
		})
	}
}

// FuzzFromJSON: outside bytes must never panic the decoder or the mapping, and whatever
// decodes must map to an app keyed by its metadata.
func FuzzFromJSON(f *testing.F) {
	for _, name := range fixtures(f) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"metadata":{"name":"a","namespace":"b"},"status":null}`))
	f.Add([]byte(`{"metadata":{"name":"a","namespace":"b"},"status":{"history":[{"id":-1},{"id":-1}],"operationState":{"phase":"Succeeded","syncResult":{}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := FromJSON(data)
		if err != nil {
			return
		}
		app := ToApp(a, time.Time{})
		if app.Key.Name != a.Metadata.Name || app.Key.Namespace != a.Metadata.Namespace || app.Key.Name == "" {
			t.Fatalf("key %v for metadata %+v", app.Key, a.Metadata)
		}
		if app.State == "" {
			t.Fatal("empty state")
		}
		if _, err := json.Marshal(a); err != nil {
			t.Fatalf("re-encoding the view: %v", err)
		}
	})
}
