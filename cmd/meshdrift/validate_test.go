package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestValidateManifests(t *testing.T) {
	// Each line names the line of the field in error.
	badLines := "testdata/validate/bad/mtls.yaml:11: MD0508 DestinationRule bookinfo/reviews spec.trafficPolicy.tls.mode: clients use TLS mode DISABLE for host reviews, but PeerAuthentication bookinfo/default sets mTLS STRICT for namespace bookinfo\n" +
		"testdata/validate/bad/routes.yaml:11: MD0503 VirtualService bookinfo/reviews spec.gateways[0]: gateway \"public\" not found (no Gateway bookinfo/public)\n" +
		"testdata/validate/bad/routes.yaml:14: MD0501 VirtualService bookinfo/reviews spec.http[0].route[0].destination.host: destination host \"reviews.bookinfo\" matches no Service or ServiceEntry visible from namespace bookinfo; Istio does not expand \"reviews.bookinfo\": did you mean \"reviews.bookinfo.svc.cluster.local\"?\n" +
		"testdata/validate/bad/routes.yaml:14: MD0502 VirtualService bookinfo/reviews spec.http[0].route[0].destination.subset: subset \"v1\" of host \"reviews.bookinfo\" is not defined: no DestinationRule for host reviews.bookinfo is visible from namespace bookinfo\n"
	skippedNote := "meshdrift validate: 7 checks need a live cluster and were skipped (MD0505, MD0506, MD0507, MD0509, MD0601, MD0602, MD0603)\n"
	cases := []struct {
		name       string
		args       []string
		code       int
		out, err   string
		errContain string
	}{
		{name: "good directory", args: []string{"testdata/validate/good"}, code: exitOK, err: skippedNote},
		{name: "good files and directory", args: []string{"testdata/validate/good/reviews.yaml", "testdata/validate/good/payments"}, code: exitOK, err: skippedNote},
		{name: "bad directory", args: []string{"testdata/validate/bad"}, code: exitProblem, out: badLines, err: skippedNote},
		{name: "one bad file", args: []string{"testdata/validate/bad/mtls.yaml"}, code: exitProblem, out: strings.SplitAfter(badLines, "\n")[0], err: skippedNote},
		{name: "kustomize base", args: []string{"testdata/validate/kustomize/base"}, code: exitOK, err: skippedNote},
		// The overlay's patch breaks the route: checked as kustomize renders it, reported
		// in the patch file that wrote the field.
		{name: "kustomize overlay", args: []string{"testdata/validate/kustomize/prod"}, code: exitProblem, err: skippedNote,
			out: "testdata/validate/kustomize/prod/route.yaml:7: MD0501 VirtualService bookinfo/reviews spec.http[0].route[0].destination.host: destination host \"reviews-canary\" matches no Service or ServiceEntry visible from namespace bookinfo\n"},
		// The overlay's policy makes the base's DestinationRule wrong: reported in the base.
		{name: "kustomize overlay, problem in the base", args: []string{"testdata/validate/kustomize/staging"}, code: exitProblem, err: skippedNote,
			out: "testdata/validate/kustomize/base/reviews.yaml:22: MD0508 DestinationRule bookinfo/reviews spec.trafficPolicy.tls.mode: clients use TLS mode DISABLE for host reviews, but PeerAuthentication bookinfo/default sets mTLS STRICT for namespace bookinfo\n"},
		{name: "flags after paths", args: []string{"testdata/validate/good", "-o", "text"}, code: exitOK, err: skippedNote},
		{name: "no arguments", args: nil, code: exitUsage, errContain: "give --config FILE or manifest paths"},
		{name: "bad format", args: []string{"-o", "xml", "testdata/validate/good"}, code: exitUsage, errContain: `-o "xml": must be text, json or sarif`},
		{name: "missing path", args: []string{"testdata/validate/nope"}, code: exitUsage, errContain: "testdata/validate/nope: no such file or directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{"validate"}, tc.args...), &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", code, tc.code, errOut.String())
			}
			if out.String() != tc.out {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), tc.out)
			}
			if tc.errContain != "" {
				if !strings.Contains(errOut.String(), tc.errContain) {
					t.Errorf("stderr %q does not contain %q", errOut.String(), tc.errContain)
				}
			} else if errOut.String() != tc.err {
				t.Errorf("stderr %q, want %q", errOut.String(), tc.err)
			}
		})
	}
}

