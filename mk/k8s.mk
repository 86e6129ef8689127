# NodeReplicaSet: generated code, control-plane binaries and integration
# tests. Included from the top-level Makefile:  include mk/k8s.mk
#
#   make k8s-bins          build (or reuse) kube-apiserver, etcd, kube-scheduler,
#                          kube-controller-manager and kwok in .cache/k8s-bin/<hash>
#                          (cold: ~6-13 min on 2 cores; cached: <1 s)
#   make knative-bins      build (or reuse) Knative Serving 1.15's controller and
#                          webhook, with its CRDs and config maps, in
#                          .cache/knative-bin/<hash> (cold: ~9+ min on 2 cores)
#   make generate          regenerate deepcopy, CRD and RBAC with controller-gen
#   make verify-generated  fail if the generated files are not up to date
#   make test-k8s          integration tests against the real control plane
#                          (and real Knative Serving for the PodAutoscaler class)
#   make bench-k8s         the 100 nodes x 10 pods scale benchmark
#
# Variables: K8S_BIN_CACHE, KNATIVE_BIN_CACHE (cache dirs), K8S_TEST_FLAGS
# (extra go test flags).

K8S_BINS_SCRIPT     ?= hack/k8s-bins.sh
KNATIVE_BINS_SCRIPT ?= hack/knative-bins.sh
K8S_TEST_PKGS       ?= ./internal/controller/nrs/... ./internal/controller/pa/... ./internal/controller/e2e/... ./internal/kube/... ./internal/e2e/... ./api/...
K8S_TEST_FLAGS  ?=

.PHONY: k8s-bins knative-bins generate verify-generated test-k8s bench-k8s bench-e2e

k8s-bins:
	@$(K8S_BINS_SCRIPT) >/dev/null

knative-bins:
	@$(KNATIVE_BINS_SCRIPT) >/dev/null

generate:
	hack/generate.sh

verify-generated:
	hack/verify-generated.sh

test-k8s:
	KUBEBUILDER_ASSETS="$$($(K8S_BINS_SCRIPT))" && export KUBEBUILDER_ASSETS && \
	KNATIVE_ASSETS="$$($(KNATIVE_BINS_SCRIPT))" && export KNATIVE_ASSETS && \
	go test -count=1 -timeout 20m $(K8S_TEST_FLAGS) $(K8S_TEST_PKGS)

bench-k8s:
	KUBEBUILDER_ASSETS="$$($(K8S_BINS_SCRIPT))" && export KUBEBUILDER_ASSETS && \
	go test -count=1 -timeout 30m -run '^$$' -bench BenchmarkConverge -benchtime=1x ./internal/controller/nrs/

# Cold start on the emulated cluster: create → Ready → first answer from zero.
bench-e2e:
	KUBEBUILDER_ASSETS="$$($(K8S_BINS_SCRIPT))" && export KUBEBUILDER_ASSETS && \
	KNATIVE_ASSETS="$$($(KNATIVE_BINS_SCRIPT))" && export KNATIVE_ASSETS && \
	go test -count=1 -timeout 20m -run '^$$' -bench BenchmarkColdStart -benchtime=5x ./internal/e2e/
