package mesh

import (
	"strings"
	"testing"

	"github.com/meshdrift/meshdrift/reconcile"
)

// FuzzParseTrackingID: annotations are written by anyone who can edit the object. The
// parser must not panic, must accept exactly what it can print back unchanged, and what it
// accepts must attribute to a named app.
func FuzzParseTrackingID(f *testing.F) {
	for _, s := range []string{
		"reviews:networking.istio.io/VirtualService:bookinfo/reviews",
		"team-a_reviews:gateway.networking.k8s.io/HTTPRoute:bookinfo/reviews",
		"infra:/Namespace:/bookinfo",
		"app:g/K:ns/a:b",
		"a:b:c",
		"::/",
		"_:/K:/n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseTrackingID(s)
		if !ok {
			if id != (trackingID{}) {
				t.Fatalf("rejected %q but returned %+v", s, id)
			}
			return
		}
		if got := id.String(); got != s {
			t.Fatalf("parsed %q as %+v, which prints as %q", s, id, got)
		}
		// As in Argo CD, only the app, group and kind are free of colons: the namespace
		// and name come from the rest after the second one.
		if id.App == "" || id.Kind == "" || id.Name == "" || strings.Contains(id.App, ":") ||
			strings.ContainsAny(id.Group+id.Kind, ":/") || strings.Contains(id.Namespace, "/") {
			t.Fatalf("accepted %q with bad parts %+v", s, id)
		}
		ref := reconcile.ObjectRef{Group: id.Group, Kind: id.Kind, Namespace: id.Namespace, Name: id.Name}
		owner := gitOpsOwner(ref, nil, map[string]string{argoTrackingAnnotation: s})
		if owner.Source != reconcile.SourceArgoCD || owner.Kind != "Application" || owner.Name == "" {
			t.Fatalf("tracking id %q of its own object gave owner %v", s, owner)
		}
		if owner.Namespace != "" && owner.Namespace+"_"+owner.Name != id.App {
			t.Fatalf("owner %v does not spell app %q", owner, id.App)
		}
	})
}
