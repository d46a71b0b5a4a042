package checks

import (
	"slices"
	"strconv"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
)

// fieldLines maps a field path within one object of a manifest file to its line. It
// holds the object's YAML node tree as parsed, and the line in the file the tree's
// line 1 stands for.
type fieldLines struct {
	node   *yaml3.Node
	offset int // added to node lines: the document's first line in the file, minus one
}

// LineOf returns the line of the field a Result.Path names
// ("spec.http[0].route[1].destination.host"): the line of its key, or of the list item
// an index ends on. When the path goes further than the file (a field a default put
// there), the line of the deepest part the file has; the object's first line when the
// origin has no tree (objects read from the cluster). Locate also looks in patches.
func (o Origin) LineOf(path string) int {
	line, _ := o.lookup(path)
	return line
}

// Locate returns the file and line of the field a Result.Path names: in the last patch
// (see Patched) that writes the whole path, else in the object's own file as LineOf.
func (o Origin) Locate(path string) (file string, line int) {
	for i := len(o.patches) - 1; i >= 0; i-- {
		if l, whole := o.patches[i].lookup(path); whole {
			return o.patches[i].File, l
		}
	}
	return o.File, o.LineOf(path)
}

// Patched returns o with patches applied over the object, in the order they were
// applied (kustomize overlays): Locate names a patch that writes a field rather than the
// object's file, where the patched value is not.
func (o Origin) Patched(patches ...Origin) Origin {
	o.patches = append(slices.Clip(o.patches), patches...)
	return o
}

// lookup returns the line of the deepest part of path the tree has, and whether that
// is the whole path.
func (o Origin) lookup(path string) (int, bool) {
	if o.fields == nil || o.fields.node == nil {
		return o.Line, false
	}
	n := o.fields.node
	line := n.Line
	steps := splitPath(path)
	for _, step := range steps {
		next, at := child(n, step)
		if next == nil {
			return line + o.fields.offset, false
		}
		n, line = next, at
	}
	return line + o.fields.offset, true
}

// pathStep is one part of a field path: a map key, or a list index (key "").
type pathStep struct {
	key   string
	index int
}

// splitPath splits "a.b[1][2].c" into a, b, [1], [2], c. Keys with dots or brackets
// are not used in checks' paths.
func splitPath(path string) []pathStep {
	var out []pathStep
	for _, part := range strings.Split(path, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key != "" {
			out = append(out, pathStep{key: key})
		}
		for rest != "" {
			idx, after, ok := strings.Cut(rest, "]")
			if !ok {
				break
			}
			i, err := strconv.Atoi(idx)
			if err != nil {
				break
			}
			out = append(out, pathStep{index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return out
}

// child returns the node a step leads to from n and the line to report for it: a map
// key's line (where "host:" is written), or a list item's.
func child(n *yaml3.Node, step pathStep) (*yaml3.Node, int) {
	for n != nil && (n.Kind == yaml3.DocumentNode || n.Kind == yaml3.AliasNode) {
		if n.Kind == yaml3.DocumentNode {
			if len(n.Content) == 0 {
				return nil, 0
			}
			n = n.Content[0]
		} else {
			n = n.Alias
		}
	}
	if n == nil {
		return nil, 0
	}
	if step.key != "" {
		if n.Kind != yaml3.MappingNode {
			return nil, 0
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == step.key {
				return n.Content[i+1], n.Content[i].Line
			}
		}
		return nil, 0
	}
	if n.Kind != yaml3.SequenceNode || step.index < 0 || step.index >= len(n.Content) {
		return nil, 0
	}
	item := n.Content[step.index]
	return item, item.Line
}
