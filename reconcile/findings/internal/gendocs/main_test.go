package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/meshdrift/meshdrift/reconcile/findings"
)

const docFile = "../../../../" + findings.DocPath

func TestDocsCurrent(t *testing.T) {
	var want bytes.Buffer
	render(&want, findings.Catalog())
	got, err := os.ReadFile(docFile)
	if err != nil {
		t.Fatalf("%v: run `go generate ./reconcile/findings`", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("%s is stale: run `go generate ./reconcile/findings` and commit the result", findings.DocPath)
	}
}
