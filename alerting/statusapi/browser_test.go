package statusapi

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/internal/testbed"
)

// chromium returns the headless browser the bed uses (Debian's chromium). It skips the
// test where there is none, and fails it where the bed is required.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: runs without -short (make integration)")
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testbed.Required() {
		t.Fatal("chromium is not installed (make testbed installs Debian's chromium)")
	}
	t.Skip("chromium is not installed: run `make testbed`")
	return ""
}

// artifactDir is where tests keep what a person may want to look at afterwards:
// $MESHDRIFT_ARTIFACTS, or a new temporary directory (never inside the repository).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MESHDRIFT_ARTIFACTS")
	if dir == "" {
		d, err := os.MkdirTemp("", "meshdrift-artifacts-")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browse runs headless chromium on url with extra arguments and returns its stdout.
func browse(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// injected matches, in the serialized DOM, an element the payload would have created or
// an event handler attribute on any element: text nodes are serialized with &lt; and &gt;,
// so a "<" here always opens an element. The page has neither scripts nor images.
var injected = regexp.MustCompile(`(?i)<(script|img|iframe|svg|object|embed)\b|<[a-z][^>]*\son[a-z]+=`)

// TestPageInChromium loads the page in a real browser: a firing finding whose NACK text
// carries markup shows it as text, the link to the finding's page works, and screenshots
// are kept as artifacts.
func TestPageInChromium(t *testing.T) {
	bin := chromium(t)
	srv := httptest.NewServer(newFixtureHandler(t))
	defer srv.Close()
	artifacts := artifactDir(t)

	index := string(browse(t, bin, "--dump-dom", srv.URL+"/"))
	if !strings.Contains(index, "<title>Findings and apps · meshdrift</title>") {
		t.Fatalf("the index did not load (or its title was changed):\n%s", index)
	}
	if m := injected.FindString(index); m != "" {
		t.Errorf("the index DOM holds an injected element (%q):\n%s", m, index)
	}
	escaped := `&lt;script&gt;document.title="pwned"&lt;/script&gt;&lt;img src=x onerror="document.title='pwned'"&gt;`
	if !strings.Contains(index, escaped) {
		t.Errorf("the NACK text is not shown as text on the index:\n%s", index)
	}
	if !strings.Contains(index, "ChangeNACKed") || !strings.Contains(index, `class="badge sev-critical"`) {
		t.Errorf("the firing finding is not on the index:\n%s", index)
	}

	link := regexp.MustCompile(`<a class="finding-link" href="([^"]+)">ChangeNACKed</a>`).FindStringSubmatch(index)
	if link == nil {
		t.Fatalf("no link to the finding's page on the index:\n%s", index)
	}
	if link[1] != FindingPath("4f1c2a9e0b7d") {
		t.Errorf("finding link %q, want %q", link[1], FindingPath("4f1c2a9e0b7d"))
	}
	page := string(browse(t, bin, "--dump-dom", srv.URL+link[1]))
	if !strings.Contains(page, "<title>MD0201 ChangeNACKed · meshdrift</title>") || !strings.Contains(page, escaped) {
		t.Errorf("the finding page did not load with its evidence:\n%s", page)
	}
	if m := injected.FindString(page); m != "" {
		t.Errorf("the finding page DOM holds an injected element (%q):\n%s", m, page)
	}
	if !strings.Contains(page, `href="/apps/flux/Kustomization/flux-system/shop#obj-networking-istio-io-virtualservice-shop-reviews"`) {
		t.Errorf("the finding page does not link to its app and object:\n%s", page)
	}

	for name, target := range map[string]string{"index": "/", "finding": link[1], "app": "/apps/flux/Kustomization/flux-system/shop"} {
		shot := filepath.Join(artifacts, "statusapi-"+name+".png")
		browse(t, bin, "--screenshot="+shot, "--window-size=1400,1100", "--hide-scrollbars", srv.URL+target)
		b, err := os.ReadFile(shot)
		if err != nil || len(b) < 1000 || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("screenshot %s: %d bytes, %v", shot, len(b), err)
			continue
		}
		t.Logf("screenshot of the %s page: %s (%d bytes)", name, shot, len(b))
	}
}
