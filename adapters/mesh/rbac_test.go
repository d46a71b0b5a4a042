package mesh

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The shipped ClusterRole must let meshdrift list and watch every mesh kind it watches: a
// kind it may not read keeps the mesh watch from ever syncing.
func TestShippedRBACCoversMeshKinds(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "manifests", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	for doc := range bytes.SplitSeq(raw, []byte("\n---")) {
		var r rbacv1.ClusterRole
		if err := yaml.Unmarshal(doc, &r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == "ClusterRole" {
			role = &r
		}
	}
	if role == nil {
		t.Fatal("no ClusterRole in manifests/rbac.yaml")
	}
	allows := func(group, verb string) bool {
		for _, rule := range role.Rules {
			if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, "*") && slices.Contains(rule.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for group := range meshGroups() {
		for _, verb := range []string{"list", "watch"} {
			if !allows(group, verb) {
				t.Errorf("manifests/rbac.yaml does not allow %s on every resource of %s", verb, group)
			}
		}
	}
}
