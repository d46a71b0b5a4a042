package argocd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/meshdrift/meshdrift/adapters/argocd/appview"
	"github.com/meshdrift/meshdrift/reconcile"
)

// Defaults for APIServerConfig's zero values.
const (
	DefaultAPITimeout      = 30 * time.Second
	DefaultAPIMaxAttempts  = 4
	DefaultAPIRetryWaitMin = 500 * time.Millisecond
	DefaultAPIRetryWaitMax = 10 * time.Second
	// DefaultAPIMaxBodyBytes fits several thousand Applications with full status.
	DefaultAPIMaxBodyBytes = 64 << 20
)

const (
	applicationsPath = "api/v1/applications"
	// maxTokenBytes bounds the token file read; Argo CD tokens are JWTs of about 1 KiB.
	maxTokenBytes = 64 << 10
	// maxErrorBodyBytes bounds how much of an error answer ends up in an error message.
	maxErrorBodyBytes = 512
)

// APIServerConfig configures reading Applications from an Argo CD API server, for
// installations where meshdrift cannot read the Application objects in Kubernetes.
type APIServerConfig struct {
	// URL is the API server's base URL, including any --rootpath, e.g.
	// https://argocd-server.argocd.svc or https://cd.example.com/argocd.
	URL string
	// TokenFile holds the bearer token (an Argo CD account or project token). It is read
	// again whenever its modification time or size changes, and after a 401, so that a
	// rotated token (e.g. a re-mounted Secret) is picked up without a restart.
	TokenFile string
	// CAFile is a PEM bundle to verify the server with instead of the system roots.
	CAFile string
	// InsecureSkipVerify disables server certificate verification. For test beds only.
	InsecureSkipVerify bool
	// ServerName overrides the name the server certificate is verified against (and SNI),
	// for when the URL holds an IP or a Service name the certificate does not list.
	ServerName string
	// Timeout bounds each HTTP attempt, reading the body included.
	Timeout time.Duration
	// MaxAttempts bounds the tries of one list call, the first one included.
	MaxAttempts int
	// RetryWaitMin and RetryWaitMax bound the exponential backoff between attempts.
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	// MaxBodyBytes caps the response body; a larger answer is an error, not a partial list.
	MaxBodyBytes int64
}

// APIServerClient lists Applications through Argo CD's REST API
// (`GET /api/v1/applications`). It is safe for concurrent use. It never logs, and its
// errors never carry the token.
type APIServerClient struct {
	endpoint string
	client   *retryablehttp.Client
	token    *tokenFile
	maxBody  int64
	now      func() time.Time
}

// NewAPIServerClient validates cfg, fills in defaults and loads the CA bundle. The token
// file is first read by the first request, so that a token mounted later still works.
func NewAPIServerClient(cfg APIServerConfig) (*APIServerClient, error) {
	endpoint, err := listEndpoint(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.TokenFile == "" {
		return nil, errors.New("argo cd api server: token file is required")
	}
	if cfg.Timeout < 0 || cfg.MaxAttempts < 0 || cfg.RetryWaitMin < 0 || cfg.RetryWaitMax < 0 || cfg.MaxBodyBytes < 0 {
		return nil, errors.New("argo cd api server: timeout, attempts, retry waits and body limit must not be negative")
	}
	cfg = withDefaults(cfg)
	if cfg.RetryWaitMin > cfg.RetryWaitMax {
		return nil, fmt.Errorf("argo cd api server: retry wait min %s is above max %s", cfg.RetryWaitMin, cfg.RetryWaitMax)
	}
	tlsConfig, err := clientTLS(cfg)
	if err != nil {
		return nil, err
	}

	transport := &http.Transport{Proxy: http.ProxyFromEnvironment}
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		transport = dt.Clone()
	}
	transport.TLSClientConfig = tlsConfig

	client := &retryablehttp.Client{
		// http.Client.Timeout covers one attempt, headers and body.
		HTTPClient:   &http.Client{Transport: transport, Timeout: cfg.Timeout},
		Logger:       nil, // we return errors instead of logging; see the type comment
		RetryWaitMin: cfg.RetryWaitMin,
		RetryWaitMax: cfg.RetryWaitMax,
		RetryMax:     cfg.MaxAttempts - 1,
		CheckRetry:   retryPolicy,
		Backoff:      retryablehttp.DefaultBackoff,
		ErrorHandler: giveUp,
	}
	return &APIServerClient{
		endpoint: endpoint,
		client:   client,
		token:    &tokenFile{path: cfg.TokenFile},
		maxBody:  cfg.MaxBodyBytes,
		now:      time.Now,
	}, nil
}

