package memlimit

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestSet(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	dir := t.TempDir()
	write := func(content string) string {
		p := filepath.Join(dir, "memory.max")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	got, err := Set(write("268435456\n")) // 256Mi, the shipped limit
	if want := int64(241591910 - 64<<20); err != nil || got != want || debug.SetMemoryLimit(-1) != got {
		t.Errorf("256Mi: set %d (err %v), runtime limit %d; want %d (90%% less the binary's reserve)", got, err, debug.SetMemoryLimit(-1), want)
	}
	if got := For(64 << 20); got != 32<<20 {
		t.Errorf("64Mi: %d, want half of it when the reserve would leave less", got)
	}
	// cgroup v1: the first path that exists counts; its "no limit" is a huge number.
	v1 := filepath.Join(dir, "memory.limit_in_bytes")
	if err := os.WriteFile(v1, []byte("9223372036854771712\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if got, err := Set(filepath.Join(dir, "absent"), v1); got != 0 || err != nil || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("cgroup v1 without a limit: set %d, %v", got, err)
	}
	if err := os.WriteFile(v1, []byte("268435456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := Set(filepath.Join(dir, "absent"), v1); got != For(256<<20) || err != nil {
		t.Errorf("cgroup v1 256Mi: set %d, %v; want %d", got, err, For(256<<20))
	}
	debug.SetMemoryLimit(math.MaxInt64)
	for _, tc := range []struct{ name, content, errPart string }{
		{"no limit", "max\n", ""},
		{"garbage", "lots\n", "not a number"},
		{"zero", "0\n", "not a number"},
	} {
		got, err := Set(write(tc.content))
		if got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
			t.Errorf("%s: set %d, runtime limit %d; want none", tc.name, got, debug.SetMemoryLimit(-1))
		}
		if (tc.errPart == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.errPart)) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.errPart)
		}
	}
	if got, err := Set(filepath.Join(dir, "absent")); got != 0 || err != nil {
		t.Errorf("outside a cgroup: %d, %v", got, err)
	}
	t.Setenv("GOMEMLIMIT", "100MiB")
	if got, err := Set(write("268435456\n")); got != 0 || err != nil {
		t.Errorf("GOMEMLIMIT set: %d, %v; want it left alone", got, err)
	}
}