func TestValidateStdin(t *testing.T) {
	data, err := os.ReadFile("testdata/validate/bad/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := validateManifests([]string{"-"}, "text", bytes.NewReader(data), &out, &errOut)
	if code != exitProblem || !strings.HasPrefix(out.String(), "<stdin>:11: MD0503 VirtualService bookinfo/reviews spec.gateways[0]: ") || strings.Count(out.String(), "\n") != 3 {
		t.Errorf("exit %d\n%s%s", code, out.String(), errOut.String())
	}
}

func TestValidateJSONAndSARIF(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-o", "json", "testdata/validate/bad"}, &out, &errOut); code != exitProblem {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var doc struct {
		Results []struct {
			File, Code, Name, Severity, Path string
			Line                             int
			Object                           struct{ Kind, Namespace, Name string }
		}
		Skipped []struct{ Check, Code, Reason string }
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Results) != 4 || len(doc.Skipped) != 7 {
		t.Fatalf("results %d, skipped %d:\n%s", len(doc.Results), len(doc.Skipped), out.String())
	}
	r := doc.Results[0]
	if r.File != "testdata/validate/bad/mtls.yaml" || r.Line != 11 || r.Code != "MD0508" || r.Name != "MTLSModeConflict" ||
		r.Severity != "warning" || r.Object.Kind != "DestinationRule" || r.Path != "spec.trafficPolicy.tls.mode" {
		t.Errorf("first result %+v", r)
	}

	out.Reset()
	if code := run([]string{"validate", "-o", "sarif", "testdata/validate/bad"}, &out, &errOut); code != exitProblem {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var log struct {
		Schema  string `json:"$schema"`
		Version string
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string
					Rules []struct{ ID, HelpURI string }
				}
			}
			Results []struct {
				RuleID    string
				RuleIndex int
				Level     string
				Message   struct{ Text string }
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine int }
					}
				}
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || log.Schema == "" || len(log.Runs) != 1 || log.Runs[0].Tool.Driver.Name != "meshdrift" {
		t.Fatalf("sarif header: %s", out.String())
	}
	run0 := log.Runs[0]
	if len(run0.Results) != 4 {
		t.Fatalf("%d results", len(run0.Results))
	}
	var lines []int
	for _, res := range run0.Results {
		if len(res.Locations) == 1 {
			lines = append(lines, res.Locations[0].PhysicalLocation.Region.StartLine)
		}
		if res.RuleIndex >= len(run0.Tool.Driver.Rules) || run0.Tool.Driver.Rules[res.RuleIndex].ID != res.RuleID {
			t.Errorf("result %s: ruleIndex %d does not point at its rule", res.RuleID, res.RuleIndex)
		}
		if len(res.Locations) != 1 || res.Level != "warning" || res.Message.Text == "" {
			t.Errorf("result %+v", res)
		}
	}
	if !slices.Equal(lines, []int{11, 11, 14, 14}) {
		t.Errorf("start lines %v, want the fields' lines 11, 11, 14, 14", lines)
	}
	if u := run0.Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI; u != "testdata/validate/bad/mtls.yaml" {
		t.Errorf("uri %q", u)
	}
}

// TestRenderKustomizationOrigins: objects of a kustomize build name their source files,
// and the annotations meshdrift asked kustomize for are not left on them.
func TestRenderKustomizationOrigins(t *testing.T) {
	ms, err := renderKustomization("testdata/validate/kustomize/prod")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		file, line := m.Origin.Locate("spec.http[0].route[0].destination.host")
		got = append(got, fmt.Sprintf("%s %s:%d %v", m.Object.GetKind(), file, line, m.Object.GetAnnotations()))
	}
	// A path an object does not have ends at the deepest part it has (spec).
	want := []string{
		"Service testdata/validate/kustomize/base/reviews.yaml:4 map[]",
		"DestinationRule testdata/validate/kustomize/base/reviews.yaml:19 map[]",
		"VirtualService testdata/validate/kustomize/prod/route.yaml:7 map[]",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// TestRenderKustomizationKeepsAskedAnnotations: a kustomization that asks for origin
// annotations itself gets them, as kustomize-controller would apply them.
func TestRenderKustomizationKeepsAskedAnnotations(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"kustomization.yaml": "resources: [svc.yaml]\nbuildMetadata: [originAnnotations]\n",
		"svc.yaml":           "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nspec:\n  selector: {app: a}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := renderKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Fatalf("%d objects", len(ms))
	}
	ann := ms[0].Object.GetAnnotations()
	if ann[originAnnotation] != "path: svc.yaml\n" || ann[transformationsAnnotation] != "" {
		t.Errorf("annotations %q", ann)
	}
	if file, line := ms[0].Origin.Locate("spec.selector"); file != filepath.Join(dir, "svc.yaml") || line != 5 {
		t.Errorf("spec.selector at %s:%d", file, line)
	}
}
