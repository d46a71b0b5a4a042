// Package config defines meshdrift's configuration file. It is decoded strictly (unknown
// fields are errors), defaulted and validated at load time, so that `meshdrift validate`
// and `serve --config.check` catch every mistake before anything starts.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Config is the whole configuration file.
type Config struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster configuration.
	Kubeconfig string          `json:"kubeconfig,omitempty"`
	Server     ServerConfig    `json:"server"`
	ArgoCD     ArgoCDConfig    `json:"argocd"`
	Flux       FluxConfig      `json:"flux"`
	Istio      IstioConfig     `json:"istio"`
	Reconcile  ReconcileConfig `json:"reconcile"`
	Findings   FindingsConfig  `json:"findings"`
	Alerting   AlertingConfig  `json:"alerting"`
}

// ServerConfig is meshdrift's own HTTP server: metrics, health, status API, Flux webhooks.
type ServerConfig struct {
	ListenAddress string `json:"listenAddress"`
}

// ArgoCDConfig selects how Argo CD Applications are read.
type ArgoCDConfig struct {
	Enabled bool `json:"enabled"`
	// APIServer reads Applications from an Argo CD API server instead of the CRs, for
	// clusters whose Application CRs meshdrift cannot read.
	APIServer *ArgoCDAPIServerConfig `json:"apiServer,omitempty"`
}

// ArgoCDAPIServerConfig is an Argo CD API server endpoint.
type ArgoCDAPIServerConfig struct {
	URL string `json:"url"`
	// TokenFile holds the bearer token; it is re-read when it changes.
	TokenFile          string   `json:"tokenFile"`
	CAFile             string   `json:"caFile,omitempty"`
	ServerName         string   `json:"serverName,omitempty"`
	InsecureSkipVerify bool     `json:"insecureSkipVerify,omitempty"`
	Interval           Duration `json:"interval,omitempty"`
}

// FluxConfig selects the Flux watchers and the notification-controller receiver.
type FluxConfig struct {
	Enabled  bool               `json:"enabled"`
	Receiver FluxReceiverConfig `json:"receiver"`
}

// FluxReceiverConfig is the endpoint notification-controller's generic-hmac Provider posts
// to. Each event makes meshdrift re-read that app at once; without the receiver the watch
// still sees every change, only not as soon. It fails closed: enabled, it needs the
// Provider's token in HMACKeyFile, or InsecureNoAuth to accept unsigned events.
type FluxReceiverConfig struct {
	// Enabled is false by default: the receiver cannot work without the Provider's token,
	// and an optional speed-up should not keep meshdrift from starting.
	Enabled bool   `json:"enabled"`
	Path    string `json:"path"`
	// HMACKeyFile holds the Provider Secret's token (its key "token"), e.g. a mounted
	// Secret; every request must be signed with it. Surrounding white space is removed;
	// an empty file is an error.
	HMACKeyFile string `json:"hmacKeyFile,omitempty"`
	// InsecureNoAuth accepts unsigned events (Provider type generic): anyone who reaches
	// the endpoint can then trigger re-reads. It must be set explicitly and excludes
	// HMACKeyFile.
	InsecureNoAuth bool `json:"insecureNoAuth,omitempty"`
	// AllowSHA1 accepts "sha1=" signatures; notification-controller signs with sha256.
	AllowSHA1    bool  `json:"allowSHA1,omitempty"`
	MaxBodyBytes int64 `json:"maxBodyBytes"`
}

// IstioConfig locates istiod and says how to read its per-proxy state.
type IstioConfig struct {
	Enabled bool `json:"enabled"`
	// Namespace and Selector find every istiod pod (all replicas and revisions).
	Namespace string `json:"namespace"`
	Selector  string `json:"selector"`
	// Addresses, when set, are used instead of pod discovery (host:port of the xDS or
	// monitoring port, per Transport).
	Addresses []string `json:"addresses,omitempty"`
	// MonitoringAddresses are the same istiods' monitoring ports (15014), in the same
	// order, for istiod's own metrics (rejected configs, conflicts); optional.
	MonitoringAddresses []string `json:"monitoringAddresses,omitempty"`
	// Revisions are the same istiods' control-plane revisions (their istio.io/rev
	// label), in the same order; optional. Pod discovery reads them from the pods; with
	// addresses and no revisions, the revision checks (MD0701, MD0703) are off, since every
	// address would read as the default revision.
	Revisions []string `json:"revisions,omitempty"`
	// Transport: "xds-tls" (15012, Istio root CA + istio-ca token), "xds-plaintext" (15010)
	// or "http" (15014 /debug/syncz with a bearer token).
	Transport    string   `json:"transport"`
	TokenFile    string   `json:"tokenFile,omitempty"`
	CAFile       string   `json:"caFile,omitempty"`
	PollInterval Duration `json:"pollInterval"`
	// AllowInsecureTokenOverHTTP lets the http transport send the istio-ca token in clear
	// text to istiods that are not on loopback; default false: they are read without it
	// (and istiod, with debug-endpoint auth on, refuses them). Only for transport http.
	AllowInsecureTokenOverHTTP bool `json:"allowInsecureTokenOverHTTP,omitempty"`
}

