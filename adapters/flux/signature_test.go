package flux

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestVerifySignature(t *testing.T) {
	header, body := readGoldenEvent(t)
	golden := header.Get(SignatureHeader)
	key := []byte(receiverTestKey)
	_, goldenHex, _ := strings.Cut(golden, "=")

	tests := []struct {
		name      string
		key       []byte
		body      []byte
		header    string
		allowSHA1 bool
		wantErr   error
	}{
		{name: "golden", key: key, body: body, header: golden},
		{name: "sha1 refused by default", key: key, body: body, header: sign(t, "sha1", receiverTestKey, body), wantErr: ErrSignatureSHA1},
		{name: "sha1 allowed", key: key, body: body, header: sign(t, "sha1", receiverTestKey, body), allowSHA1: true},
		{name: "sha1 allowed, wrong key", key: []byte("other"), body: body, header: sign(t, "sha1", receiverTestKey, body), allowSHA1: true, wantErr: ErrSignatureMismatch},
		{name: "sha1 refused before its MAC is checked", key: []byte("other"), body: body, header: sign(t, "sha1", receiverTestKey, body), wantErr: ErrSignatureSHA1},
		{name: "malformed sha1 is malformed", key: key, body: body, header: "sha1=abc", wantErr: ErrSignatureMalformed},
		{name: "sha224", key: key, body: body, header: sign(t, "sha224", receiverTestKey, body)},
		{name: "sha384", key: key, body: body, header: sign(t, "sha384", receiverTestKey, body)},
		{name: "sha512", key: key, body: body, header: sign(t, "sha512", receiverTestKey, body)},
		{name: "upper-case hex digits", key: key, body: body, header: "sha256=" + strings.ToUpper(goldenHex)},
		{name: "empty body", key: key, body: nil, header: sign(t, "sha256", receiverTestKey, nil)},
		{name: "empty header", key: key, body: body, header: "", wantErr: ErrSignatureMissing},
		{name: "no separator", key: key, body: body, header: "sha256" + goldenHex, wantErr: ErrSignatureMalformed},
		{name: "no algorithm", key: key, body: body, header: "=" + goldenHex, wantErr: ErrSignatureMalformed},
		{name: "no mac", key: key, body: body, header: "sha256=", wantErr: ErrSignatureMalformed},
		{name: "md5", key: key, body: body, header: sign(t, "md5", receiverTestKey, body), wantErr: ErrSignatureAlgorithm},
		{name: "algorithm in upper case", key: key, body: body, header: "SHA256=" + goldenHex, wantErr: ErrSignatureAlgorithm},
		{name: "leading space", key: key, body: body, header: " " + golden, wantErr: ErrSignatureAlgorithm},
		{name: "not hex", key: key, body: body, header: "sha256=" + strings.Repeat("g", len(goldenHex)), wantErr: ErrSignatureMalformed},
		{name: "odd length hex", key: key, body: body, header: golden[:len(golden)-1], wantErr: ErrSignatureMalformed},
		{name: "short mac", key: key, body: body, header: golden[:len(golden)-2], wantErr: ErrSignatureMalformed},
		{name: "long mac", key: key, body: body, header: golden + "00", wantErr: ErrSignatureMalformed},
		{name: "trailing separator", key: key, body: body, header: golden + "=", wantErr: ErrSignatureMalformed},
		{name: "sha1 mac labelled sha256", key: key, body: body,
			header: "sha256=" + strings.TrimPrefix(sign(t, "sha1", receiverTestKey, body), "sha1="), wantErr: ErrSignatureMalformed},
		{name: "wrong key", key: []byte("other"), body: body, header: golden, wantErr: ErrSignatureMismatch},
		{name: "tampered body", key: key, body: append(bytes.Clone(body[:len(body)-1]), ' '), header: golden, wantErr: ErrSignatureMismatch},
		{name: "empty key", key: nil, body: body, header: sign(t, "sha256", "", body), wantErr: errSignatureEmptyKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.key, tt.body, tt.header, tt.allowSHA1)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("VerifySignature = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
