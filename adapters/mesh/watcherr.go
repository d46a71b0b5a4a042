package mesh

import (
	"context"
	"errors"
	"io"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
)

// watchErr keeps the latest list or watch error of an informer (the metadata caches,
// Services), so that a cache that never syncs says why (most often RBAC not re-applied
// after an upgrade) in /readyz instead of only in client-go's logs.
type watchErr struct {
	mu  sync.Mutex
	err error
}

// handle is the informer's WatchErrorHandlerWithContext: it records the error and leaves
// logging and backoff to client-go.
func (w *watchErr) handle(ctx context.Context, r *cache.Reflector, err error) {
	// A watch that ends normally or expires is routine: the informer relists.
	if !errors.Is(err, io.EOF) && !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	}
	cache.DefaultWatchErrorHandler(ctx, r, err)
}

// Err returns the latest list or watch error, nil when there was none.
func (w *watchErr) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
