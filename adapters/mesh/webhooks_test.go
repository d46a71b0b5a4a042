package mesh

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// The shipped ClusterRole must let meshdrift list and watch what its metadata-only
// informers read: one it may not read never syncs, and meshdrift never turns ready.
func TestShippedRBACCoversMetadataInformers(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "manifests", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []rbacv1.PolicyRule
	for doc := range bytes.SplitSeq(raw, []byte("\n---")) {
		var r rbacv1.ClusterRole
		if err := yaml.Unmarshal(doc, &r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == "ClusterRole" {
			rules = append(rules, r.Rules...)
		}
	}
	for _, gvr := range []schema.GroupVersionResource{namespacesGVR, podsGVR, mutatingWebhooksGVR} {
		for _, verb := range []string{"list", "watch"} {
			if !slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
				return slices.Contains(r.APIGroups, gvr.Group) && slices.Contains(r.Verbs, verb) &&
					(slices.Contains(r.Resources, gvr.Resource) || slices.Contains(r.Resources, "*"))
			}) {
				t.Errorf("manifests/rbac.yaml does not allow %s on %s", verb, gvr.GroupResource())
			}
		}
	}
}
