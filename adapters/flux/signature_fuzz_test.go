package flux

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// FuzzSignatureHeader feeds arbitrary X-Signature values to VerifySignature and to the
// receiver. Nothing may panic; only a header that is the body's true MAC may pass, and the
// receiver must answer 202 exactly when VerifySignature accepts.
func FuzzSignatureHeader(f *testing.F) {
	header, body := readGoldenEvent(f)
	golden := header.Get(SignatureHeader)
	f.Add(golden)
	for _, seed := range []string{
		"",
		"=",
		"sha256=",
		"=" + strings.Repeat("0", 64),
		"md5=" + strings.Repeat("0", 32),
		"sha1=" + strings.Repeat("0", 40),
		"sha512=" + strings.Repeat("f", 128),
		"SHA256" + strings.TrimPrefix(golden, "sha256"),
		golden + "=",
		"sha384=zz",
		"sha224=\x00\xff",
	} {
		f.Add(seed)
	}
	key := []byte(receiverTestKey)

	f.Fuzz(func(t *testing.T, sig string) {
		err := VerifySignature(key, body, sig, false)
		// Allowing SHA-1 changes the verdict of sha1 headers only.
		if errSHA1 := VerifySignature(key, body, sig, true); !strings.HasPrefix(sig, "sha1=") && !errors.Is(errSHA1, err) && (err != nil || errSHA1 != nil) {
			t.Fatalf("allowSHA1 changed the verdict of %q: %v, then %v", sig, err, errSHA1)
		}
		switch {
		case err == nil:
			alg, mac, _ := strings.Cut(sig, "=")
			if _, ok := signatureHashes[alg]; !ok || alg == "sha1" {
				t.Fatalf("accepted algorithm %q", alg)
			}
			_, want, _ := strings.Cut(sign(t, alg, receiverTestKey, body), "=")
			if !strings.EqualFold(mac, want) {
				t.Fatalf("accepted %q, the MAC is %s=%s", sig, alg, want)
			}
		case errors.Is(err, ErrSignatureMissing), errors.Is(err, ErrSignatureMalformed),
			errors.Is(err, ErrSignatureAlgorithm), errors.Is(err, ErrSignatureMismatch), errors.Is(err, ErrSignatureSHA1):
		default:
			t.Fatalf("unexpected error %v", err)
		}

		rig := newReceiverTestRig(t, ReceiverConfig{HMACKey: key})
		h := http.Header{"Content-Type": {"application/json"}}
		h[SignatureHeader] = []string{sig} // raw, as a client may send it
		rec := rig.serve(newEventRequest(h, body))
		want := http.StatusUnauthorized
		if err == nil {
			want = http.StatusAccepted
			assertNoSecrets(t, rig.logs.String()+rec.Body.String(), []string{sig})
		}
		if rec.Code != want {
			t.Fatalf("status = %d, want %d (VerifySignature: %v)", rec.Code, want, err)
		}
		if n := len(rig.requeuer.recorded()); (n == 1) != (want == http.StatusAccepted) || n > 1 {
			t.Fatalf("status %d with %d requeues", rec.Code, n)
		}
	})
}
