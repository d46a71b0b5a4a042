package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/reconcile/checks"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// maxManifestBytes bounds one manifest file or stdin.
const maxManifestBytes = 32 << 20

const validateUsage = `usage: meshdrift validate [-o text|json|sarif] PATH...   check mesh manifests offline ("-" reads stdin)
       meshdrift validate --config FILE                    check a configuration file
`

// runValidate checks a configuration file (--config), manifests (PATH arguments), or both.
func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, validateUsage); fs.PrintDefaults() }
	file := fs.String("config", "", "configuration file to check")
	format := fs.String("o", "text", "output format for manifest checks: text, json or sarif")
	// Flags may follow paths (validate dir -o json): parse, take one path, parse again.
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		paths, args = append(paths, fs.Arg(0)), fs.Args()[1:]
	}
	if *file == "" && len(paths) == 0 {
		fmt.Fprint(stderr, "meshdrift validate: give --config FILE or manifest paths\n"+validateUsage)
		return exitUsage
	}
	switch *format {
	case "text", "json", "sarif":
	default:
		fmt.Fprintf(stderr, "meshdrift validate: -o %q: must be text, json or sarif\n", *format)
		return exitUsage
	}
	if *file != "" {
		if _, err := config.Load(*file); err != nil {
			fmt.Fprintf(stderr, "meshdrift validate: %v\n", err)
			return exitProblem
		}
		if len(paths) == 0 {
			fmt.Fprintf(stdout, "%s: valid\n", *file)
			return exitOK
		}
	}
	return validateManifests(paths, *format, os.Stdin, stdout, stderr)
}

// located is a check result with where its object was read.
type located struct {
	checks.Result
	checks.Origin
}

func validateManifests(paths []string, format string, stdin io.Reader, stdout, stderr io.Writer) int {
	snap := checks.NewSnapshot()
	var errs []error
	for _, p := range paths {
		ms, err := readManifests(p, stdin)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, m := range ms {
			snap.Add(m.Object, m.Origin)
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(stderr, "meshdrift validate: %v\n", errors.Join(errs...))
		return exitUsage
	}
	results, skipped := checks.Run(context.Background(), snap, checks.All())
	found := make([]located, 0, len(results))
	for _, r := range results {
		o, _ := snap.Origin(r.Object)
		// The line of the field in error, not of the document; in a kustomize patch
		// when one wrote it.
		file, line := o.Locate(r.Path)
		found = append(found, located{r, checks.Origin{File: file, Line: line}})
	}
	slices.SortStableFunc(found, func(a, b located) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	var err error
	switch format {
	case "json":
		err = writeJSON(stdout, found, skipped)
	case "sarif":
		err = writeSARIF(stdout, found)
	default:
		for _, f := range found {
			fmt.Fprintf(stdout, "%s:%d: %s %s %s/%s %s: %s\n", f.File, f.Line, f.Code, f.Object.Kind, f.Object.Namespace, f.Object.Name, f.Path, f.Message)
		}
		if len(skipped) > 0 {
			var codes []string
			for _, s := range skipped {
				codes = append(codes, string(s.Code))
			}
			fmt.Fprintf(stderr, "meshdrift validate: %d checks need a live cluster and were skipped (%s)\n", len(skipped), strings.Join(codes, ", "))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift validate: %v\n", err)
		return exitUsage
	}
	if len(found) > 0 {
		return exitProblem
	}
	return exitOK
}

// readManifests reads a file, every .yaml/.yml/.json file under a directory (hidden
// directories skipped; a directory with a kustomization is rendered with kustomize), or
// stdin for "-".
func readManifests(path string, stdin io.Reader) ([]checks.Manifest, error) {
	if path == "-" {
		data, err := readLimited(stdin)
		if err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
		return checks.ParseManifests("<stdin>", data)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return readManifestFile(path)
	}
	var out []checks.Manifest
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			for _, k := range kustomizationFiles {
				if _, err := os.Stat(filepath.Join(p, k)); err == nil {
					// A kustomize directory is validated as rendered, never file by file:
					// its patches are not objects.
					ms, err := renderKustomization(p)
					out = append(out, ms...)
					if err != nil {
						return err
					}
					return filepath.SkipDir
				}
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".json":
			ms, err := readManifestFile(p)
			out = append(out, ms...)
			return err
		}
		return nil
	})
	return out, err
}

func readManifestFile(path string) ([]checks.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readLimited(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return checks.ParseManifests(path, data)
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err == nil && len(data) > maxManifestBytes {
		err = fmt.Errorf("larger than %d bytes", maxManifestBytes)
	}
	return data, err
}

type jsonResult struct {
	File     string            `json:"file"`
	Line     int               `json:"line"`
	Code     findings.Code     `json:"code"`
	Name     string            `json:"name"`
	Severity findings.Severity `json:"severity"`
	Object   jsonObject        `json:"object"`
	Path     string            `json:"path"`
	Message  string            `json:"message"`
}

type jsonObject struct {
	Group     string `json:"group"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type jsonSkipped struct {
	Check  string        `json:"check"`
	Code   findings.Code `json:"code"`
	Reason string        `json:"reason"`
}

func writeJSON(w io.Writer, found []located, skipped []checks.Skipped) error {
	out := struct {
		Results []jsonResult  `json:"results"`
		Skipped []jsonSkipped `json:"skipped"`
	}{Results: []jsonResult{}, Skipped: []jsonSkipped{}}
	for _, f := range found {
		e, _ := findings.Lookup(f.Code)
		out.Results = append(out.Results, jsonResult{File: f.File, Line: f.Line, Code: f.Code, Name: e.Name, Severity: e.Severity,
			Object: jsonObject{f.Object.Group, f.Object.Kind, f.Object.Namespace, f.Object.Name}, Path: f.Path, Message: f.Message})
	}
	for _, s := range skipped {
		out.Skipped = append(out.Skipped, jsonSkipped{Check: s.Name, Code: s.Code, Reason: s.Reason})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
