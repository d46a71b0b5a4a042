package flux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	eventv1beta1 "github.com/fluxcd/pkg/apis/event/v1beta1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshdrift/meshdrift/reconcile"
)

const (
	// DefaultReceiverMaxBodyBytes caps a request body when ReceiverConfig leaves it unset.
	// Flux caps an event message at 39,000 characters, so 1 MiB is ample.
	DefaultReceiverMaxBodyBytes int64 = 1 << 20
	// maxReceiverBodyBytes bounds the configurable cap: the body is held in memory whole
	// because the signature covers all of it.
	maxReceiverBodyBytes int64 = 1 << 30

	// controllerHeader names the Flux controller that emitted the event
	// (notification-controller's forwarder sets it to the event's reportingController).
	controllerHeader = "Gotk-Component"
)

// The group of each Flux kind the receiver acts on; events about other kinds are ignored.
var receiverKindGroups = map[string]string{
	"Kustomization": "kustomize.toolkit.fluxcd.io",
	"HelmRelease":   "helm.toolkit.fluxcd.io",
}

// Errors of NotificationFromEvent.
var (
	// ErrEventIncomplete: the event lacks involvedObject kind, name or namespace.
	ErrEventIncomplete = errors.New("event involvedObject lacks kind, name or namespace")
	// ErrEventKindUnsupported: the event is about an object meshdrift does not track.
	ErrEventKindUnsupported = errors.New("event involvedObject kind not tracked")
)

// Outcomes of a request, the values of the outcome label. The set is closed so the
// metric's cardinality is fixed whatever clients send.
const (
	receiverOutcomeAccepted         = "accepted"
	receiverOutcomeIgnored          = "ignored"
	receiverOutcomeUnauthorized     = "unauthorized"
	receiverOutcomeTooLarge         = "too_large"
	receiverOutcomeMalformed        = "malformed"
	receiverOutcomeMethodNotAllowed = "method_not_allowed"
)

var receiverOutcomes = []string{
	receiverOutcomeAccepted,
	receiverOutcomeIgnored,
	receiverOutcomeUnauthorized,
	receiverOutcomeTooLarge,
	receiverOutcomeMalformed,
	receiverOutcomeMethodNotAllowed,
}

// Requeuer re-evaluates a Flux app now rather than at its next watch event or resync.
// The receiver calls it once per accepted event, synchronously from the HTTP handler:
// implementations must be safe for concurrent use, must not block for long (enqueue and
// return) and must not keep ctx, which ends with the request. key equals n.App.
type Requeuer interface {
	Requeue(ctx context.Context, key reconcile.AppKey, n Notification)
}

// Notification is the normalised content of one Flux event about a Kustomization or a
// HelmRelease.
type Notification struct {
	App reconcile.AppKey
	// Revision is the source revision the event is about, e.g. "main@sha1:<hex>" for a
	// Kustomization or the chart version for a HelmRelease; empty when the event has none.
	Revision string
	// Severity is Flux's "trace", "info" or "error".
	Severity string
	Reason   string
	Message  string
	// Controller is the emitting controller: the Gotk-Component header, or the event's
	// reportingController when the header is absent. The header is not covered by the
	// signature, so treat it as informational.
	Controller string
	// Timestamp is when the controller recorded the event, in UTC; zero when absent.
	Timestamp time.Time
}

