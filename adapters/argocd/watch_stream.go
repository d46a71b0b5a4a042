package argocd

import (
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// initialEventsWatch passes a streaming list (a watch with sendInitialEvents) through to
// the reflector and calls done once at the bookmark that ends the initial events: only
// then has the stream delivered a complete list, which is what "up" means.
type initialEventsWatch struct {
	inner watch.Interface
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func newInitialEventsWatch(inner watch.Interface, done func()) watch.Interface {
	w := &initialEventsWatch{inner: inner, out: make(chan watch.Event), stop: make(chan struct{})}
	go w.run(done)
	return w
}

func (w *initialEventsWatch) run(done func()) {
	defer close(w.out)
	var ended bool
	for ev := range w.inner.ResultChan() {
		if !ended && ev.Type == watch.Bookmark && endsInitialEvents(ev) {
			ended = true
			done()
		}
		select {
		case w.out <- ev:
		case <-w.stop:
			return
		}
	}
}

func endsInitialEvents(ev watch.Event) bool {
	m, err := meta.Accessor(ev.Object)
	return err == nil && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true"
}

func (w *initialEventsWatch) ResultChan() <-chan watch.Event { return w.out }

func (w *initialEventsWatch) Stop() {
	w.once.Do(func() {
		close(w.stop)
		w.inner.Stop()
	})
}
