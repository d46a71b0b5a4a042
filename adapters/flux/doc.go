// Package flux reads what Flux says about the apps it deploys.
//
// Flux reports an app as Ready once kustomize-controller or helm-controller has applied
// it, and kstatus counts Istio objects, which have no conditions, as ready the moment they
// exist. Whether the mesh runs that revision is for meshdrift to find out; this package
// supplies the Flux side of the comparison as reconcile.App values:
//
//   - Watcher watches Kustomizations (kustomize.toolkit.fluxcd.io/v1) and HelmReleases
//     (helm.toolkit.fluxcd.io/v2) in all namespaces with informers and reports each to a
//     reconcile.AppSink, with the revision Flux is trying to apply, the one it last
//     applied and when, its state and the objects of its inventory. It reports per kind
//     whether the API server can be read (reconcile.SourceStatus) and skips a kind whose
//     CRD is not installed.
//   - Receiver takes notification-controller's webhook (Provider generic-hmac) and asks a
//     Requeuer, normally the Watcher, to re-read the app an event is about, so that a
//     change reaches the sink without waiting for the watch. It fails closed: without the
//     Provider's token (LoadHMACKey) it refuses to build unless unsigned events are asked
//     for explicitly (InsecureNoAuth, Provider generic), and it refuses SHA-1 signatures
//     unless AllowSHA1.
//
// The Watcher's informers cache each object as the App made of it (compactFluxObject),
// not as unstructured maps: a Kustomization's inventory is held parsed.
//
// The mapping from Flux's status to reconcile.App is in KustomizationApp and
// HelmReleaseApp. The package never alerts: it reports what Flux says.
package flux
