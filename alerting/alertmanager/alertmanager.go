// Package alertmanager delivers findings to Alertmanager through its API v2
// (POST /api/v2/alerts), with the alertmanager module's own API models.
//
// There is one Notifier per configured Alertmanager: an HA set gets every alert from
// every meshdrift, as Prometheus sends to each member, and each member has its own queue,
// resend schedule and backoff in alerting/dispatch, so that one member down neither delays
// nor loses what the others get. Alertmanager's gossip then dedupes the notifications.
//
// Every alert carries these labels (empty ones are left out): alertname (the catalog
// name), code (MD0201), severity, finding_id, namespace (the object's, else the app's),
// app, gitops_tool (argocd, flux), revision (when at most 100 characters), object
// (group/Kind/namespace/name), istiod, proxy, source, and cluster (from the configuration).
// They are the finding's code and subject only, so they stay the same for its whole life:
// Alertmanager identifies an alert by its labels. Annotations: summary, description,
// evidence (at most 4 KiB), runbook_url (<runbookURL>#<code in lower case>); generatorURL
// links to <externalURL>/findings/<id>. startsAt is the finding's own start; a firing
// alert ends 4× the resend interval ahead (Prometheus's rule: three lost resends do not
// resolve it), a resolved one at its resolution.
//
// HTTP goes through go-retryablehttp with no retries of its own: the dispatcher owns
// retry, backoff and the queue; Notify only says whether a failure is worth retrying. Secrets (basic auth password,
// bearer token) and TLS files are read again when they change; they are never logged and
// never part of an error.
package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/go-openapi/strfmt"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/meshdrift/meshdrift/alerting/dispatch"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Defaults for Config's zero values.
const (
	DefaultResendInterval = dispatch.DefaultResendInterval
	DefaultTimeout        = 10 * time.Second
)

const (
	alertsPath = "api/v2/alerts"
	// maxErrorBody bounds how much of an error answer ends up in an error message.
	maxErrorBody = 512
)

// Config configures the notifiers of an Alertmanager set.
type Config struct {
	// URLs are the Alertmanagers' base URLs (with any --web.route-prefix), every member
	// of an HA set listed.
	URLs []string
	// ResendInterval is how often firing findings are sent again (the dispatcher's resend
	// interval); firing alerts end 4× this ahead.
	ResendInterval time.Duration
	// Timeout bounds one POST.
	Timeout time.Duration
	// QueueCapacity bounds the findings waiting per Alertmanager (dispatch's default when 0).
	QueueCapacity int
	// Cluster is the cluster label of every alert; empty leaves it out.
	Cluster string
	// ExternalURL is meshdrift's page as people reach it, for generatorURL.
	ExternalURL string
	// RunbookURL is the findings doc page; runbook_url adds #<code>.
	RunbookURL string
	// BasicAuth and BearerTokenFile are exclusive.
	BasicAuth       *BasicAuth
	BearerTokenFile string
	TLS             TLSConfig
	// Now is the clock for endsAt; nil means time.Now.
	Now func() time.Time
}

// BasicAuth is a user name and a file holding the password.
type BasicAuth struct {
	Username     string
	PasswordFile string
}

// TLSConfig verifies the Alertmanagers and optionally presents a client certificate.
type TLSConfig struct {
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool
}

// Notifier posts findings to one Alertmanager. It implements dispatch.Notifier.
type Notifier struct {
	name     string
	endpoint string
	opts     alertOptions
	now      func() time.Time
	auth     *authFiles
	client   *client
}

