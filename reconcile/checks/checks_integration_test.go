package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/restmapper"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

var bed struct {
	started bool
	assets  testbed.Assets
	kube    *testbed.Kube
	mapper  *restmapper.DeferredDiscoveryRESTMapper
}

func TestMain(m *testing.M) {
	os.Exit(testbed.Main(m, func(a testbed.Assets) (func(), error) {
		dir, err := testbed.NewLogDir("meshdrift-checks-")
		if err != nil {
			return nil, err
		}
		k, err := testbed.StartKube(a, dir)
		if err != nil {
			return nil, err
		}
		dc, err := discovery.NewDiscoveryClientForConfig(k.Config)
		if err != nil {
			_ = k.Stop()
			return nil, err
		}
		bed.started, bed.assets, bed.kube = true, a, k
		bed.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
		return func() { _ = k.Stop() }, nil
	}))
}

// apiFixtures are every fixture of TestFixtures, each applied to the real API server.
var apiFixtures = []struct {
	file string
	live bool
}{
	{"destinationhost.yaml", false}, {"subset.yaml", false}, {"gateway.yaml", false}, {"hostconflict.yaml", false},
	{"mtls.yaml", false}, {"mtlsselector.yaml", true}, {"gatewayhosts.yaml", false}, {"workloads.yaml", true},
	{"status.yaml", true}, {"routestale.yaml", true},
}

// checkedKinds are the kinds a live snapshot lists.
var checkedKinds = append([]schema.GroupKind{gkService, gkVirtualService, gkDestinationRule, gkGateway, gkServiceEntry,
	gkSidecar, gkAuthzPolicy, gkPeerAuthn, gkRequestAuthn}, routeKinds...)

// resource returns the dynamic client of an object's kind and namespace.
func resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	mp, err := bed.mapper.RESTMapping(u.GroupVersionKind().GroupKind())
	if err != nil {
		return nil, err
	}
	if mp.Scope.Name() == meta.RESTScopeNameNamespace {
		return bed.kube.Dynamic.Resource(mp.Resource).Namespace(u.GetNamespace()), nil
	}
	return bed.kube.Dynamic.Resource(mp.Resource), nil
}

// applyFixture applies a fixture to the API server as its owners would write it: the
// objects server-side applied, their status written through the status subresource (as
// istiod or a Gateway API implementation does), pods created with the one container the
// API server requires. It returns the objects as applied and a function deleting them.
func applyFixture(t *testing.T, ctx context.Context, file string) ([]*unstructured.Unstructured, func()) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ParseManifests(file, data)
	if err != nil {
		t.Fatal(err)
	}
	var applied []*unstructured.Unstructured
	cleanup := func() {
		for _, u := range applied {
			ri, err := resource(u)
			if err == nil {
				zero := int64(0)
				err = ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{GracePeriodSeconds: &zero})
			}
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting %s %s: %v", u.GetKind(), u.GetName(), err)
			}
		}
	}
	for _, m := range ms {
		obj := m.Object
		if obj.GetNamespace() == "" {
			obj.SetNamespace(DefaultNamespace)
		}
		if err := bed.kube.CreateNamespace(ctx, obj.GetNamespace()); err != nil {
			t.Fatal(err)
		}
		status, hasStatus, _ := unstructured.NestedFieldCopy(obj.Object, "status")
		fixtureGen := obj.GetGeneration()
		unstructured.RemoveNestedField(obj.Object, "status")
		// The API server keeps managedFields and generation itself.
		obj.SetManagedFields(nil)
		unstructured.RemoveNestedField(obj.Object, "metadata", "generation")
		unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
		if obj.GetKind() == "Pod" {
			_ = unstructured.SetNestedSlice(obj.Object, []any{map[string]any{"name": "app", "image": "registry.example/app:1"}}, "spec", "containers")
		}
		u, err := bed.kube.ApplyObject(ctx, "checks-test", obj)
		if err != nil {
			cleanup()
			t.Fatal(err)
		}
		applied = append(applied, u)
		if hasStatus {
			shiftObservedGenerations(status, fixtureGen, u.GetGeneration())
			u.Object["status"] = status
			if _, err := bed.kube.UpdateStatus(ctx, u); err != nil {
				cleanup()
				t.Fatal(err)
			}
		}
	}
	return applied, cleanup
}

