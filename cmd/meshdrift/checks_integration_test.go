package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/alerting/statusapi"
	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile/checks"
)

// startChecked runs meshdrift as serve wires it (with the shipped RBAC, as every test
// here), a one-second flap delay and the given codes firing at once, and serves its HTTP
// handlers.
func startChecked(t *testing.T, fireAtOnce ...string) (*app, *httptest.Server) {
	t.Helper()
	a := startMeshdriftWith(t, 30*time.Second, func(c *config.Config) {
		c.Findings.ResolveAfter = config.Duration(time.Second)
		c.Findings.For = map[string]config.Duration{}
		for _, code := range fireAtOnce {
			c.Findings.For[code] = 0
		}
	}, bed.istiod)
	srv := httptest.NewServer(a.mux)
	t.Cleanup(srv.Close)
	return a, srv
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// findingState returns the state of the finding of code about kind ns/name, as the
// status API lists it ("" when it lists none), and its summary.
func findingState(t *testing.T, srv *httptest.Server, code, kind, ns, name string) (state, summary string) {
	t.Helper()
	var list statusapi.FindingList
	getJSON(t, srv.URL+"/api/v1/findings?"+url.Values{"code": {code}}.Encode(), &list)
	for _, f := range list.Findings {
		if o := f.Subject.Object; o != nil && o.Kind == kind && o.Namespace == ns && o.Name == name {
			return f.State, f.Summary
		}
	}
	return "", ""
}

// A VirtualService routing to a host no Service defines is MD0501 in the status API
// within seconds of its creation; creating the Service resolves it. The status API's
// checks section says which checks ran and counts the result.
func TestLiveCheckDestinationHost(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	_, srv := startChecked(t, "MD0501")
	ctx := context.Background()
	written := time.Now()
	if _, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: %s}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: backend}}]}]
`, ns)); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 20*time.Second, "MD0501 firing on the VirtualService", func() (bool, string) {
		st, sum := findingState(t, srv, "MD0501", "VirtualService", ns, "web")
		return st == "firing", st + ": " + sum
	})
	t.Logf("VirtualService written → MD0501 firing in the status API after %s", time.Since(written).Round(time.Millisecond))
	_, sum := findingState(t, srv, "MD0501", "VirtualService", ns, "web")
	if want := fmt.Sprintf(`destination host "backend" matches no Service or ServiceEntry visible from namespace %s`, ns); !strings.Contains(sum, want) {
		t.Errorf("summary %q, want it to say %q", sum, want)
	}

	var st statusapi.Status
	getJSON(t, srv.URL+"/api/v1/status", &st)
	c := st.Checks
	if c == nil {
		t.Fatal("no checks section in /api/v1/status")
	}
	if c.Waiting != "" || c.LastRunAt.IsZero() || c.Results["MD0501"] < 1 {
		t.Errorf("checks section %+v: want a run, no waiting, at least one MD0501", *c)
	}
	if !slices.Contains(c.Ran, statusapi.CheckRef{Name: "virtualservice.destinationhost", Code: "MD0501"}) {
		t.Errorf("ran %v: no virtualservice.destinationhost", c.Ran)
	}
	if n := len(checks.All()); len(c.Ran) != n || len(c.Skipped) != 0 {
		t.Errorf("%d checks ran and %d skipped, want all %d to run on the bed (it serves every kind)", len(c.Ran), len(c.Skipped), n)
	}

	if _, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: backend, namespace: %s}
spec:
  selector: {app: backend}
  ports: [{port: 80}]
`, ns)); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 20*time.Second, "MD0501 resolved once the Service exists", func() (bool, string) {
		st, sum := findingState(t, srv, "MD0501", "VirtualService", ns, "web")
		return st == "resolved", st + ": " + sum
	})
}

// A DestinationRule subset whose labels no pod of its Service carries is MD0505, read
// from live pod metadata; a pod with those labels resolves it.
func TestLiveCheckSubsetPods(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	_, srv := startChecked(t, "MD0505")
	ctx := context.Background()
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: reviews-%[2]s
  namespace: %[1]s
  labels: {app: reviews, version: %[2]s}
spec:
  containers: [{name: app, image: example.invalid/reviews:1}]
`
	if _, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(pod, ns, "v1")+"---\n"+fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: %[1]s}
spec:
  selector: {app: reviews}
  ports: [{port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: %[1]s}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, ns)); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 20*time.Second, "MD0505 firing on the DestinationRule", func() (bool, string) {
		st, sum := findingState(t, srv, "MD0505", "DestinationRule", ns, "reviews")
		return st == "firing", st + ": " + sum
	})
	_, sum := findingState(t, srv, "MD0505", "DestinationRule", ns, "reviews")
	if !strings.Contains(sum, `subset "v2" (version=v2) matches no pod`) || strings.Contains(sum, `"v1"`) {
		t.Errorf("summary %q: want subset v2 only", sum)
	}

	created := time.Now()
	if _, err := bed.kube.Apply(ctx, "kubectl", fmt.Sprintf(pod, ns, "v2")); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 20*time.Second, "MD0505 resolved once a v2 pod exists", func() (bool, string) {
		st, sum := findingState(t, srv, "MD0505", "DestinationRule", ns, "reviews")
		return st == "resolved", st + ": " + sum
	})
	t.Logf("v2 pod created → MD0505 resolved after %s (resolveAfter 1s)", time.Since(created).Round(time.Millisecond))
}

// check runs the semantic checks once on the synced caches and prints their findings and
// the checks it ran.
func TestCheckCommandPrintsCheckFindings(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	if _, err := bed.kube.Apply(context.Background(), "kubectl", fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: %s}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: backend}}]}]
`, ns)); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	// The exit code depends on what other tests left in the bed; the output is the point.
	_ = run([]string{"check", "--config", writeConfig(t, bed.istiod), "--log.level", "error"}, &out, &errOut)
	var line string
	for l := range strings.Lines(out.String()) {
		if strings.HasPrefix(l, "MD0501 ") && strings.Contains(l, "/VirtualService/"+ns+"/web") {
			line = l
		}
	}
	if !strings.Contains(line, `destination host "backend"`) {
		t.Errorf("no MD0501 line about %s/web in the output:\n%s\n%s", ns, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "\nCHECKS\n") || !strings.Contains(out.String(), fmt.Sprintf(" of %d ran in ", len(checks.All()))) {
		t.Errorf("no CHECKS section saying what ran:\n%s", out.String())
	}
}
