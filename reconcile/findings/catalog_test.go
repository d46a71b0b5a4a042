package findings

import (
	"regexp"
	"testing"
	"time"
)

func TestCatalog(t *testing.T) {
	placeholder := regexp.MustCompile(`\{[a-z]+\}`)
	known := map[string]bool{"{app}": true, "{revision}": true, "{object}": true, "{istiod}": true,
		"{proxy}": true, "{source}": true, "{detail}": true, "{evidence}": true}
	codes, names := map[Code]bool{}, map[string]bool{}
	var prev Code
	for _, e := range Catalog() {
		if !codePattern.MatchString(string(e.Code)) {
			t.Errorf("%s: not MD and four digits", e.Code)
		}
		if e.Code <= prev {
			t.Errorf("%s: catalog not in code order (after %s)", e.Code, prev)
		}
		prev = e.Code
		// 05xx-08xx are reserved for the semantic checks.
		if g := e.Code[2:4]; g < "01" || g > "08" {
			t.Errorf("%s: outside the allotted groups", e.Code)
		}
		if codes[e.Code] || names[e.Name] {
			t.Errorf("%s %s: code or name used twice", e.Code, e.Name)
		}
		codes[e.Code], names[e.Name] = true, true
		switch e.Severity {
		case SeverityCritical, SeverityWarning, SeverityInfo:
		default:
			t.Errorf("%s: severity %q", e.Code, e.Severity)
		}
		if e.Name == "" || e.Summary == "" || e.Description == "" || e.Remedy == "" || e.For < 0 {
			t.Errorf("%s: incomplete entry %+v", e.Code, e)
		}
		for _, p := range placeholder.FindAllString(e.Summary, -1) {
			if !known[p] {
				t.Errorf("%s: unknown placeholder %s in %q", e.Code, p, e.Summary)
			}
		}
		if err := ValidCode(e.Code); err != nil && !e.Retired {
			t.Errorf("%s: %v", e.Code, err)
		}
	}
	for _, c := range []Code{CodeAppSyncFailed, CodeAppDegraded, CodeAppOutOfSync, CodeAppRevisionMismatch, CodeAppSuspendedDrift,
		CodeChangeNACKed, CodeChangeStale, CodeChangeNotPushed, CodeChangeUnknown,
		CodeIstiodUnreachable, CodeIstiodRestricted, CodeIstiodRejected, CodeIstiodPushErrors, CodeProxyRejecting, CodeIstiodClockOffset,
		CodeSourceUnreachable, CodeSourceNotInstalled} {
		if !codes[c] {
			t.Errorf("%s has a constant but no catalog entry", c)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{
		For:    map[Code]time.Duration{"MD0999": time.Minute, CodeAppOutOfSync: -time.Second},
		Ignore: []IgnoreRule{{}, {Code: "NACK"}, {Namespace: "legacy"}},
	}.Validate()
	want := "for MD0103: -1s must not be negative\n" +
		"for: code MD0999: not in the catalog (see docs/findings.md)\n" +
		"ignore[0]: set at least one of code, namespace, app\n" +
		`ignore[1]: code "NACK": must be MD and four digits, e.g. MD0201`
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v, want\n%s", err, want)
	}
	if err := (Config{For: map[Code]time.Duration{CodeAppOutOfSync: time.Hour}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDocURL(t *testing.T) {
	e, _ := Lookup(CodeChangeNACKed)
	if got := DocURL("https://meshdrift.io/docs/findings.md", e.Code); got != "https://meshdrift.io/docs/findings.md#"+e.Anchor() || e.Anchor() != "md0201" {
		t.Fatalf("DocURL = %q, anchor %q", got, e.Anchor())
	}
}
