package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/meshdrift/meshdrift/internal/buildinfo"
	"github.com/meshdrift/meshdrift/reconcile/checks"
	"github.com/meshdrift/meshdrift/reconcile/findings"
)

// The minimal SARIF 2.1.0 shape code-scanning UIs (GitHub, GitLab) accept: one run, the
// tool with a rule per check that can run offline, and one result per problem located by
// file and line.

const (
	sarifSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
	sarifDocPage = "https://github.com/meshdrift/meshdrift/blob/main/" + findings.DocPath
)

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string    `json:"id"`
	Name                 string    `json:"name"`
	ShortDescription     sarifText `json:"shortDescription"`
	FullDescription      sarifText `json:"fullDescription"`
	HelpURI              string    `json:"helpUri"`
	DefaultConfiguration struct {
		Level string `json:"level"`
	} `json:"defaultConfiguration"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation struct {
		ArtifactLocation struct {
			URI string `json:"uri"`
		} `json:"artifactLocation"`
		Region struct {
			StartLine int `json:"startLine"`
		} `json:"region"`
	} `json:"physicalLocation"`
}

func sarifLevel(s findings.Severity) string {
	switch s {
	case findings.SeverityCritical:
		return "error"
	case findings.SeverityInfo:
		return "note"
	default:
		return "warning"
	}
}

func writeSARIF(w io.Writer, found []located) error {
	driver := sarifDriver{Name: "meshdrift", Version: buildinfo.Version, InformationURI: "https://github.com/meshdrift/meshdrift"}
	index := map[findings.Code]int{}
	for _, c := range checks.All() {
		md := c.Metadata()
		if md.NeedsLive {
			continue
		}
		e, ok := findings.Lookup(md.Code)
		if !ok {
			return fmt.Errorf("check %s: code %s not in the catalog", md.Name, md.Code)
		}
		r := sarifRule{ID: string(e.Code), Name: e.Name, ShortDescription: sarifText{md.Description},
			FullDescription: sarifText{e.Description}, HelpURI: findings.DocURL(sarifDocPage, e.Code)}
		r.DefaultConfiguration.Level = sarifLevel(e.Severity)
		index[e.Code] = len(driver.Rules)
		driver.Rules = append(driver.Rules, r)
	}
	results := []sarifResult{}
	for _, f := range found {
		e, _ := findings.Lookup(f.Code)
		var loc sarifLocation
		// SARIF wants a URI reference; forward slashes, relative paths stay relative.
		loc.PhysicalLocation.ArtifactLocation.URI = filepath.ToSlash(f.File)
		loc.PhysicalLocation.Region.StartLine = max(f.Line, 1)
		results = append(results, sarifResult{RuleID: string(f.Code), RuleIndex: index[f.Code], Level: sarifLevel(e.Severity),
			Message:   sarifText{fmt.Sprintf("%s %s/%s %s: %s", f.Object.Kind, f.Object.Namespace, f.Object.Name, f.Path, f.Message)},
			Locations: []sarifLocation{loc}})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: sarifSchema, Version: "2.1.0", Runs: []sarifRun{{Tool: sarifTool{Driver: driver}, Results: results}}})
}