// New validates cfg and returns one notifier per URL. Secret and TLS files are first read
// by the first request, so that a Secret mounted later still works.
func New(cfg Config) ([]*Notifier, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("alertmanager: at least one url is required")
	}
	if cfg.ResendInterval == 0 {
		cfg.ResendInterval = DefaultResendInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ResendInterval < 0 || cfg.Timeout < 0 {
		return nil, errors.New("alertmanager: resend interval and timeout must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BasicAuth != nil && cfg.BearerTokenFile != "" {
		return nil, errors.New("alertmanager: basic auth and a bearer token file are exclusive")
	}
	if cfg.BasicAuth != nil && (cfg.BasicAuth.Username == "" || cfg.BasicAuth.PasswordFile == "") {
		return nil, errors.New("alertmanager: basic auth needs a username and a password file")
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		return nil, errors.New("alertmanager: tls cert file and key file go together")
	}
	for _, u := range []string{cfg.ExternalURL, cfg.RunbookURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || !p.IsAbs() {
			return nil, fmt.Errorf("alertmanager: %q is not an absolute url", u)
		}
	}
	opts := alertOptions{
		cluster: cfg.Cluster, externalURL: cfg.ExternalURL, runbookURL: cfg.RunbookURL,
		endsAtAhead: 4 * cfg.ResendInterval,
	}
	var ns []*Notifier
	names := map[string]bool{}
	for _, raw := range cfg.URLs {
		endpoint, name, err := alertsEndpoint(raw)
		if err != nil {
			return nil, err
		}
		if names[name] {
			return nil, fmt.Errorf("alertmanager: url %q is listed twice", raw)
		}
		names[name] = true
		n := &Notifier{
			name: name, endpoint: endpoint, opts: opts, now: cfg.Now,
			client: newClient(cfg.TLS, cfg.Timeout),
		}
		if cfg.BasicAuth != nil {
			n.auth = &authFiles{username: cfg.BasicAuth.Username, secret: &watchedFile{path: cfg.BasicAuth.PasswordFile}}
		} else if cfg.BearerTokenFile != "" {
			n.auth = &authFiles{secret: &watchedFile{path: cfg.BearerTokenFile}}
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// Sinks returns one dispatch sink per notifier, with the resend interval, timeout and queue
// capacity of cfg, for dispatch.New.
func Sinks(cfg Config) ([]dispatch.Sink, error) {
	ns, err := New(cfg)
	if err != nil {
		return nil, err
	}
	sinks := make([]dispatch.Sink, 0, len(ns))
	for _, n := range ns {
		sinks = append(sinks, dispatch.Sink{
			Notifier: n, ResendInterval: orDefault(cfg.ResendInterval, DefaultResendInterval),
			Timeout: orDefault(cfg.Timeout, DefaultTimeout), QueueCapacity: cfg.QueueCapacity,
		})
	}
	return sinks, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// alertsEndpoint checks an Alertmanager base URL and returns its alerts endpoint and the
// notifier name ("alertmanager/<host><path>").
func alertsEndpoint(raw string) (endpoint, name string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("alertmanager: parsing url: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return "", "", fmt.Errorf("alertmanager: url %q must be an http(s) url with a host", raw)
	}
	// Credentials in the URL would end up in errors and the notifier label.
	if u.User != nil {
		return "", "", errors.New("alertmanager: url must not contain credentials; use basicAuth")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("alertmanager: url %q must be a base url without query or fragment", raw)
	}
	return u.JoinPath(alertsPath).String(), "alertmanager/" + u.Host + strings.TrimSuffix(u.Path, "/"), nil
}

// Name implements dispatch.Notifier.
func (n *Notifier) Name() string { return n.name }

// Notify posts fs as one batch. A connection or TLS error, a timeout, 429, 5xx (but 501)
// and a rejected credential (it may be rotated in its file) are worth retrying; any other
// answer means these alerts will never be taken.
func (n *Notifier) Notify(ctx context.Context, fs []findings.Finding) (bool, error) {
	alerts := postableAlerts(fs, n.opts, n.now())
	if err := alerts.Validate(strfmt.Default); err != nil {
		return false, fmt.Errorf("%s: building alerts: %w", n.name, err)
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		return false, fmt.Errorf("%s: encoding alerts: %w", n.name, err)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, n.endpoint, body)
	if err != nil {
		return false, fmt.Errorf("%s: building request: %w", n.name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if n.auth != nil {
		if err := n.auth.apply(req.Request); err != nil {
			return true, fmt.Errorf("%s: %w", n.name, err) // a Secret not mounted yet
		}
	}
	c, err := n.client.current()
	if err != nil {
		return true, fmt.Errorf("%s: %w", n.name, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		// Unlike retryablehttp's default policy, a certificate error is retried too: the
		// fix is a renewed CA bundle or certificate, which is read again on change.
		return ctx.Err() == nil, fmt.Errorf("%s: posting %d alerts: %w", n.name, len(alerts), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // keep the connection
		return false, nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	err = fmt.Errorf("%s: posting %d alerts: %s: %s", n.name, len(alerts), resp.Status, printable(msg))
	switch {
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden,
		resp.StatusCode == http.StatusTooManyRequests:
		return true, err
	case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
		return true, err
	}
	return false, err
}

// printable is the printable start of an error body, on one line.
func printable(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(bytes.ToValidUTF8(b, nil)))
	return strings.TrimSpace(s)
}
