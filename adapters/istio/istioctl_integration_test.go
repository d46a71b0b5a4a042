package istio

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
	"github.com/meshdrift/meshdrift/reconcile"
)

// istioctlColumns are istioctl's state columns in its own order, so that our table and
// its table can be read side by side.
var istioctlColumns = []string{"CDS", "ECDS", "EDS", "LDS", "RDS", "PCDS"}

// The real `istioctl proxy-status -v 1` and meshdrift, reading the same live istiod, say
// the same thing for every proxy and every column, over xDS and over HTTP: one proxy per
// state istioctl can print.
func TestProxyTableMatchesRealIstioctl(t *testing.T) {
	needBed(t)
	ns := newNamespace(t)
	istiod := bed.istiodA
	pushAll(t, ns) // a Service gives the proxies a route to ask RDS for
	ack := startProxy(t, istiod, "reviews-v1-ack", ns, "10.1.0.61")
	nack := startProxy(t, istiod, "ratings-v1-nack", ns, "10.1.0.62")
	silent := startProxy(t, istiod, "productpage-v1-silent", ns, "10.1.0.63")
	notSent := xdsproxy.New(xdsproxy.Config{
		Addr: istiod.GRPCAddr, PodName: "details-v1-notsent", Namespace: ns, IP: "10.1.0.64",
		Labels: map[string]string{"app": "details", "version": "v1"},
		// istiod never answers a PCDS watch: istioctl's NOT SENT.
		ExtraWatches: []xdsproxy.Watch{{TypeURL: xdsproxy.TypeProxyConfig}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := notSent.Start(ctx); err != nil {
		t.Fatalf("starting proxy %s: %v\nistiod log:\n%s", notSent.Name(), err, istiod.LogTail(30))
	}
	t.Cleanup(func() { _ = notSent.Close() })

	targets := transportsOf(istiod)
	rx, recx, _, _ := newTestReader(t, ReaderConfig{Transport: TransportXDSTLS}, []Target{targets[TransportXDSTLS]})
	rh, rech, _, _ := newTestReader(t, ReaderConfig{Transport: TransportHTTP}, []Target{targets[TransportHTTP]})
	readView := func(r *Reader, rec *recorder) (reconcile.IstiodView, error) {
		if err := r.ReadOnce(context.Background()); err != nil {
			return reconcile.IstiodView{}, err
		}
		v, _ := rec.lastView(istiod.Name)
		return v, nil
	}
	proxies := []*xdsproxy.Proxy{ack, nack, silent, notSent}
	allSynced := func(v reconcile.IstiodView) (bool, string) {
		for _, p := range proxies {
			if got, ok := findProxy(v, p.Name()); !ok || !fullySynced(got) {
				return false, meshdriftTable(v, ns)
			}
		}
		return true, ""
	}
	// The silent proxy must have ACKed its first config, or it would show NOT SENT
	// rather than STALE after the push.
	testbed.Eventually(t, 15*time.Second, "all proxies synced", func() (bool, string) {
		v, err := readView(rx, recx)
		if err != nil {
			return false, err.Error()
		}
		return allSynced(v)
	})

	const reason = "cluster: rejected by the istioctl comparison test"
	nack.SetNACKMessage(reason)
	nack.SetMode(xdsproxy.ModeNACK)
	silent.SetMode(xdsproxy.ModeSilent)
	pushAll(t, ns)

	// istiod records ACKs and NACKs a moment after the push: wait until every state
	// istioctl can print is there and two reads in a row agree.
	prev := ""
	testbed.Eventually(t, 15*time.Second, "istiod's state settled", func() (bool, string) {
		v, err := readView(rx, recx)
		if err != nil {
			return false, err.Error()
		}
		table := meshdriftTable(v, ns)
		settled := table == prev
		prev = table
		a, _ := findProxy(v, ack.Name())
		n, _ := findProxy(v, nack.Name())
		s, _ := findProxy(v, silent.Name())
		p, _ := findProxy(v, notSent.Name())
		_, nacked := nackedWith(n, reason)
		stale := slices.ContainsFunc(s.Types, func(x reconcile.XDSStatus) bool { return x.State == reconcile.StateStale })
		pcds := typeStates(p)[xdsproxy.TypeProxyConfig] == reconcile.StateNotSent
		return settled && fullySynced(a) && nacked && stale && pcds && fullySynced(p), table
	})

	// A push may still land between our reads and istioctl's: retry the whole comparison.
	const attempts = 5
	for attempt := 1; ; attempt++ {
		diffs, tables := compareWithRealIstioctl(t, istiod, ns,
			func() (reconcile.IstiodView, error) { return readView(rx, recx) },
			func() (reconcile.IstiodView, error) { return readView(rh, rech) })
		if len(diffs) == 0 {
			t.Logf("attempt %d: istioctl and meshdrift agree:\n%s", attempt, tables)
			return
		}
		if attempt == attempts {
			t.Fatalf("istioctl and meshdrift disagree after %d attempts:\n%s\n\n%s", attempts, strings.Join(diffs, "\n"), tables)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// compareWithRealIstioctl reads meshdrift over xDS, runs istioctl, reads over HTTP (so
// that istioctl sits between the two reads), and lists every difference for ns's
// proxies, with the three tables for a failure message.
func compareWithRealIstioctl(t *testing.T, istiod *testbed.Istiod, ns string,
	readXDS, readHTTP func() (reconcile.IstiodView, error)) (diffs []string, tables string) {
	t.Helper()
	xv, xerr := readXDS()
	out, cerr := runIstioctl(istiod)
	hv, herr := readHTTP()
	tables = fmt.Sprintf("istioctl:\n%s\nmeshdrift over xDS:\n%s\nmeshdrift over HTTP:\n%s",
		out, meshdriftTable(xv, ns), meshdriftTable(hv, ns))
	for _, err := range []error{xerr, cerr, herr} {
		if err != nil {
			diffs = append(diffs, err.Error())
		}
	}
	if len(diffs) > 0 {
		return diffs, tables
	}
	rows := parseIstioctlTable(t, out)
	for transport, v := range map[Transport]reconcile.IstiodView{TransportXDSTLS: xv, TransportHTTP: hv} {
		for _, d := range istioctlDiffs(v, rows, ns) {
			diffs = append(diffs, string(transport)+": "+d)
		}
	}
	slices.Sort(diffs)
	return diffs, tables
}

// runIstioctl runs the real `istioctl proxy-status -v 1` against istiod's secure xDS port,
// as a user does: istioctl requests a token of istio-system's default ServiceAccount and
// istiod's debug authorization lets it see every proxy. --revision spares it waiting for a
// kube informer.
func runIstioctl(istiod *testbed.Istiod) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bed.assets.Bin("istioctl"), "--kubeconfig", bed.kube.Kubeconfig,
		"proxy-status", "--revision", istiod.Revision, "--xds-address", istiod.SecureGRPCAddr, "-v", "1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("istioctl proxy-status: %w: %s", err, stderr.String())
	}
	return string(out), nil
}

// inNamespace reports whether a proxy ID ("<pod>.<namespace>") is in ns.
func inNamespace(id, ns string) bool { return strings.HasSuffix(id, "."+ns) }

// istioctlDiffs lists where our view of ns's proxies and istioctl's rows differ: the
// proxy names, identity, and for each column the state, IGNORED standing for a type we
// do not report at all.
func istioctlDiffs(v reconcile.IstiodView, rows map[string]istioctlRow, ns string) []string {
	urls := istioctlTypeURLs()
	var diffs []string
	for id := range rows {
		if _, ok := findProxy(v, id); inNamespace(id, ns) && !ok {
			diffs = append(diffs, fmt.Sprintf("%s: listed by istioctl, missing from ours", id))
		}
	}
	for _, p := range v.Proxies {
		if !inNamespace(p.ID, ns) {
			continue
		}
		row, ok := rows[p.ID]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: ours, not listed by istioctl", p.ID))
			continue
		}
		if p.ClusterID != row.Cluster || p.Istiod != row.Istiod || p.IstioVersion != row.Version {
			diffs = append(diffs, fmt.Sprintf("%s: cluster, istiod, version %q, %q, %q; istioctl %q, %q, %q",
				p.ID, p.ClusterID, p.Istiod, p.IstioVersion, row.Cluster, row.Istiod, row.Version))
		}
		got := typeStates(p)
		for typeURL := range got {
			if !slices.ContainsFunc(istioctlColumns, func(c string) bool { return urls[c] == typeURL }) {
				diffs = append(diffs, fmt.Sprintf("%s: we report %s, which has no istioctl column", p.ID, typeURL))
			}
		}
		for _, column := range istioctlColumns {
			ours, istioctls := stateCell(got, urls[column]), stateCell(row.States, urls[column])
			if ours != istioctls {
				diffs = append(diffs, fmt.Sprintf("%s %s: ours %s, istioctl %s", p.ID, column, ours, istioctls))
			}
		}
	}
	return diffs
}

// stateCell is a state as istioctl prints it, without the age: IGNORED when absent.
func stateCell(states map[string]reconcile.SyncState, typeURL string) string {
	if s, ok := states[typeURL]; ok {
		return string(s)
	}
	return "IGNORED"
}

// meshdriftTable renders our view of ns's proxies in istioctl's layout.
func meshdriftTable(v reconcile.IstiodView, ns string) string {
	urls := istioctlTypeURLs()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	fmt.Fprintf(w, "NAME\tCLUSTER\t%s\tISTIOD\tVERSION\n", strings.Join(istioctlColumns, "\t"))
	ps := slices.Clone(v.Proxies)
	slices.SortFunc(ps, func(a, b reconcile.ProxyStatus) int { return strings.Compare(a.ID, b.ID) })
	for _, p := range ps {
		if !inNamespace(p.ID, ns) {
			continue
		}
		states := typeStates(p)
		cells := []string{p.ID, p.ClusterID}
		for _, column := range istioctlColumns {
			cells = append(cells, stateCell(states, urls[column]))
		}
		fmt.Fprintln(w, strings.Join(append(cells, p.Istiod, p.IstioVersion), "\t"))
	}
	_ = w.Flush()
	return b.String()
}
