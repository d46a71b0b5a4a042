#!/usr/bin/env bash
# Installs the Debian packages the test bed uses: Alertmanager (API v2), promtool for
# `promtool test rules`, and Chromium for the status page tests. Does nothing when they are
# already there; needs root (or passwordless sudo) otherwise.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"

# command -> Debian package
declare -A want=(
	[prometheus-alertmanager]=prometheus-alertmanager
	[promtool]=prometheus
	[chromium]=chromium
)
missing=()
for cmd in "${!want[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
	log "Debian packages present: ${!want[*]}"
	exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null 2>&1 || die "need root to install ${missing[*]} (apt-get install -y ${missing[*]})"
	sudo=(sudo -n)
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq || die "apt-get update failed"
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
	die "apt-get install ${missing[*]} failed"
# The Debian packages start their services; the test bed runs its own instances on
# loopback ports, so stop the system ones if an init system started them.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
		"${sudo[@]}" systemctl stop "$svc" || true
	fi
done
for cmd in "${!want[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after installing ${want[$cmd]}"
done
