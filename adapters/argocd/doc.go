// Package argocd reads Argo CD Applications (argoproj.io/v1alpha1) and reports them to
// reconcile as source-agnostic apps.
//
// Two sources, used one at a time:
//
//   - Watcher watches Application objects through the Kubernetes API, in every namespace
//     (Argo CD's apps-in-any-namespace) or in a configured list. It is the default: it sees
//     a status change within a second of the application controller writing it.
//   - Poller lists Applications through Argo CD's API server (APIServerClient), for
//     installations where meshdrift may not read Application objects in Kubernetes.
//
// The Watcher's informers cache each Application as the reconcile.App that observe
// reports of it (trimApplication), rather than as unstructured maps.
//
// Both map an Application with appview.ToApp, report deletions with ForgetApp and report
// their own reachability as a reconcile.SourceStatus. A source that cannot be read is
// reported down and its apps are kept as last seen, never forgotten. Both count into the
// shared adapter metric families of package adaptermetrics with adapter="argocd".
package argocd
