#!/usr/bin/env bash
# Installs nginx from Debian's packages for the proxy comparison
# (internal/proxybench). The benchmark runs nginx itself, in the foreground
# with a configuration in a temporary directory; the system service is not
# used and not started.
set -euo pipefail
if command -v nginx >/dev/null 2>&1; then
	nginx -v
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "nginx is not installed; as root: apt-get install -y nginx-light" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq nginx-light || apt-get install -y -qq nginx
nginx -v
