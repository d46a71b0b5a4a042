package main

import (
	"context"
	"fmt"
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
	writes atomic.Int64
	failed atomic.Int64
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
		_, err := dyn.Resource(gvrApp).Namespace(testbed.ArgoCDNamespace).Patch(ctx, fmt.Sprintf("app-%05d", 2*i),
			types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "argocd-application-controller"})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.failed.Add(1)
			continue
		}
		r.writes.Add(1)
	}
}
