// Package istio reads what istiod knows about the proxies connected to it.
//
// Argo CD and Flux report a mesh change as applied once the Kubernetes objects exist;
// only istiod knows whether each Envoy accepted (ACK), rejected (NACK) or never answered
// the configuration built from them. This package turns istiod's own per-proxy view, in
// either of the forms istiod serves it, into reconcile.ProxyStatus values:
//
//   - GET /debug/syncz on istiod's HTTP or monitoring port (ParseSynczHTTP);
//   - the xDS debug type istio.io/debug/syncz, which istioctl proxy-status uses
//     (ParseSynczXDS).
//
// Each istiod replica only knows its own proxies; callers query every replica and merge.
// The parsers never alert and never guess: input that does not look like what istiod
// produces is an error.
package istio
