#!/usr/bin/env bash
# Builds Knative Serving's own controller and webhook, pinned in
# tools/knative (knative.dev/serving v0.42.2 = Knative 1.15), into
#   .cache/knative-bin/<hash>/{controller,webhook}
# and copies the manifests the integration tests install from the module
# cache next to them:
#   manifests/100-namespace.yaml       namespace knative-serving
#   manifests/crds/*.yaml              serving, networking and caching CRDs
#   manifests/configmaps/*.yaml        config-autoscaler, config-network, ...
#   manifests/webhooks/*.yaml          webhook configurations and their Secret
# <hash> covers tools/knative/go.sum and this script. Prints the directory on
# stdout (progress goes to stderr); when it is complete nothing is built, so
# a second run takes well under a second.
#
# The networking CRDs are symbolic links in serving's repository and Go
# module zips omit symbolic links, so they come from knative.dev/networking.
#
# The go build flags below must stay identical between runs: any change to
# -trimpath, -gcflags or -tags changes Go's build cache keys and costs a full
# rebuild (about 9 minutes on 2 cores).
#
# Env: KNATIVE_BIN_CACHE overrides .cache/knative-bin.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
mod=$root/tools/knative
cache=${KNATIVE_BIN_CACHE:-$root/.cache/knative-bin}
bins=(controller webhook)

key=$(cat "$mod/go.sum" "$0" | sha256sum | cut -c1-16)
out=$cache/$key

complete() {
	local b
	for b in "${bins[@]}"; do [ -x "$1/$b" ] || return 1; done
	[ -s "$1/manifests/crds/podautoscaler.yaml" ] && [ -s "$1/manifests/crds/serverlessservice.yaml" ] &&
		[ -s "$1/manifests/configmaps/autoscaler.yaml" ] && [ -s "$1/manifests/webhooks/defaulting.yaml" ]
}

if complete "$out"; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "building Knative Serving controller and webhook into $out (a cold build takes about 9 minutes on 2 cores)" >&2
start=$(date +%s)
(
	cd "$mod"
	go mod download
	go build -ldflags "-s -w" -o "$tmp/" knative.dev/serving/cmd/controller knative.dev/serving/cmd/webhook
) >&2

dir() { (cd "$mod" && go list -m -f '{{.Dir}}' "$1"); }
serving=$(dir knative.dev/serving)
networking=$(dir knative.dev/networking)
caching=$(dir knative.dev/caching)
m=$tmp/manifests
mkdir -p "$m/crds" "$m/configmaps" "$m/webhooks"
cp "$serving/config/core/100-namespace.yaml" "$m/"
cp "$serving"/config/core/300-resources/*.yaml "$m/crds/"
cp "$networking"/config/{ingress,serverlessservice,certificate,domain-claim}.yaml "$m/crds/"
cp "$caching/config/image.yaml" "$m/crds/"
cp "$serving"/config/core/configmaps/*.yaml "$m/configmaps/"
cp "$networking/config/config-network.yaml" "$m/configmaps/network.yaml"
cp "$serving"/config/core/webhooks/{configmap-validation,defaulting,resource-validation,secret}.yaml "$m/webhooks/"
chmod -R u+w "$tmp"
chmod 755 "$tmp"

complete "$tmp" || { echo "build incomplete in $tmp" >&2; exit 1; }
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
# Drop binaries built from older pins.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name '.*' -exec rm -rf {} +
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$out"