// NotificationFromEvent normalises ev. controller is the Gotk-Component header value, if
// any. It returns ErrEventIncomplete when ev does not identify its object and
// ErrEventKindUnsupported when the object is neither a Flux Kustomization nor a HelmRelease.
func NotificationFromEvent(ev *eventv1beta1.Event, controller string) (Notification, error) {
	if ev == nil {
		return Notification{}, ErrEventIncomplete
	}
	obj := ev.InvolvedObject
	if obj.Kind == "" || obj.Name == "" || obj.Namespace == "" {
		return Notification{}, ErrEventIncomplete
	}
	group, ok := receiverKindGroups[obj.Kind]
	// An apiVersion of another group is a different kind that happens to share the name.
	if !ok || (obj.APIVersion != "" && apiVersionGroup(obj.APIVersion) != group) {
		return Notification{}, ErrEventKindUnsupported
	}
	if controller == "" {
		controller = ev.ReportingController
	}
	return Notification{
		App: reconcile.AppKey{
			Source:    reconcile.SourceFlux,
			Kind:      obj.Kind,
			Namespace: obj.Namespace,
			Name:      obj.Name,
		},
		Revision:   eventRevision(ev.Metadata, group),
		Severity:   ev.Severity,
		Reason:     ev.Reason,
		Message:    ev.Message,
		Controller: controller,
		Timestamp:  ev.Timestamp.UTC(),
	}, nil
}

// eventRevision finds the source revision in an event's metadata. notification-controller
// forwards it as "revision" (it strips the emitting controller's group prefix); a
// controller posting straight to its --events-addr sends "<group>/revision", e.g.
// "kustomize.toolkit.fluxcd.io/revision" or "helm.toolkit.fluxcd.io/revision". The plain
// key wins. Event.GetRevision is not used: it prefers "commit" and "originRevision", which
// are not the revision Flux records in lastAppliedRevision.
func eventRevision(metadata map[string]string, group string) string {
	if rev := metadata[eventv1beta1.MetaRevisionKey]; rev != "" {
		return rev
	}
	return metadata[group+"/"+eventv1beta1.MetaRevisionKey]
}

// apiVersionGroup returns the group of "group/version"; the core group "v1" gives "".
func apiVersionGroup(apiVersion string) string {
	group, _, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return ""
	}
	return group
}

// ReceiverConfig configures a Receiver.
type ReceiverConfig struct {
	// HMACKey is the token of the generic-hmac Provider's Secret: every request must carry
	// a valid X-Signature made with it. NewReceiver refuses an empty key unless
	// InsecureNoAuth says, in so many words, that unsigned requests are wanted.
	HMACKey []byte
	// InsecureNoAuth accepts every request unsigned (Provider type generic). Anyone who
	// can reach the endpoint can then make meshdrift re-read any Flux app; it cannot be
	// combined with a key.
	InsecureNoAuth bool
	// AllowSHA1 accepts "sha1=" signatures. Off by default: notification-controller signs
	// with sha256, so a SHA-1 MAC comes from some other sender.
	AllowSHA1 bool
	// MaxBodyBytes caps the request body; 0 means DefaultReceiverMaxBodyBytes.
	MaxBodyBytes int64
}

// String keeps the key out of anything that formats the config.
func (c ReceiverConfig) String() string {
	return fmt.Sprintf("{HMACKey:%s InsecureNoAuth:%t AllowSHA1:%t MaxBodyBytes:%d}",
		redactedKey(c.HMACKey), c.InsecureNoAuth, c.AllowSHA1, c.MaxBodyBytes)
}

// LogValue keeps the key out of slog output, which does not call String for structs.
func (c ReceiverConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("hmac_key", redactedKey(c.HMACKey)),
		slog.Bool("insecure_no_auth", c.InsecureNoAuth),
		slog.Bool("allow_sha1", c.AllowSHA1),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
	)
}

func redactedKey(key []byte) string {
	if len(key) == 0 {
		return "unset"
	}
	return "redacted"
}

// Errors of NewReceiver and LoadHMACKey about the key. None of them ever holds key bytes.
var (
	// ErrReceiverNoKey: no HMAC key and InsecureNoAuth not set.
	ErrReceiverNoKey = errors.New("flux receiver: no HMAC key; give the generic-hmac Provider's token, or set insecureNoAuth: true to accept unsigned events")
	// ErrReceiverKeyAndNoAuth: a key and InsecureNoAuth together, which contradict each other.
	ErrReceiverKeyAndNoAuth = errors.New("flux receiver: an HMAC key and insecureNoAuth: true contradict each other; set one")
	// ErrHMACKeyEmpty: the key file holds nothing but white space.
	ErrHMACKeyEmpty = errors.New("is empty")
)

