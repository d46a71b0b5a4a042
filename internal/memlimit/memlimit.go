// Package memlimit gives the Go runtime a soft memory limit below the container's, so that
// the garbage collector works harder as the heap nears the limit instead of the kernel
// killing the process. Go does not read the cgroup's memory limit itself.
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Ratio of the container's limit below which the process is kept: the rest is headroom
// (C allocations, the kernel's own per-process memory, a burst between two collections).
const Ratio = 0.9

// BinaryReserve is what the soft limit leaves for the binary's own pages: the Go runtime
// does not count them, but they are resident (mapped file pages, often as huge pages),
// and count against the container's limit. meshdrift serve has 67 MB of them resident
// right after it starts (RssFile in /proc/self/status, go1.26 on linux/amd64).
const BinaryReserve = 64 << 20

// Paths where the container's memory limit is exposed, by cgroup version.
const (
	CgroupV2MemoryMax = "/sys/fs/cgroup/memory.max"
	CgroupV1Limit     = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
)

// cgroupV1Unlimited is the smallest value a cgroup v1 limit takes when none is set (the
// largest page-aligned int64, or near it on other page sizes).
const cgroupV1Unlimited = 1 << 62

// For is the soft limit meshdrift gives the Go runtime in a container limited to limit
// bytes: Ratio of it less BinaryReserve, and never below half of it.
func For(limit int64) int64 {
	return max(int64(float64(limit)*Ratio)-BinaryReserve, limit/2)
}

// Set sets the soft memory limit from the first of paths that exists (the cgroup v2 file,
// then the v1 one, in production), unless GOMEMLIMIT is set. It returns the limit set, 0
// when none was (no limit, GOMEMLIMIT set, or not in a container).
func Set(paths ...string) (int64, error) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	for _, path := range paths {
		limit, err := read(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil || limit == 0 {
			return 0, err
		}
		soft := For(limit)
		debug.SetMemoryLimit(soft)
		return soft, nil
	}
	return 0, nil
}

// read returns the limit in a cgroup file, 0 when it says there is none.
func read(path string) (int64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		return 0, fmt.Errorf("reading the container's memory limit: %w", err)
	}
	v := strings.TrimSpace(string(raw))
	if v == "max" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return 0, fmt.Errorf("container memory limit %q in %s: not a number of bytes", v, path)
	}
	if limit >= cgroupV1Unlimited {
		return 0, nil
	}
	return limit, nil
}
