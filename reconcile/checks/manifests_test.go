package checks

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseManifests(t *testing.T) {
	in := "# leading comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\n# only a comment\n---\n" +
		"# doc comment\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n- {apiVersion: v1, kind: Service, metadata: {name: c}}\n--- # trailing\n" +
		"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: d, namespace: x}\n"
	ms, err := ParseManifests("f.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Object.GetName()+"@"+m.Origin.File+":"+strconv.Itoa(m.Origin.Line))
	}
	if want := "a@f.yaml:3 b@f.yaml:14 c@f.yaml:15 d@f.yaml:17"; strings.Join(got, " ") != want {
		t.Errorf("got %q, want %q", strings.Join(got, " "), want)
	}

	for in, want := range map[string]string{
		"apiVersion: v1\nkind: Service\n---\n\nfoo: [\n":  "f.yaml:5: ",
		"---\nmetadata: {name: x}\n":                      "f.yaml:2: not a Kubernetes object (apiVersion and kind are required)",
		"apiVersion: v1\nkind: ServiceList\nitems: [1]\n": "f.yaml:1: ",
	} {
		if _, err := ParseManifests("f.yaml", []byte(in)); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ParseManifests(%q) = %v, want prefix %q", in, err, want)
		}
	}
}

func TestLineOf(t *testing.T) {
	in := "# comment\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: a\nspec:\n" +
		"  hosts: [reviews]\n" + // 8
		"  http:\n" + // 9
		"  - route:\n" + // 10
		"    - destination: {host: reviews, subset: v1}\n" + // 11
		"    - destination:\n" + // 12
		"        host: ratings\n" + // 13
		"---\n" +
		"{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\n" + // 15
		"  {\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"b\"},\n" + // 16
		"   \"spec\": {\"selector\": {\"app\": \"b\"}}}]}\n" // 17
	ms, err := ParseManifests("f.yaml", []byte(in))
	if err != nil || len(ms) != 2 {
		t.Fatalf("%d manifests, %v", len(ms), err)
	}
	for _, tc := range []struct {
		m    int
		path string
		want int
	}{
		{0, "spec.hosts[0]", 8},
		{0, "spec.http[0].route[0].destination.subset", 11},
		{0, "spec.http[0].route[1].destination.host", 13},
		{0, "spec.http[0].route[1]", 12},
		// Beyond the file: the deepest part it has.
		{0, "spec.http[0].route[1].destination.subset", 12},
		{0, "spec.http[3].route[0]", 9},
		{0, "status.validationMessages[0]", 3},
		{0, "", 3},
		{1, "spec.selector", 17},
		{1, "metadata.name", 16},
	} {
		if got := ms[tc.m].Origin.LineOf(tc.path); got != tc.want {
			t.Errorf("manifest %d LineOf(%q) = %d, want %d", tc.m, tc.path, got, tc.want)
		}
	}
	if got := (Origin{File: "x", Line: 4}).LineOf("spec.hosts[0]"); got != 4 {
		t.Errorf("origin without a tree: line %d", got)
	}
}

func FuzzParseManifests(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: List\nitems: []\n"))
	f.Add([]byte("---\n--- #x\n\n"))
	f.Add([]byte("{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := ParseManifests("f", data)
		if err != nil {
			return
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, m := range ms {
			if m.Origin.Line < 1 || m.Origin.Line > lines || m.Object.GetKind() == "" {
				t.Fatalf("manifest %+v at line %d of %d", m.Object, m.Origin.Line, lines)
			}
			for _, p := range []string{"metadata.name", "spec.a[0].b", "items[1]"} {
				if l := m.Origin.LineOf(p); l < 1 || l > lines {
					t.Fatalf("manifest %+v: %s at line %d of %d", m.Object, p, l, lines)
				}
			}
		}
	})
}
