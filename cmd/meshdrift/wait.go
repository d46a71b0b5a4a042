package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// runWait blocks until an app's revision has reached every proxy istiod sent it to, for CI
// pipelines that would otherwise trust a green Argo CD or Flux: exit 0 when propagated,
// 1 on a NACK, a stale or unpushed change, or the timeout.
func runWait(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	var common commonFlags
	common.register(fs)
	appFlag := fs.String("app", "", "the app: argocd/<namespace>/<name>, flux/<namespace>/<name> (a Kustomization) or flux/HelmRelease/<namespace>/<name>")
	revision := fs.String("revision", "", "wait for this applied revision (default: whatever is applied)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if !parseFlags(fs, args, stderr) {
		return exitUsage
	}
	key, err := parseAppKey(*appFlag)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift wait: --app: %v\n", err)
		return exitUsage
	}
	cfg, log, err := common.load(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift wait: %v\n", err)
		return exitUsage
	}
	a, err := wire(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift wait: %v\n", err)
		return exitProblem
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	a.start(ctx)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "timed out after %s: %s\n", *timeout, last)
			return exitProblem
		case <-tick.C:
		}
		state, msg := waitState(a.store.Snapshot(), key, *revision)
		if msg != last {
			fmt.Fprintln(stdout, msg)
			last = msg
		}
		switch state {
		case reconcile.PropagationPropagated:
			return exitOK
		case reconcile.PropagationNACKed, reconcile.PropagationStale, reconcile.PropagationNotPushed:
			return exitProblem
		}
	}
}

// waitState says where the app's revision stands.
func waitState(s reconcile.Snapshot, key reconcile.AppKey, revision string) (reconcile.PropagationState, string) {
	var app *reconcile.App
	for i := range s.Apps {
		if s.Apps[i].Key == key {
			app = &s.Apps[i]
		}
	}
	if app == nil {
		return reconcile.PropagationPending, key.String() + ": not seen yet"
	}
	if revision != "" && app.AppliedRevision != revision && !strings.HasSuffix(app.AppliedRevision, revision) {
		return reconcile.PropagationPending, fmt.Sprintf("%s: applied revision %q, waiting for %q (%s)", key, app.AppliedRevision, revision, app.State)
	}
	for _, r := range s.Propagation {
		if r.App == key {
			return r.State, r.Summary()
		}
	}
	return reconcile.PropagationPending, fmt.Sprintf("%s: %s, no mesh object changes observed yet", key, app.State)
}

// parseAppKey reads "argocd/<ns>/<name>", "flux/<ns>/<name>" or "<source>/<Kind>/<ns>/<name>".
func parseAppKey(s string) (reconcile.AppKey, error) {
	parts := strings.Split(s, "/")
	var k reconcile.AppKey
	switch len(parts) {
	case 3:
		k = reconcile.AppKey{Source: reconcile.Source(parts[0]), Namespace: parts[1], Name: parts[2]}
		switch k.Source {
		case reconcile.SourceArgoCD:
			k.Kind = "Application"
		case reconcile.SourceFlux:
			k.Kind = "Kustomization"
		}
	case 4:
		k = reconcile.AppKey{Source: reconcile.Source(parts[0]), Kind: parts[1], Namespace: parts[2], Name: parts[3]}
	default:
		return k, fmt.Errorf("%q: want <source>/<namespace>/<name> or <source>/<Kind>/<namespace>/<name>", s)
	}
	if k.Source != reconcile.SourceArgoCD && k.Source != reconcile.SourceFlux {
		return k, fmt.Errorf("%q: source must be argocd or flux", s)
	}
	if k.Kind == "" || k.Namespace == "" || k.Name == "" {
		return k, fmt.Errorf("%q: empty kind, namespace or name", s)
	}
	return k, nil
}