// shiftObservedGenerations keeps a route's conditions as far behind its generation on
// the API server (which starts at 1) as they are in the fixture.
func shiftObservedGenerations(status any, fixtureGen, serverGen int64) {
	parents, _, _ := unstructured.NestedSlice(asMap(status), "parents")
	for _, p := range parents {
		conds, _, _ := unstructured.NestedSlice(asMap(p), "conditions")
		for _, c := range conds {
			cm := asMap(c)
			if obs, ok := cm["observedGeneration"].(int64); ok && fixtureGen > 0 {
				cm["observedGeneration"] = max(0, serverGen-(fixtureGen-obs))
			}
		}
		_ = unstructured.SetNestedSlice(asMap(p), conds, "conditions")
	}
	if len(parents) > 0 {
		_ = unstructured.SetNestedSlice(asMap(status), parents, "parents")
	}
}

// listSnapshot lists what the checks read from the API server: pods as metadata only (as
// meshdrift's informers do), every other kind in full.
func listSnapshot(t *testing.T, ctx context.Context, live bool) *Snapshot {
	t.Helper()
	snap := NewSnapshot()
	snap.Live = live
	snap.Served = map[schema.GroupKind]bool{}
	for _, gk := range checkedKinds {
		mp, err := bed.mapper.RESTMapping(gk)
		if meta.IsNoMatchError(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		snap.Served[gk] = true
		list, err := bed.kube.Dynamic.Resource(mp.Resource).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			snap.Add(&list.Items[i], Origin{})
		}
	}
	if live {
		mc, err := metadata.NewForConfig(bed.kube.Config)
		if err != nil {
			t.Fatal(err)
		}
		pods, err := mc.Resource(corev1.SchemeGroupVersion.WithResource("pods")).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion("v1")
			u.SetKind("Pod")
			u.SetNamespace(p.Namespace)
			u.SetName(p.Name)
			u.SetLabels(p.Labels)
			u.SetAnnotations(p.Annotations)
			snap.Add(u, Origin{})
		}
	}
	return snap
}

// TestChecksOnAPIServer applies every fixture to the real API server (so the CRDs' own
// validation accepts them; status through the status subresource; pods created), lists
// the objects back into a snapshot and asserts that the checks find what they find on
// the files: every check is seen firing on objects the API server returned. Next to it,
// the real `istioctl analyze` reads the same API server (see analyzeLive).
func TestChecksOnAPIServer(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	seen := map[findings.Code]bool{}
	for _, fx := range apiFixtures {
		name := fx.file
		if fx.live {
			name += "/live"
		}
		t.Run(name, func(t *testing.T) {
			fileSnap := loadFixture(t, fx.file)
			fileSnap.Live, fileSnap.Now = fx.live, fixtureNow
			want, _ := Run(ctx, fileSnap, All())
			_, cleanup := applyFixture(t, ctx, fx.file)
			defer cleanup()

			snap := listSnapshot(t, ctx, fx.live)
			snap.Now = time.Now()
			got, skipped := Run(ctx, snap, All())
			for _, sk := range skipped {
				if fx.live || sk.Reason != "needs live pods or status" {
					t.Errorf("skipped on the API server: %+v", sk)
				}
			}
			if fx.file == "routestale.yaml" {
				// The fixture's spec-write times are in its managedFields; the API server
				// records its own, now. Within the default grace nothing is stale yet ...
				if lines := resultLines(got); len(lines) != 0 {
					t.Errorf("stale within the grace: %q", lines)
				}
				// ... and once the grace has passed since these writes, every route whose
				// conditions lag its generation fires.
				time.Sleep(1100 * time.Millisecond)
				snap.Now, snap.RouteStatusGrace = time.Now(), time.Second
				got, _ = Run(ctx, snap, All())
				want = routeStaleOnServer(t, snap)
			}
			if !slices.Equal(resultLines(got), resultLines(want)) {
				t.Errorf("on the API server\n\t%s\non the files\n\t%s", strings.Join(resultLines(got), "\n\t"), strings.Join(resultLines(want), "\n\t"))
			}
			for _, r := range got {
				seen[r.Code] = true
			}
			// analyze reads the cluster's pods and status whatever the fixture: so does
			// meshdrift's side of the comparison.
			liveSnap := listSnapshot(t, ctx, true)
			liveSnap.Now = time.Now()
			liveGot, _ := Run(ctx, liveSnap, All())
			analyzeLive(t, fx.file, liveGot)
		})
	}
	for _, c := range All() {
		if code := c.Metadata().Code; !seen[code] {
			t.Errorf("%s (%s) fires on nothing the API server returned", code, c.Metadata().Name)
		}
	}
}

