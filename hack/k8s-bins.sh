#!/usr/bin/env bash
# Builds the control-plane binaries pinned in tools/k8s (kube-apiserver,
# kube-scheduler, kube-controller-manager, etcd, kwok) into
#   .cache/k8s-bin/<hash>/
# where <hash> covers tools/k8s/go.sum and this script, and prints that
# directory on stdout (all progress goes to stderr). When the directory is
# already complete nothing is built, so a second run takes well under a second.
#
# The go build flags below must stay identical between runs: any change to
# -trimpath, -gcflags or -tags changes Go's build cache keys and costs a full
# rebuild (about 12-13 minutes on 2 cores).
#
# Env: K8S_BIN_CACHE overrides .cache/k8s-bin.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod=$root/tools/k8s
cache=${K8S_BIN_CACHE:-$root/.cache/k8s-bin}
bins=(kube-apiserver kube-scheduler kube-controller-manager etcd kwok)

key=$(cat "$mod/go.sum" "$0" | sha256sum | cut -c1-16)
out=$cache/$key

complete() {
	local b
	for b in "${bins[@]}"; do [ -x "$1/$b" ] || return 1; done
	[ -s "$1/kwok-stages.yaml" ]
}

if complete "$out"; then
	echo "$out"
	exit 0
fi

k8s_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$mod/go.mod")
minor=$(echo "$k8s_version" | cut -d. -f2)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags="$ldflags -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
	ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "building Kubernetes ${k8s_version} binaries into $out (a cold build takes about 13 minutes on 2 cores)" >&2
start=$(date +%s)
(
	cd "$mod"
	go mod download
	go build -ldflags "$ldflags" -o "$tmp/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		go.etcd.io/etcd/server/v3 \
		sigs.k8s.io/kwok/cmd/kwok
) >&2
mv "$tmp/server" "$tmp/etcd" # go names the etcd main package "server"

# kwok needs Stage definitions; take the "fast" ones shipped in the pinned
# kwok module: nodes become Ready at once, pods Running and Ready, pods with
# a deletionTimestamp are removed.
stages=$(cd "$mod" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
	pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
	echo "---"
	cat "$stages/$f"
done > "$tmp/kwok-stages.yaml"
complete "$tmp" || { echo "build incomplete in $tmp" >&2; exit 1; }
rm -rf "$out"
chmod 755 "$tmp"
mv "$tmp" "$out"
trap - EXIT
# Drop binaries built from older pins.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name '.*' -exec rm -rf {} +
echo "built in $(( $(date +%s) - start ))s: $("$out/kube-apiserver" --version)" >&2
echo "$out"