// ReconcileConfig tunes how observations become findings.
type ReconcileConfig struct {
	// StaleGrace is how long a proxy may leave a change un-ACKed before it is stale.
	StaleGrace Duration `json:"staleGrace"`
	// FastPoll is how istiod is read while a change is in flight.
	FastPoll FastPollConfig `json:"fastPoll"`
	// MaxChanges caps the mesh object changes held; beyond it the oldest propagated ones
	// are dropped first.
	MaxChanges int `json:"maxChanges"`
}

// FastPollConfig: while a change is pending within its grace, istiod is read every
// Interval instead of istio.pollInterval, for at most MaxShare of the time (measured over
// a minute), so that a mesh that never settles does not keep meshdrift and istiod busy.
type FastPollConfig struct {
	Interval Duration `json:"interval"`
	MaxShare float64  `json:"maxShare"`
}

// MinFastPollInterval is the fastest istiod may be read (the reader's own floor).
const MinFastPollInterval = 100 * time.Millisecond

// AlertingConfig is where findings are delivered.
type AlertingConfig struct {
	Alertmanager AlertmanagerConfig `json:"alertmanager"`
	Events       EventsConfig       `json:"events"`
}

// EventsConfig writes Kubernetes Events about findings on the mesh object and on the
// owning Argo CD Application or Flux Kustomization/HelmRelease.
type EventsConfig struct {
	Enabled bool `json:"enabled"`
	// ResendInterval: a firing finding's Event is written again this often. client-go ends
	// an Event series after 6 minutes without a delivery, so this stays below that.
	ResendInterval Duration `json:"resendInterval"`
}

// AlertmanagerConfig is the Alertmanager set findings are sent to; no URLs, no sending.
type AlertmanagerConfig struct {
	// URLs are the base URLs of every member of the Alertmanager set (each gets every alert).
	URLs []string `json:"urls,omitempty"`
	// ResendInterval: firing findings are sent again this often; alerts end 4x this ahead.
	ResendInterval Duration `json:"resendInterval"`
	// Timeout bounds one POST to one Alertmanager.
	Timeout Duration `json:"timeout"`
	// QueueCapacity bounds the findings waiting per Alertmanager during an outage.
	QueueCapacity int `json:"queueCapacity"`
	// Cluster is the cluster label of every alert; empty leaves it out.
	Cluster string `json:"cluster,omitempty"`
	// ExternalURL is meshdrift's page as people reach it; alerts link to <externalURL>/findings/<id>.
	ExternalURL string `json:"externalURL,omitempty"`
	// RunbookURL is the findings catalog page; runbook_url is <runbookURL>#<code>.
	RunbookURL string `json:"runbookURL"`
	// BasicAuth and BearerTokenFile are exclusive; their files are re-read when they change.
	BasicAuth       *BasicAuthConfig `json:"basicAuth,omitempty"`
	BearerTokenFile string           `json:"bearerTokenFile,omitempty"`
	TLS             TLSConfig        `json:"tls,omitempty"`
}

// BasicAuthConfig is a user name and a file holding the password.
type BasicAuthConfig struct {
	Username     string `json:"username"`
	PasswordFile string `json:"passwordFile"`
}

// TLSConfig verifies a server, and optionally presents a client certificate.
type TLSConfig struct {
	CAFile     string `json:"caFile,omitempty"`
	CertFile   string `json:"certFile,omitempty"`
	KeyFile    string `json:"keyFile,omitempty"`
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify disables verification; for test beds only.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// DefaultRunbookURL is the findings catalog in meshdrift's repository.
const DefaultRunbookURL = "https://github.com/meshdrift/meshdrift/blob/main/docs/findings.md"

// Transports istiod can be read over.
const (
	TransportXDSTLS       = "xds-tls"
	TransportXDSPlaintext = "xds-plaintext"
	TransportHTTP         = "http"
)

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		Server: ServerConfig{ListenAddress: ":9090"},
		ArgoCD: ArgoCDConfig{Enabled: true},
		Flux: FluxConfig{Enabled: true, Receiver: FluxReceiverConfig{
			Enabled: false, Path: "/flux/events", MaxBodyBytes: 1 << 20,
		}},
		Istio: IstioConfig{
			Enabled: true, Namespace: "istio-system", Selector: "app=istiod",
			Transport: TransportXDSTLS, TokenFile: "/var/run/secrets/tokens/istio-token",
			CAFile: "/var/run/secrets/istio/root-cert.pem", PollInterval: Duration(10 * time.Second),
		},
		Reconcile: ReconcileConfig{
			StaleGrace: Duration(30 * time.Second),
			FastPoll:   FastPollConfig{Interval: Duration(250 * time.Millisecond), MaxShare: 0.5},
			MaxChanges: 10000,
		},
		Findings: defaultFindings(),
		Alerting: AlertingConfig{Events: EventsConfig{Enabled: true, ResendInterval: Duration(5 * time.Minute)}, Alertmanager: AlertmanagerConfig{
			ResendInterval: Duration(time.Minute), Timeout: Duration(10 * time.Second),
			QueueCapacity: 10000, RunbookURL: DefaultRunbookURL,
		}},
	}
}

