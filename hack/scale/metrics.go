package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sample is one series of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type samples []sample

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func parseExposition(r io.Reader) (samples, error) {
	var out samples
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		var s sample
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			s.name = line[:i]
			s.labels = map[string]string{}
			for _, m := range labelRE.FindAllStringSubmatch(line[i+1:j], -1) {
				s.labels[m[1]] = m[2]
			}
			rest = strings.TrimSpace(line[j+1:])
		} else {
			name, r, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			s.name, rest = name, r
		}
		v, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		s.value = f
		out = append(out, s)
	}
	return out, sc.Err()
}

// sum adds every series of name whose labels include match.
func (ss samples) sum(name string, match map[string]string) float64 {
	var t float64
	for _, s := range ss {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			t += s.value
		}
	}
	return t
}

func scrapeHTTP(ctx context.Context, url string) (samples, error) {
	return scrapeWithin(ctx, url, 20*time.Second)
}

func scrapeWithin(ctx context.Context, url string, timeout time.Duration) (samples, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseExposition(resp.Body)
}

// benchResult is one line of `go test -bench` output.
type benchResult struct {
	nsPerOp, allocsPerOp, bytesPerOp float64
}

var benchLineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parseBenchFile reads `go test -bench -benchmem` output; names lose their -GOMAXPROCS suffix.
func parseBenchFile(path string) (map[string]benchResult, error) {
	out := map[string]benchResult{}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := benchLineRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		var r benchResult
		fields := strings.Fields(m[2])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			switch fields[i+1] {
			case "ns/op":
				r.nsPerOp = v
			case "allocs/op":
				r.allocsPerOp = v
			case "B/op":
				r.bytesPerOp = v
			}
		}
		out[m[1]] = r
	}
	return out, sc.Err()
}

// percentile of sorted-on-demand durations (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := int(p*float64(len(s))+0.999999) - 1
	if idx < 0 {
		idx = 0
	}
	if idx >= len(s) {
		idx = len(s) - 1
	}
	return s[idx]
}

func mib(b float64) string { return fmt.Sprintf("%.0f MiB", b/(1<<20)) }

// scrapeMeshdrift reads meshdrift's /metrics; when it does not answer in time (its
// collectors wait for the store while an evaluation pass holds it), RSS and CPU time come
// from /proc, as the process collector reads them, and ok is false.
func scrapeMeshdrift(ctx context.Context, base string, pid int) (ss samples, ok bool) {
	ss, err := scrapeWithin(ctx, base+"/metrics", 45*time.Second)
	if err == nil {
		return ss, true
	}
	logf("meshdrift /metrics: %v; RSS and CPU from /proc", err)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, found := strings.CutPrefix(line, "VmRSS:"); found {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				ss = append(ss, sample{name: "process_resident_memory_bytes", value: kb * 1024})
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command's closing parenthesis; utime and stime are the 12th and
		// 13th of them, in clock ticks of 1/100 s.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+1:])
			if len(f) > 13 {
				u, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				ss = append(ss, sample{name: "process_cpu_seconds_total", value: (u + st) / 100})
			}
		}
	}
	return ss, false
}
