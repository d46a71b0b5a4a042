package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/testbed"
	"github.com/meshdrift/meshdrift/internal/testbed/xdsproxy"
)

// writeConfig writes a configuration file pointing meshdrift at the bed, with a 5 s grace.
func writeConfig(t *testing.T, istiod *testbed.Istiod) string {
	t.Helper()
	return writeConfigGrace(t, istiod, 5*time.Second)
}

// writeConfigGrace is writeConfig with another stale grace.
func writeConfigGrace(t *testing.T, istiod *testbed.Istiod, grace time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meshdrift.yaml")
	cfg := testbed.MeshdriftConfig(bed.kubeconfig, bed.tokenFile, istiod)
	cfg.Flux.Receiver.Enabled = false
	cfg.Istio.PollInterval = config.Duration(time.Second)
	cfg.Reconcile.StaleGrace = config.Duration(grace)
	if err := testbed.WriteMeshdriftConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	return path
}

// check prints the bed's state and fails on a proxy that rejects its config.
func TestCheckCommand(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	own, err := testbed.StartIstiod(context.Background(), bed.assets, bed.kube, istiodOptions("istiod-check"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = own.Stop() })
	cfg := writeConfig(t, own)
	good := startProxy(t, own, "reviews-v1-check", ns, xdsproxy.ModeACK)

	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--config", cfg, "--log.level", "error"}, &out, &errOut); code != exitOK {
		t.Fatalf("check exit %d with a healthy mesh\n%s\n%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), good.Name()) || !strings.Contains(out.String(), "no problems found") {
		t.Errorf("check output lacks the proxy or the verdict:\n%s", out.String())
	}

	bad := startProxy(t, own, "ratings-v1-check", ns, xdsproxy.ModeACK)
	bad.SetNACKMessage("invalid route configuration")
	bad.SetMode(xdsproxy.ModeNACK)
	applyVS(t, ns, "ratings", "2s")
	deadline := time.Now().Add(15 * time.Second)
	for {
		out.Reset()
		errOut.Reset()
		code := run([]string{"check", "--config", cfg, "--log.level", "error"}, &out, &errOut)
		if code == exitProblem && strings.Contains(out.String(), "rejects") && strings.Contains(out.String(), "invalid route configuration") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("check never reported the NACKing proxy (last exit %d):\n%s\n%s", code, out.String(), errOut.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// check against an istiod that cannot be reached says so and fails.
func TestCheckCommandIstiodUnreachable(t *testing.T) {
	testbed.Need(t, bed.started)
	own, err := testbed.StartIstiod(context.Background(), bed.assets, bed.kube, istiodOptions("istiod-gone"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, own)
	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"check", "--config", cfg, "--log.level", "error"}, &out, &errOut)
	if code != exitProblem || !strings.Contains(out.String(), "unreachable") {
		t.Fatalf("exit %d, want %d with the istiod reported unreachable:\n%s\n%s", code, exitProblem, out.String(), errOut.String())
	}
}

// wait returns once a Flux revision reached every proxy, and fails on a NACK.
func TestWaitCommand(t *testing.T) {
	testbed.Need(t, bed.started)
	ns := newNamespace(t)
	ctx := context.Background()
	own, err := testbed.StartIstiod(ctx, bed.assets, bed.kube, istiodOptions("istiod-wait"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = own.Stop() })
	cfg := writeConfig(t, own)
	p := startProxy(t, own, "shipping-v1-wait", ns, xdsproxy.ModeACK)

	publish := func(rev, timeout string) {
		t.Helper()
		art, err := bed.flux.Artifacts.Publish(ns+rev[len(rev)-4:], rev, map[string]string{"vs.yaml": fmt.Sprintf(vsTemplate, ns, "shipping", timeout)})
		if err != nil {
			t.Fatal(err)
		}
		if err := bed.flux.SetGitRepository(ctx, ns, "repo", art); err != nil {
			t.Fatal(err)
		}
	}
	good := "main@sha1:" + strings.Repeat("e", 40)
	publish(good, "3s")
	if err := bed.flux.ApplyKustomization(ctx, ns, "shipping", "repo", "./", false); err != nil {
		t.Fatal(err)
	}
	app := "flux/" + ns + "/shipping"
	var out, errOut bytes.Buffer
	if code := run([]string{"wait", "--config", cfg, "--log.level", "error", "--app", app, "--revision", good, "--timeout", "60s"}, &out, &errOut); code != exitOK {
		t.Fatalf("wait exit %d for a propagated revision:\n%s\n%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "Propagated") {
		t.Errorf("wait output:\n%s", out.String())
	}

	// The next revision is rejected by the proxy: wait fails instead of hanging.
	p.SetNACKMessage("route: invalid timeout")
	p.SetMode(xdsproxy.ModeNACK)
	bad := "main@sha1:" + strings.Repeat("f", 40)
	publish(bad, "4s")
	out.Reset()
	errOut.Reset()
	if code := run([]string{"wait", "--config", cfg, "--log.level", "error", "--app", app, "--revision", bad, "--timeout", "60s"}, &out, &errOut); code != exitProblem {
		t.Fatalf("wait exit %d for a NACKed revision, want %d:\n%s\n%s", code, exitProblem, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "NACKed") {
		t.Errorf("wait output:\n%s", out.String())
	}
}
