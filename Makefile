# kantai — the two commands a newcomer needs:
#   make demo   runs the seed's walkthrough on the embedded fleet
#   make test   runs the whole test suite (installs what it needs)

GO ?= go
BIN := bin/kantai

include mk/k8s.mk

.PHONY: all build demo test test-unit test-fuzz vet fmt-check bench bench-quick bench-proxy clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/kantai

demo: build
	$(BIN) demo

# The whole suite: formatting, vet, unit and fleet tests (real processes and
# sockets on loopback), the bench's CI smoke run, and the Kubernetes
# integration tests on a real kube-apiserver.
test: fmt-check vet test-unit test-fuzz verify-generated test-k8s

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test-unit:
	$(GO) test -race -count=1 -timeout 20m ./...

# Every fuzz target for a few thousand inputs; a longer run: make test-fuzz
# FUZZTIME=10m. A count, not a duration, by default: with a duration the fuzz
# engine can report "context deadline exceeded" as a failure when the time
# runs out while it is still minimizing a new input.
FUZZTIME ?= 5000x
FUZZ_TARGETS := internal/manifest:FuzzParseAll internal/gateway:FuzzRouteHost internal/gateway:FuzzTableFind internal/ingress:FuzzTranslate internal/testbed:FuzzParse
test-fuzz:
	@for t in $(FUZZ_TARGETS); do \
		$(GO) test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 200x -parallel 1 ./$${t%%:*} || exit 1; \
	done

# Paper comparisons on the emulated fleet (about 3 hours; bench-quick about 20 minutes).
bench: build
	$(BIN) bench

bench-quick: build
	$(BIN) bench --quick

# The gateway alone against httputil.ReverseProxy and nginx (installs nginx-light).
bench-proxy: build
	hack/nginx/install.sh
	mkdir -p bench-out && $(BIN) bench proxy --json bench-out/proxy.json

clean:
	rm -rf bin bench-out
