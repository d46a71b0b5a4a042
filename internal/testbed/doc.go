// Package testbed starts the real programs meshdrift's integration tests and demo talk to:
// kube-apiserver and etcd (via controller-runtime envtest) with the real CRDs of Argo CD,
// Flux, Istio and Gateway API; istiod (pilot-discovery); test proxies (see xdsproxy);
// Flux kustomize- and notification-controller with a local artifact server; Alertmanager.
//
// Everything listens on loopback ports chosen at start. The programs come from the
// directory that `make testbed` fills (MESHDRIFT_TESTBED): bin/ and crds/. When that
// directory is missing, tests skip unless MESHDRIFT_REQUIRE_TESTBED=1, which `make test`
// sets so that nothing is skipped there.
//
// Production packages never import this package.
package testbed
