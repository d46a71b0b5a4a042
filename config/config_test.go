package config

import (
	"github.com/google/go-cmp/cmp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Every bad file is paired with the error it must produce.
func TestBadConfigs(t *testing.T) {
	cases := map[string]string{
		"unknown-field.bad.yml":    `unknown field "listenAdress"`,
		"bad-transport.bad.yml":    `istio.transport "grpc": must be one of xds-tls, xds-plaintext, http`,
		"bad-duration.bad.yml":     `duration 10: must be a string such as "30s"`,
		"argocd-no-token.bad.yml":  "argocd.apiServer.tokenFile is required",
		"short-poll.bad.yml":       "istio.pollInterval 100ms: must be at least 1s",
		"monitoring-count.bad.yml": "istio.monitoringAddresses: 1 given for 2 addresses",
		"flux-receiver-no-key.bad.yml": "flux.receiver.hmacKeyFile is required when the receiver is enabled (the generic-hmac Provider's token); " +
			"to accept unsigned events set flux.receiver.insecureNoAuth: true",
		"flux-receiver-key-and-no-auth.bad.yml": "flux.receiver: hmacKeyFile and insecureNoAuth: true contradict each other; set one",
		"flux-receiver-sha1-no-auth.bad.yml":    "flux.receiver.allowSHA1 needs hmacKeyFile: with insecureNoAuth no signature is checked",
		"token-over-xds.bad.yml":                "istio.allowInsecureTokenOverHTTP: only applies to transport http, not xds-tls",
		// The password must not be echoed back in the error.
		"alertmanager-credentials-in-url.bad.yml": `alerting.alertmanager.urls "https://admin:xxxxx@alertmanager.monitoring:9093": must not contain credentials; use basicAuth`,
		"alertmanager-two-auths.bad.yml":          "alerting.alertmanager: basicAuth and bearerTokenFile are exclusive",
		"findings-code.bad.yml":                   "findings.ignore[1]: code MD0999: not in the catalog (see docs/findings.md)",
		"findings-empty-rule.bad.yml":             "findings.ignore[0]: set at least one of code, namespace, app",
		"findings-resolve.bad.yml":                "findings.resolveAfter 0s: must be positive",
		"fast-poll-interval.bad.yml":              "reconcile.fastPoll.interval 10ms: must be at least 100ms",
		"fast-poll-share.bad.yml":                 "reconcile.fastPoll.maxShare 0: must be greater than 0 and at most 1",
		"max-changes.bad.yml":                     "reconcile.maxChanges 10: must be at least 100",
		"istio-revisions.bad.yml":                 `istio.revisions: 1 given for 2 addresses; give one per address, in the same order`,
		"findings-managers.bad.yml":               `findings.allowedManagers[1] "helm-controller": a GitOps controller, always allowed`,
	}
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Fatalf("%d bad files in testdata, %d cases: pair every file with its error", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", name))
			if err == nil {
				t.Fatalf("Load succeeded, want error containing %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not contain %q", err, want)
			}
		})
	}
}