// routeStaleOnServer is what MD0603 must report on routestale.yaml as applied: the API
// server set every route's generation to 1 and recorded its spec write just now, so each
// condition whose fixture observedGeneration lags the fixture's generation by a whole
// generation (observedGeneration 0 as written) is stale.
func routeStaleOnServer(t *testing.T, snap *Snapshot) []Result {
	t.Helper()
	var want []Result
	for _, line := range []struct{ kind, name, path string }{
		{"HTTPRoute", "stale", "status.parents[0].conditions[0].observedGeneration"},
		{"HTTPRoute", "fresh", "status.parents[0].conditions[0].observedGeneration"},
		{"GRPCRoute", "new", "status.parents[1].conditions[0].observedGeneration"},
		{"GRPCRoute", "unknown", "status.parents[0].conditions[0].observedGeneration"},
	} {
		want = append(want, Result{Code: findings.CodeRouteStatusStale,
			Object: refOf(snap.Get(schema.GroupKind{Group: gatewayAPIGroup, Kind: line.kind}, "default", line.name)), Path: line.path})
	}
	slices.SortFunc(want, compareResults)
	return want
}

// istioctlAnalyze runs the real `istioctl analyze -A -o json` with args and decodes its
// messages.
func istioctlAnalyze(t *testing.T, args ...string) []analyzeMessage {
	t.Helper()
	cmd := exec.Command(bed.assets.Bin("istioctl"), append([]string{"analyze", "-A", "-o", "json"}, args...)...)
	out, err := cmd.Output()
	if err != nil && cmd.ProcessState.ExitCode() > 79 {
		// analyze exits 79 when it found errors; anything else is a failure to run.
		t.Fatalf("istioctl analyze: %v\n%s", err, out)
	}
	var msgs []analyzeMessage
	if start := strings.IndexByte(string(out), '['); start >= 0 {
		if err := json.Unmarshal(out[start:], &msgs); err != nil {
			t.Fatalf("decoding %s: %v", out, err)
		}
	}
	return msgs
}

// analyzeLive runs the real `istioctl analyze` on the API server holding a fixture
// (reading it through the bed's kubeconfig, as users run it against their cluster) and
// applies the side-by-side rule to meshdrift's results on the same API server: every
// message analyze reports is reported by meshdrift on the same object with a
// corresponding code, or liveNotCovered says why not. Counts are asserted as in
// TestIstioctlAnalyzeSideBySide.
func analyzeLive(t *testing.T, file string, results []Result) {
	t.Helper()
	msgs := istioctlAnalyze(t, "--kubeconfig", bed.kube.Kubeconfig)
	have := map[string]bool{}
	for _, r := range results {
		have[fmt.Sprintf("%s %s %s/%s", r.Code, r.Object.Kind, r.Object.Namespace, r.Object.Name)] = true
	}
	var reported int
	for _, m := range msgs {
		if liveNotCovered[m.Code] != "" || liveNotCoveredOn[file][m.Code+" "+m.Origin] != "" {
			continue
		}
		reported++
		found := false
		for _, code := range analyzeCorresponds[m.Code] {
			found = found || have[code+" "+m.Origin]
		}
		if !found {
			t.Errorf("istioctl analyze on the API server reports %s on %s (%s); meshdrift does not", m.Code, m.Origin, m.Message)
		}
	}
	want, ok := liveCounts[file]
	if !ok || reported != want.istioctl || len(results) != want.meshdrift {
		var codes []string
		for _, m := range msgs {
			codes = append(codes, m.Code+" "+m.Origin)
		}
		t.Errorf("on the API server istioctl %d messages (not counting %v), meshdrift %d results; the table says %+v\nistioctl: %s\nmeshdrift: %s",
			reported, slices.Sorted(maps.Keys(liveNotCovered)), len(results), want, strings.Join(codes, "; "), strings.Join(resultLines(results), "; "))
	}
}

// analyzeMessage is one message of `istioctl analyze -o json`.
type analyzeMessage struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Origin  string `json:"origin"` // "VirtualService default/bad"
}

// analyzeCorresponds maps each IST code analyze reports on the fixtures to the codes
// meshdrift reports the same problem with.
var analyzeCorresponds = map[string][]string{
	"IST0101": {"MD0501", "MD0502", "MD0503", "MD0506", "MD0507"},
	"IST0109": {"MD0504"},
	"IST0127": {"MD0507"},
	// analyze also reports IST0132 for a gateway that does not exist; meshdrift reports
	// that once, as MD0503.
	"IST0132": {"MD0510", "MD0503"},
	"IST0171": {"MD0601", "MD0602"},
	"IST0173": {"MD0505"},
}

// liveNotCovered are the codes analyze reports on the API server that meshdrift does not,
// and why.
var liveNotCovered = map[string]string{
	"IST0102": "namespace not labelled for injection: meshdrift compares the labels with the revision proxies are connected to (MD0701, from istiod's views), not labels alone",
	"IST0162": "gateway port not among its Service's target ports: not checked by meshdrift",
	"IST0174": "DestinationRule host matching no service: not checked by meshdrift (such a rule is inert)",
}

