package istio

import (
	"cmp"
	"slices"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// synczState applies the rule istiod itself uses to rate one xDS type on one proxy, so
// that the HTTP form (which only carries nonces) rates a proxy exactly as istiod's xDS
// form and istioctl proxy-status do. The order matters: a NACK keeps the old acked nonce,
// so the error must win over the nonce comparison.
func synczState(sentNonce, ackedNonce, lastError string) reconcile.SyncState {
	switch {
	case lastError != "":
		return reconcile.StateError
	case sentNonce == "":
		return reconcile.StateNotSent
	case ackedNonce == sentNonce:
		return reconcile.StateSynced
	default:
		return reconcile.StateStale
	}
}

// synczTime normalises a time from either form: istiod writes Go's zero time
// (0001-01-01T00:00:00Z) for "never sent", which must compare equal to time.Time{}, and
// both forms must give identical values for the same instant.
func synczTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// sortSyncz gives the output a stable order: istiod lists proxies in connection order
// and the HTTP form's types come from a map, and callers diff successive polls.
// The sort is stable so that duplicates (a proxy briefly connected twice while it
// reconnects) keep istiod's order.
func sortSyncz(proxies []reconcile.ProxyStatus) {
	for i := range proxies {
		slices.SortStableFunc(proxies[i].Types, func(a, b reconcile.XDSStatus) int {
			return cmp.Compare(a.TypeURL, b.TypeURL)
		})
	}
	slices.SortStableFunc(proxies, func(a, b reconcile.ProxyStatus) int {
		return cmp.Compare(a.ID, b.ID)
	})
}
