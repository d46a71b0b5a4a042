package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/meshdrift/meshdrift/reconcile/checks"
)

// kustomizationFiles are the names kustomize looks for, in its order.
var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// Annotations kustomize writes when a kustomization's buildMetadata asks for them.
const (
	originAnnotation          = "config.kubernetes.io/origin"
	transformationsAnnotation = "alpha.config.kubernetes.io/transformations"
)

// renderKustomization builds a kustomize directory in-process, as kustomize-controller
// does (kustomize/api, files only under the directory, no plugins), and parses the result.
//
// Each object's origin is the file in the overlay or base it came from, so that a
// problem is reported at the line people edit: the build runs with kustomize's
// buildMetadata originAnnotations and transformerAnnotations switched on (the top
// kustomization's buildMetadata applies to its bases), which name each object's source
// file and the kustomizations whose patches changed it; a field a patch file writes is
// reported in that patch. The annotations are removed again unless the kustomization
// asked for them itself. Objects with no local source (remote bases, generators) keep
// the rendered stream as their origin: the directory and the line in `kustomize build`
// output.
func renderKustomization(dir string) ([]checks.Manifest, error) {
	fs, asked, err := withBuildMetadata(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(fs, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	data, err := rm.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	ms, err := checks.ParseManifests(dir+" (kustomize build)", data)
	if err != nil {
		return nil, err
	}
	sources := map[string][]checks.Manifest{} // parsed source files, by path
	for i, m := range ms {
		ann := m.Object.GetAnnotations()
		origin, transformations := ann[originAnnotation], ann[transformationsAnnotation]
		if !slices.Contains(asked, types.OriginAnnotations) {
			delete(ann, originAnnotation)
		}
		if !slices.Contains(asked, types.TransformerAnnotations) {
			delete(ann, transformationsAnnotation)
		}
		if len(ann) == 0 {
			ann = nil
		}
		m.Object.SetAnnotations(ann)
		if o, ok := sourceOrigin(dir, m.Object, origin, transformations, sources); ok {
			ms[i].Origin = o
		}
	}
	return ms, nil
}

// onDiskWithKustomization is the disk with one kustomization file's content replaced.
type onDiskWithKustomization struct {
	filesys.FileSystem
	path    string
	content []byte
}

func (f onDiskWithKustomization) ReadFile(path string) ([]byte, error) {
	if samePath(path, f.path) {
		return f.content, nil
	}
	return f.FileSystem.ReadFile(path)
}

func samePath(a, b string) bool {
	if a == b {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// withBuildMetadata returns fs with dir's kustomization asking for origin and
// transformer annotations, and the buildMetadata the kustomization asked for itself.
func withBuildMetadata(fs filesys.FileSystem, dir string) (filesys.FileSystem, []string, error) {
	for _, name := range kustomizationFiles {
		path, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, err
		}
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var kust map[string]any
		if err := yaml.Unmarshal(data, &kust); err != nil || kust == nil {
			// kustomize reports the error itself.
			return fs, nil, nil
		}
		var asked []string
		if list, ok := kust["buildMetadata"].([]any); ok {
			for _, v := range list {
				if s, ok := v.(string); ok {
					asked = append(asked, s)
				}
			}
		}
		want := slices.Clone(asked)
		for _, opt := range []string{types.OriginAnnotations, types.TransformerAnnotations} {
			if !slices.Contains(want, opt) {
				want = append(want, opt)
			}
		}
		kust["buildMetadata"] = want
		out, err := yaml.Marshal(kust)
		if err != nil {
			return nil, nil, err
		}
		return onDiskWithKustomization{FileSystem: fs, path: path, content: out}, asked, nil
	}
	return fs, nil, nil
}

// kustomizeOrigin is the part of kustomize's origin annotation meshdrift reads.
type kustomizeOrigin struct {
	Path         string `json:"path"`
	Repo         string `json:"repo"`
	ConfiguredIn string `json:"configuredIn"`
	ConfiguredBy struct {
		Kind string `json:"kind"`
	} `json:"configuredBy"`
}

// sourceOrigin finds where an object of a kustomize build was written: its document in
// the source file the origin annotation names, with the patch files of the
// kustomizations whose patch transformers changed it.
func sourceOrigin(dir string, obj *unstructured.Unstructured, originAnn, transformationsAnn string,
	sources map[string][]checks.Manifest) (checks.Origin, bool) {
	var origin kustomizeOrigin
	if originAnn == "" || yaml.Unmarshal([]byte(originAnn), &origin) != nil || origin.Repo != "" || origin.Path == "" {
		return checks.Origin{}, false
	}
	src, ok := findDocument(filepath.Join(dir, origin.Path), obj, sources)
	if !ok {
		return checks.Origin{}, false
	}
	var transformations []kustomizeOrigin
	if transformationsAnn != "" {
		_ = yaml.Unmarshal([]byte(transformationsAnn), &transformations)
	}
	var patches []checks.Origin
	for _, tr := range transformations {
		if tr.Repo != "" || tr.ConfiguredIn == "" {
			continue
		}
		switch tr.ConfiguredBy.Kind {
		case "PatchTransformer", "PatchStrategicMergeTransformer":
		default:
			continue
		}
		for _, file := range patchFiles(filepath.Join(dir, tr.ConfiguredIn)) {
			if p, ok := findDocument(file, obj, sources); ok {
				patches = append(patches, p)
			}
		}
	}
	return src.Patched(patches...), true
}

// patchFiles lists the patch files a kustomization names (patches[].path and
// patchesStrategicMerge), relative to the working directory. Inline patches have no
// file of their own.
func patchFiles(kustomization string) []string {
	data, err := os.ReadFile(kustomization)
	if err != nil {
		return nil
	}
	var kust struct {
		Patches []struct {
			Path string `json:"path"`
		} `json:"patches"`
		PatchesStrategicMerge []string `json:"patchesStrategicMerge"`
	}
	if yaml.Unmarshal(data, &kust) != nil {
		return nil
	}
	base := filepath.Dir(kustomization)
	var out []string
	for _, p := range kust.Patches {
		if p.Path != "" {
			out = append(out, filepath.Join(base, p.Path))
		}
	}
	for _, p := range kust.PatchesStrategicMerge {
		// An entry may be an inline patch rather than a file name.
		if _, err := os.Stat(filepath.Join(base, p)); err == nil {
			out = append(out, filepath.Join(base, p))
		}
	}
	return out
}

// findDocument returns the origin of obj's document in a file: the one of the same kind
// and name, else the only one of that kind (a namePrefix or nameSuffix renamed it).
func findDocument(file string, obj *unstructured.Unstructured, sources map[string][]checks.Manifest) (checks.Origin, bool) {
	ms, ok := sources[file]
	if !ok {
		data, err := os.ReadFile(file)
		if err == nil && len(data) <= maxManifestBytes {
			ms, _ = checks.ParseManifests(file, data)
		}
		sources[file] = ms
	}
	var sameKind []checks.Manifest
	for _, m := range ms {
		if m.Object.GetKind() != obj.GetKind() {
			continue
		}
		if m.Object.GetName() == obj.GetName() {
			return m.Origin, true
		}
		sameKind = append(sameKind, m)
	}
	if len(sameKind) == 1 {
		return sameKind[0].Origin, true
	}
	return checks.Origin{}, false
}
