#!/usr/bin/env bash
# Builds the real programs the test bed runs (kube-apiserver, etcd, kubectl, istiod, istioctl,
# Flux kustomize- and notification-controller), each from its own nested tool module under
# hack/tools, into a cache outside the repository keyed by module version and Go version.
# Safe to re-run: a binary already built for the same key is reused. The links in
# $MESHDRIFT_TESTBED/bin always point at the versions the tool modules pin.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"

gover=$(go env GOVERSION)
mkdir -p "$testbed/bin"

# build NAME TOOLDIR MODULE PACKAGE [EXTRA_LDFLAGS]
build() {
	local name=$1 dir=$2 mod=$3 pkg=$4 ldflags=${5:-}
	local version out
	version=$(cd "$root/hack/tools/$dir" && go list -m -f '{{.Version}}' "$mod") ||
		die "cannot resolve $mod in hack/tools/$dir"
	out="$cache/tools/$name/$version-$gover/$name"
	if [[ -x $out ]]; then
		log "$name $version: cached at $out"
	else
		log "$name $version: building from $mod (minutes on a cold cache)"
		mkdir -p "$(dirname "$out")"
		local start=$SECONDS
		(cd "$root/hack/tools/$dir" &&
			go build -trimpath -ldflags "-s -w $ldflags" -o "$out.partial" "$pkg") ||
			die "building $name from $mod@$version failed (see the compiler output above)"
		mv "$out.partial" "$out"
		log "$name $version: built in $((SECONDS - start)) s"
	fi
	ln -sfn "$out" "$testbed/bin/$name"
}

kube_ver=$(cd "$root/hack/tools/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
kube_minor=$(echo "$kube_ver" | cut -d. -f2)
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$kube_ver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/component-base/version.gitTreeState=clean"
istio_ldflags="-X istio.io/istio/pkg/version.buildVersion=1.31-dev -X istio.io/istio/pkg/version.buildTag=1.31-dev -X istio.io/istio/pkg/version.buildStatus=Clean"

want=${*:-etcd kube-apiserver kubectl pilot-discovery istioctl kustomize-controller notification-controller}
for tool in $want; do
	case $tool in
	etcd) build etcd etcd go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 ;;
	kube-apiserver) build kube-apiserver kube k8s.io/kubernetes k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags" ;;
	kubectl) build kubectl kube k8s.io/kubernetes k8s.io/kubernetes/cmd/kubectl "$kube_ldflags" ;;
	pilot-discovery) build pilot-discovery istio istio.io/istio istio.io/istio/pilot/cmd/pilot-discovery "$istio_ldflags" ;;
	istioctl) build istioctl istio istio.io/istio istio.io/istio/istioctl/cmd/istioctl "$istio_ldflags" ;;
	kustomize-controller) build kustomize-controller flux-kustomize github.com/fluxcd/kustomize-controller github.com/fluxcd/kustomize-controller ;;
	notification-controller) build notification-controller flux-notification github.com/fluxcd/notification-controller github.com/fluxcd/notification-controller ;;
	*) die "unknown tool $tool" ;;
	esac
done
