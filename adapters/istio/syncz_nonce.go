package istio

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	// synczUUIDLen is the length of the uuid text (8-4-4-4-12 hex digits) istiod appends,
	// without a separator, to the push version to make a nonce.
	synczUUIDLen = 36
	// maxPushVersionLen is well above the longest push version istiod can produce
	// (an RFC 3339 time with offset, "/", a 20-digit counter). It bounds the work and the
	// size of error messages for hostile input.
	maxPushVersionLen = 64
)

// PushVersion returns the istiod push version ("<RFC 3339 time>/<counter>") that a nonce
// was minted for: istiod builds every nonce as version + uuid.
//
// Sync states are decided by comparing nonces, but only the version says which push a
// proxy has (or has not) acknowledged. An empty nonce means nothing was sent or acked and
// gives an empty version. Anything not shaped like istiod's nonces is an error, so that a
// change of format in istiod fails loudly instead of yielding plausible versions.
func PushVersion(nonce string) (string, error) {
	if nonce == "" {
		return "", nil
	}
	if len(nonce) > maxPushVersionLen+synczUUIDLen {
		return "", fmt.Errorf("nonce of %d bytes is longer than a push version and a uuid", len(nonce))
	}
	if len(nonce) <= synczUUIDLen {
		return "", fmt.Errorf("nonce %q has no push version before its %d-character uuid", nonce, synczUUIDLen)
	}
	cut := len(nonce) - synczUUIDLen
	version, id := nonce[:cut], nonce[cut:]
	if !isUUID(id) {
		return "", fmt.Errorf("nonce %q does not end in a uuid", nonce)
	}
	if err := checkPushVersion(version); err != nil {
		return "", fmt.Errorf("nonce %q: %w", nonce, err)
	}
	return version, nil
}

// checkPushVersion accepts only "<RFC 3339 time>/<decimal counter>", the format of
// istiod's push versions, which consumers compare against the time a change was seen.
func checkPushVersion(v string) error {
	if len(v) > maxPushVersionLen {
		return fmt.Errorf("push version of %d bytes is too long", len(v))
	}
	slash := strings.LastIndexByte(v, '/')
	if slash < 0 {
		return fmt.Errorf("push version %q has no '/'", v)
	}
	at, counter := v[:slash], v[slash+1:]
	if _, err := time.Parse(time.RFC3339, at); err != nil {
		return fmt.Errorf("push version %q: bad time: %w", v, err)
	}
	if _, err := strconv.ParseUint(counter, 10, 64); err != nil {
		return fmt.Errorf("push version %q: bad counter: %w", v, errors.Unwrap(err))
	}
	return nil
}

// isUUID reports whether s is a uuid in its canonical text form, which is what istiod
// appends (uuid.New().String()).
func isUUID(s string) bool {
	if len(s) != synczUUIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
