package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one program of the bed, its output kept in a log file so that a failing test
// can show it, and stopped as a whole process group so that nothing outlives the bed.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error

	mu    sync.Mutex
	lines []string // recent output, scanned for readiness
	subs  []func(string)
}

// startProcess runs bin with args and env (added to a minimal environment) writing its
// output to logDir/name.log.
func startProcess(name, logDir, bin string, args, env []string) (*process, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	pr, pw := io.Pipe()
	cmd := exec.Command(bin, args...)
	// A clean environment: the bed's programs must not pick up a developer's KUBECONFIG or
	// proxy settings, and never fall back to localhost:8080.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + logDir}, env...)
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			p.mu.Lock()
			if len(p.lines) < 2000 {
				p.lines = append(p.lines, line)
			}
			subs := append([]func(string){}, p.subs...)
			p.mu.Unlock()
			for _, f := range subs {
				f(line)
			}
		}
		_, _ = io.Copy(logFile, pr)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		pw.Close()
		<-scanDone
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// waitForLine waits until a line of output matches re and returns the match's groups.
func (p *process) waitForLine(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	found := make(chan []string, 1)
	p.mu.Lock()
	for _, l := range p.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			p.mu.Unlock()
			return m, nil
		}
	}
	p.subs = append(p.subs, func(l string) {
		if m := re.FindStringSubmatch(l); m != nil {
			select {
			case found <- m:
			default:
			}
		}
	})
	p.mu.Unlock()
	select {
	case m := <-found:
		return m, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited (%v) before logging %q; log %s:\n%s", p.name, p.waitErr, re, p.logPath, p.tail(30))
	case <-ctx.Done():
		return nil, fmt.Errorf("%s did not log %q: %w; log %s:\n%s", p.name, re, ctx.Err(), p.logPath, p.tail(30))
	}
}

// tail returns the last n lines of the log file.
func (p *process) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	var exitErr *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &exitErr) {
		return fmt.Errorf("stopping %s: %w", p.name, p.waitErr)
	}
	return nil
}
