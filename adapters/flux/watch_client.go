package flux

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/watchlist"
)

// Verbs passed to observedClient's observer.
const (
	verbList  = "list"
	verbWatch = "watch"
)

// observedClient is the dynamic client the informers use. It passes every request through
// and tells observe how each list and watch request went. The informer's own watch error
// handler misses the most telling failure: when the API server refuses connections, the
// reflector retries the watch request by itself, quietly, for as long as it takes.
type observedClient struct {
	dynamic.Interface
	observe func(gvr schema.GroupVersionResource, verb string, err error)
}

func (c observedClient) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return observedResource{NamespaceableResourceInterface: c.Interface.Resource(gvr), gvr: gvr, observe: c.observe}
}

// IsWatchListSemanticsUnSupported forwards the wrapped client's answer: the informer asks
// it whether it may stream its initial list, and the wrapper must not change that.
func (c observedClient) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(c.Interface)
}

type observedResource struct {
	dynamic.NamespaceableResourceInterface
	gvr     schema.GroupVersionResource
	observe func(gvr schema.GroupVersionResource, verb string, err error)
}

func (r observedResource) Namespace(ns string) dynamic.ResourceInterface {
	return observedNamespacedResource{ResourceInterface: r.NamespaceableResourceInterface.Namespace(ns), gvr: r.gvr, observe: r.observe}
}

func (r observedResource) List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	l, err := r.NamespaceableResourceInterface.List(ctx, opts)
	r.observe(r.gvr, verbList, err)
	return l, err
}

func (r observedResource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := r.NamespaceableResourceInterface.Watch(ctx, opts)
	r.observe(r.gvr, verbWatch, err)
	return w, err
}

type observedNamespacedResource struct {
	dynamic.ResourceInterface
	gvr     schema.GroupVersionResource
	observe func(gvr schema.GroupVersionResource, verb string, err error)
}

func (r observedNamespacedResource) List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	l, err := r.ResourceInterface.List(ctx, opts)
	r.observe(r.gvr, verbList, err)
	return l, err
}

func (r observedNamespacedResource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := r.ResourceInterface.Watch(ctx, opts)
	r.observe(r.gvr, verbWatch, err)
	return w, err
}

// retriedWatchError mirrors the reflector's isWatchErrorRetriable: a watch request that
// fails so is retried after a backoff without relisting and without the error handler.
func retriedWatchError(err error) bool {
	return utilnet.IsConnectionRefused(err) || apierrors.IsTooManyRequests(err)
}
