// Package reconcile joins what the adapters observe (GitOps apps, istiod's per-proxy state,
// mesh object changes) into propagation outcomes per object change and per GitOps app and
// Git revision. Adapters depend on the types here; this package depends on no adapter.
//
// How meshdrift decides whether a mesh object change reached the proxies.
//
// istiod does not say which push carried which change, and Istio removed its own
// distribution tracking, so meshdrift infers it from what istiod does say per proxy and
// type: when it last sent config (sentTime) and whether the proxy ACKed (SYNCED), NACKed
// (ERROR) or not yet (STALE). For a change observed at T:
//
//   - a proxy is targeted when istiod sent it any type at or after T; a proxy that
//     got nothing (Sidecar scoping, exportTo) is not counted: "SYNCED" only ever means
//     "ACKed what istiod chose to send";
//   - a targeted proxy has ACKed when every type sent since T is SYNCED, has NACKed when
//     one is ERROR (or istiod's NACK stream reported one since T), else it is pending;
//   - the change has propagated when every targeted proxy ACKed; its latency is the
//     latest first push after T, minus T (istiod's debounce plus queueing);
//   - past Grace, proxies still pending are stale; and when istiod pushed nothing at all
//     since T (no proxy targeted, no newer push version), the change was not pushed.
//
// Blame fits the change (blame.go): only the xDS types the object's kind writes count
// (following istiod's per-generator push filters: a VirtualService writes clusters,
// listeners and routes, a DestinationRule clusters and endpoints, an AuthorizationPolicy
// listeners, ...; an unknown kind every type), only on proxies within the object's reach
// (its namespace and exportTo, Istio's root namespace for mesh-wide policies, sidecars or
// gateways as the kind and a VirtualService's gateways say, a route's parents), and a
// NACK whose text names only other objects' resources (a cluster or virtual host of other
// hosts) is not the change's. What a change cannot explain is listed as Concurrent. A
// NACK whose text names a resource of the object (a cluster or virtual host of its hosts,
// a route configuration or listener of its ports) is Named. Objects that existed when
// meshdrift started (Baseline) and had settled by then (written at least Grace before)
// are held responsible only for NACKs that name them, and never for a silent proxy.
//
// Times are compared, never push counters, because a restarted istiod starts its counter
// again. istiod's times are on istiod's clock and a change's on meshdrift's: each istiod's
// offset is bounded from its reads (clock.go), the change is placed on istiod's clock
// with it, and the window is widened by the bounds' error (at most 500 ms, so that an
// unrelated push just before a change does not count). A proxy whose only push in the
// window may predate the change (before it as the estimate places it, or the bounds too
// wide) does not make the change propagated for 5 s, as its own push may be yet to come.
// Objects found by a list carry the API server's one-second managedFields time, compared
// with istiod's as it is. Proxies that connect later are pushed in full and so count as targeted; a proxy
// that disconnects vanishes from istiod's view and is not counted. While any istiod is
// unreachable, or shows meshdrift fewer proxies than are connected to it (a restricted
// view: debug-endpoint authorization hides other namespaces' proxies without an error),
// an unresolved change is Unknown, never propagated and never "not pushed": the proxies
// it hides may be the ones that have not ACKed. A NACK seen through it is still reported.
//
// Cost: evaluation revisits only what changed (index.go). Each istiod read is indexed
// once (proxies by latest push, by namespace, with their sends per set of types a kind
// writes); a change visits only the proxies pushed since it, of its namespace when its
// kind confines it to one, plus those with an error or a streamed NACK; it keeps each
// istiod's visit until that istiod is read again or streams a NACK; a pending change is
// not evaluated again until there is news or its hold or grace period ends, and a
// propagated one not at all.
//
// Limits: a proxy that istiod sends nothing after a change (scoped out by a Sidecar or
// exportTo) is indistinguishable from one the change does not concern, and is not counted;
// when meshdrift sees a change later than istiod pushes it (its watch lagging by more than
// istiod's debounce), that push is not attributed to the change, whose NACKs then show
// as proxy errors but not against the change; Slack trades that against taking an
// unrelated earlier push for the change's. Both syncz forms carry the per-type send time (the xDS form as last_updated), but
// only the HTTP form carries the sent and ACKed push versions.
package reconcile
