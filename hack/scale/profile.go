package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// pprofOverlay is added to cmd/meshdrift through `go build -overlay` when the harness is
// asked for profiles: meshdrift itself serves no pprof, and the harness must not change
// its source. It listens only when the harness sets the variable.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

// Added by hack/scale's profiling build only.
func init() {
	if addr := os.Getenv("MESHDRIFT_SCALE_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// buildProfiled builds meshdrift with the pprof overlay into dir and returns its path.
func buildProfiled(ctx context.Context, dir string) (string, error) {
	src, err := filepath.Abs(filepath.Join("cmd", "meshdrift", "zz_scale_pprof.go"))
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "zz_scale_pprof.go")
	if err := os.WriteFile(file, []byte(pprofOverlay), 0o644); err != nil {
		return "", err
	}
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{src: file}})
	if err != nil {
		return "", err
	}
	ovPath := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ovPath, overlay, 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "meshdrift-pprof")
	cmd := exec.CommandContext(ctx, "go", "build", "-overlay", ovPath, "-o", bin, "./cmd/meshdrift")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building meshdrift with pprof (run from the repository root): %w", err)
	}
	return bin, nil
}

// saveProfile fetches a pprof endpoint (the profiled meshdrift's, or istiod's) into dir/name.
func saveProfile(ctx context.Context, addr, path, dir, name string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		logf("profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// e.g. a CPU profile asked for while another still runs (the startup one).
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		logf("profile %s: %s: %s", name, resp.Status, b)
		return
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		logf("profile %s: %v", name, err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		logf("profile %s: %v", name, err)
		return
	}
	logf("profile written: %s", filepath.Join(dir, name))
}
