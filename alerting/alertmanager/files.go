package alertmanager

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// maxFileBytes bounds a secret or certificate file read.
const maxFileBytes = 1 << 20

// watchedFile caches a file's content and reads it again when its modification time or
// size changes. Kubernetes rotates a mounted Secret by swapping a symlink; os.Stat follows
// it, so the swap shows as a new modification time.
type watchedFile struct {
	path string

	mu      sync.Mutex
	content []byte
	modTime time.Time
	size    int64
	read    bool
}

// current returns the content and whether it changed since the last call.
func (f *watchedFile) current() ([]byte, bool, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.read && fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return f.content, false, nil
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, false, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, false, err
	}
	if len(b) > maxFileBytes {
		return nil, false, fmt.Errorf("%s is larger than %d bytes", f.path, maxFileBytes)
	}
	f.content, f.modTime, f.size, f.read = b, fi.ModTime(), fi.Size(), true
	return b, true, nil
}

// authFiles sets basic auth (username set) or a bearer token from a file.
type authFiles struct {
	username string
	secret   *watchedFile
}

func (a *authFiles) apply(r *http.Request) error {
	b, _, err := a.secret.current()
	if err != nil {
		// The path is configuration, not a secret; the content never enters an error.
		return fmt.Errorf("reading credentials file: %w", err)
	}
	secret := string(bytes.TrimSpace(b))
	if secret == "" {
		return fmt.Errorf("credentials file %s is empty", a.secret.path)
	}
	if a.username != "" {
		r.SetBasicAuth(a.username, secret)
	} else {
		r.Header.Set("Authorization", "Bearer "+secret)
	}
	return nil
}

// client holds the HTTP client and builds it again when a TLS file changes, so that a
// renewed CA bundle or client certificate is used without a restart.
type client struct {
	tls     TLSConfig
	timeout time.Duration
	files   []*watchedFile

	mu sync.Mutex
	c  *retryablehttp.Client
}

func newClient(t TLSConfig, timeout time.Duration) *client {
	c := &client{tls: t, timeout: timeout}
	for _, p := range []string{t.CAFile, t.CertFile, t.KeyFile} {
		if p != "" {
			c.files = append(c.files, &watchedFile{path: p})
		}
	}
	return c
}

func (c *client) current() (*retryablehttp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.c == nil
	for _, f := range c.files {
		_, ch, err := f.current()
		if err != nil {
			return nil, fmt.Errorf("reading tls file: %w", err)
		}
		changed = changed || ch
	}
	if !changed {
		return c.c, nil
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{Proxy: http.ProxyFromEnvironment}
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		transport = dt.Clone()
	}
	transport.TLSClientConfig = tc
	if c.c != nil {
		c.c.HTTPClient.CloseIdleConnections()
	}
	c.c = &retryablehttp.Client{
		HTTPClient: &http.Client{Transport: transport, Timeout: c.timeout},
		Logger:     nil, // errors are returned to the dispatcher, which logs them
		// No retries here: the dispatcher owns retry, backoff and the queue. The
		// pass-through handler hands every answer to Notify to judge.
		RetryMax:     0,
		CheckRetry:   retryablehttp.DefaultRetryPolicy,
		Backoff:      retryablehttp.DefaultBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return c.c, nil
}

func (c *client) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.tls.ServerName,
		InsecureSkipVerify: c.tls.InsecureSkipVerify, // opt-in, documented as test-bed only
	}
	if c.tls.CAFile != "" {
		pem, err := os.ReadFile(c.tls.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading tls ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca file %s holds no PEM certificate", c.tls.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.tls.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.tls.CertFile, c.tls.KeyFile)
		if err != nil {
			// LoadX509KeyPair's errors describe the PEM, never the key bytes.
			return nil, fmt.Errorf("loading tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
