package mesh

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/meshdrift/meshdrift/reconcile"
)

// decode reads a manifest the way the watcher gets it: through unstructured's JSON
// decoding, which gives int64 numbers.
func decode(t testing.TB, manifest string) *unstructured.Unstructured {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestReachOf(t *testing.T) {
	cases := []struct {
		name     string
		manifest string
		want     reconcile.Reach
	}{
		{
			name: "VirtualService: hosts, gateways, exportTo, destinations and their ports",
			manifest: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews, reviews.example.com]
  gateways: [mesh, istio-system/public]
  exportTo: ["."]
  http:
  - route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
    - destination: {host: ratings.bookinfo.svc.cluster.local}
    mirror: {host: shadow}
  tcp:
  - route:
    - destination: {host: db, port: {number: 5432}}
`,
			want: reconcile.Reach{Known: true, ExportTo: []string{"."}, Gateways: []string{"mesh", "istio-system/public"},
				Hosts: []string{"reviews", "reviews.example.com", "ratings.bookinfo.svc.cluster.local", "shadow", "db"}, Ports: []uint32{9080, 5432}},
		},
		{
			name: "DestinationRule: host, selector, port-level settings, consistent hash in a subset",
			manifest: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  exportTo: ["*"]
  workloadSelector: {matchLabels: {app: productpage}}
  trafficPolicy:
    portLevelSettings:
    - port: {number: 9080}
      tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: x-user}}
`,
			want: reconcile.Reach{Known: true, ExportTo: []string{"*"}, Hosts: []string{"reviews"}, Ports: []uint32{9080}, Selector: true, RouteHashing: true},
		},
		{
			name: "ServiceEntry: its workloadSelector picks endpoints, not proxies",
			manifest: `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}, {number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: vm}}
`,
			want: reconcile.Reach{Known: true, Hosts: []string{"api.example.com"}, Ports: []uint32{443, 80}},
		},
		{
			name: "Gateway: server hosts without their namespace part, ports, auto-passthrough",
			manifest: `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["bookinfo/*.example.com", "shop.example.com"]
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
`,
			want: reconcile.Reach{Known: true, Hosts: []string{"*.example.com", "shop.example.com", "*.local"}, Ports: []uint32{8080, 15443}, Selector: true, AutoPassthrough: true},
		},
		{
			name: "AuthorizationPolicy in the root namespace: mesh-wide",
			manifest: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: istio-system}
spec: {}
`,
			want: reconcile.Reach{Known: true, RootNamespace: true},
		},
		{
			name: "PeerAuthentication with a selector",
			manifest: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
`,
			want: reconcile.Reach{Known: true, Selector: true},
		},
		{
			name: "WasmPlugin with targetRefs",
			manifest: `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: auth, namespace: bookinfo}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: public}]
  url: oci://example/auth:1
`,
			want: reconcile.Reach{Known: true, Selector: true},
		},
		{
			name: "Sidecar in the root namespace",
			manifest: `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress: [{hosts: ["./*"]}]
`,
			want: reconcile.Reach{Known: true, RootNamespace: true},
		},
		{
			name: "HTTPRoute: parent Gateways and Services, hostnames, backends",
			manifest: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: shop}
spec:
  parentRefs:
  - {name: public, namespace: ingress}
  - {name: edge, kind: Gateway, group: gateway.networking.k8s.io, port: 8443}
  - {name: cart, kind: Service, group: ""}
  hostnames: [shop.example.com]
  rules:
  - backendRefs:
    - {name: cart, port: 8080}
    - {name: ext, kind: ServiceImport, group: multicluster.x-k8s.io}
`,
			want: reconcile.Reach{Known: true, Gateways: []string{"ingress/public", "shop/edge", "mesh"}, ServiceParentNamespaces: []string{"shop"},
				Hosts: []string{"shop.example.com", "cart.shop.svc.cluster.local"}, Ports: []uint32{8443, 8080}},
		},
		{
			name: "HTTPRoute under a parent meshdrift does not model: reaches everywhere, keeps its hosts",
			manifest: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: shop}
spec:
  parentRefs: [{name: ls, kind: ListenerSet, group: gateway.networking.x-k8s.io}]
  hostnames: [shop.example.com]
`,
			want: reconcile.Reach{Hosts: []string{"shop.example.com"}},
		},
		{
			name: "Gateway API Gateway: listener hostnames and ports",
			manifest: `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: ingress}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}
  - {name: tcp, port: 9000, protocol: TCP}
`,
			want: reconcile.Reach{Known: true, Hosts: []string{"*.example.com"}, Ports: []uint32{80, 9000}},
		},
		{
			name: "a kind without a reach rule narrows nothing",
			manifest: `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: shop}
spec: {address: 10.0.0.1}
`,
		},
		{
			name: "fields of the wrong shape are skipped",
			manifest: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: odd, namespace: shop}
