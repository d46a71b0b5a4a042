# Shared settings for the hack/ scripts; sourced, never run.
# MESHDRIFT_CACHE holds built tools keyed by version; MESHDRIFT_TESTBED is the directory the
# Go test bed reads (bin/ with the programs, crds/ with the CRDs from the pinned modules).
cache=${MESHDRIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshdrift}
testbed=${MESHDRIFT_TESTBED:-$cache/testbed}
# The tool modules are resolved from the committed go.sum files; never let a build
# step reach for a newer toolchain.
export GOTOOLCHAIN=local
export GOFLAGS=${GOFLAGS:-}

log() { printf '%s %s\n' "[$(basename "$0")]" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
