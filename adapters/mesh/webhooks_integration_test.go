package mesh_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/meshdrift/meshdrift/adapters/mesh"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// tagWebhook is a revision tag as `istioctl tag set` labels it. It has no webhooks: the
// labels are all meshdrift reads, and a real webhook would intercept the bed's pods.
const tagWebhook = `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: %s
  labels: {istio.io/tag: %s, istio.io/rev: %s, app: sidecar-injector}
webhooks: []
`

// Revision tags reach the lister from the real API server's MutatingWebhookConfiguration
// labels; a revision's own webhook (no istio.io/tag) is not a tag; a moved tag and a
// deleted one show up.
func TestRevisionTagsFromWebhookLabels(t *testing.T) {
	testbed.Need(t, bed.started)
	ctx := context.Background()
	md, err := metadata.NewForConfig(bed.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	tags := mesh.NewRevisionTags(md, 0)
	if got := tags.List(); got != nil {
		t.Fatalf("List before the first list = %v, want nil (tags unknown)", got)
	}
	prefix := strings.ToLower(t.Name())
	gvr := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
	t.Cleanup(func() {
		for _, n := range []string{prefix + "-prod", prefix + "-rev"} {
			_ = bed.kube.Dynamic.Resource(gvr).Delete(context.Background(), n, metav1.DeleteOptions{})
		}
	})
	apply := func(manifest string) {
		t.Helper()
		if _, err := bed.kube.Apply(ctx, "istioctl", manifest); err != nil {
			t.Fatal(err)
		}
	}
	apply(fmt.Sprintf(tagWebhook, prefix+"-prod", "prod-"+prefix, "1-24"))
	apply(fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: %s-rev
  labels: {istio.io/rev: 1-24, app: sidecar-injector}
webhooks: []
`, prefix))
	testbed.RunInBackground(t, tags.Run)
	mine := func() []reconcile.RevisionTag {
		return slices.DeleteFunc(tags.List(), func(rt reconcile.RevisionTag) bool { return !strings.HasSuffix(rt.Tag, prefix) })
	}
	expect := func(want []reconcile.RevisionTag) {
		t.Helper()
		testbed.Eventually(t, 10*time.Second, fmt.Sprintf("tags %v", want), func() (bool, string) {
			got := mine()
			return cmp.Equal(got, want), fmt.Sprintf("%v", got)
		})
	}
	expect([]reconcile.RevisionTag{{Tag: "prod-" + prefix, Revision: "1-24"}})
	// istioctl tag set prod --revision 1-25 --overwrite
	apply(fmt.Sprintf(tagWebhook, prefix+"-prod", "prod-"+prefix, "1-25"))
	expect([]reconcile.RevisionTag{{Tag: "prod-" + prefix, Revision: "1-25"}})
	if err := bed.kube.Dynamic.Resource(gvr).Delete(ctx, prefix+"-prod", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect([]reconcile.RevisionTag{})
	if tags.List() == nil {
		t.Error("List after the first list is nil; want an empty, known list")
	}
}
