#!/usr/bin/env bash
# Regenerates tools/k8s/{go.mod,go.sum,tools.go}: a module that pins the
# Kubernetes control-plane binaries used by the integration tests
# (kube-apiserver, kube-scheduler, kube-controller-manager), etcd from the
# same dependency graph, and kwok.
#
# k8s.io/kubernetes replaces its staging modules with ./staging/src paths, so
# it cannot be "go install"ed; here every such replace is pointed at the
# published v0.X.Y module instead.
#
# Usage: hack/gen-k8s-tools-mod.sh [k8s-version] [kwok-version]
set -euo pipefail

K8S_VERSION=${1:-v1.37.2}
KWOK_VERSION=${2:-v0.8.0}
STAGING_VERSION=v0.${K8S_VERSION#v1.}

root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/tools/k8s
mkdir -p "$dir"
cd "$dir"

upstream=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$upstream" ] || { echo "cannot find go.mod of k8s.io/kubernetes@${K8S_VERSION}" >&2; exit 1; }

{
	echo "module kantai.dev/kantai/tools/k8s"
	echo
	echo "go 1.26.0"
	echo
	echo "require k8s.io/kubernetes ${K8S_VERSION}"
	echo
	echo "replace ("
	grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$upstream" |
		awk -v v="$STAGING_VERSION" '{ printf "\t%s => %s %s\n", $1, $1, v }'
	echo ")"
} > go.mod

cat > tools.go <<'EOT'
//go:build tools

// Package tools pins the binaries the integration tests run. Build them
// with hack/k8s-bins.sh.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
EOT

go get "sigs.k8s.io/kwok@${KWOK_VERSION}"
go mod tidy
