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

// Ratio of the container's limit given to the Go heap; the rest is for what the runtime
// does not count (stacks beyond the heap, the binary, C allocations) and for headroom.
const Ratio = 0.9

// CgroupV2MemoryMax is where cgroup v2 exposes the container's memory limit.
const CgroupV2MemoryMax = "/sys/fs/cgroup/memory.max"

// Set sets the soft memory limit to Ratio of the cgroup's memory limit read from path
// (CgroupV2MemoryMax in production), unless GOMEMLIMIT is set. It returns the limit set,
// 0 when none was (no limit, GOMEMLIMIT set, or not in a cgroup v2 container).
func Set(path string) (int64, error) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
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
	soft := int64(float64(limit) * Ratio)
	debug.SetMemoryLimit(soft)
	return soft, nil
}
