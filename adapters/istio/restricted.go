package istio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshdrift/meshdrift/reconcile"
)

// A restricted view. With debug-endpoint authorization on (Istio's default since 1.29),
// istiod answers syncz from a caller whose token is neither from its root namespace nor
// from a namespace in DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES with that caller's own
// namespace's proxies only, usually none, and no error. Read as it is, such a view says
// "no problems" and makes every change look pushed to nobody. So each syncz read is
// checked against istiod's own count of connected xDS clients, the pilot_xds gauge on
// its monitoring port, and a debug request istiod refuses is told apart from istiod
// being unreachable.
//
// pilot_xds counts every ADS connection by the ISTIO_VERSION its node sent, debug
// clients included, while syncz leaves out nodes without PROXY_CONFIG (debug clients).
// Two version buckets hold only debug clients and are left out of the count:
// "" (a node without ISTIO_VERSION: meshdrift's own syncz and NACK streams, and any other
// meshdrift replica) and "65536.65536.65536" (what Istio's xDS client library reports when
// its caller sets none: istioctl proxy-status and the like). A proxy always reports its
// version, so comparing per version keeps those clients, however many come and go,
// from looking like hidden proxies. The gauge is read before and after syncz and the
// smaller count per version is compared, so a proxy connecting or disconnecting during
// the read is not taken for a hidden one; a mismatch first seen while the view was full
// is read again before it is believed, so one unlucky read does not flap the verdict.

// debugClientVersions are pilot_xds version labels of debug clients, not proxies.
var debugClientVersions = map[string]bool{"": true, "65536.65536.65536": true}

// hiddenProxies compares the proxies syncz showed with the smaller of two readings of
// istiod's connected-client gauge, per Istio version, debug clients left out. It
// returns how many connected proxies the view lacks and how many are connected.
func hiddenProxies(before, after map[string]float64, proxies []reconcile.ProxyStatus) (hidden, connected int) {
	visible := map[string]int{}
	for _, p := range proxies {
		visible[p.IstioVersion]++
	}
	for v, b := range before {
		if debugClientVersions[v] {
			continue
		}
		n := int(min(b, after[v])) // a version absent after the read has none connected
		connected += n
		hidden += max(0, n-visible[v])
	}
	return hidden, connected
}

// viewCheck is what readChecked found out about a view's completeness.
type viewCheck struct {
	restriction *reconcile.ViewRestriction
	// unverified says why the count check could not run; "" when it ran.
	unverified string
}

// readChecked reads istiod's syncz and checks it against the number of proxies istiod
// says are connected. A read istiod refuses (permission denied, unauthenticated) returns
// the error and a restriction that says what to fix.
func (r *Reader) readChecked(ctx, rctx context.Context, c *targetClient) (string, []reconcile.ProxyStatus, viewCheck, error) {
	if c.target.MonitoringAddr == "" {
		version, proxies, err := c.syncz.read(rctx)
		check := viewCheck{unverified: "no monitoring address known for this istiod, so its proxy count cannot be compared (set istio.monitoringAddresses)"}
		if err != nil {
			check.restriction = r.deniedRestriction(err, c, -1)
		}
		return version, proxies, check, err
	}
	for attempt := 0; ; attempt++ {
		before, berr := r.connectedGauge(ctx, c)
		version, proxies, err := c.syncz.read(rctx)
		if err != nil {
			connected := -1
			if berr == nil {
				_, connected = hiddenProxies(before, before, nil)
			}
			return "", nil, viewCheck{restriction: r.deniedRestriction(err, c, connected)}, err
		}
		after, aerr := r.connectedGauge(ctx, c)
		if err := errors.Join(berr, aerr); err != nil {
			// Nothing new is known: a view found partial stays so until a check shows
			// it full, as the reason (istiod's configuration) does not come and go.
			return version, proxies, viewCheck{restriction: c.restriction, unverified: "istiod's metrics could not be read: " + err.Error()}, nil
		}
		hidden, connected := hiddenProxies(before, after, proxies)
		switch {
		case hidden == 0:
			c.restriction = nil
		case c.restriction != nil || attempt > 0:
			c.restriction = r.countRestriction(c.target, len(proxies), connected)
		default:
			continue // first sighting: read again before believing it
		}
		return version, proxies, viewCheck{restriction: c.restriction}, nil
	}
}

