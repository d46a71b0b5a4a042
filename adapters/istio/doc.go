// Package istio reads what istiod knows about the proxies connected to it.
//
// Argo CD and Flux report a mesh change as applied once the Kubernetes objects exist;
// only istiod knows whether each Envoy accepted (ACK), rejected (NACK) or never answered
// the configuration built from them. The Reader finds every istiod (each replica of each
// revision: pods by label, or addresses from the configuration), reads each one's
// per-proxy view once per cycle — never once per proxy — and hands it to a
// reconcile.ProxySink:
//
//   - xDS debug type istio.io/debug/syncz (what istioctl proxy-status uses), over 15012
//     with TLS and an istio-ca token, or plaintext 15010 (ParseSynczXDS);
//   - GET /debug/syncz on the monitoring port 15014 as the fallback (ParseSynczHTTP).
//
// Each istiod replica only knows its own proxies, so views are kept per istiod and merged
// downstream. An istiod that cannot be read is reported as a source that is down and
// never as an empty view: "no proxies" must not read as "all synced". Nor may a view
// istiod's debug-endpoint authorization trimmed to meshdrift's own namespace: a view
// with fewer proxies than istiod's pilot_xds gauge counts, or a debug request istiod
// refuses, carries a reconcile.ViewRestriction with the reason and the fix.
//
// istiod's istio.io/nack debug stream, where an istiod offers it, delivers NACKs ahead of
// the next read; the pinned Istio 1.31 no longer serves it, so reads (made faster by the
// propagation tracker while a change is pending) are what detect NACKs there.
//
// The parsers never alert and never guess: input that does not look like what istiod
// produces is an error.
package istio
