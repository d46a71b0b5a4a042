package checks

import (
	"bytes"
	"fmt"
	"regexp"

	yaml3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// Manifest is one object read from a file.
type Manifest struct {
	Object *unstructured.Unstructured
	Origin Origin
}

var docSeparator = regexp.MustCompile(`^---\s*(#.*)?$`)

// ParseManifests reads the Kubernetes objects of a multi-document YAML (or JSON) file;
// file names it in origins and errors. Each origin keeps the document's node tree, so
// that Origin.LineOf finds the line of a field. Items of a List are returned one by one,
// each at its own line. Empty documents are skipped; a document that is not an object with
// apiVersion and kind is an error.
func ParseManifests(file string, data []byte) ([]Manifest, error) {
	var out []Manifest
	lines := bytes.SplitAfter(data, []byte("\n"))
	start, first := 0, 0 // first: line of the document's first content, 0 while none
	flush := func(end int) error {
		defer func() { start, first = end, 0 }()
		if first == 0 {
			return nil
		}
		doc := bytes.Join(lines[start:end], nil)
		// Through JSON with the API machinery's decoder, so that numbers are int64 as in
		// objects read from the API server (sigs.k8s.io/yaml alone gives float64).
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, first, err)
		}
		var obj map[string]any
		if err := utiljson.Unmarshal(js, &obj); err != nil {
			return fmt.Errorf("%s:%d: %w", file, first, err)
		}
		if obj == nil {
			return nil
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return fmt.Errorf("%s:%d: not a Kubernetes object (apiVersion and kind are required)", file, first)
		}
		// The same document as a node tree, for the lines of fields. The decoders agree
		// on what parses; should they not, fields fall back to the document's line.
		var root *yaml3.Node
		var tree yaml3.Node
		if yaml3.Unmarshal(doc, &tree) == nil && len(tree.Content) == 1 {
			root = tree.Content[0]
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return fmt.Errorf("%s:%d: %w", file, first, err)
			}
			items, _ := child(root, pathStep{key: "items"})
			for i := range list.Items {
				o := Origin{File: file, Line: first}
				if item, line := child(items, pathStep{index: i}); item != nil {
					o.Line, o.fields = line+start, &fieldLines{node: item, offset: start}
				}
				out = append(out, Manifest{Object: &list.Items[i], Origin: o})
			}
			return nil
		}
		o := Origin{File: file, Line: first}
		if root != nil {
			o.fields = &fieldLines{node: root, offset: start}
		}
		out = append(out, Manifest{Object: u, Origin: o})
		return nil
	}
	for i, l := range lines {
		trimmed := bytes.TrimSpace(l)
		if docSeparator.Match(bytes.TrimRight(l, "\r\n")) {
			if err := flush(i); err != nil {
				return out, err
			}
			start = i + 1
			continue
		}
		if first == 0 && len(trimmed) > 0 && trimmed[0] != '#' {
			first = i + 1
		}
	}
	if err := flush(len(lines)); err != nil {
		return out, err
	}
	return out, nil
}
