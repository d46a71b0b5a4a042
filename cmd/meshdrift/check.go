package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var common commonFlags
	common.register(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for every source")
	if !parseFlags(fs, args, stderr) {
		return exitUsage
	}
	cfg, log, err := common.load(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift check: %v\n", err)
		return exitUsage
	}
	a, err := wire(readOnly(cfg), log)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift check: %v\n", err)
		return exitProblem
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	// The watchers run; istiod is read once, directly, rather than on the reader's timer,
	// and the checks run once, on the synced caches.
	watchers := a.components[:0:0]
	for _, c := range a.components {
		if c.name != "istio" && c.name != "checks" {
			watchers = append(watchers, c)
		}
	}
	a.components = watchers
	a.start(ctx)
	if err := a.waitSynced(ctx); err != nil {
		fmt.Fprintf(stderr, "meshdrift check: %v\n", err)
		return exitProblem
	}
	if a.reader != nil {
		// A failed read is reported as a source that is down, which check prints.
		_ = a.reader.ReadOnce(ctx)
	}
	if a.checks != nil {
		a.checks.RunOnce(ctx)
	}
	now := time.Now()
	a.store.Evaluate(now)
	snap := a.snapshot()
	printSnapshot(stdout, snap)
	printUnverified(stdout, snap)
	printChecks(stdout, snap.Checks)
	printFindings(stdout, findings.Current(snap, cfg.Findings.Engine(), now))
	if problems := snapshotProblems(snap); len(problems) > 0 {
		fmt.Fprintf(stdout, "\n%d problem(s):\n", len(problems))
		for _, p := range problems {
			fmt.Fprintln(stdout, "  - "+p)
		}
		return exitProblem
	}
	fmt.Fprintln(stdout, "\nno problems found")
	return exitOK
}

// snapshotProblems lists what check fails on: unreachable sources, restricted istiod
// views, failing apps, proxies in ERROR, and changes that were NACKed, went stale or were
// never pushed.
func snapshotProblems(s reconcile.Snapshot) []string {
	out, refused := restrictionProblems(s)
	for _, src := range s.Sources {
		if refused[src.Name] {
			continue // said above, with the fix
		}
		if !src.Up {
			out = append(out, fmt.Sprintf("source %s unreachable: %s", src.Name, src.Error))
		}
	}
	for _, a := range s.Apps {
		if a.State == reconcile.AppFailed {
			out = append(out, fmt.Sprintf("%s failed (%s): %s", a.Key, a.Reason, a.Message))
		}
	}
	for _, v := range s.Istiods {
		for _, p := range v.Proxies {
			for _, t := range p.Types {
				if t.State == reconcile.StateError {
					out = append(out, fmt.Sprintf("proxy %s (istiod %s) rejects %s: %s", p.ID, v.Istiod, reconcile.ShortType(t.TypeURL), t.Error))
				}
			}
		}
	}
	for _, v := range s.Istiods {
		if v.Signals == nil {
			continue
		}
		for _, rc := range v.Signals.RejectedConfigs {
			out = append(out, fmt.Sprintf("istiod %s rejected %s %s (%g times)", v.Istiod, rc.Type, rc.Name, rc.Count))
		}
		for name, n := range v.Signals.PushErrors {
			out = append(out, fmt.Sprintf("istiod %s: %g failed pushes (%s)", v.Istiod, n, name))
		}
	}
	for _, r := range s.Propagation {
		switch r.State {
		case reconcile.PropagationNACKed, reconcile.PropagationStale, reconcile.PropagationNotPushed:
			out = append(out, r.Summary())
		}
	}
	return out
}

