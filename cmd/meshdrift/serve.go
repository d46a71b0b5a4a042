package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshdrift/meshdrift/internal/buildinfo"
	"github.com/meshdrift/meshdrift/internal/memlimit"
)

func promhttpHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var common commonFlags
	common.register(fs)
	check := fs.Bool("config.check", false, "validate the configuration and exit")
	if !parseFlags(fs, args, stderr) {
		return exitUsage
	}
	cfg, log, err := common.load(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "meshdrift serve: %v\n", err)
		return exitUsage
	}
	if *check {
		fmt.Fprintln(stdout, "configuration valid")
		return exitOK
	}
	log.Info("starting", "version", buildinfo.String())
	if soft, err := memlimit.Set(memlimit.CgroupV2MemoryMax, memlimit.CgroupV1Limit); err != nil {
		log.Warn("no Go memory limit from the container", "err", err)
	} else if soft > 0 {
		log.Info("Go memory limit from the container's", "bytes", soft, "ratio", memlimit.Ratio, "binaryReserve", memlimit.BinaryReserve)
	}
	a, err := wire(cfg, log)
	if err != nil {
		log.Error("wiring meshdrift", "err", err)
		return exitProblem
	}
	lis, err := net.Listen("tcp", cfg.Server.ListenAddress)
	if err != nil {
		log.Error("listening", "address", cfg.Server.ListenAddress, "err", err)
		return exitProblem
	}
	srv := &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(lis) }()
	log.Info("serving", "address", lis.Addr().String())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := a.start(runCtx)
	code := exitOK
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-done:
		if err != nil {
			log.Error("component failed", "err", err)
			code = exitProblem
		}
	case err := <-srvErr:
		log.Error("http server failed", "err", err)
		code = exitProblem
	}
	cancel()
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	return code
}
