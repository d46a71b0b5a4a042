package istio

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// testToken is a service account token for meshdrift in istio-system, shaped like a
// projected one (the signature is istiod's business).
func testToken(t *testing.T, suffix string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." +
		enc([]byte(`{"aud":["istio-ca"],"kubernetes.io":{"namespace":"istio-system","serviceaccount":{"name":"meshdrift"}},"sub":"system:serviceaccount:istio-system:meshdrift"}`)) +
		".signature-" + suffix
}

// xds-tls against an in-process TLS server (the bed's istiod has no CA, so no 15012): the
// server's certificate is checked against the Istio root CA file and istiod's service
// name, the token goes as "authorization: Bearer" metadata, is read again for every new
// connection, and the node names the token's namespace and service account.
func TestXDSTLSReadsWithCAAndToken(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "istiod.istio-system.svc")
	resp, err := UnmarshalSynczXDSJSON(readGolden(t, "syncz-xds-2-after-vs.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := newADSServer(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{ca.serverCert}}), resp)
	tokenFile := filepath.Join(dir, "istio-token")
	first, rotated := testToken(t, "first"), testToken(t, "rotated")
	writeFile(t, tokenFile, first+"\n")

	cfg := ReaderConfig{Transport: TransportXDSTLS, CAFile: ca.caFile, TokenFile: tokenFile, Interval: time.Hour, DisableNACKStream: true}
	r, rec, _, logs := newTestReader(t, cfg, []Target{{Name: "istiod-7d9f", Revision: "canary", Addr: srv.addr}})
	runReader(t, r)
	testbed.Eventually(t, 10*time.Second, "first view", func() (bool, string) {
		_, ok := rec.lastView("istiod-7d9f")
		return ok, ""
	})
	want, err := ParseSynczXDS(resp, "istiod-7d9f")
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i].Revision = "canary"
	}
	v, _ := rec.lastView("istiod-7d9f")
	if v.Revision != "canary" || v.PushVersion != "2026-11-25T15:33:06Z/2" || !reflect.DeepEqual(v.Proxies, want) {
		t.Errorf("view %+v\nwant proxies %+v", v, want)
	}

	// A second read reuses the stream: no new authentication.
	r.Poke()
	testbed.Eventually(t, 5*time.Second, "second read", func() (bool, string) {
		_, _, n := srv.seen()
		return n == 2, ""
	})
	// The kubelet rotates the token; istiod restarts and ends the stream. The next read
	// notices, reconnects within the same read, and sends the new token.
	writeFile(t, tokenFile, rotated)
	srv.restartStreams()
	r.Poke()
	testbed.Eventually(t, 5*time.Second, "read after the restart", func() (bool, string) {
		_, _, n := srv.seen()
		return n == 3, ""
	})
	auth, nodes, _ := srv.seen()
	if wantAuth := []string{"Bearer " + first, "Bearer " + rotated}; !reflect.DeepEqual(auth, wantAuth) {
		t.Errorf("authorization per stream %q, want %q", auth, wantAuth)
	}
	for _, n := range nodes {
		md := n.GetMetadata().GetFields()
		if n.GetId() != "sidecar~127.0.0.1~meshdrift.istio-system~istio-system.svc.cluster.local" ||
			md["NAMESPACE"].GetStringValue() != "istio-system" || md["SERVICE_ACCOUNT"].GetStringValue() != "meshdrift" {
			t.Errorf("node %v", n)
		}
	}
	for _, st := range rec.snapshot().instances() {
		if !st.Up {
			t.Errorf("a restart between reads was reported as down: %+v", st)
		}
	}
	if strings.Contains(logs.String(), "signature-") {
		t.Errorf("the token was logged:\n%s", logs)
	}
}

// A server whose certificate the Istio root CA did not sign, or that is not istiod's
// name, is refused; the error says why and never carries the token.
func TestXDSTLSRefusesWrongServer(t *testing.T) {
	dir := t.TempDir()
	other := newTestCA(t, t.TempDir(), "istiod.istio-system.svc")
	mesh := newTestCA(t, dir, "istiod.istio-system.svc")
	resp, err := UnmarshalSynczXDSJSON(readGolden(t, "syncz-xds-1-initial.json"))
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "istio-token")
	writeFile(t, tokenFile, testToken(t, "secret"))
	tests := []struct {
		name       string
		cert       tls.Certificate
		serverName string
		wantErr    string
	}{
		{"signed by another CA", other.serverCert, "", "certificate signed by unknown authority"},
		{"another name", mesh.serverCert, "istiod-canary.istio-system.svc", "certificate is valid for istiod.istio-system.svc, not istiod-canary.istio-system.svc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newADSServer(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{tt.cert}}), resp)
			cfg := ReaderConfig{Transport: TransportXDSTLS, CAFile: mesh.caFile, TokenFile: tokenFile, ServerName: tt.serverName}
			r, rec, _, logs := newTestReader(t, cfg, []Target{{Name: "istiod-x", Addr: srv.addr}})
			err := r.ReadOnce(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "signature-") || strings.Contains(logs.String(), "signature-") {
				t.Errorf("token leaked: %v\n%s", err, logs)
			}
			if got := rec.snapshot(); len(got.views) != 0 || len(got.instances()) != 1 || got.instances()[0].Up {
				t.Errorf("recorded %+v", got)
			}
			if auth, _, _ := srv.seen(); len(auth) != 0 {
				t.Errorf("server got streams %q from a client that should not trust it", auth)
			}
		})
	}
}

// Missing mounted files fail the read with the file named, not the reader.
func TestXDSTLSMissingFiles(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "istiod.istio-system.svc")
	tests := []struct {
		name, caFile, tokenFile, wantErr string
	}{
		{"no ca", filepath.Join(dir, "absent.pem"), filepath.Join(dir, "t"), "istio root ca: open " + filepath.Join(dir, "absent.pem") + ": no such file or directory"},
		{"no token", ca.caFile, filepath.Join(dir, "absent-token"), "token: open " + filepath.Join(dir, "absent-token") + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ReaderConfig{Transport: TransportXDSTLS, CAFile: tt.caFile, TokenFile: tt.tokenFile}
			r, rec, _, _ := newTestReader(t, cfg, []Target{{Name: "istiod-x", Addr: closedAddr(t)}})
			err := r.ReadOnce(context.Background())
			if err == nil || !strings.HasSuffix(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want suffix %q", err, tt.wantErr)
			}
			if got := rec.snapshot(); len(got.views) != 0 || len(got.instances()) != 1 || got.instances()[0].Up {
				t.Errorf("recorded %+v", got)
			}
		})
	}
}