// Load reads, decodes and validates a configuration file.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML over the defaults, strictly, and validates the result.
func Parse(b []byte) (Config, error) {
	cfg := Default()
	if len(bytes.TrimSpace(b)) > 0 {
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return Config{}, fmt.Errorf("decoding: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Marshal writes c as YAML that Parse reads back to c, for the tools that run meshdrift
// with a configuration they build (the demo, the scale harness, tests). A string emptied
// where its default is not reads back as the default (empty fields are left out).
func (c Config) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding config: %w", err)
	}
	return b, nil
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Server.ListenAddress); err != nil {
		errs = append(errs, fmt.Errorf("server.listenAddress %q: %w", c.Server.ListenAddress, err))
	}
	if a := c.ArgoCD.APIServer; c.ArgoCD.Enabled && a != nil {
		if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("argocd.apiServer.url %q: must be an http(s) URL", a.URL))
		}
		if a.TokenFile == "" {
			errs = append(errs, errors.New("argocd.apiServer.tokenFile is required"))
		}
		if a.Interval != 0 && a.Interval.D() < time.Second {
			errs = append(errs, fmt.Errorf("argocd.apiServer.interval %s: must be at least 1s", a.Interval))
		}
	}
	if r := c.Flux.Receiver; c.Flux.Enabled && r.Enabled {
		if len(r.Path) == 0 || r.Path[0] != '/' {
			errs = append(errs, fmt.Errorf("flux.receiver.path %q: must start with /", r.Path))
		}
		if r.MaxBodyBytes < 1 || r.MaxBodyBytes > 64<<20 {
			errs = append(errs, fmt.Errorf("flux.receiver.maxBodyBytes %d: must be between 1 and 64 MiB", r.MaxBodyBytes))
		}
		switch {
		case r.HMACKeyFile == "" && !r.InsecureNoAuth:
			errs = append(errs, errors.New("flux.receiver.hmacKeyFile is required when the receiver is enabled (the generic-hmac Provider's token); to accept unsigned events set flux.receiver.insecureNoAuth: true"))
		case r.HMACKeyFile != "" && r.InsecureNoAuth:
			errs = append(errs, errors.New("flux.receiver: hmacKeyFile and insecureNoAuth: true contradict each other; set one"))
		case r.AllowSHA1 && r.InsecureNoAuth:
			errs = append(errs, errors.New("flux.receiver.allowSHA1 needs hmacKeyFile: with insecureNoAuth no signature is checked"))
		}
	}
	if i := c.Istio; i.Enabled {
		switch i.Transport {
		case TransportXDSTLS, TransportXDSPlaintext, TransportHTTP:
		default:
			errs = append(errs, fmt.Errorf("istio.transport %q: must be one of %s, %s, %s", i.Transport, TransportXDSTLS, TransportXDSPlaintext, TransportHTTP))
		}
		if len(i.Addresses) == 0 && (i.Namespace == "" || i.Selector == "") {
			errs = append(errs, errors.New("istio: namespace and selector, or addresses, are required"))
		}
		for _, a := range i.Addresses {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs = append(errs, fmt.Errorf("istio.addresses %q: %w", a, err))
			}
		}
		if n := len(i.MonitoringAddresses); n > 0 && n != len(i.Addresses) {
			errs = append(errs, fmt.Errorf("istio.monitoringAddresses: %d given for %d addresses; give one per address, in the same order", n, len(i.Addresses)))
		}
		if n := len(i.Revisions); n > 0 && n != len(i.Addresses) {
			errs = append(errs, fmt.Errorf("istio.revisions: %d given for %d addresses; give one per address, in the same order", n, len(i.Addresses)))
		}
		for _, r := range i.Revisions {
			if msgs := validation.IsValidLabelValue(r); r == "" || len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("istio.revisions %q: must be a non-empty label value (istio.io/rev)", r))
			}
		}
		for _, a := range i.MonitoringAddresses {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs = append(errs, fmt.Errorf("istio.monitoringAddresses %q: %w", a, err))
			}
		}
		if i.AllowInsecureTokenOverHTTP && i.Transport != TransportHTTP {
			errs = append(errs, fmt.Errorf("istio.allowInsecureTokenOverHTTP: only applies to transport %s, not %s", TransportHTTP, i.Transport))
		}
		if i.PollInterval.D() < time.Second {
			errs = append(errs, fmt.Errorf("istio.pollInterval %s: must be at least 1s", i.PollInterval))
		}
	}
	if c.Reconcile.StaleGrace.D() <= 0 {
		errs = append(errs, fmt.Errorf("reconcile.staleGrace %s: must be positive", c.Reconcile.StaleGrace))
	}
	if f := c.Reconcile.FastPoll; f.Interval.D() < MinFastPollInterval {
		errs = append(errs, fmt.Errorf("reconcile.fastPoll.interval %s: must be at least %s", f.Interval, MinFastPollInterval))
	} else if c.Istio.Enabled && f.Interval.D() > c.Istio.PollInterval.D() {
		errs = append(errs, fmt.Errorf("reconcile.fastPoll.interval %s: must not be longer than istio.pollInterval %s", f.Interval, c.Istio.PollInterval))
	}
	if s := c.Reconcile.FastPoll.MaxShare; !(s > 0 && s <= 1) {
		errs = append(errs, fmt.Errorf("reconcile.fastPoll.maxShare %g: must be greater than 0 and at most 1", s))
	}
	if n := c.Reconcile.MaxChanges; n < 100 {
		errs = append(errs, fmt.Errorf("reconcile.maxChanges %d: must be at least 100", n))
	}
	errs = append(errs, c.Findings.validate()...)
	errs = append(errs, c.Alerting.Alertmanager.validate()...)
	if e := c.Alerting.Events; e.Enabled && (e.ResendInterval.D() < time.Second || e.ResendInterval.D() >= 6*time.Minute) {
		errs = append(errs, fmt.Errorf("alerting.events.resendInterval %s: must be at least 1s and under 6m (client-go ends an Event series after 6m without a delivery)", e.ResendInterval))
	}
	return errors.Join(errs...)
}

