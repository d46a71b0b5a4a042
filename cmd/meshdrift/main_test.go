package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshdrift/meshdrift/reconcile"
)

func TestRunCommands(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good.yml")
	if err := os.WriteFile(good, []byte("istio:\n  pollInterval: 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("istio:\n  transport: grpc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		code   int
		output string
	}{
		{[]string{"version"}, exitOK, "meshdrift "},
		{[]string{}, exitUsage, "usage: meshdrift"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"validate", "--config", good}, exitOK, "valid"},
		{[]string{"validate", "--config", bad}, exitProblem, `istio.transport "grpc"`},
		{[]string{"validate"}, exitUsage, "give --config FILE or manifest paths"},
		{[]string{"serve", "--config", good, "--config.check"}, exitOK, "configuration valid"},
		{[]string{"serve", "--config", bad, "--config.check"}, exitUsage, `istio.transport "grpc"`},
		{[]string{"serve", "--log.format", "xml", "--config.check"}, exitUsage, "--log.format"},
		{[]string{"wait", "--app", "nope"}, exitUsage, "--app"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tc.args, &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
			if all := out.String() + errOut.String(); !strings.Contains(all, tc.output) {
				t.Errorf("output does not contain %q:\n%s", tc.output, all)
			}
		})
	}
}

func TestParseAppKey(t *testing.T) {
	for in, want := range map[string]reconcile.AppKey{
		"argocd/argocd/payments":           {Source: reconcile.SourceArgoCD, Kind: "Application", Namespace: "argocd", Name: "payments"},
		"flux/flux-system/apps":            {Source: reconcile.SourceFlux, Kind: "Kustomization", Namespace: "flux-system", Name: "apps"},
		"flux/HelmRelease/podinfo/podinfo": {Source: reconcile.SourceFlux, Kind: "HelmRelease", Namespace: "podinfo", Name: "podinfo"},
	} {
		got, err := parseAppKey(in)
		if err != nil || got != want {
			t.Errorf("parseAppKey(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "argocd/x", "spinnaker/ns/name", "flux//name", "a/b/c/d/e"} {
		if _, err := parseAppKey(in); err == nil {
			t.Errorf("parseAppKey(%q) succeeded", in)
		}
	}
}
