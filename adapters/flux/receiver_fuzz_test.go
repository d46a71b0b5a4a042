package flux

import (
	"encoding/json"
	"net/http"
	"testing"

	eventv1beta1 "github.com/fluxcd/pkg/apis/event/v1beta1"
)

// FuzzReceiverBody posts arbitrary bodies to an unsigned and a signing receiver. Neither may
// panic; both must agree (a valid signature changes nothing about how a body is judged);
// only a 202 may requeue, at most once, with a notification that matches the body.
func FuzzReceiverBody(f *testing.F) {
	_, golden := readGoldenEvent(f)
	f.Add(golden)
	for _, seed := range []string{
		``,
		`null`,
		`{}`,
		`[]`,
		`{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo"},"metadata":{"helm.toolkit.fluxcd.io/revision":"6.7.1"}}`,
		`{"involvedObject":{"kind":"Kustomization","namespace":"demo","name":"a","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},"metadata":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:0"}}`,
		`{"involvedObject":{"kind":"GitRepository","namespace":"flux-system","name":"demo"}}`,
		`{"involvedObject":{"kind":"Kustomization","namespace":"demo","name":"a"},"timestamp":"yesterday"}`,
		`{"involvedObject":{"kind":"Kustomization","namespace":"demo","name":"a"},"metadata":{"revision":1}}`,
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		plain := newReceiverTestRig(t, ReceiverConfig{InsecureNoAuth: true})
		signing := newReceiverTestRig(t, ReceiverConfig{HMACKey: []byte(receiverTestKey)})
		header := http.Header{"Content-Type": {"application/json"}}
		signedHeader := header.Clone()
		signedHeader.Set(SignatureHeader, sign(t, "sha256", receiverTestKey, body))

		code := plain.serve(newEventRequest(header, body)).Code
		if signedCode := signing.serve(newEventRequest(signedHeader, body)).Code; signedCode != code {
			t.Fatalf("signed status %d != unsigned status %d", signedCode, code)
		}
		switch code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("unexpected status %d", code)
		}

		for _, rig := range []*receiverTestRig{plain, signing} {
			var total float64
			for _, v := range rig.requestCounts(t) {
				total += v
			}
			if total != 1 {
				t.Errorf("counted %v outcomes for one request", total)
			}
			calls := rig.requeuer.recorded()
			if len(calls) > 1 || (len(calls) == 1 && code != http.StatusAccepted) {
				t.Fatalf("status %d with %d requeues", code, len(calls))
			}
			if len(calls) == 0 {
				continue
			}
			c := calls[0]
			if c.key != c.n.App {
				t.Errorf("key %v != notification app %v", c.key, c.n.App)
			}
			if _, ok := receiverKindGroups[c.key.Kind]; !ok || c.key.Name == "" || c.key.Namespace == "" {
				t.Errorf("requeued an incomplete or foreign app %v", c.key)
			}
			var ev eventv1beta1.Event
			if err := json.Unmarshal(body, &ev); err != nil {
				t.Fatalf("accepted a body encoding/json rejects: %v", err)
			}
			want, err := NotificationFromEvent(&ev, "")
			if err != nil || !sameNotification(want, c.n) {
				t.Errorf("requeued %+v, decoding the body gives %+v, %v", c.n, want, err)
			}
		}
	})
}
