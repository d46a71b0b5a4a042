package istio

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MaxMetricsBytes bounds how much of istiod's /metrics is read. A busy istiod serves a few
// hundred KiB; the per-proxy reject gauges grow with the number of rejecting proxies.
const MaxMetricsBytes = 16 << 20

// ErrMetricsTooLarge is returned (wrapped) when /metrics exceeds MaxMetricsBytes.
var ErrMetricsTooLarge = errors.New("metrics body too large")

// IstiodSignals is what istiod's own metrics say about config it could not use and
// config proxies rejected. Counters appear in istiod's output only once they are
// non-zero, so an absent key means "never happened", not "unknown".
type IstiodSignals struct {
	// Version is istiod's build (pilot_info{version}).
	Version string
	// ConnectedProxies counts xDS clients by Istio version (pilot_xds{version}).
	ConnectedProxies map[string]float64
	// XDSRejects counts NACKs by xDS type: cds, lds, rds, eds, ... (pilot_total_xds_rejects).
	XDSRejects map[string]float64
	// ProxyRejects are the per-proxy NACK counts of pilot_xds_{cds,lds,rds,eds}_reject.
	ProxyRejects []ProxyReject
	// RejectedConfigs is config istiod rejected or ignored (pilot_total_rejected_configs).
	RejectedConfigs []RejectedConfig
	// Conflicts are the pilot_conflict_* gauges and pilot_vservice_dup_domain, by name.
	Conflicts map[string]float64
	// DuplicateEnvoyClusters is pilot_duplicate_envoy_clusters: service entries with the
	// same host.
	DuplicateEnvoyClusters float64
	// Pushes counts pushes by type (pilot_xds_pushes{type}), errors included.
	Pushes map[string]float64
	// PushErrors are the pushes that failed to build or send (types *_builderr, *_senderr).
	PushErrors map[string]float64
	// ExpiredNonces counts requests with an outdated nonce by type (pilot_xds_expired_nonce).
	ExpiredNonces map[string]float64
	// InternalErrors is pilot_total_xds_internal_errors; WriteTimeouts pilot_xds_write_timeout.
	InternalErrors float64
	WriteTimeouts  float64
}

// ProxyReject is one proxy's NACKs of one xDS type, with the gRPC code it sent.
type ProxyReject struct {
	Type  string // cds, lds, rds or eds
	Proxy string // "<pod>.<namespace>"
	Code  string // e.g. Internal
	Count float64
}

// RejectedConfig is one config object istiod rejected or ignored.
type RejectedConfig struct {
	Type  string // e.g. gateway
	Name  string
	Count float64
}

// rejectFamilies maps the per-proxy reject gauges to their xDS type.
var rejectFamilies = map[string]string{
	"pilot_xds_cds_reject": "cds",
	"pilot_xds_lds_reject": "lds",
	"pilot_xds_rds_reject": "rds",
	"pilot_xds_eds_reject": "eds",
}

// ParseIstiodMetrics reads istiod's /metrics (Prometheus text format) and keeps the
// signals meshdrift uses. Input that is not the text format, or a known family without
// the labels istiod gives it, is an error.
func ParseIstiodMetrics(r io.Reader) (IstiodSignals, error) {
	return parseIstiodMetrics(r, MaxMetricsBytes)
}

func parseIstiodMetrics(r io.Reader, limit int64) (IstiodSignals, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return IstiodSignals{}, fmt.Errorf("read metrics: %w", err)
	}
	if int64(len(b)) > limit {
		return IstiodSignals{}, fmt.Errorf("metrics exceed %d bytes: %w", limit, ErrMetricsTooLarge)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return IstiodSignals{}, fmt.Errorf("parse metrics: %w", err)
	}
	s := IstiodSignals{
		ConnectedProxies: map[string]float64{},
		XDSRejects:       map[string]float64{},
		Conflicts:        map[string]float64{},
		Pushes:           map[string]float64{},
		PushErrors:       map[string]float64{},
		ExpiredNonces:    map[string]float64{},
	}
	var errs []error
	for name, mf := range families {
		if err := s.add(name, mf); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return IstiodSignals{}, fmt.Errorf("metrics: %w", err)
	}
	slices.SortFunc(s.ProxyRejects, func(a, b ProxyReject) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Proxy, b.Proxy), cmp.Compare(a.Code, b.Code))
	})
	slices.SortFunc(s.RejectedConfigs, func(a, b RejectedConfig) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name))
	})
	return s, nil
}