func TestGoodConfig(t *testing.T) {
	cfg, err := Load("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Reconcile.StaleGrace.D(); got != 45*time.Second {
		t.Errorf("staleGrace = %s, want 45s", got)
	}
	if f := cfg.Reconcile.FastPoll; f.Interval.D() != 500*time.Millisecond || f.MaxShare != 0.25 || cfg.Reconcile.MaxChanges != 5000 {
		t.Errorf("reconcile = %+v", cfg.Reconcile)
	}
	if cfg.Istio.Transport != TransportXDSPlaintext || cfg.Istio.Addresses[0] != "127.0.0.1:15010" {
		t.Errorf("istio = %+v", cfg.Istio)
	}
	f := cfg.Findings.Engine()
	if f.ResolveAfter != 10*time.Minute || f.For["MD0103"] != 30*time.Minute || len(f.Ignore) != 2 ||
		f.Ignore[0] != (findings.IgnoreRule{Code: "MD0203", Namespace: "legacy"}) || f.Ignore[1].App != "flux-system/experiments" {
		t.Errorf("findings = %+v", f)
	}
	if f.KeepResolved != findings.DefaultKeepResolved {
		t.Errorf("findings.keepResolved = %s, want the default", f.KeepResolved)
	}
	// Unset fields keep their defaults.
	if cfg.Istio.Namespace != "istio-system" {
		t.Errorf("istio.namespace = %q, want the default", cfg.Istio.Namespace)
	}
	am := cfg.Alerting.Alertmanager
	if len(am.URLs) != 2 || am.ResendInterval.D() != 30*time.Second || am.Cluster != "prod-eu-1" ||
		am.BasicAuth == nil || am.BasicAuth.PasswordFile != "/var/run/secrets/alertmanager/password" {
		t.Errorf("alerting.alertmanager = %+v", am)
	}
	if am.Timeout.D() != 10*time.Second || am.QueueCapacity != 10000 || am.RunbookURL != DefaultRunbookURL {
		t.Errorf("alerting.alertmanager defaults lost: %+v", am)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.yml")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.ListenAddress != Default().Server.ListenAddress {
		t.Errorf("listenAddress = %q", cfg.Server.ListenAddress)
	}
	if f := cfg.Reconcile.FastPoll; f.Interval.D() != 250*time.Millisecond || f.MaxShare != 0.5 || cfg.Reconcile.MaxChanges != 10000 {
		t.Errorf("reconcile defaults = %+v", cfg.Reconcile)
	}
}

func TestMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yml")); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Fatalf("err = %v", err)
	}
}

// The receiver is off unless asked for: it needs the Provider's token, and a default that
// refuses to start would be worse than one that reacts at watch speed.
func TestFluxReceiverDefaults(t *testing.T) {
	d := Default()
	if d.Flux.Receiver.Enabled || d.Flux.Receiver.InsecureNoAuth || d.Flux.Receiver.AllowSHA1 {
		t.Errorf("default receiver = %+v, want disabled, authenticated, sha1 refused", d.Flux.Receiver)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	cfg, err := Parse([]byte("flux:\n  receiver:\n    enabled: true\n    insecureNoAuth: true\n"))
	if err != nil || !cfg.Flux.Receiver.InsecureNoAuth {
		t.Errorf("explicit insecureNoAuth: %+v, %v", cfg.Flux.Receiver, err)
	}
	// Disabled, a receiver without a key is no problem.
	if _, err := Parse([]byte("flux:\n  receiver:\n    enabled: false\n")); err != nil {
		t.Errorf("disabled receiver: %v", err)
	}
}

// The istio-ca token goes in clear text to a non-loopback istiod only when the file says so.
func TestAllowInsecureTokenOverHTTP(t *testing.T) {
	if Default().Istio.AllowInsecureTokenOverHTTP {
		t.Fatal("allowed by default")
	}
	cfg, err := Parse([]byte("istio: {transport: http, allowInsecureTokenOverHTTP: true}"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Istio.AllowInsecureTokenOverHTTP {
		t.Error("not set")
	}
}

// What Marshal writes, Parse reads back as it was: the defaults, and a configuration as
// the demo and the scale harness build one (booleans turned off included).
func TestMarshalRoundTrip(t *testing.T) {
	built := Default()
	built.Kubeconfig = "/tmp/kubeconfig"
	built.Server.ListenAddress = "127.0.0.1:9999"
	built.ArgoCD.Enabled = false
	built.Flux.Receiver.Enabled = true
	built.Flux.Receiver.HMACKeyFile = "/etc/meshdrift/hmac"
	built.Istio.Addresses = []string{"127.0.0.1:15012", "127.0.0.1:15013"}
	built.Istio.MonitoringAddresses = []string{"127.0.0.1:15014", "127.0.0.1:15015"}
	built.Istio.PollInterval = Duration(2 * time.Second)
	built.Reconcile.StaleGrace = Duration(5 * time.Second)
	built.Alerting.Events.Enabled = false
	built.Alerting.Alertmanager.URLs = []string{"http://127.0.0.1:9093"}
	built.Alerting.Alertmanager.ExternalURL = "http://127.0.0.1:9999"
	for name, c := range map[string]Config{"default": Default(), "built": built} {
		b, err := c.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		if diff := cmp.Diff(c, got); diff != "" {
			t.Errorf("%s: read back differs (-written +read):\n%s\n%s", name, diff, b)
		}
	}
}
