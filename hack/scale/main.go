// Command scale is meshdrift's scale harness: it brings up the real test bed at fleet size
// (kube-apiserver with thousands of Argo CD Applications and Flux Kustomizations owning
// tens of thousands of mesh objects, istiod with as many test proxies as this machine holds,
// syncz replicated to 10,000 proxies, Alertmanager), runs `meshdrift serve` on it as a real
// process, and prints one table of what it measured next to the targets of issue 10,
// together with the Go benchmarks named there. `make bench` runs it; BENCHMARKS.md holds
// the latest table.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	meshdrift    string
	apps         int
	objects      int
	proxies      int
	synczProxies int
	injections   int
	grace        time.Duration
	steady       time.Duration
	workers      int
	benchFile    string
	logDir       string
	istioctlRuns int
	maxRPS       int
	readyTimeout time.Duration
	profileDir   string
	benchOnly    bool
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s scale: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	var o options
	flag.StringVar(&o.meshdrift, "meshdrift", "bin/meshdrift", "meshdrift binary to run")
	flag.IntVar(&o.apps, "apps", 5000, "apps to create (half Argo CD Applications, half Flux Kustomizations)")
	flag.IntVar(&o.objects, "objects", 20000, "mesh objects the apps own (VirtualServices and DestinationRules)")
	flag.IntVar(&o.proxies, "proxies", 1000, "test proxies connected to the real istiod")
	flag.IntVar(&o.synczProxies, "syncz-proxies", 10000, "proxies meshdrift sees: the real ones plus replicas of their recorded syncz")
	flag.IntVar(&o.injections, "injections", 20, "NACK and never-pushed injections each")
	flag.DurationVar(&o.grace, "grace", 5*time.Second, "meshdrift's reconcile.staleGrace")
	flag.DurationVar(&o.steady, "steady", 60*time.Second, "steady-state window for request rates and memory")
	flag.IntVar(&o.workers, "workers", 16, "parallel API writers while populating")
	flag.StringVar(&o.benchFile, "bench-output", "", "`go test -bench -benchmem` output to take the named benchmarks from")
	flag.StringVar(&o.logDir, "log-dir", "", "directory for the bed's logs (default: a new temporary directory)")
	flag.IntVar(&o.istioctlRuns, "istioctl-runs", 3, "runs of istioctl proxy-status to average")
	flag.IntVar(&o.maxRPS, "istiod-max-rps", 200, "istiod's PILOT_MAX_REQUESTS_PER_SECOND (new xDS connections per second)")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 5*time.Minute, "how long meshdrift may take to become ready before the harness gives up on the detection figures")
	flag.StringVar(&o.profileDir, "profile-dir", "", "build meshdrift with a pprof listener (go build -overlay; run from the repository root) and write its CPU and heap profiles here")
	flag.BoolVar(&o.benchOnly, "bench-only", false, "print the benchmark rows of -bench-output and exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := &report{}
	if err := benchRows(rep, o.benchFile); err != nil {
		logf("reading benchmarks: %v", err)
	}
	if o.benchOnly {
		rep.print(os.Stdout)
		return
	}
	err := runScale(ctx, o, rep)
	rep.print(os.Stdout)
	if err != nil {
		logf("FAILED: %v", err)
		os.Exit(1)
	}
}

type row struct{ figure, measured, target, met string }

type report struct{ rows []row }

// add records one figure; met is "yes", "NO" or "-" (no target or not measured).
func (r *report) add(figure, measured, target string, met string) {
	r.rows = append(r.rows, row{figure, measured, target, met})
	logf("%s: %s (target %s) %s", figure, measured, target, met)
}

func metStr(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func (r *report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "| figure\t| measured\t| target\t| met?\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|")
	for _, x := range r.rows {
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t|\n", x.figure, x.measured, x.target, x.met)
	}
	_ = tw.Flush()
}

// benchRows puts the benchmarks issue 10 names into the table; "n/a" where the output
// has none (not on this branch, or not run).
func benchRows(rep *report, path string) error {
	res, err := parseBenchFile(path)
	for _, b := range []struct {
		name, figure string
		limit        time.Duration
	}{
		{"BenchmarkEvaluateInFlight", "eval pass, 10k proxies x 5 types, 500 changes in flight", 100 * time.Millisecond},
		{"BenchmarkEvaluateSteady", "eval pass, steady (nothing in flight)", 10 * time.Millisecond},
		{"BenchmarkParseSyncz10000Proxies", "syncz decode, 10k proxies", 0},
	} {
		target := "-"
		if b.limit > 0 {
			target = "<= " + b.limit.String()
		}
		// The benchmark itself, or its sub-benchmarks (name/sub), in name order.
		var names []string
		for n := range res {
			if n == b.name || strings.HasPrefix(n, b.name+"/") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			rep.add(b.figure+" ("+b.name+")", "n/a", target, "-")
			rep.add("  allocs per op ("+b.name+")", "n/a", "-", "-")
			continue
		}
		for _, n := range names {
			r := res[n]
			d := time.Duration(r.nsPerOp)
			met := "-"
			if b.limit > 0 {
				met = metStr(d <= b.limit)
			}
			rep.add(b.figure+" ("+n+")", fmtDur(d), target, met)
			rep.add("  allocs per op ("+n+")", fmt.Sprintf("%.0f allocs, %.1f MiB", r.allocsPerOp, r.bytesPerOp/(1<<20)), "-", "-")
		}
	}
	return err
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

func shortList(xs []string) string { return strings.Join(xs, ", ") }