spec:
  hosts: [ok, 7, {a: b}, ""]
  gateways: mesh
  http: [1, {route: [{destination: {host: 3, port: {number: 70000}}}, {destination: {port: {number: 80.5}}}]}]
`,
			want: reconcile.Reach{Known: true, Hosts: []string{"ok"}},
		},
		{
			name:     "no spec",
			manifest: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: empty, namespace: shop}\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := decode(t, tc.manifest)
			gk := schema.FromAPIVersionAndKind(u.GetAPIVersion(), u.GetKind()).GroupKind()
			got := reachOf(gk, u.GetNamespace(), u.Object, DefaultRootNamespace)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("reach\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// FuzzReachOf: specs are written by anyone who can edit a mesh object. Reading them must
// not panic whatever their shape, and what it reads must be usable: ports in range, no
// empty names.
func FuzzReachOf(f *testing.F) {
	for _, s := range []string{
		`{"spec":{"hosts":["a"],"gateways":["mesh"],"http":[{"route":[{"destination":{"host":"a","port":{"number":9080}}}]}]}}`,
		`{"spec":{"host":"a","subsets":[{"trafficPolicy":{"loadBalancer":{"consistentHash":{}},"portLevelSettings":[{"port":{"number":1}}]}}]}}`,
		`{"spec":{"servers":[{"port":{"number":-1},"hosts":["ns/h","/"],"tls":{"mode":"AUTO_PASSTHROUGH"}}]}}`,
		`{"spec":{"parentRefs":[{"kind":"Service"},{"name":"g","port":1e9}],"rules":[{"backendRefs":[{"name":"b","port":null}]}]}}`,
		`{"spec":{"listeners":[{"port":80,"hostname":7}]}}`,
		`{"spec":[]}`,
		`{"spec":null}`,
		`{}`,
	} {
		for _, gk := range []string{"VirtualService", "DestinationRule", "Gateway", "HTTPRoute"} {
			f.Add(gk, s)
		}
	}
	f.Fuzz(func(t *testing.T, kind, doc string) {
		var obj map[string]any
		if json.Unmarshal([]byte(doc), &obj) != nil {
			return
		}
		u := &unstructured.Unstructured{}
		viaAPI := u.UnmarshalJSON([]byte(doc)) == nil
		for _, group := range []string{groupNetworking, groupGatewayAPI, groupSecurity} {
			gk := schema.GroupKind{Group: group, Kind: kind}
			reads := []reconcile.Reach{reachOf(gk, "ns", obj, DefaultRootNamespace)}
			if viaAPI {
				reads = append(reads, reachOf(gk, "ns", u.Object, DefaultRootNamespace))
			}
			for _, r := range reads {
				if slices.Contains(r.Ports, 0) {
					t.Fatalf("port 0 from %s %s", kind, doc)
				}
				for _, l := range [][]string{r.Hosts, r.Gateways, r.ExportTo, r.ServiceParentNamespaces} {
					if slices.Contains(l, "") {
						t.Fatalf("empty name in %+v from %s %s", r, kind, doc)
					}
				}
				if !r.Known && (len(r.Gateways) > 0 || len(r.ExportTo) > 0 || r.Selector) {
					t.Fatalf("unknown reach narrows: %+v", r)
				}
			}
		}
	})
}
