//go:build tools

// Package tools pins the Knative Serving 1.15 controller and webhook that
// the integration tests run out of cluster, and the modules whose zips hold
// Knative's CRDs and config maps. Build them with hack/knative-bins.sh.
package tools

import (
	_ "knative.dev/serving/cmd/controller"
	_ "knative.dev/serving/cmd/webhook"
)
