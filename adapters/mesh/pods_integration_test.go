package mesh_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/meshdrift/meshdrift/adapters/mesh"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/reconcile"
)

// Pods reach the lister from the real API server as metadata, with the meshes'
// annotations kept and every other annotation dropped; a relabel shows up.
func TestPodsMetadataOnly(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := namespace(t)
	md, err := metadata.NewForConfig(bed.kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	pods := mesh.NewPods(md, 0)
	testbed.RunInBackground(t, pods.Run)
	if got := pods.List(); got != nil {
		t.Fatalf("List before the first list = %v, want nil (not an empty cluster)", got)
	}
	pod := `apiVersion: v1
kind: Pod
metadata:
  name: ratings-v1-abc
  namespace: %s
  labels: {app: ratings, version: %s, istio.io/rev: canary}
  annotations:
    sidecar.istio.io/status: '{"revision":"canary"}'
    linkerd.io/proxy-version: stable-2.14.10
    checksum/config: 0123456789abcdef
spec:
  containers: [{name: app, image: example.invalid/ratings:1}]
`
	if _, err := bed.kube.Apply(context.Background(), "test", fmt.Sprintf(pod, ns, "v1")); err != nil {
		t.Fatal(err)
	}
	find := func() (reconcile.PodMeta, bool) {
		for _, p := range pods.List() {
			if p.Namespace == ns && p.Name == "ratings-v1-abc" {
				return p, true
			}
		}
		return reconcile.PodMeta{}, false
	}
	testbed.Eventually(t, 10*time.Second, "the pod listed", func() (bool, string) {
		_, ok := find()
		return ok, fmt.Sprintf("%d pods", len(pods.List()))
	})
	p, _ := find()
	wantAnn := map[string]string{"sidecar.istio.io/status": `{"revision":"canary"}`, "linkerd.io/proxy-version": "stable-2.14.10"}
	if !maps.Equal(p.Annotations, wantAnn) {
		t.Errorf("annotations = %v, want only the meshes' %v", p.Annotations, wantAnn)
	}
	if p.Labels["app"] != "ratings" || p.Labels["istio.io/rev"] != "canary" {
		t.Errorf("labels = %v", p.Labels)
	}
	if _, err := bed.kube.Apply(context.Background(), "test", fmt.Sprintf(pod, ns, "v2")); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 10*time.Second, "the relabel", func() (bool, string) {
		p, _ := find()
		return p.Labels["version"] == "v2", fmt.Sprintf("labels %v", p.Labels)
	})
	// Unchanged, the cache hands out the list it read last rather than reading it again.
	if a, b := pods.List(), pods.List(); len(a) == 0 || &a[0] != &b[0] {
		t.Error("an unchanged pod cache read its list again")
	}
}

// A pod cache that may not list pods never syncs and says why: the API server's
// Forbidden, which /readyz shows, rather than only client-go's log.
func TestPodsForbiddenSaysWhy(t *testing.T) {
	testbed.Need(t, bed.started)
	rc := rest.CopyConfig(bed.kube.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:meshdrift-system:without-rbac"}
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	pods := mesh.NewPods(md, 0)
	testbed.RunInBackground(t, pods.Run)
	testbed.Eventually(t, 10*time.Second, "the list error recorded", func() (bool, string) {
		err := pods.Err()
		return apierrors.IsForbidden(err), fmt.Sprintf("err %v", err)
	})
	if pods.HasSynced() || pods.List() != nil {
		t.Errorf("a forbidden pod cache reports synced %v with %d pods", pods.HasSynced(), len(pods.List()))
	}
}
