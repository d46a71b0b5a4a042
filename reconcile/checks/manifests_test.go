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
	if want := "a@f.yaml:3 b@f.yaml:11 c@f.yaml:11 d@f.yaml:17"; strings.Join(got, " ") != want {
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
		}
	})
}