func (a AlertmanagerConfig) validate() []error {
	var errs []error
	seen := map[string]bool{}
	for _, u := range a.URLs {
		p, err := url.Parse(u)
		switch {
		case err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "":
			errs = append(errs, fmt.Errorf("alerting.alertmanager.urls %q: must be an http(s) URL", u))
		case p.User != nil:
			errs = append(errs, fmt.Errorf("alerting.alertmanager.urls %q: must not contain credentials; use basicAuth", p.Redacted()))
		case p.RawQuery != "" || p.Fragment != "":
			errs = append(errs, fmt.Errorf("alerting.alertmanager.urls %q: must be a base URL without query or fragment", u))
		case seen[u]:
			errs = append(errs, fmt.Errorf("alerting.alertmanager.urls %q: listed twice", u))
		}
		seen[u] = true
	}
	if a.ResendInterval.D() < time.Second {
		errs = append(errs, fmt.Errorf("alerting.alertmanager.resendInterval %s: must be at least 1s", a.ResendInterval))
	}
	if a.Timeout.D() <= 0 || a.Timeout.D() > a.ResendInterval.D() {
		errs = append(errs, fmt.Errorf("alerting.alertmanager.timeout %s: must be positive and at most resendInterval (%s)", a.Timeout, a.ResendInterval))
	}
	if a.QueueCapacity < 1 {
		errs = append(errs, fmt.Errorf("alerting.alertmanager.queueCapacity %d: must be at least 1", a.QueueCapacity))
	}
	for name, u := range map[string]string{"externalURL": a.ExternalURL, "runbookURL": a.RunbookURL} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			errs = append(errs, fmt.Errorf("alerting.alertmanager.%s %q: must be an http(s) URL", name, u))
		}
	}
	if b := a.BasicAuth; b != nil {
		if b.Username == "" || b.PasswordFile == "" {
			errs = append(errs, errors.New("alerting.alertmanager.basicAuth: username and passwordFile are required"))
		}
		if a.BearerTokenFile != "" {
			errs = append(errs, errors.New("alerting.alertmanager: basicAuth and bearerTokenFile are exclusive"))
		}
	}
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		errs = append(errs, errors.New("alerting.alertmanager.tls: certFile and keyFile go together"))
	}
	return errs
}

// Duration is a time.Duration written as a Go duration string ("30s") in YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("duration %s: must be a string such as \"30s\"", b)
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil {
		return fmt.Errorf("duration %s: %w", b, err)
	}
	*d = Duration(v)
	return nil
}
