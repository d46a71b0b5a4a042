package findings

import (
	"strings"
	"time"
)

//go:generate go run ./internal/gendocs -o ../../docs/findings.md

// The catalog of every finding code, as data: it feeds Derive, the engine, the sinks and
// docs/findings.md (`go generate ./reconcile/findings`).
//
// Numbering: MD01xx GitOps apps, MD02xx propagation of mesh changes, MD03xx istiod and
// proxies, MD04xx meshdrift's sources. MD05xx to MD08xx are the semantic checks: MD07xx
// control-plane revision drift, MD08xx out-of-band edits and orphans (derive_drift.go). A code is never renumbered and a retired code is never reused, even for a
// similar problem: codes are alert labels, silences and doc anchors people keep. To retire
// one, set Retired and leave its entry here.

// Entry describes one finding code.
type Entry struct {
	Code Code
	// Name is the CamelCase name (alertname, Event reason).
	Name     string
	Severity Severity
	// Summary is a one-line template; see Render for its placeholders.
	Summary     string
	Description string
	Remedy      string
	// For is how long the problem must last (from its StartsAt) before it fires, unless
	// configuration overrides it.
	For time.Duration
	// Retired is set when the code is no longer derived; the entry stays so that the code
	// is never reused.
	Retired bool
}

// Anchor is the entry's anchor in docs/findings.md ("md0201").
func (e Entry) Anchor() string { return strings.ToLower(string(e.Code)) }

// DocPath is where the generated catalog lives in the repository.
const DocPath = "docs/findings.md"

// DocURL links to a code's section of the catalog page, given where that page is served
// (a runbook_url for alerts), e.g. DocURL("https://example.com/docs/findings.md", "MD0201").
func DocURL(page string, c Code) string { return page + "#" + strings.ToLower(string(c)) }

// Codes meshdrift derives.
const (
	CodeAppSyncFailed       Code = "MD0101"
	CodeAppDegraded         Code = "MD0102"
	CodeAppOutOfSync        Code = "MD0103"
	CodeAppRevisionMismatch Code = "MD0104"
	CodeAppSuspendedDrift   Code = "MD0105"

	CodeChangeNACKed    Code = "MD0201"
	CodeChangeStale     Code = "MD0202"
	CodeChangeNotPushed Code = "MD0203"
	CodeChangeUnknown   Code = "MD0204"

	CodeIstiodUnreachable Code = "MD0301"
	CodeIstiodRestricted  Code = "MD0302"
	CodeIstiodRejected    Code = "MD0303"
	CodeIstiodPushErrors  Code = "MD0304"
	CodeProxyRejecting    Code = "MD0305"
	CodeIstiodClockOffset Code = "MD0306"

	CodeSourceUnreachable  Code = "MD0401"
	CodeSourceNotInstalled Code = "MD0402"

	// Semantic checks (reconcile/checks): MD05xx Istio, MD06xx Gateway API.
	CodeVSDestinationNotFound   Code = "MD0501"
	CodeVSSubsetNotFound        Code = "MD0502"
	CodeVSGatewayNotFound       Code = "MD0503"
	CodeVSHostConflict          Code = "MD0504"
	CodeDRSubsetNoPods          Code = "MD0505"
	CodeGatewaySelectorNoPods   Code = "MD0506"
	CodePolicySelectorNoPods    Code = "MD0507"
	CodeMTLSConflict            Code = "MD0508"
	CodeIstiodValidationMessage Code = "MD0509"
	CodeVSHostNotInGateway      Code = "MD0510"

	CodeRouteNotAccepted     Code = "MD0601"
	CodeRouteRefsNotResolved Code = "MD0602"
	CodeRouteStatusStale     Code = "MD0603"

	CodeNamespaceRevisionDrift   Code = "MD0701"
	CodeProxyVersionDrift        Code = "MD0702"
	CodeRevisionLeftBehind       Code = "MD0703"
	CodeLinkerdProxyVersionDrift Code = "MD0704"

	CodeOutOfBandEdit Code = "MD0801"
	CodeOrphanObject  Code = "MD0802"
)