// maxHMACKeyFileBytes bounds the key file read: a token is short, and a large file is a
// wrong path (a log, a binary), not a key.
const maxHMACKeyFileBytes = 64 << 10

// LoadHMACKey reads the generic-hmac Provider's token from a file, e.g. a mounted Secret
// key. Surrounding white space is removed, as notification-controller trims the token it
// signs with, so a file written with a trailing newline works. An empty or white-space-only
// file is an error (ErrHMACKeyEmpty): it would otherwise leave the receiver without a key.
// Errors name the file, never its content.
func LoadHMACKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("flux receiver: reading the HMAC key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHMACKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("flux receiver: reading the HMAC key %s: %w", path, err)
	}
	if len(b) > maxHMACKeyFileBytes {
		return nil, fmt.Errorf("flux receiver: HMAC key file %s is larger than %d bytes", path, maxHMACKeyFileBytes)
	}
	key := bytes.TrimSpace(b)
	if len(key) == 0 {
		return nil, fmt.Errorf("flux receiver: HMAC key file %s %w", path, ErrHMACKeyEmpty)
	}
	return key, nil
}

// Receiver is the http.Handler for Flux notification-controller webhooks (Provider type
// generic or generic-hmac). For each valid event about a Kustomization or HelmRelease it
// calls the Requeuer and answers 202; a rejected request changes nothing.
type Receiver struct {
	key       []byte
	allowSHA1 bool
	maxBody   int64
	requeuer  Requeuer
	requests  *prometheus.CounterVec
	log       *slog.Logger
}

// NewReceiver builds a Receiver and registers its metrics with reg (nil: not registered).
// log may be nil. It fails closed: without a key it refuses to build unless
// cfg.InsecureNoAuth (ErrReceiverNoKey).
func NewReceiver(cfg ReceiverConfig, requeuer Requeuer, reg prometheus.Registerer, log *slog.Logger) (*Receiver, error) {
	if requeuer == nil {
		return nil, errors.New("flux receiver: nil requeuer")
	}
	switch {
	case len(cfg.HMACKey) == 0 && !cfg.InsecureNoAuth:
		return nil, ErrReceiverNoKey
	case len(cfg.HMACKey) > 0 && cfg.InsecureNoAuth:
		return nil, ErrReceiverKeyAndNoAuth
	}
	maxBody := cfg.MaxBodyBytes
	if maxBody == 0 {
		maxBody = DefaultReceiverMaxBodyBytes
	}
	if maxBody < 0 || maxBody > maxReceiverBodyBytes {
		return nil, fmt.Errorf("flux receiver: max body bytes %d out of range [1, %d]", cfg.MaxBodyBytes, maxReceiverBodyBytes)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshdrift_flux_receiver_requests_total",
		Help: "Flux notification webhook requests received, by outcome.",
	}, []string{"outcome"})
	// Every outcome is exported from the start, so a rate over it never sees a missing series.
	for _, o := range receiverOutcomes {
		requests.WithLabelValues(o)
	}
	if reg != nil {
		if err := reg.Register(requests); err != nil {
			return nil, fmt.Errorf("flux receiver: register metrics: %w", err)
		}
	}
	return &Receiver{
		// Copied so a caller reusing its slice cannot change the key under a running server.
		key:       append([]byte(nil), cfg.HMACKey...),
		allowSHA1: cfg.AllowSHA1,
		maxBody:   maxBody,
		requeuer:  requeuer,
		requests:  requests,
		log:       log,
	}, nil
}

var errReceiverBodyTooLarge = errors.New("request body too large")

