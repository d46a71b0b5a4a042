package statusapi

import (
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

var hrefPattern = regexp.MustCompile(`href="([^"]*)"`)

// TestPagesEscapeClusterText: text from the cluster (a NACK, an app message) appears as
// text, never as markup, on every page that shows it.
func TestPagesEscapeClusterText(t *testing.T) {
	h := newFixtureHandler(t)
	for _, target := range []string{"/", "/findings/4f1c2a9e0b7d", "/findings/9a8b7c6d5e4f", "/apps/flux/Kustomization/flux-system/shop", "/apps/argocd/Application/argocd/payments"} {
		rec := get(t, h, target)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
		}
		body := rec.Body.String()
		for _, raw := range []string{"<script", "<img"} {
			if strings.Contains(body, raw) {
				t.Errorf("%s: raw %q in the page", target, raw)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;document.title=") {
			t.Errorf("%s: the escaped payload is not shown", target)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
			t.Errorf("%s: CSP %q", target, csp)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", target, ct)
		}
	}
}

// TestPageLinksResolve follows every link of the pages reachable from the index, and
// checks that every fragment names an element of its page.
func TestPageLinksResolve(t *testing.T) {
	h := newFixtureHandler(t)
	seen := map[string]string{}
	fragments := map[[2]string]string{} // {path, fragment} -> the page linking there
	queue := []string{"/"}
	for len(queue) > 0 {
		target := queue[0]
		queue = queue[1:]
		if _, ok := seen[target]; ok {
			continue
		}
		rec := get(t, h, target)
		seen[target] = rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", target, rec.Code)
			continue
		}
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
			continue
		}
		for _, m := range hrefPattern.FindAllStringSubmatch(rec.Body.String(), -1) {
			link := html.UnescapeString(m[1])
			path, frag, _ := strings.Cut(link, "#")
			if path == "" {
				path = target
			}
			if !strings.HasPrefix(path, "/") {
				t.Errorf("%s: link %q is not a path on this server", target, link)
				continue
			}
			if frag != "" {
				fragments[[2]string{path, frag}] = target
			}
			queue = append(queue, path)
		}
	}
	for pf, from := range fragments {
		if !strings.Contains(seen[pf[0]], `id="`+pf[1]+`"`) {
			t.Errorf("%s links to %s#%s, which has no such element", from, pf[0], pf[1])
		}
	}
	for _, want := range []string{"/findings/4f1c2a9e0b7d", "/apps/flux/Kustomization/flux-system/shop", "/api/v1/findings/4f1c2a9e0b7d", "/static/style.css",
		"/apps/argocd/Application/_/payments"} {
		if _, ok := seen[want]; !ok {
			t.Errorf("no link leads to %s", want)
		}
	}
}

func TestPageContent(t *testing.T) {
	h := newFixtureHandler(t)
	app := get(t, h, "/apps/flux/Kustomization/flux-system/shop").Body.String()
	for _, want := range []string{
		`id="obj-networking-istio-io-virtualservice-shop-reviews"`, // the anchor findings link to
		"applied</span> 2026-12-03T11:59:55Z by flux",
		"observed</span> 2026-12-03T12:00:00Z · generation 3 · by kustomize-controller",
		"to 2 proxies",
		"ACKed</span> 1/2 proxies",
		"NACKed</span> ratings-v1-xyz.shop (istiod istiod-0)",
		`href="/findings/4f1c2a9e0b7d"`,
		// The inventory links each object to its change and its findings.
		`<a href="#obj-networking-istio-io-virtualservice-shop-reviews">VirtualService shop/reviews</a>`,
		`<a href="/findings/4f1c2a9e0b7d">MD0201 ChangeNACKed</a>`,
	} {
		if !strings.Contains(app, want) {
			t.Errorf("app page lacks %q", want)
		}
	}
	pay := get(t, h, "/apps/argocd/Application/argocd/payments").Body.String()
	if !strings.Contains(pay, "last first push 0.020 s after the change, at 2026-12-03T12:00:00Z") {
		t.Errorf("payments page lacks the push time:\n%s", pay)
	}
	finding := get(t, h, "/findings/4f1c2a9e0b7d").Body.String()
	for _, want := range []string{
		`href="/apps/flux/Kustomization/flux-system/shop#obj-networking-istio-io-virtualservice-shop-reviews"`,
		"Propagation of VirtualService shop/reviews",
		"A proxy NACKed the config",
	} {
		if !strings.Contains(finding, want) {
			t.Errorf("finding page lacks %q", want)
		}
	}
	if rec := get(t, h, "/findings/nope"); rec.Code != http.StatusNotFound || rec.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("missing finding page: %d", rec.Code)
	}
}
