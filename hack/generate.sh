#!/usr/bin/env bash
# Regenerates, from the Go types and the +kubebuilder markers:
#   api/v1alpha1/zz_generated.deepcopy.go   (deepcopy methods)
#   config/crd/bases/*.yaml                  (CRD with schema, CEL rules, printer columns)
#   config/rbac/role.yaml                    (ClusterRole of the NodeReplicaSet controller)
#   config/knative/rbac/role.yaml            (ClusterRole and Roles of the PodAutoscaler and Ingress reconcilers and the gateway poller)
#   config/gateway/role.yaml                 (ClusterRole of the gateway DaemonSet, read only)
# ROOT=<dir> runs it on a copy of the module instead of this checkout.
set -euo pipefail

CONTROLLER_TOOLS_VERSION=${CONTROLLER_TOOLS_VERSION:-v0.23.0}
root=${ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

controller_gen() {
	go run "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_TOOLS_VERSION}" "$@"
}

controller_gen object paths=./api/...
controller_gen crd:generateEmbeddedObjectMeta=true paths=./api/... output:crd:dir=config/crd/bases
controller_gen rbac:roleName=kantai-nrs paths=./internal/controller/nrs/... output:rbac:dir=config/rbac
controller_gen rbac:roleName=kantai-knative paths="{./internal/controller/pa/...,./internal/controller/gateways/...,./internal/controller/ingress/...}" output:rbac:dir=config/knative/rbac
controller_gen rbac:roleName=kantai-gateway paths=./internal/kube/nodegw/... output:rbac:dir=config/gateway
