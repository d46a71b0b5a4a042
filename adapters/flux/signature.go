package flux

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
)

// SignatureHeader is the header in which notification-controller's generic-hmac Provider
// sends "<alg>=<hex HMAC(token, raw body)>".
const SignatureHeader = "X-Signature"

// The errors of VerifySignature. They are fixed strings on purpose: nothing from the header
// (an attacker's bytes, or worse a valid MAC) ever reaches a log line or a response.
var (
	ErrSignatureMissing   = errors.New("missing signature")
	ErrSignatureMalformed = errors.New("malformed signature")
	ErrSignatureAlgorithm = errors.New("unsupported signature algorithm")
	ErrSignatureMismatch  = errors.New("signature mismatch")
	// ErrSignatureSHA1: a well-formed sha1 signature, refused unless explicitly allowed.
	// notification-controller signs with sha256; a SHA-1 MAC comes from another sender.
	ErrSignatureSHA1     = errors.New("sha1 signature not allowed")
	errSignatureEmptyKey = errors.New("empty hmac key")
)

// signatureHashes are the algorithms notification-controller can sign with.
var signatureHashes = map[string]func() hash.Hash{
	"sha1":   sha1.New,
	"sha224": sha256.New224,
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// VerifySignature checks header, the value of X-Signature, against the HMAC of the raw
// body bytes under key. It returns nil only for a well-formed header whose MAC matches;
// the comparison is constant time. A sha1 header is refused with ErrSignatureSHA1 unless
// allowSHA1, before any MAC is computed.
func VerifySignature(key, body []byte, header string, allowSHA1 bool) error {
	// An empty key would make the MAC computable by anyone.
	if len(key) == 0 {
		return errSignatureEmptyKey
	}
	newHash, want, err := parseSignature(header)
	if err != nil {
		return err
	}
	if !allowSHA1 && strings.HasPrefix(header, "sha1=") {
		return ErrSignatureSHA1
	}
	mac := hmac.New(newHash, key)
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), want) {
		return ErrSignatureMismatch
	}
	return nil
}

// parseSignature splits "<alg>=<hex>" and decodes the MAC. The algorithm name is matched
// exactly (notification-controller writes it in lower case); a MAC of the wrong length
// for the algorithm is malformed rather than a mismatch.
func parseSignature(header string) (func() hash.Hash, []byte, error) {
	if header == "" {
		return nil, nil, ErrSignatureMissing
	}
	alg, encoded, ok := strings.Cut(header, "=")
	if !ok || alg == "" || encoded == "" {
		return nil, nil, ErrSignatureMalformed
	}
	newHash, ok := signatureHashes[alg]
	if !ok {
		return nil, nil, ErrSignatureAlgorithm
	}
	mac, err := hex.DecodeString(encoded)
	if err != nil || len(mac) != newHash().Size() {
		return nil, nil, ErrSignatureMalformed
	}
	return newHash, mac, nil
}
