#!/usr/bin/env bash
# make bench: the Go benchmarks, then the scale harness (hack/scale) on the real test bed;
# prints one table (figure | measured | target | met?). BENCHMARKS.md holds the latest one.
# SCALE_FLAGS scales the harness down, e.g. SCALE_FLAGS="-apps 100 -objects 400 -proxies 100".
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=bin/bench
mkdir -p "$out"

# Packages of the main module with benchmarks (hack/tools holds separate modules).
mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Benchmark' . | grep -v '^./hack/tools/' | xargs -n1 dirname | sort -u)
echo "go benchmarks: ${pkgs[*]}" >&2
# 200ms per benchmark keeps the run short: fast benchmarks still run many iterations,
# and the heap benchmarks that take seconds per op run once. -short keeps the packages'
# TestMain from starting the test bed, which no benchmark uses.
"$GO" test -short -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-200ms}" "${pkgs[@]}" | tee "$out/go-bench.txt" >&2

"$GO" build -o bin/meshdrift ./cmd/meshdrift
"$GO" build -o bin/meshdrift-scale ./hack/scale
# shellcheck disable=SC2086 # SCALE_FLAGS is a list of flags
bin/meshdrift-scale -meshdrift bin/meshdrift -bench-output "$out/go-bench.txt" ${SCALE_FLAGS:-} | tee "$out/table.md"