var catalog = []Entry{
	{
		Code: CodeAppSyncFailed, Name: "AppSyncFailed", Severity: SeverityWarning, For: 2 * time.Minute,
		Summary:     "{app} failed to apply revision {revision}: {evidence}",
		Description: "The GitOps tool tried to apply the app's revision and failed (an Argo CD sync operation Failed or Errored; a Flux Kustomization or HelmRelease not Ready for a reason other than waiting, or Stalled). The cluster still runs the last revision that applied.",
		Remedy:      "Read the tool's message in the evidence (`argocd app get`, `flux get kustomizations`), fix the manifests or the source in Git, and let the tool retry.",
	},
	{
		Code: CodeAppDegraded, Name: "AppDegraded", Severity: SeverityWarning, For: 5 * time.Minute,
		Summary:     "{app} is degraded: {evidence}",
		Description: "The app applied, but what it runs is not healthy: Argo CD health Degraded, or a Flux health check failed.",
		Remedy:      "Look at the workloads named in the evidence (`kubectl describe`, their events and logs).",
	},
	{
		Code: CodeAppOutOfSync, Name: "AppOutOfSync", Severity: SeverityWarning, For: 10 * time.Minute,
		Summary:     "{app} has been out of sync with Git",
		Description: "The cluster differs from Git and nothing is applying it, for longer than the grace (this code's `for`). A short difference while a change rolls out is normal and does not fire.",
		Remedy:      "Sync the app, or find why automated sync does not (sync windows, a failed comparison, a hand edit the tool does not revert).",
	},
	{
		Code: CodeAppRevisionMismatch, Name: "AppRevisionNotApplied", Severity: SeverityWarning, For: 15 * time.Minute,
		Summary:     "{app} has not applied revision {revision}: {evidence}",
		Description: "The revision the tool attempts differs from the one it last applied, while the app neither reports Synced nor Failed (Failed is MD0101): the apply is stuck in progress or waiting on something.",
		Remedy:      "Check what the app waits for: a dependency (Flux dependsOn), a long health check, a sync hook or wave that does not finish.",
	},
	{
		Code: CodeAppSuspendedDrift, Name: "AppSuspendedWhileDrifting", Severity: SeverityInfo, For: 10 * time.Minute,
		Summary:     "{app} is suspended while its objects drift from Git: {evidence}",
		Description: "Reconciliation of the app is switched off (Flux suspend, Argo CD without automated sync) and objects it manages differ from Git or were changed by someone else. Nothing will bring them back.",
		Remedy:      "Resume the app (`flux resume`, enable automated sync or sync by hand) or bring the change into Git.",
	},
	{
		Code: CodeChangeNACKed, Name: "MeshChangeNACKed", Severity: SeverityCritical, For: 0,
		Summary:     "{object} was rejected by {detail}: {evidence}",
		Description: "At least one Envoy proxy rejected (NACKed) the config istiod built after this change. The proxy keeps running its previous config, so the mesh does not run what Git says even though the GitOps tool reports success.",
		Remedy:      "Read the proxy's NACK text in the evidence, fix the object in Git (or revert it), and check `istioctl proxy-status` for the proxy.",
	},
	{
		Code: CodeChangeStale, Name: "MeshChangeStale", Severity: SeverityWarning, For: 0,
		Summary:     "{object} is not acknowledged by {detail} after the grace period",
		Description: "istiod pushed config after this change, but some proxies have neither ACKed nor NACKed it within `reconcile.staleGrace`. They may be overloaded, partitioned from istiod, or stuck.",
		Remedy:      "Check the listed proxies (`istioctl proxy-status`, the proxy's logs) and istiod's load.",
	},
	{
		Code: CodeChangeNotPushed, Name: "MeshChangeNotPushed", Severity: SeverityWarning, For: 0,
		Summary:     "{object} changed but istiod pushed nothing within the grace period",
		Description: "istiod sent no config to any proxy, and its push version did not move, within `reconcile.staleGrace` after the change: istiod may not watch the object (revision or namespace selection, discovery selectors), may have rejected it, or is stuck.",
		Remedy:      "Check that an istiod revision selects the object's namespace, look for MD0303 on istiod, and read istiod's logs.",
	},
	{
		Code: CodeChangeUnknown, Name: "MeshChangePropagationUnknown", Severity: SeverityWarning, For: 2 * time.Minute,
		Summary:     "propagation of {object} is unknown: {detail}",
		Description: "An istiod that may serve affected proxies could not be read, or showed meshdrift only part of its proxies, so meshdrift cannot tell whether the change reached them. It never counts such a change as propagated, and the change's other findings are held, not resolved, until istiod is read in full again.",
		Remedy:      "See MD0301 (istiod unreachable) or MD0302 (restricted view) for the istiod concerned.",
	},
	{
		Code: CodeIstiodUnreachable, Name: "IstiodUnreachable", Severity: SeverityWarning, For: time.Minute,
		Summary:     "istiod {istiod} cannot be read: {evidence}",
		Description: "meshdrift cannot read this istiod's proxy status. Findings about its proxies are held as last seen, and changes it may serve have unknown propagation (MD0204).",
		Remedy:      "Check that istiod runs, that meshdrift's token and CA are valid, and that the network allows meshdrift to reach istiod.",
	},
	{
		Code: CodeIstiodRestricted, Name: "IstiodViewRestricted", Severity: SeverityWarning, For: 0,
		Summary:     "istiod {istiod} {detail} to meshdrift: {evidence}",
		Description: "istiod answers, but does not show meshdrift everything (debug endpoint authorization limits it to some namespaces, or a transport lacks fields), so some findings cannot be derived for the proxies it hides.",
		Remedy:      "Follow the fix in the evidence: usually run meshdrift in a namespace istiod trusts for debug access, or use another transport.",
	},
	{
		Code: CodeIstiodRejected, Name: "IstiodRejectedConfig", Severity: SeverityWarning, For: 0,
		Summary:     "istiod {istiod} rejected config {detail}",
		Description: "istiod's own metrics counted config it rejected or ignored since meshdrift last read them. The counter is cumulative since istiod started, so only an increase meshdrift observed fires; the finding resolves once no increase was seen for `findings.signalWindow`.",
		Remedy:      "Run `istioctl analyze` on the named object and read istiod's logs for the validation error.",
	},
	{
		Code: CodeIstiodPushErrors, Name: "IstiodPushErrors", Severity: SeverityWarning, For: 0,
		Summary:     "istiod {istiod} failed to build or send pushes ({detail})",
		Description: "istiod's own metrics counted pushes that failed since meshdrift last read them (cumulative counters: only an observed increase fires; resolved after `findings.signalWindow` without one).",
		Remedy:      "Read istiod's logs around the time of the finding; look for config that makes istiod fail to generate xDS.",
	},
	{
		Code: CodeProxyRejecting, Name: "ProxyRejectingConfig", Severity: SeverityWarning, For: time.Minute,
		Summary:     "proxy {proxy} rejects config from istiod: {evidence}",
		Description: "A proxy NACKs config that no tracked mesh change explains (those are MD0201): a proxy problem rather than an app's, e.g. an Envoy older than istiod, a bad EnvoyFilter, or a bootstrap issue.",
		Remedy:      "Compare the proxy's version with istiod's (`istioctl proxy-status`), read the NACK text, and restart or upgrade the proxy.",
	},
	{
		Code: CodeIstiodClockOffset, Name: "IstiodClockOffset", Severity: SeverityWarning, For: 5 * time.Minute,
		Summary:     "the clock of istiod {istiod} is off from meshdrift's: {evidence}",
		Description: "meshdrift compares istiod's push times with the times it saw changes. It tolerates a clock offset of up to 2 s; a larger one makes pushes look earlier or later than they were, so propagation may be misjudged.",
		Remedy:      "Run NTP (chrony, systemd-timesyncd) on the nodes of meshdrift and istiod.",
	},
	{
		Code: CodeSourceUnreachable, Name: "SourceUnreachable", Severity: SeverityWarning, For: 2 * time.Minute,
		Summary:     "source {source} cannot be read: {evidence}",
		Description: "meshdrift cannot read this source (the API server watch of Argo CD Applications, Flux objects or mesh objects, or an Argo CD API server). Findings about its apps are held as last seen, never resolved because the source went dark.",
		Remedy:      "Check meshdrift's RBAC and credentials and that the API server or Argo CD API server is reachable.",
	},
	{
		Code: CodeSourceNotInstalled, Name: "SourceNotInstalled", Severity: SeverityInfo, For: 0,
		Summary:     "source {source} is enabled but its CRD is not installed",
		Description: "meshdrift is configured to read this GitOps tool, but the API server does not serve its custom resource: there is nothing to read. It is the same for Argo CD and Flux, and it is not an outage (MD0401).",
		Remedy:      "Install the tool, or disable it in meshdrift's configuration (`argocd.enabled`, `flux.enabled`).",
	},
	// The reference checks below wait a minute before firing: the objects of one change
	// may be applied in separate steps (Argo CD sync waves, Flux dependsOn), and a
	// VirtualService briefly ahead of its Service or DestinationRule is no problem.
	{
		Code: CodeVSDestinationNotFound, Name: "VirtualServiceDestinationNotFound", Severity: SeverityWarning, For: time.Minute,
		Summary:     "{object}: {detail}",
		Description: "A VirtualService routes (or mirrors) to a host that no Service and no ServiceEntry visible from its namespace defines, so that route answers 503 (no healthy upstream) or is dropped. Hosts resolve as Istio resolves them: a short name gets the VirtualService's namespace (`reviews` in `default` is `reviews.default.svc.cluster.local`), a name with a dot is taken literally (so `reviews.other` is *not* the Service `reviews` in `other`), and a wildcard ServiceEntry host covers the names under it. Like `istioctl analyze` IST0101.",
		Remedy:      "Use the Service's full name (`<name>.<namespace>.svc.cluster.local`) or a short name in the Service's own namespace, create the missing Service or ServiceEntry, or check its `exportTo`.",
	},
	{
		Code: CodeVSSubsetNotFound, Name: "VirtualServiceSubsetNotFound", Severity: SeverityWarning, For: time.Minute,
		Summary:     "{object}: {detail}",
		Description: "A VirtualService route names a subset of a host, but no DestinationRule for that host (visible from the VirtualService's namespace) defines a subset of that name. Envoy gets a route to a cluster that does not exist and answers 503 (NR/NC). Like `istioctl analyze` IST0101.",
		Remedy:      "Add the subset to the host's DestinationRule, or fix the subset or host name in the route.",
	},
	{
		Code: CodeVSGatewayNotFound, Name: "VirtualServiceGatewayNotFound", Severity: SeverityWarning, For: time.Minute,
		Summary:     "{object}: {detail}",
		Description: "A VirtualService binds to an Istio Gateway (`gateways:` or a match's `gateways:`) that does not exist; a name without a namespace means the VirtualService's own namespace. The routes never reach that gateway. Like `istioctl analyze` IST0101.",
		Remedy:      "Create the Gateway, or reference it as `<namespace>/<name>` when it lives in another namespace.",
	},
	{
		Code: CodeVSHostConflict, Name: "VirtualServiceHostConflict", Severity: SeverityWarning, For: time.Minute,
		Summary:     "{object}: {detail}",
		Description: "Two or more VirtualServices bound to the mesh gateway (sidecars) claim the same host. Istio then uses one of them, chosen by creation time, so which routes apply is undefined and changes when an object is re-created (a GitOps re-sync can do that). Like `istioctl analyze` IST0109.",
		Remedy:      "Merge the VirtualServices into one, or use delegate VirtualServices.",
	},
	{
		Code: CodeDRSubsetNoPods, Name: "DestinationRuleSubsetNoPods", Severity: SeverityWarning, For: 2 * time.Minute,
		Summary:     "{object}: {detail}",
		Description: "A DestinationRule subset's labels, together with the Service's selector, match no running pod, so traffic routed to the subset gets 503 (UH, no healthy upstream). Read from live pods (labels only). Like `istioctl analyze` IST0173.",
		Remedy:      "Fix the subset's labels, or deploy the workload version they name.",
	},
	{
		Code: CodeGatewaySelectorNoPods, Name: "GatewaySelectorNoPods", Severity: SeverityWarning, For: 2 * time.Minute,
		Summary:     "{object}: {detail}",
		Description: "An Istio Gateway's selector matches no running pod (in any namespace), so no gateway proxy serves its servers. Read from live pods (labels only). Like `istioctl analyze` IST0101 on the selector.",
		Remedy:      "Fix the selector (e.g. `istio: ingressgateway`) or deploy the gateway.",
	},
	{
		Code: CodePolicySelectorNoPods, Name: "PolicySelectorNoWorkload", Severity: SeverityInfo, For: 5 * time.Minute,
		Summary:     "{object}: {detail}",
		Description: "An AuthorizationPolicy, PeerAuthentication, RequestAuthentication or Sidecar selects workloads by labels that no running pod in its namespace has (any namespace for the root namespace), so it applies to nothing. An ALLOW or DENY policy that silently applies to nothing is a security gap. Read from live pods (labels only). Like `istioctl analyze` IST0127.",
		Remedy:      "Fix the selector's labels, or remove the policy if the workload is gone.",
	},
	{
		Code: CodeMTLSConflict, Name: "MTLSModeConflict", Severity: SeverityWarning, For: time.Minute,
		Summary:     "{object}: {detail}",
		Description: "A DestinationRule's client TLS mode contradicts the PeerAuthentication that applies to the host's namespace: clients send plain text (`DISABLE`) to servers that require mTLS (`STRICT`), or Istio mTLS (`ISTIO_MUTUAL`) to servers with mTLS off (`DISABLE`). The connections fail (503 UC, connection reset). The PeerAuthentication that applies is Istio's: one whose selector selects the host's pods (in their namespace, else in the root namespace), else the namespace's, else the mesh-wide one; its `portLevelMtls` is compared port by port with the DestinationRule's `portLevelSettings` (Service ports mapped to numeric target ports). With live pods the selectors are matched against the pods of the host's Service; offline, a selector applies when the Service's own selector carries all its labels. `istioctl analyze` has no current check for this (its IST0113 was retired).",
		Remedy:      "Make the DestinationRule's `tls.mode` agree with the PeerAuthentication (usually remove `tls` and let Istio's auto mTLS choose), or change the PeerAuthentication.",
	},
	{
		Code: CodeIstiodValidationMessage, Name: "IstiodValidationMessage", Severity: SeverityWarning, For: 0,
		Summary:     "{object}: {detail}",
		Description: "istiod wrote an analysis message into the object's `status.validationMessages` (istiod's status writing and analysis must be on: `PILOT_ENABLE_STATUS` and `--enableAnalysis`). meshdrift shows istiod's own verdict next to its checks.",
		Remedy:      "Read the message code's page in Istio's documentation (the link is in the detail) and fix the object.",
	},
	{
		Code: CodeVSHostNotInGateway, Name: "VirtualServiceHostNotInGateway", Severity: SeverityWarning, For: time.Minute,
		Summary:     "{object}: {detail}",
		Description: "A VirtualService bound to an Istio Gateway names hosts the Gateway's servers do not serve (server hosts with their `namespace/` part, as seen from the VirtualService's namespace): requests for those hosts never reach its routes through that gateway. Fires on a gateway that serves none of the VirtualService's hosts (like `istioctl analyze` IST0132) and, beyond it, on a host that none of the VirtualService's gateways serves while others do (when the VirtualService is not also bound to the mesh).",
		Remedy:      "Add the host to a server of the Gateway (or fix its `namespace/` part), or remove it from the VirtualService.",
	},
	{
		Code: CodeRouteNotAccepted, Name: "GatewayRouteNotAccepted", Severity: SeverityWarning, For: time.Minute,
		Summary:     "{object}: {detail}",
		Description: "A Gateway API route (HTTPRoute, GRPCRoute, TCPRoute, TLSRoute) reports `Accepted=False` for one of its parents: the gateway or mesh implementation (Istio, Linkerd) refused to attach it (no matching listener, hostname, namespace not allowed, ...), so none of its rules serve traffic through that parent although the GitOps tool applied it.",
		Remedy:      "Read the condition's reason and message in the detail, then fix the route's `parentRefs`, hostnames or the Gateway's `allowedRoutes`.",
	},
	{
		Code: CodeRouteRefsNotResolved, Name: "GatewayRouteRefsNotResolved", Severity: SeverityWarning, For: time.Minute,
		Summary:     "{object}: {detail}",
		Description: "A Gateway API route reports `ResolvedRefs=False` for one of its parents: a backend it names does not exist, is in another namespace without a ReferenceGrant, or is of an unsupported kind. Requests to those rules fail (500 or 503).",
		Remedy:      "Read the condition's reason and message, then create the backend, fix its name or port, or add the ReferenceGrant.",
	},
	{
		Code: CodeRouteStatusStale, Name: "GatewayRouteStatusStale", Severity: SeverityWarning, For: 0,
		Summary:     "{object}: {detail}",
		Description: "A Gateway API route's conditions for a parent carry an `observedGeneration` older than the route's `metadata.generation` for longer than a grace (2 minutes unless the caller sets another), counted from the route's last spec write as the API server recorded it in `managedFields`: the implementation (Istio, Linkerd) has not processed the latest spec, so what serves traffic is an older version of the route, or the implementation is down. The grace is the timing; this code has no `for` of its own.",
		Remedy:      "Check that the gateway or mesh controller runs and watches the route's namespace (istiod's logs, `kubectl get gatewayclass`), then look at the route's status again.",
	},
	{
		Code: CodeNamespaceRevisionDrift, Name: "NamespaceRevisionDrift", Severity: SeverityWarning, For: 10 * time.Minute,
		Summary:     "proxies in {object} run on another istiod revision than the namespace selects: {detail}",
		Description: "Proxies of the namespace are connected (as istiod's views show) to an istiod of another control-plane revision than their labels select, read as Istio's injection webhooks read them: a pod's `sidecar.istio.io/inject=false` and the namespace's `istio-injection` decide first (`enabled` selects the `default` revision), then the namespace's `istio.io/rev`, then the pod's own `istio.io/rev` (where namespace and pod name different ones, either is accepted: Istio follows the namespace's unless `revisionLabelPreference` is `pod`), then the pod's `sidecar.istio.io/inject=true` (the default revision). A revision tag (`istioctl tag set`, a MutatingWebhookConfiguration labelled `istio.io/tag` and `istio.io/rev`) is resolved to its revision first, the `default` tag included. The usual cause: pods injected before the label or tag moved (a canary upgrade whose workloads were never restarted), or a label nobody meant. Proxies whose pod meshdrift does not see (VMs) are judged by their namespace's labels. `istioctl analyze` has no live counterpart (IST0143 and IST0144 check labels, not connected proxies).",
		Remedy:      "Restart the listed workloads (`kubectl rollout restart`) so that they are injected by the selected revision, or fix the namespace or pod label.",
	},
	{
		Code: CodeProxyVersionDrift, Name: "ProxyVersionDrift", Severity: SeverityInfo, For: 10 * time.Minute,
		Summary:     "proxy {proxy} runs Istio {detail}",
		Description: "The proxy's Istio version differs from the version of the istiod it is connected to, as both report it over xDS, compared by the numeric parts both carry (a `1.31-dev` build matches `1.31.0`). A skew within Istio's supported range works, but a proxy left on an old version misses fixes and is the usual cause of MD0305 after an upgrade.",
		Remedy:      "Restart the proxy's workload so that it is injected with the current proxy image (`kubectl rollout restart`).",
	},
	{
		Code: CodeRevisionLeftBehind, Name: "IstioRevisionLeftBehind", Severity: SeverityWarning, For: 30 * time.Minute,
		Summary:     "proxies still run on Istio revision {revision}, which nothing selects: {detail}",
		Description: "Proxies are connected to an istiod of a control-plane revision that no namespace label, no pod label and no revision tag selects any more, and that is not the default revision: a canary upgrade finished (every label and tag moved to the new revision) but these workloads were never restarted, so they stay on the old control plane, which cannot be removed without cutting them off. A canary still in progress (some namespace or pod still selects the revision) is not reported, nor are proxies of namespaces this cluster does not have (a remote cluster's, whose labels meshdrift does not see). Derived only once every pod's labels and the revision tags are read; the finding names the revision (the alert's `revision` label) and lists the proxies.",
		Remedy:      "Restart the listed workloads (`kubectl rollout restart`) so that they are injected by the revision their labels select, then remove the old revision's istiod.",
	},
	{
		Code: CodeLinkerdProxyVersionDrift, Name: "LinkerdProxyVersionDrift", Severity: SeverityInfo, For: 10 * time.Minute,
		Summary:     "Linkerd proxies in {object} differ from their control plane: {detail}",
		Description: "Pods of the namespace run a Linkerd proxy (`linkerd.io/proxy-version` annotation) of another version than their control plane injects: the version on the control plane's own pods (labelled `linkerd.io/control-plane-component`, their `linkerd.io/proxy-version`, else the version in `linkerd.io/created-by`), in the control-plane namespace the pod's `linkerd.io/control-plane-ns` label names. Pods injected before a Linkerd upgrade keep their old proxy until restarted; `linkerd check --proxy` reports the same. A proxy version pinned with `config.linkerd.io/proxy-version` is reported and marked as pinned. A control plane whose pods disagree (an upgrade rolling out) is not compared with.",
		Remedy:      "Restart the listed workloads (`kubectl rollout restart`) so that the proxy injector gives them the current proxy, or remove an outdated `config.linkerd.io/proxy-version` pin.",
	},
	{
		Code: CodeOutOfBandEdit, Name: "MeshObjectEditedOutOfBand", Severity: SeverityWarning, For: 0,
		Summary:     "{object} of {app} was changed outside Git by {detail}",
		Description: "A field manager that is not the owning GitOps controller (kustomize-controller, helm-controller, Argo CD's controller, or one in `findings.allowedManagers`) wrote spec fields of the object after the app last applied: a `kubectl edit`, `patch` or `apply`, a script or an operator. The evidence names the manager, its operation, when, and the top-level spec fields it owns. This reads `managedFields`, so it is independent of the GitOps tool's own diff and also catches fields Git never mentions, which the tool leaves alone. The finding resolves when the app applies again after the edit.",
		Remedy:      "Bring the change into Git, or let the GitOps tool revert it (Flux reverts on its next reconciliation when the field is in Git; sync the Argo CD app). If the manager is meant to write the object, add it to `findings.allowedManagers`.",
	},
	{
		Code: CodeOrphanObject, Name: "MeshObjectOrphaned", Severity: SeverityInfo, For: 10 * time.Minute,
		Summary:     "{object} affects traffic but no GitOps app owns it",
		Description: "The mesh object carries no Argo CD tracking annotation or label and is listed in no Flux Kustomization or HelmRelease inventory, so Git does not describe it. Derived only while every enabled GitOps source is read in full: an unreachable source never makes objects look orphaned. Telemetry objects, which do not route or secure traffic, are not reported.",
		Remedy:      "Add the object to Git under an app, or delete it; suppress objects that are meant to live outside Git with the `meshdrift.io/ignore: MD0802` annotation.",
	},
}

// Catalog returns every entry, in code order (retired ones included).
func Catalog() []Entry { return append([]Entry(nil), catalog...) }

// Lookup returns the entry of a code.
func Lookup(c Code) (Entry, bool) {
	for _, e := range catalog {
		if e.Code == c {
			return e, true
		}
	}
	return Entry{}, false
}
