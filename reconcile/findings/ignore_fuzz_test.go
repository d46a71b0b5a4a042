package findings

import (
	"slices"
	"testing"
)

// The annotation's value is whatever someone wrote on an object in the cluster.
func FuzzParseIgnore(f *testing.F) {
	for _, s := range []string{"MD0203,MD0301", " md0201 ,, MD0201\tMD0999", "", "MD", "MD02031", "ÿMD0201,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		codes := ParseIgnore(v)
		for i, c := range codes {
			if !codePattern.MatchString(string(c)) {
				t.Fatalf("ParseIgnore(%q) returned %q", v, c)
			}
			if slices.Contains(codes[:i], c) {
				t.Fatalf("ParseIgnore(%q) returned %q twice", v, c)
			}
		}
	})
}