// ServeHTTP handles one webhook POST. Order matters: nothing is parsed before the
// signature over the raw bytes has been checked.
//
// Content-Type is not checked: the signature authenticates the bytes and decoding
// validates them, while Provider headers can override the type notification-controller
// sets, so a 415 would only reject genuine events.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := rc.log.With(slog.String("remote", r.RemoteAddr))

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		rc.reject(w, receiverOutcomeMethodNotAllowed, http.StatusMethodNotAllowed, "method not allowed")
		log.Debug("flux event rejected", slog.String("outcome", receiverOutcomeMethodNotAllowed), slog.String("method", r.Method))
		return
	}

	body, err := rc.readBody(r)
	if errors.Is(err, errReceiverBodyTooLarge) {
		rc.reject(w, receiverOutcomeTooLarge, http.StatusRequestEntityTooLarge, "request body too large")
		log.Info("flux event rejected", slog.String("outcome", receiverOutcomeTooLarge), slog.Int64("max_body_bytes", rc.maxBody))
		return
	}
	if err != nil {
		rc.reject(w, receiverOutcomeMalformed, http.StatusBadRequest, "unreadable request body")
		log.Info("flux event rejected", slog.String("outcome", receiverOutcomeMalformed), slog.Any("error", err))
		return
	}

	if len(rc.key) > 0 {
		if err := rc.verify(r.Header, body); err != nil {
			msg := "invalid signature"
			switch {
			case errors.Is(err, ErrSignatureMissing):
				msg = "missing signature"
			case errors.Is(err, ErrSignatureSHA1):
				msg = "sha1 signatures are not accepted"
			}
			rc.reject(w, receiverOutcomeUnauthorized, http.StatusUnauthorized, msg)
			// err is one of signature.go's fixed strings: neither key nor signature.
			log.Warn("flux event rejected", slog.String("outcome", receiverOutcomeUnauthorized), slog.Any("error", err))
			return
		}
	}

	// Unknown fields are allowed so that newer Flux versions keep working.
	var ev eventv1beta1.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.reject(w, receiverOutcomeMalformed, http.StatusBadRequest, "malformed event")
		log.Info("flux event rejected", slog.String("outcome", receiverOutcomeMalformed), slog.Any("error", err))
		return
	}
	n, err := NotificationFromEvent(&ev, r.Header.Get(controllerHeader))
	switch {
	case errors.Is(err, ErrEventKindUnsupported):
		rc.requests.WithLabelValues(receiverOutcomeIgnored).Inc()
		w.WriteHeader(http.StatusAccepted)
		log.Debug("flux event ignored", slog.String("kind", ev.InvolvedObject.Kind), slog.String("api_version", ev.InvolvedObject.APIVersion))
		return
	case err != nil:
		rc.reject(w, receiverOutcomeMalformed, http.StatusBadRequest, "malformed event")
		log.Info("flux event rejected", slog.String("outcome", receiverOutcomeMalformed), slog.Any("error", err))
		return
	}

	rc.requeuer.Requeue(r.Context(), n.App, n)
	rc.requests.WithLabelValues(receiverOutcomeAccepted).Inc()
	w.WriteHeader(http.StatusAccepted)
	log.Debug("flux event accepted",
		slog.String("app", n.App.String()),
		slog.String("revision", n.Revision),
		slog.String("reason", n.Reason),
		slog.String("severity", n.Severity),
		slog.String("controller", n.Controller))
}

// readBody reads at most maxBody bytes; one byte more tells an oversized body from one
// of exactly the cap.
func (rc *Receiver) readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > rc.maxBody {
		return nil, errReceiverBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, rc.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > rc.maxBody {
		return nil, errReceiverBodyTooLarge
	}
	return body, nil
}

// verify checks X-Signature. Two signature headers are refused rather than picking one.
func (rc *Receiver) verify(h http.Header, body []byte) error {
	values := h.Values(SignatureHeader)
	switch len(values) {
	case 0:
		return ErrSignatureMissing
	case 1:
		return VerifySignature(rc.key, body, values[0], rc.allowSHA1)
	default:
		return ErrSignatureMalformed
	}
}

func (rc *Receiver) reject(w http.ResponseWriter, outcome string, code int, msg string) {
	rc.requests.WithLabelValues(outcome).Inc()
	http.Error(w, msg, code)
}