func printSnapshot(w io.Writer, s reconcile.Snapshot) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tSTATE\tERROR")
	for _, src := range s.Sources {
		state := "up"
		if !src.Up {
			state = "DOWN"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", src.Name, state, src.Error)
	}
	fmt.Fprintln(tw, "\nAPP\tSTATE\tAPPLIED\tDESIRED\tMESSAGE")
	for _, a := range s.Apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Key, a.State, short(a.AppliedRevision), short(a.DesiredRevision), oneLine(a.Message))
	}
	types := []string{"CDS", "LDS", "RDS", "EDS"}
	fmt.Fprintln(tw, "\nPROXY\tISTIOD\t"+strings.Join(types, "\t")+"\tERROR")
	for _, v := range s.Istiods {
		for _, p := range v.Proxies {
			states := map[string]string{}
			errText := ""
			for _, t := range p.Types {
				states[reconcile.ShortType(t.TypeURL)] = string(t.State)
				if t.Error != "" {
					errText = t.Error
				}
			}
			row := []string{p.ID, v.Istiod}
			for _, t := range types {
				st := states[t]
				if st == "" {
					st = "-"
				}
				row = append(row, st)
			}
			fmt.Fprintln(tw, strings.Join(append(row, oneLine(errText)), "\t"))
		}
	}
	fmt.Fprintln(tw, "\nPROPAGATION")
	for _, r := range s.Propagation {
		fmt.Fprintln(tw, r.Summary())
	}
	_ = tw.Flush()
}

// short trims a "main@sha1:<40 hex>" or bare SHA revision for a table.
func short(rev string) string {
	if i := strings.LastIndexByte(rev, ':'); i >= 0 && len(rev)-i > 13 {
		return rev[:i+13]
	}
	if len(rev) == 40 {
		return rev[:12]
	}
	return rev
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return s
}

// restrictionProblems reports every istiod that shows meshdrift only part of its proxies
// (or refuses to show any): whatever else check prints about the mesh is then incomplete,
// so it fails, with the fix. refused names the sources of istiods that refused outright,
// whose "unreachable" line would only repeat it.
func restrictionProblems(s reconcile.Snapshot) (out []string, refused map[string]bool) {
	refused = map[string]bool{}
	for _, v := range s.Istiods {
		rs := v.Restriction
		if rs == nil {
			continue
		}
		if rs.Denied {
			refused["istiod/"+v.Istiod] = true
		}
		out = append(out, fmt.Sprintf("restricted view of istiod %s, propagation Unknown: %s\n    fix: %s", v.Istiod, rs.Reason, rs.Fix))
	}
	return out, refused
}

// printUnverified notes istiods whose proxy list could not be checked for completeness:
// not a failure, but what check says about them rests on istiod showing every proxy.
func printUnverified(w io.Writer, s reconcile.Snapshot) {
	for _, v := range s.Istiods {
		if v.Unverified != "" && v.Restriction == nil {
			fmt.Fprintf(w, "note: istiod %s: not checked that it shows every connected proxy: %s\n", v.Istiod, v.Unverified)
		}
	}
}

// printChecks says which semantic checks ran and why the others did not; their problems
// are among the findings.
func printChecks(w io.Writer, run *reconcile.CheckRun) {
	if run == nil {
		return
	}
	fmt.Fprintln(w, "\nCHECKS")
	if run.Waiting != "" {
		fmt.Fprintf(w, "not run: %s\n", run.Waiting)
		return
	}
	ran := 0
	for _, c := range run.Checks {
		if c.Skipped == "" {
			ran++
		}
	}
	fmt.Fprintf(w, "%d of %d ran in %s, %d result(s)\n", ran, len(run.Checks), run.Duration.Round(time.Microsecond), len(run.Results))
	for _, c := range run.Checks {
		if c.Skipped != "" {
			fmt.Fprintf(w, "skipped %s %s: %s\n", c.Code, c.Name, c.Skipped)
		}
	}
}

// printFindings lists the findings the same state would raise in serve, by code, so that a
// pipeline's log names the catalog entry to read.
func printFindings(w io.Writer, fs []findings.Finding) {
	fmt.Fprintln(w, "\nFINDINGS")
	if len(fs) == 0 {
		fmt.Fprintln(w, "none")
		return
	}
	for _, f := range fs {
		fmt.Fprintf(w, "%s %s %s (%s): %s\n", f.Code, f.Severity, f.Name, f.State, oneLine(f.Summary))
	}
}
