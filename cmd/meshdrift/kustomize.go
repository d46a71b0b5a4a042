package main

import (
	"fmt"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/meshdrift/meshdrift/reconcile/checks"
)

// kustomizationFiles are the names kustomize looks for, in its order.
var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// renderKustomization builds a kustomize directory in-process, as kustomize-controller
// does (kustomize/api, files only under the directory, no plugins), and parses the result.
// Origins name the directory and the line in the rendered stream: the objects of an
// overlay have no single source line.
func renderKustomization(dir string) ([]checks.Manifest, error) {
	opts := krusty.MakeDefaultOptions()
	k := krusty.MakeKustomizer(opts)
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	data, err := rm.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return checks.ParseManifests(dir+" (kustomize build)", data)
}
