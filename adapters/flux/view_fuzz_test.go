package flux

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseInventoryID feeds arbitrary ids to the parser. It must not panic; what it
// accepts has a name and a kind, no '_' in any field, no ':' outside RBAC names, and
// formats back to the very same id.
func FuzzParseInventoryID(f *testing.F) {
	for _, seed := range []string{
		"default_foo__ConfigMap",
		"apps_reviews_networking.istio.io_VirtualService",
		"_istio-system__Namespace",
		"_system__controller__flux_rbac.authorization.k8s.io_ClusterRole",
		"default_a__b__ConfigMap",
		"___",
		"_",
		"",
		"a_b_c_d_e",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		ref, err := ParseInventoryID(id)
		if err != nil {
			if !errors.Is(err, ErrInventoryID) {
				t.Fatalf("error %v does not wrap ErrInventoryID", err)
			}
			return
		}
		if ref.Name == "" || ref.Kind == "" {
			t.Fatalf("accepted %q with an empty name or kind: %+v", id, ref)
		}
		for _, field := range []string{ref.Namespace, ref.Name, ref.Group, ref.Kind} {
			if strings.Contains(field, "_") {
				t.Fatalf("accepted %q with '_' in a field: %+v", id, ref)
			}
		}
		if strings.Contains(ref.Name, ":") && (ref.Group != rbacGroup || !rbacKinds[ref.Kind]) {
			t.Fatalf("accepted %q with ':' in a name that is not RBAC: %+v", id, ref)
		}
		if back := inventoryID(ref); back != id {
			t.Fatalf("ParseInventoryID(%q) = %+v, which formats as %q", id, ref, back)
		}
	})
}