func withDefaults(cfg APIServerConfig) APIServerConfig {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultAPITimeout
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultAPIMaxAttempts
	}
	if cfg.RetryWaitMin == 0 {
		cfg.RetryWaitMin = DefaultAPIRetryWaitMin
	}
	if cfg.RetryWaitMax == 0 {
		cfg.RetryWaitMax = max(DefaultAPIRetryWaitMax, cfg.RetryWaitMin)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultAPIMaxBodyBytes
	}
	return cfg
}

func listEndpoint(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("argo cd api server: url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("argo cd api server: parsing url: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("argo cd api server: url scheme %q, want https or http", u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("argo cd api server: url %q has no host", raw)
	}
	// Credentials in the URL would end up in error messages; the token has its own file.
	if u.User != nil {
		return "", errors.New("argo cd api server: url must not contain credentials; use the token file")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("argo cd api server: url %q must be a base url without query or fragment", raw)
	}
	return u.JoinPath(applicationsPath).String(), nil
}

func clientTLS(cfg APIServerConfig) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         cfg.ServerName,
		InsecureSkipVerify: cfg.InsecureSkipVerify, // opt-in, documented as test-bed only
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("argo cd api server: reading ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("argo cd api server: ca file %s holds no PEM certificate", cfg.CAFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// retryPolicy retries connection errors and timeouts (except those that cannot heal, such
// as certificate verification failures, as retryablehttp's default policy decides) and 5xx
// other than 501. Any 4xx, 429 included, is returned at once: a bad token, missing RBAC or
// a wrong path does not heal within a backoff, and the caller polls again anyway.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	return resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented, nil
}

// attemptsError records how many attempts were made before giving up.
type attemptsError struct {
	attempts int
	err      error
}

func (e *attemptsError) Error() string {
	return fmt.Sprintf("after %d attempts: %v", e.attempts, e.err)
}

func (e *attemptsError) Unwrap() error { return e.err }

// giveUp runs when retries are exhausted or the policy stopped on an error. It keeps the
// real cause (retryablehttp's default hides a 5xx behind "giving up") and the count.
func giveUp(resp *http.Response, err error, attempts int) (*http.Response, error) {
	if err == nil && resp != nil {
		return nil, statusError(resp, attempts)
	}
	if resp != nil {
		resp.Body.Close()
	}
	if attempts > 1 {
		err = &attemptsError{attempts: attempts, err: err}
	}
	return nil, err
}

// StatusError is a non-200 answer of the API server.
type StatusError struct {
	StatusCode int
	// Message is Argo CD's error text, or the start of the body if it is not Argo CD's
	// error JSON.
	Message  string
	Attempts int
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("argo cd api server answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Attempts > 1 {
		s += fmt.Sprintf(" after %d attempts", e.Attempts)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// statusError reads a bounded part of the body and closes it.
func statusError(resp *http.Response, attempts int) *StatusError {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	return &StatusError{StatusCode: resp.StatusCode, Message: errorText(body), Attempts: attempts}
}

// errorText extracts the message of Argo CD's grpc-gateway error body
// ({"error": ..., "code": 16, "message": ...}), else returns the printable start of body.
func errorText(body []byte) string {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Message != "" {
			return e.Message
		}
		if e.Error != "" {
			return e.Error
		}
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(bytes.ToValidUTF8(body, nil)))
	return strings.TrimSpace(s)
}

// ListApps reads every Application the token may see and maps each to a reconcile.App.
// On any error it returns no apps: a partial or unreadable answer must not read as apps
// having gone.
func (c *APIServerClient) ListApps(ctx context.Context) ([]reconcile.App, error) {
	items, err := c.ListApplications(ctx)
	if err != nil {
		return nil, err
	}
	observed := c.now()
	apps := make([]reconcile.App, 0, len(items))
	for _, a := range items {
		apps = append(apps, appview.ToApp(a, observed))
	}
	return apps, nil
}

// ListApplications is ListApps before the mapping, for callers that want the view.
func (c *APIServerClient) ListApplications(ctx context.Context) ([]appview.Application, error) {
	token, err := c.token.current()
	if err != nil {
		return nil, err
	}
	body, err := c.get(ctx, token)
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized {
		// The file may have been rewritten without a visible mtime or size change (same
		// second, same length): read it again and retry once if it now holds another token.
		fresh, rerr := c.token.reload()
		switch {
		case rerr != nil:
			return nil, errors.Join(c.unauthorized(se), rerr)
		case fresh == token:
			return nil, c.unauthorized(se)
		}
		body, err = c.get(ctx, fresh)
		if errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized {
			return nil, c.unauthorized(se)
		}
	}
	if err != nil {
		return nil, err
	}
	apps, err := appview.FromListJSON(body)
	if err != nil {
		return nil, fmt.Errorf("argo cd api server %s: %w", c.endpoint, err)
	}
	return apps, nil
}

func (c *APIServerClient) unauthorized(se *StatusError) error {
	return fmt.Errorf("argo cd api server rejected the bearer token from %s (expired, revoked or for another instance?): %w",
		c.token.path, se)
}

func (c *APIServerClient) get(ctx context.Context, token string) ([]byte, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, c.endpoint, nil)
	if err != nil {
		return nil, fmt.Errorf("argo cd api server: building request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	var se *StatusError
	if errors.As(err, &se) {
		return nil, se // says what it is already
	}
	if err != nil {
		return nil, fmt.Errorf("listing argo cd applications: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, 1)
	}
	defer resp.Body.Close()
	// One byte over the cap tells an exact fit from a cut body.
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("listing argo cd applications: reading body: %w", err)
	}
	if int64(len(body)) > c.maxBody {
		return nil, fmt.Errorf("listing argo cd applications: response body exceeds the %d byte limit", c.maxBody)
	}
	return body, nil
}

// tokenFile caches the bearer token and re-reads it when the file changes. Kubernetes
// rotates a mounted Secret by swapping a symlink; os.Stat follows it, so the swap shows
// as a new modification time.
type tokenFile struct {
	path string

	mu      sync.Mutex
	token   string
	modTime time.Time
	size    int64
}

func (f *tokenFile) current() (string, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("argo cd api server: reading token file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token != "" && fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return f.token, nil
	}
	return f.readLocked()
}

func (f *tokenFile) reload() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readLocked()
}

func (f *tokenFile) readLocked() (string, error) {
	file, err := os.Open(f.path)
	if err != nil {
		return "", fmt.Errorf("argo cd api server: reading token file: %w", err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return "", fmt.Errorf("argo cd api server: reading token file: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(file, maxTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("argo cd api server: reading token file: %w", err)
	}
	if len(data) > maxTokenBytes {
		return "", fmt.Errorf("argo cd api server: token file %s is larger than %d bytes", f.path, maxTokenBytes)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("argo cd api server: token file %s is empty", f.path)
	}
	// A control character would make an invalid header, and Go's error for that could
	// not say which file is at fault.
	if strings.IndexFunc(token, unicode.IsControl) >= 0 {
		return "", fmt.Errorf("argo cd api server: token file %s holds control characters", f.path)
	}
	f.token, f.modTime, f.size = token, fi.ModTime(), fi.Size()
	return token, nil
}
