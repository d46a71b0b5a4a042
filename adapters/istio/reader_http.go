package istio

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// maxErrorBodyBytes bounds how much of an error response is quoted in the error.
const maxErrorBodyBytes = 512

// httpSynczClient reads GET /debug/syncz. Connections are kept alive by the shared
// http.Client, so a poll costs one request. One read at a time.
type httpSynczClient struct {
	target    Target
	client    *http.Client
	tokenFile string
	// date is the Date header of the last answer (istiod's clock), zero when it had none.
	date time.Time
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
		return nil, fmt.Errorf("get %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}
