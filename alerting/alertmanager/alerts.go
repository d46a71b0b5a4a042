package alertmanager

import (
	"net/url"
	"strings"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// Label names of every alert, documented in the package doc; routes match on them.
const (
	LabelAlertname  = "alertname"
	LabelCode       = "code"
	LabelSeverity   = "severity"
	LabelFindingID  = "finding_id"
	LabelNamespace  = "namespace"
	LabelApp        = "app"
	LabelGitOpsTool = "gitops_tool"
	LabelRevision   = "revision"
	LabelObject     = "object"
	LabelIstiod     = "istiod"
	LabelProxy      = "proxy"
	LabelSource     = "source"
	LabelCluster    = "cluster"
)

const (
	// maxRevisionLabel keeps a revision label to what a Git ref, a Flux artifact revision
	// (main@sha1:<40 hex>, latest@sha256:<64 hex>) or a chart version needs; anything
	// longer stays in the description only.
	maxRevisionLabel = 100
	// maxEvidence bounds the evidence annotation (a NACK text can be long).
	maxEvidence = 4096
)

// alertOptions are what the alerts need besides the findings.
type alertOptions struct {
	cluster     string
	externalURL string // meshdrift's page, for generatorURL; may be empty
	runbookURL  string // the findings doc page, for runbook_url; may be empty
	// endsAtAhead is how far ahead of now a firing alert ends unless re-sent: Prometheus
	// uses 4× its resend delay, so that three lost resends do not resolve an alert.
	endsAtAhead time.Duration
}

// postableAlerts maps findings to Alertmanager API v2 alerts at now.
func postableAlerts(fs []findings.Finding, o alertOptions, now time.Time) models.PostableAlerts {
	alerts := make(models.PostableAlerts, 0, len(fs))
	for _, f := range fs {
		alerts = append(alerts, postableAlert(f, o, now))
	}
	return alerts
}

func postableAlert(f findings.Finding, o alertOptions, now time.Time) *models.PostableAlert {
	startsAt := f.StartsAt
	if startsAt.IsZero() {
		startsAt = f.FirstSeen
	}
	endsAt := now.Add(o.endsAtAhead)
	if f.State == findings.StateResolved {
		endsAt = f.ResolvedAt
	}
	// Alertmanager rejects an alert that ends before it starts; the evidence's own time
	// may be later than the moment meshdrift resolved the finding by its clock.
	if !startsAt.IsZero() && endsAt.Before(startsAt) {
		endsAt = startsAt
	}
	a := &models.PostableAlert{
		Alert: models.Alert{
			Labels: alertLabels(f, o.cluster),
		},
		Annotations: alertAnnotations(f, o.runbookURL),
		EndsAt:      strfmt.DateTime(endsAt.UTC()),
	}
	if !startsAt.IsZero() {
		a.StartsAt = strfmt.DateTime(startsAt.UTC())
	}
	if o.externalURL != "" {
		a.GeneratorURL = strfmt.URI(strings.TrimSuffix(o.externalURL, "/") + "/findings/" + url.PathEscape(f.ID))
	}
	return a
}

// alertLabels are stable over the finding's life (Alertmanager identifies an alert by its
// labels): only the code, the catalog name and severity, and the subject.
func alertLabels(f findings.Finding, cluster string) models.LabelSet {
	l := models.LabelSet{}
	set := func(k, v string) {
		if v != "" {
			l[k] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	name := f.Name
	if name == "" {
		name = string(f.Code)
	}
	set(LabelAlertname, name)
	set(LabelCode, string(f.Code))
	set(LabelSeverity, string(f.Severity))
	set(LabelFindingID, f.ID)
	s := f.Subject
	ns := s.Object.Namespace
	if ns == "" {
		ns = s.App.Namespace
	}
	set(LabelNamespace, ns)
	set(LabelApp, s.App.Name)
	set(LabelGitOpsTool, string(s.App.Source))
	if len(s.Revision) <= maxRevisionLabel {
		set(LabelRevision, s.Revision)
	}
	if s.Object.Name != "" {
		set(LabelObject, s.Object.String())
	}
	set(LabelIstiod, s.Istiod)
	set(LabelProxy, s.Proxy)
	set(LabelSource, s.Source)
	set(LabelCluster, cluster)
	return l
}

func alertAnnotations(f findings.Finding, runbookURL string) models.LabelSet {
	a := models.LabelSet{}
	set := func(k, v string) {
		if v != "" {
			a[k] = strings.ToValidUTF8(v, "\uFFFD")
		}
	}
	set("summary", f.Summary)
	set("description", f.Description)
	if runbookURL != "" && f.Code != "" {
		set("runbook_url", strings.TrimSuffix(runbookURL, "/")+"#"+strings.ToLower(string(f.Code)))
	}
	evidence := f.Evidence
	if len(evidence) > maxEvidence {
		evidence = evidence[:maxEvidence] + "…"
	}
	set("evidence", evidence)
	return a
}
