// Package mesh watches the mesh objects a control plane turns into proxy configuration
// (Istio networking, security, telemetry and extensions kinds, Gateway API routes and
// gateways, Linkerd policy) and reports every change with who made it, as
// reconcile.MeshChange values: the starting point from which propagation to the proxies is
// measured.
//
// Which kinds: the API server's discovery decides, the way Istio's analyzers are skipped
// when their input kinds are absent. Only kinds whose CRDs are served are watched, one
// version each (v1 where served, else the group's preferred version, else the highest
// that serves the kind, e.g. EnvoyFilter v1alpha3); discovery is read again periodically,
// so that a CRD installed later is watched. Watched lists what is watched.
//
// What counts as a change: a creation, a deletion (Deleted), and an update that raised
// metadata.generation, which the API server does on spec changes only (status and
// metadata writes move resourceVersion, not generation). For a kind that keeps no
// generation, any new resourceVersion counts.
//
// Who made it (Manager): the field manager of the latest write that touched .spec, from
// metadata.managedFields; for an update, the entry that the update added or moved, which
// stays exact when two writes fall in the same second. Deletions have no Manager: no
// object records who deleted it.
//
// Who else wrote its spec (SpecWrites): every managedFields entry that owns spec fields
// (status subresource entries left out), latest first, with its operation, time and
// top-level spec fields, bounded by reconcile.MaxSpecWrites and MaxSpecFields. The
// out-of-band edit check (MD0801) compares them with the owning app's last apply.
//
// Which app tracks it (GitOpsOwner): Argo CD's tracking-id annotation (when it names the
// object itself), Flux's kustomize.toolkit.fluxcd.io or helm.toolkit.fluxcd.io name and
// namespace labels, or Argo CD's app.kubernetes.io/instance label. Argo CD names an
// Application outside its own namespace "<namespace>_<name>"; a bare name leaves
// Namespace "" for reconcile to resolve, as does the instance label (which Helm charts
// also set, to their release name).
//
// When (ObservedAt): the time the watch delivered the change. For objects found by the
// initial list of a kind, which did not change just now, it is the time of their last spec
// write from managedFields (else their creation), so that an object untouched for a
// week reads as long propagated instead of as a fresh change; and those last written in
// an earlier second than the watcher's start are marked Baseline: state meshdrift found,
// which reconcile does not blame for a proxy's pre-existing errors. After a watch outage the
// reflector lists again and changes made meanwhile carry the time they were seen, which
// can only understate propagation delay. A kind that starts to be watched later (its CRD
// installed, or a kind moved to a new version) is listed like at start, so its objects
// are reported again with the same generation and spec write time: consumers must take
// a MeshChange of a (Ref, Generation) they already hold as a repeat.
//
// Where it lands (Reach): read from the spec for the kinds whose spec says so (reach.go):
// exportTo, a VirtualService's gateways, a Gateway API route's parents, the hosts and
// ports the object names (which Envoy's error texts name), whether a selector or
// targetRef narrows it to some workloads, and whether it sits in Istio's root namespace
// (Config.RootNamespace). A spec field of an unexpected shape is skipped.
//
// What the informers cache (transform.go): every mesh object of the cluster, so only what
// is read. compactObject drops every annotation but Argo CD's tracking id and the ignore
// list, the metadata nothing reads (uid, finalizers, ownerReferences), the status
// fields no reader uses (kept: conditions, validationMessages, observedGeneration, Gateway
// API route parents), and of managedFields all but the entries that own spec fields
// (kept whole) and the latest other entry per manager (without fieldsV1); it then holds
// the metadata packed (meshObject: labels as pairs, repeated strings and fieldsV1 trees
// interned) and the spec and status as JSON, decoded again when a change is reported.
// BenchmarkMeshObjectsHeap measures what that saves.
//
// Namespaces lists namespaces' names and labels through a metadata-only informer, for
// the revision checks (MD0701); it never reads full Namespace objects.
//
// LiveSource gives the semantic checks (reconcile/checks) their live snapshot from the
// Watcher's own informers (Objects; no second watch of the same kinds), Services (an
// informer that keeps only name, namespace, labels, Istio's annotations and spec
// selector, ports and type), Namespaces and Pods; which mesh kinds are served is what the
// Watcher watches, as discovery said. It waits until every cache has synced. Each cache
// counts its changes (LiveSource.Version), so that the checks skip their periodic run
// on an unchanged picture.
//
// Failures: a discovery or watch failure makes the "mesh" source down
// (reconcile.SourceStatus with the error), and it comes up again when every watch is
// open again. Watches that merely end or expire are resumed by the reflector and are not
// failures.
//
// Metrics (registry injected): meshdrift_mesh_changes_total{kind, manager_class} with
// manager_class gitops, kubectl or other (never the raw manager name), counting changes
// seen while watching, not the initial list; and, in the families shared by all adapters
// (adapters/adaptermetrics), meshdrift_adapter_objects and
// meshdrift_adapter_watch_restarts_total with adapter="mesh". kind is "Kind.group".
package mesh
