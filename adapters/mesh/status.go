package mesh

import (
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshdrift/meshdrift/reconcile"
)

// SourceName is the name the watcher reports its source under.
const SourceName = "mesh"

// maxStatusError bounds the error text of a SourceStatus: many kinds can fail at once
// with the same long message when the API server is away.
const maxStatusError = 2048

// sourceStatus folds discovery and per-kind watch failures into one reconcile source:
// down while any of them fails, up when none does. It reports transitions, and a new
// error text while down, so that a consumer always holds the current state.
type sourceStatus struct {
	report reconcile.SourceReporter
	now    func() time.Time

	mu        sync.Mutex
	discovery string
	watches   map[schema.GroupKind]string
	reported  bool
	last      reconcile.SourceStatus
}

func newSourceStatus(r reconcile.SourceReporter, now func() time.Time) *sourceStatus {
	return &sourceStatus{report: r, now: now, watches: map[schema.GroupKind]string{}}
}

func (s *sourceStatus) setDiscovery(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discovery = ""
	if err != nil {
		s.discovery = err.Error()
	}
	s.publish()
}

func (s *sourceStatus) setWatch(gk schema.GroupKind, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		if _, failing := s.watches[gk]; !failing {
			return
		}
		delete(s.watches, gk)
	} else {
		s.watches[gk] = "watching " + gk.String() + ": " + err.Error()
	}
	s.publish()
}

// publish reports the folded state if it differs from the last report; s.mu is held,
// so reports leave in the order the states arose.
func (s *sourceStatus) publish() {
	var msgs []string
	if s.discovery != "" {
		msgs = append(msgs, s.discovery)
	}
	watch := make([]string, 0, len(s.watches))
	for _, m := range s.watches {
		watch = append(watch, m)
	}
	slices.Sort(watch)
	msgs = append(msgs, watch...)
	next := reconcile.SourceStatus{Name: SourceName, Up: len(msgs) == 0, Error: truncate(strings.Join(msgs, "; "), maxStatusError)}
	if s.reported && next.Up == s.last.Up && next.Error == s.last.Error {
		return
	}
	next.Since = s.now()
	if s.reported && next.Up == s.last.Up {
		// Only the error text changed: the source has been down since then.
		next.Since = s.last.Since
	}
	s.reported, s.last = true, next
	s.report.ReportSource(next)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
