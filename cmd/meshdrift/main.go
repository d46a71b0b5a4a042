// Command meshdrift tells platform teams when their service mesh is not running what Git says.
//
//	meshdrift serve     run continuously: watch, evaluate, expose status and metrics
//	meshdrift check     read every source once, print the state, exit 1 on a problem
//	meshdrift wait      block until an app's revision has propagated (for CI pipelines)
//	meshdrift validate  check a configuration file, or mesh manifests offline
//	meshdrift version   print the version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshdrift/meshdrift/config"
	"github.com/meshdrift/meshdrift/internal/buildinfo"
)

// exitUsage is returned for bad flags or arguments, exitProblem when check/wait find one.
const (
	exitOK      = 0
	exitProblem = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version":
		fmt.Fprintln(stdout, buildinfo.String())
		return exitOK
	case "validate":
		return runValidate(rest, stdout, stderr)
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "check":
		return runCheck(ctx, rest, stdout, stderr)
	case "wait":
		return runWait(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "meshdrift: unknown command %q\n", cmd)
		usage(stderr)
		return exitUsage
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: meshdrift <command> [flags]

commands:
  serve     run continuously: watch Argo CD, Flux, istiod and mesh objects; serve status and metrics
  check     read every source once, print apps, proxies and propagation; exit 1 on a problem
  wait      wait until an app's revision has reached every proxy (exit 1 on NACK/stale/timeout)
  validate  check a configuration file (--config), or mesh manifests offline (PATH... or -)
  version   print the version

Run 'meshdrift <command> -h' for the flags of a command.
`)
}

// commonFlags are shared by the commands that read the cluster.
type commonFlags struct {
	configFile string
	kubeconfig string
	logLevel   string
	logFormat  string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.configFile, "config", "", "configuration file (default: built-in defaults)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file; overrides the config file's (default: in-cluster)")
	fs.StringVar(&c.logLevel, "log.level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log.format", "text", "log format: text or json")
}

// load returns the configuration and a logger.
func (c *commonFlags) load(stderr io.Writer) (config.Config, *slog.Logger, error) {
	cfg := config.Default()
	if c.configFile != "" {
		var err error
		if cfg, err = config.Load(c.configFile); err != nil {
			return cfg, nil, err
		}
	}
	if c.kubeconfig != "" {
		cfg.Kubeconfig = c.kubeconfig
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return cfg, nil, fmt.Errorf("--log.level %q: %w", c.logLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return cfg, slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return cfg, slog.New(slog.NewJSONHandler(stderr, opts)), nil
	default:
		return cfg, nil, fmt.Errorf("--log.format %q: must be text or json", c.logFormat)
	}
}

func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) bool {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshdrift %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return false
	}
	return true
}
