package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// argoRefreshPeriod is Argo CD's default timeout.reconciliation: its application
// controller refreshes every Application that often and writes the refresh time back
// (status.reconciledAt), even when nothing else changed.
const argoRefreshPeriod = 3 * time.Minute

// refresher writes what Argo CD's refreshes write: each Application's reconciledAt, once
// per argoRefreshPeriod, spread evenly. A production fleet's steady state has them (about
// 14 writes a second for 2,500 Applications); meshdrift must not do work for them.
type refresher struct {
	// mu is held shared by each write and exclusively by quiet, so that a count read
	// there and the API server's own count agree.
	mu     sync.RWMutex
	writes atomic.Int64
	failed atomic.Int64
}

// quiet runs f with no write in flight and returns the writes made until then.
func (r *refresher) quiet(f func()) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
	return r.writes.Load()
}

// run refreshes the Argo CD Applications among apps until ctx ends.
func (r *refresher) run(ctx context.Context, dyn dynamic.Interface, apps int) {
	argo := (apps + 1) / 2 // even-numbered apps are Argo CD Applications (createApp)
	if argo == 0 {
		return
	}
	tick := time.NewTicker(argoRefreshPeriod / time.Duration(argo))
	defer tick.Stop()
	for i := 0; ; i = (i + 1) % argo {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		patch := fmt.Sprintf(`{"status":{"reconciledAt":%q}}`, time.Now().UTC().Format(time.RFC3339))
		r.mu.RLock()
		_, err := dyn.Resource(gvrApp).Namespace(testbed.ArgoCDNamespace).Patch(ctx, fmt.Sprintf("app-%05d", 2*i),
			types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "argocd-application-controller"})
		if err == nil {
			r.writes.Add(1)
		}
		r.mu.RUnlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.failed.Add(1)
		}
	}
}