// connectedGauge reads istiod's pilot_xds gauge by version, within the read timeout.
func (r *Reader) connectedGauge(ctx context.Context, c *targetClient) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
	defer cancel()
	return FetchConnectedProxies(ctx, r.http, c.target.MonitoringAddr)
}

// FetchConnectedProxies reads istiod's pilot_xds gauge (xDS clients by Istio version) from
// its /metrics at addr. Only that family's lines are parsed: the page is read twice per
// syncz read, and parsing all of it costs far more than the scan.
func FetchConnectedProxies(ctx context.Context, client *http.Client, addr string) (map[string]float64, error) {
	body, err := httpGet(ctx, client, "http://"+addr+"/metrics", "text/plain;version=0.0.4", "")
	if err != nil {
		return nil, fmt.Errorf("istiod metrics: %w", err)
	}
	defer body.Close()
	page, err := io.ReadAll(io.LimitReader(body, MaxMetricsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("istiod metrics from %s: %w", addr, err)
	}
	if len(page) > MaxMetricsBytes {
		return nil, fmt.Errorf("istiod metrics from %s: exceed %d bytes: %w", addr, MaxMetricsBytes, ErrMetricsTooLarge)
	}
	connected, err := parseConnectedProxies(page)
	if err != nil {
		return nil, fmt.Errorf("istiod metrics from %s: %w", addr, err)
	}
	return connected, nil
}

// parseConnectedProxies keeps the pilot_xds family of a /metrics page and parses it.
func parseConnectedProxies(page []byte) (map[string]float64, error) {
	var family bytes.Buffer
	for line := range bytes.Lines(page) {
		if isPilotXDSLine(line) {
			family.Write(line)
		}
	}
	s, err := ParseIstiodMetrics(&family)
	if err != nil {
		return nil, err
	}
	// istiod shows pilot_xds once a client has connected; before that, pilot_info says the
	// page is istiod's and nothing is connected.
	const info = "# TYPE pilot_info "
	if family.Len() == 0 && !bytes.HasPrefix(page, []byte(info)) && !bytes.Contains(page, []byte("\n"+info)) {
		return nil, errors.New("neither pilot_xds nor pilot_info: not istiod's metrics")
	}
	return s.ConnectedProxies, nil
}

// isPilotXDSLine says whether a line of the text format belongs to the pilot_xds family
// (its samples, HELP and TYPE), not to pilot_xds_pushes and the like.
func isPilotXDSLine(line []byte) bool {
	for _, prefix := range []string{"# HELP ", "# TYPE "} {
		if rest, ok := bytes.CutPrefix(line, []byte(prefix)); ok {
			line = rest
			break
		}
	}
	rest, ok := bytes.CutPrefix(line, []byte("pilot_xds"))
	return ok && len(rest) > 0 && (rest[0] == '{' || rest[0] == ' ')
}

// callerNamespace is the namespace istiod sees meshdrift in: its token's, else the
// configured node namespace; "" when unknown.
func (r *Reader) callerNamespace() string {
	if r.cfg.TokenFile != "" {
		if token, err := readToken(r.cfg.TokenFile); err == nil {
			if ns, _ := tokenIdentity(token); ns != "" {
				return ns
			}
		}
	}
	return r.cfg.NodeNamespace
}

// allowlistFix says how to let meshdrift see every proxy.
func (r *Reader) allowlistFix() string {
	ns := r.callerNamespace()
	if ns == "" {
		ns = "<meshdrift's namespace>"
	}
	return fmt.Sprintf("set DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES=%s on istiod (Helm: env.DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES in the istiod chart's values; comma-separated, keep namespaces already listed), or run meshdrift in %s", ns, r.cfg.IstioNamespace)
}

func (r *Reader) countRestriction(t Target, visible, connected int) *reconcile.ViewRestriction {
	ns := r.callerNamespace()
	who := "meshdrift"
	if ns != "" {
		who = fmt.Sprintf("meshdrift (namespace %s)", ns)
	}
	return &reconcile.ViewRestriction{
		Reason: fmt.Sprintf("istiod %s shows %s %d of the %d proxies connected to it: with debug-endpoint authorization on (Istio's default), a caller outside istiod's namespace %s and DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES sees only its own namespace's proxies",
			t.Name, who, visible, connected, r.cfg.IstioNamespace),
		Fix:       r.allowlistFix(),
		Visible:   visible,
		Connected: connected,
	}
}

// deniedRestriction turns a refused debug request into a restriction that says what to
// fix; nil for any other error (istiod down, a bad answer).
func (r *Reader) deniedRestriction(err error, c *targetClient, connected int) *reconcile.ViewRestriction {
	rs := &reconcile.ViewRestriction{Denied: true, Visible: 0, Connected: connected}
	const tokenFix = "mount a projected service account token with audience istio-ca (istio.tokenFile)"
	var he *httpStatusError
	switch {
	case errors.As(err, &he) && he.code == http.StatusUnauthorized:
		hc, _ := c.syncz.(*httpSynczClient)
		switch {
		case hc != nil && hc.tokenWithheld:
			rs.Reason = "istiod asks for a token, and meshdrift does not send its token in clear text over http to a non-loopback address"
			rs.Fix = "use istio.transport xds-tls (TLS on port 15012), or set istio.allowInsecureTokenOverHTTP: true"
		case r.cfg.TokenFile == "":
			rs.Reason = "istiod asks for a token and meshdrift has none"
			rs.Fix = tokenFix + ", or use istio.transport xds-tls"
		default:
			rs.Reason = "istiod did not accept meshdrift's token (expired, not for audience istio-ca, or from another cluster)"
			rs.Fix = tokenFix
		}
	case errors.As(err, &he) && he.code == http.StatusForbidden,
		status.Code(err) == codes.PermissionDenied:
		rs.Reason = "istiod refused meshdrift's debug request: debug-endpoint authorization allows it only to callers from istiod's namespace and DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES"
		rs.Fix = r.allowlistFix()
	case status.Code(err) == codes.Unauthenticated && r.cfg.Transport == TransportXDSPlaintext:
		rs.Reason = "istiod refuses debug requests from unauthenticated callers (debug-endpoint authorization covers plaintext port 15010 since Istio 1.30)"
		rs.Fix = "use istio.transport xds-tls (port 15012) with a projected service account token of audience istio-ca; then " + r.allowlistFix()
	case status.Code(err) == codes.Unauthenticated:
		rs.Reason = "istiod did not accept meshdrift's token (expired, not for audience istio-ca, or from another cluster)"
		rs.Fix = tokenFix
	default:
		return nil
	}
	rs.Reason = fmt.Sprintf("istiod %s: %s", c.target.Name, rs.Reason)
	return rs
}

// reportRestriction logs a change of an istiod's restriction, once per change.
func (r *Reader) reportRestriction(c *targetClient, check viewCheck) {
	r.mu.Lock()
	prev, seen := r.restrictions[c.target.Name]
	// Counts move with every pod: the log says when the kind of restriction changes.
	cur := ""
	if rs := check.restriction; rs != nil {
		cur = strconv.FormatBool(rs.Denied) + rs.Fix
		if rs.Denied {
			cur += rs.Reason
		}
	}
	changed := !seen || prev != cur
	r.restrictions[c.target.Name] = cur
	r.mu.Unlock()
	if !changed {
		return
	}
	switch {
	case check.restriction != nil:
		r.log.Warn("istiod view restricted: propagation through it is Unknown", "istiod", c.target.Name,
			"reason", check.restriction.Reason, "fix", check.restriction.Fix)
	case seen && prev != "":
		r.log.Info("istiod view complete again", "istiod", c.target.Name)
	}
}

// logTokenPolicy says at startup where the http transport sends the istio-ca token.
func logTokenPolicy(cfg ReaderConfig, log *slog.Logger) {
	if cfg.Transport != TransportHTTP || cfg.TokenFile == "" {
		return
	}
	if cfg.AllowInsecureTokenOverHTTP {
		log.Warn("the http transport sends the istio-ca token in clear text to every istiod, as istio.allowInsecureTokenOverHTTP allows; anyone on the path can replay it until it expires")
		return
	}
	log.Info("the http transport sends the istio-ca token to loopback istiods only; others are read without it (use xds-tls, or set istio.allowInsecureTokenOverHTTP: true)")
}

// logUnverified says once per target that its views cannot be checked for completeness.
func (r *Reader) logUnverified(t Target) {
	if t.MonitoringAddr != "" {
		return
	}
	r.log.Warn("cannot check that istiod shows meshdrift every connected proxy: no monitoring address; with debug-endpoint authorization on, meshdrift's namespace must be istiod's or in DEBUG_ENDPOINT_AUTH_ALLOWED_NAMESPACES",
		"istiod", t.Name, "namespace", r.callerNamespace())
}
