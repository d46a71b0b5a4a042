package argocd

import (
	"log/slog"
	"sync"
	"time"

	"github.com/meshdrift/meshdrift/reconcile"
)

// sourceStatus reports a source's reachability to a SourceReporter, once per change:
// informers and pollers retry often, and every failed attempt must not become a report.
type sourceStatus struct {
	name     string
	reporter reconcile.SourceReporter
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	reported bool
	last     reconcile.SourceStatus
}

// set reports up or down with errText. Since moves only when Up changes: a source that
// stays down with another error has still been down since the first one.
func (s *sourceStatus) set(up bool, errText string) { s.setStatus(up, errText, false) }

// setStatus is set with NotInstalled: the CRD is not served. The watch reports that down,
// as it always has; findings read NotInstalled, whatever Up says.
func (s *sourceStatus) setStatus(up bool, errText string, notInstalled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reported && s.last.Up == up && s.last.Error == errText && s.last.NotInstalled == notInstalled {
		return
	}
	since := s.last.Since
	if !s.reported || s.last.Up != up {
		since = s.now()
	}
	s.last = reconcile.SourceStatus{Name: s.name, Up: up, Error: errText, NotInstalled: notInstalled, Since: since}
	s.reported = true
	if up {
		s.log.Info("source up", "source", s.name)
	} else {
		s.log.Warn("source down", "source", s.name, "error", errText)
	}
	// Reported under the lock so that reports reach the reporter in the order they happen.
	s.reporter.ReportSource(s.last)
}