// liveNotCoveredOn are single messages analyze reports on the API server holding one
// fixture that meshdrift does not, and why.
var liveNotCoveredOn = map[string]map[string]string{
	"workloads.yaml": {
		// The bed has no injector, so no pod has a sidecar; meshdrift matches labels.
		"IST0127 AuthorizationPolicy default/good": "analyze counts only pods with a sidecar; meshdrift counts every pod with the labels",
	},
	"status.yaml": {
		"IST0101 Gateway istio-system/ingress": "a Gateway without a selector: analyze reports the empty selector when no pod exists; meshdrift leaves selectorless Gateways alone",
	},
}

// liveCounts are analyze's messages (those not in liveNotCovered) and meshdrift's results
// on the API server holding each fixture.
var liveCounts = map[string]struct{ istioctl, meshdrift int }{
	"destinationhost.yaml": {4, 4},
	// analyze misses the exportTo-hidden subset.
	"subset.yaml": {4, 5},
	// analyze misses the match gateway and reports each missing gateway twice.
	"gateway.yaml":      {6, 5},
	"hostconflict.yaml": {3, 3},
	"mtls.yaml":         {0, 3},
	"mtlsselector.yaml": {0, 4},
	// analyze misses the single unserved host.
	"gatewayhosts.yaml": {2, 3},
	// analyze misses the subset and the RequestAuthentication matching no pod.
	"workloads.yaml": {3, 5},
	// analyze does not read istiod's validationMessages (MD0509).
	"status.yaml":     {3, 4},
	"routestale.yaml": {0, 0},
}

// TestIstioctlAnalyzeSideBySide runs the real `istioctl analyze --use-kube=false` on every
// fixture. Every message it reports must be reported by meshdrift on the same object with
// a corresponding code, or be listed in notCovered with the reason. The counts on both
// sides are asserted, so that what meshdrift finds beyond analyze stays written down.
func TestIstioctlAnalyzeSideBySide(t *testing.T) {
	testbed.Need(t, bed.started)
	notCovered := map[string]string{} // IST code -> why meshdrift does not report it; none offline
	cases := []struct {
		file                string
		live                bool
		istioctl, meshdrift int
		why                 string
	}{
		// Measured with the bed's istioctl (1.31-dev): offline it reports no IST0101 for
		// unknown destination hosts at all, not even nowhere.example.org alone.
		{"destinationhost.yaml", false, 0, 4, "analyze reports no unknown destination host offline"},
		// analyze misses the exportTo-hidden DestinationRule subset.
		{"subset.yaml", false, 1, 2, "exportTo honoured"},
		// analyze misses the gateway named in an HTTP match, and reports each missing
		// gateway twice (IST0101 and IST0132).
		{"gateway.yaml", false, 4, 3, "match gateways checked; a missing gateway reported once"},
		{"hostconflict.yaml", false, 2, 2, ""},
		{"mtls.yaml", false, 0, 3, "analyze has no mTLS conflict check (IST0113 retired)"},
		{"mtlsselector.yaml", false, 0, 3, "analyze has no mTLS conflict check"},
		// analyze misses the one host of two that the gateway does not serve.
		{"gatewayhosts.yaml", false, 1, 2, "a single unserved host reported"},
		// Offline, with Pod manifests present, analyze reports no selector or subset problem.
		{"workloads.yaml", true, 0, 5, "live pods"},
		{"mtlsselector.yaml", true, 0, 4, "live pods behind the host"},
		{"status.yaml", true, 0, 4, "status read"},
		{"routestale.yaml", true, 0, 2, "status read"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			msgs := istioctlAnalyze(t, "--use-kube=false", filepath.Join("testdata", tc.file))
			s := loadFixture(t, tc.file)
			// The live fixtures' Pods and status stand for the cluster's.
			s.Live = tc.live
			if tc.live {
				s.Now = fixtureNow
			}
			results, _ := Run(context.Background(), s, All())
			have := map[string]bool{}
			for _, r := range results {
				have[fmt.Sprintf("%s %s %s/%s", r.Code, r.Object.Kind, r.Object.Namespace, r.Object.Name)] = true
			}
			for _, m := range msgs {
				if notCovered[m.Code] != "" {
					continue
				}
				found := false
				for _, code := range analyzeCorresponds[m.Code] {
					found = found || have[code+" "+m.Origin]
				}
				if !found {
					t.Errorf("istioctl reports %s on %s (%s); meshdrift does not", m.Code, m.Origin, m.Message)
				}
			}
			if len(msgs) != tc.istioctl || len(results) != tc.meshdrift {
				t.Errorf("istioctl %d messages, meshdrift %d results; the table says %d and %d (%s)\n%+v",
					len(msgs), len(results), tc.istioctl, tc.meshdrift, tc.why, msgs)
			}
		})
	}
}
