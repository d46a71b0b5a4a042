package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that serve's goroutines and the test may share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// unreachableKubeconfig points at a port nothing listens on: these cases must fail before
// anything is contacted.
const unreachableKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: not-a-secret}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`

// serve refuses to start with an enabled Flux receiver it cannot authenticate, and says
// why. The key never reaches the output.
func TestServeReceiverFailsClosed(t *testing.T) {
	const key = "serve-receiver-unit-key"
	dir := t.TempDir()
	kubeconfig := writeFile(t, dir, "kubeconfig", unreachableKubeconfig)
	config := func(name, receiver string) string {
		return writeFile(t, dir, name, fmt.Sprintf(`kubeconfig: %s
server: {listenAddress: "127.0.0.1:0"}
argocd: {enabled: false}
istio: {enabled: false}
flux:
  receiver: %s
`, kubeconfig, receiver))
	}
	empty := writeFile(t, dir, "empty-key", "")
	blank := writeFile(t, dir, "blank-key", " \n\t\n")
	good := writeFile(t, dir, "key", key+"\n")
	tests := []struct {
		name string
		cfg  string
		code int
		want string
	}{
		{
			name: "enabled without key",
			cfg:  config("no-key.yml", "{enabled: true}"),
			code: exitUsage,
			want: "flux.receiver.hmacKeyFile is required when the receiver is enabled (the generic-hmac Provider's token); to accept unsigned events set flux.receiver.insecureNoAuth: true",
		},
		{
			name: "key and insecureNoAuth",
			cfg:  config("both.yml", fmt.Sprintf("{enabled: true, hmacKeyFile: %s, insecureNoAuth: true}", good)),
			code: exitUsage,
			want: "flux.receiver: hmacKeyFile and insecureNoAuth: true contradict each other; set one",
		},
		{
			name: "empty key file",
			cfg:  config("empty.yml", fmt.Sprintf("{enabled: true, hmacKeyFile: %s}", empty)),
			code: exitProblem,
			want: "flux receiver: HMAC key file " + empty + " is empty",
		},
		{
			name: "white-space-only key file",
			cfg:  config("blank.yml", fmt.Sprintf("{enabled: true, hmacKeyFile: %s}", blank)),
			code: exitProblem,
			want: "flux receiver: HMAC key file " + blank + " is empty",
		},
		{
			name: "missing key file",
			cfg:  config("missing.yml", fmt.Sprintf("{enabled: true, hmacKeyFile: %s}", filepath.Join(dir, "nope"))),
			code: exitProblem,
			want: "flux receiver: reading the HMAC key: open " + filepath.Join(dir, "nope") + ": no such file or directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut syncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			code := runServe(ctx, []string{"--config", tt.cfg, "--log.format", "json"}, &out, &errOut)
			all := out.String() + errOut.String()
			if code != tt.code {
				t.Fatalf("serve exit %d, want %d:\n%s", code, tt.code, all)
			}
			// JSON logs escape nothing in these messages; the text must be there verbatim.
			if !strings.Contains(all, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, all)
			}
			if strings.Contains(all, key) {
				t.Errorf("output holds the key:\n%s", all)
			}
			if strings.Contains(all, `"msg":"serving"`) {
				t.Errorf("serve started serving:\n%s", all)
			}
		})
	}
}