func (s *IstiodSignals) add(name string, mf *dto.MetricFamily) error {
	switch {
	case name == "pilot_info":
		return eachSample(mf, []string{"version"}, func(l []string, _ float64) { s.Version = l[0] })
	case name == "pilot_xds":
		return labelledSum(mf, "version", s.ConnectedProxies)
	case name == "pilot_total_xds_rejects":
		return labelledSum(mf, "type", s.XDSRejects)
	case rejectFamilies[name] != "":
		typ := rejectFamilies[name]
		return eachSample(mf, []string{"node", "err"}, func(l []string, v float64) {
			s.ProxyRejects = append(s.ProxyRejects, ProxyReject{Type: typ, Proxy: l[0], Code: l[1], Count: v})
		})
	case name == "pilot_total_rejected_configs":
		return eachSample(mf, []string{"type", "name"}, func(l []string, v float64) {
			s.RejectedConfigs = append(s.RejectedConfigs, RejectedConfig{Type: l[0], Name: l[1], Count: v})
		})
	case strings.HasPrefix(name, "pilot_conflict_") || name == "pilot_vservice_dup_domain":
		return eachSample(mf, nil, func(_ []string, v float64) { s.Conflicts[name] += v })
	case name == "pilot_duplicate_envoy_clusters":
		return eachSample(mf, nil, func(_ []string, v float64) { s.DuplicateEnvoyClusters += v })
	case name == "pilot_xds_pushes":
		if err := labelledSum(mf, "type", s.Pushes); err != nil {
			return err
		}
		for typ, v := range s.Pushes {
			if strings.HasSuffix(typ, "_senderr") || strings.HasSuffix(typ, "_builderr") {
				s.PushErrors[typ] = v
			}
		}
		return nil
	case name == "pilot_xds_expired_nonce":
		return labelledSum(mf, "type", s.ExpiredNonces)
	case name == "pilot_total_xds_internal_errors":
		return eachSample(mf, nil, func(_ []string, v float64) { s.InternalErrors += v })
	case name == "pilot_xds_write_timeout":
		return eachSample(mf, nil, func(_ []string, v float64) { s.WriteTimeouts += v })
	}
	return nil
}

// labelledSum adds each sample's value under its label value.
func labelledSum(mf *dto.MetricFamily, label string, into map[string]float64) error {
	return eachSample(mf, []string{label}, func(l []string, v float64) { into[l[0]] += v })
}

// eachSample calls f with the values of the wanted labels and the value of every sample
// of a counter, gauge or untyped family; a sample without one of the labels is an error.
func eachSample(mf *dto.MetricFamily, labels []string, f func(values []string, v float64)) error {
	for _, m := range mf.GetMetric() {
		var v float64
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		case dto.MetricType_UNTYPED:
			v = m.GetUntyped().GetValue()
		default:
			return fmt.Errorf("type %s, want counter or gauge", mf.GetType())
		}
		values := make([]string, len(labels))
		for i, want := range labels {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == want {
					values[i], found = lp.GetValue(), true
					break
				}
			}
			if !found {
				return fmt.Errorf("sample without label %q", want)
			}
		}
		f(values, v)
	}
	return nil
}

// FetchIstiodSignals scrapes istiod's /metrics at addr (its monitoring port, 15014).
func FetchIstiodSignals(ctx context.Context, client *http.Client, addr string) (IstiodSignals, error) {
	body, err := httpGet(ctx, client, "http://"+addr+"/metrics", "text/plain;version=0.0.4", "")
	if err != nil {
		return IstiodSignals{}, fmt.Errorf("istiod metrics: %w", err)
	}
	defer body.Close()
	s, err := ParseIstiodMetrics(body)
	if err != nil {
		return IstiodSignals{}, fmt.Errorf("istiod metrics from %s: %w", addr, err)
	}
	return s, nil
}

// ReadSignals scrapes one istiod's /metrics, within the reader's read timeout.
func (r *Reader) ReadSignals(ctx context.Context, t Target) (IstiodSignals, error) {
	if t.MonitoringAddr == "" {
		return IstiodSignals{}, fmt.Errorf("istiod %s: no monitoring address", t.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReadTimeout)
	defer cancel()
	return FetchIstiodSignals(ctx, r.http, t.MonitoringAddr)
}
