package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// serveAddress matches the line serve logs once it listens.
var serveAddress = regexp.MustCompile(`msg=serving address=(\S+)`)

// startServe runs `meshdrift serve` in-process with config until the test ends and returns
// its base URL and its log.
func startServe(t *testing.T, config string) (string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- runServe(ctx, []string{"--config", config, "--log.level", "debug"}, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("serve exit %d on shutdown:\n%s", code, logs.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not stop:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := serveAddress.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1], logs
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before serving:\n%s", code, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve never listened:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hmacHeader(alg string, newHash func() hash.Hash, key string, body []byte) string {
	mac := hmac.New(newHash, []byte(key))
	mac.Write(body)
	return alg + "=" + hex.EncodeToString(mac.Sum(nil))
}

// post sends body to url with X-Signature sig (none when empty) and returns the status
// and response text.
func post(t *testing.T, url, sig string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Gotk-Component", "kustomize-controller")
	if sig != "" {
		req.Header.Set("X-Signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(text))
}

// The Flux receiver as `serve` wires it from a configuration file and a key file: a
// correctly signed event is accepted, an unsigned, wrongly signed or SHA-1 signed one is
// refused, and the key never reaches the log.
func TestServeFluxReceiver(t *testing.T) {
	testbed.Need(t, bed.started)
	const key = "serve-receiver-integration-key"
	dir := t.TempDir()
	// As a mounted Secret often is: with a trailing newline, which is not part of the key.
	keyFile := writeFile(t, dir, "token", key+"\n")
	cfg := writeFile(t, dir, "meshdrift.yaml", fmt.Sprintf(`kubeconfig: %s
server: {listenAddress: "127.0.0.1:0"}
argocd: {enabled: false}
istio: {enabled: false}
flux:
  receiver: {enabled: true, hmacKeyFile: %s}
`, bed.kubeconfig, keyFile))
	base, logs := startServe(t, cfg)
	url := base + "/flux/events"

	body, err := os.ReadFile("../../adapters/flux/testdata/event-generic-hmac.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		sig  string
		code int
		text string
	}{
		{name: "signed sha256", sig: hmacHeader("sha256", sha256.New, key, body), code: http.StatusAccepted},
		{name: "unsigned", code: http.StatusUnauthorized, text: "missing signature"},
		{name: "wrong key", sig: hmacHeader("sha256", sha256.New, "not-"+key, body), code: http.StatusUnauthorized, text: "invalid signature"},
		{name: "signed with the newline", sig: hmacHeader("sha256", sha256.New, key+"\n", body), code: http.StatusUnauthorized, text: "invalid signature"},
		{name: "signed sha1", sig: hmacHeader("sha1", sha1.New, key, body), code: http.StatusUnauthorized, text: "sha1 signatures are not accepted"},
	} {
		code, text := post(t, url, tt.sig, body)
		if code != tt.code || (tt.text != "" && text != tt.text) {
			t.Errorf("%s: %d %q, want %d %q", tt.name, code, text, tt.code, tt.text)
		}
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`meshdrift_flux_receiver_requests_total{outcome="accepted"} 1`,
		`meshdrift_flux_receiver_requests_total{outcome="unauthorized"} 4`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(logs.String(), `msg="flux receiver enabled"`) || strings.Contains(logs.String(), key) {
		t.Errorf("serve's log does not announce the receiver, or holds the key:\n%s", logs.String())
	}
}

// With insecureNoAuth, said in so many words, serve accepts unsigned events and warns.
func TestServeFluxReceiverInsecureNoAuth(t *testing.T) {
	testbed.Need(t, bed.started)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "meshdrift.yaml", fmt.Sprintf(`kubeconfig: %s
server: {listenAddress: "127.0.0.1:0"}
argocd: {enabled: false}
istio: {enabled: false}
flux:
  receiver: {enabled: true, insecureNoAuth: true}
`, bed.kubeconfig))
	base, logs := startServe(t, cfg)
	body, err := os.ReadFile("../../adapters/flux/testdata/event-generic-hmac.json")
	if err != nil {
		t.Fatal(err)
	}
	if code, text := post(t, base+"/flux/events", "", body); code != http.StatusAccepted {
		t.Errorf("unsigned event: %d %q, want %d", code, text, http.StatusAccepted)
	}
	if !strings.Contains(logs.String(), "flux receiver accepts unsigned events") {
		t.Errorf("no warning that the receiver is open:\n%s", logs.String())
	}
}
