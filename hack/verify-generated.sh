#!/usr/bin/env bash
# Fails when the files controller-gen produces differ from the committed ones.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go test -count=1 -run TestGeneratedFilesUpToDate ./api/v1alpha1/
