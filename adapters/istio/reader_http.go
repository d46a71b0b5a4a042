package istio

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// maxErrorBodyBytes bounds how much of an error response is quoted in the error.
const maxErrorBodyBytes = 512

// httpSynczClient reads GET /debug/syncz. Connections are kept alive by the shared
// http.Client, so a poll costs one request. One read at a time.
type httpSynczClient struct {
	target Target
	client *http.Client
	// tokenFile is sent as a bearer token; "" when there is none, or when it must not
	// travel in clear text to this target (see sendsToken).
	tokenFile string
	// date is the Date header of the last answer (istiod's clock), zero when it had none.
	date time.Time
	// tokenWithheld: a token is configured but not sent to this non-loopback target.
	tokenWithheld bool
}

func newHTTPSynczClient(t Target, client *http.Client, cfg ReaderConfig) *httpSynczClient {
	c := &httpSynczClient{target: t, client: client}
	if cfg.TokenFile != "" {
		if sendsToken(t.Addr, cfg.AllowInsecureTokenOverHTTP) {
			c.tokenFile = cfg.TokenFile
		} else {
			c.tokenWithheld = true
		}
	}
	return c
}

// sendsToken says whether the istio-ca token may go in clear text to addr: only to a
// loopback address (a port-forward, a sidecar on the same host), unless the
// configuration allows it in so many words. The token is meshdrift's identity towards
// istiod; anyone on the path could replay it until it expires.
func sendsToken(addr string, allowInsecure bool) bool {
	if allowInsecure {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (c *httpSynczClient) read(ctx context.Context) (string, []reconcile.ProxyStatus, error) {
	c.date = time.Time{}
	resp, err := httpDo(ctx, c.client, "http://"+c.target.Addr+"/debug/syncz", "application/json", c.tokenFile)
	if err != nil {
		return "", nil, fmt.Errorf("syncz over http: %w", err)
	}
	body := resp.Body
	defer body.Close()
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		c.date = d
	}
	proxies, err := ParseSynczHTTP(body, c.target.Name)
	if err != nil {
		return "", nil, fmt.Errorf("syncz over http: %w", err)
	}
	// The HTTP form has no push version; the caller leaves it empty.
	return "", proxies, nil
}

func (c *httpSynczClient) close() {}

// serverDate is the last answer's Date header: Go's HTTP server in istiod writes it from
// istiod's clock, which bounds its offset from meshdrift's (reconcile.ClockOffset).
func (c *httpSynczClient) serverDate() time.Time { return c.date }

// httpStatusError is an answer other than 200 OK.
type httpStatusError struct {
	url    string
	status string
	code   int
	body   string
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("get %s: %s: %s", e.url, e.status, e.body)
}

// httpGet GETs url and returns the body of a 200 answer. The token file, when set, is
// read for every request, as the kubelet rotates it.
func httpGet(ctx context.Context, client *http.Client, url, accept, tokenFile string) (io.ReadCloser, error) {
	resp, err := httpDo(ctx, client, url, accept, tokenFile)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// httpDo is httpGet returning the whole 200 response; the caller closes its body.
func httpDo(ctx context.Context, client *http.Client, url, accept, tokenFile string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "meshdrift")
	if tokenFile != "" {
		token, err := readToken(tokenFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		return nil, &httpStatusError{url: url, status: resp.Status, code: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}
	return resp, nil
}
