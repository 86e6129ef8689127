#!/usr/bin/env bash
# Measures a 100-node emulated fleet at idle: time until the admin API answers,
# idle CPU and RSS of the fleet process, latency probes per second; writes the
# measured matrix and the expanded testbed as JSON under /tmp, and prints the
# matrix error against the configured latencies (hack/matrixerr) at 80 s and
# again at 300 s after the start.
set -u
cd "$(dirname "$0")/.."
go build -o bin/kantai ./cmd/kantai
go build -o bin/matrixerr ./hack/matrixerr
export XDG_RUNTIME_DIR=$(mktemp -d)  # a private admin socket for this run
start=$(date +%s.%N)
bin/kantai up -f examples/testbeds/regions-100.yaml > /tmp/k100.log 2>&1 &
pid=$!
until bin/kantai get nodes >/dev/null 2>&1; do sleep 0.05; done
ready=$(date +%s.%N)
echo "start to admin answering: $(echo "$ready - $start" | bc) s"
sleep 60   # settle
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
probes0=$(curl -s --unix-socket $XDG_RUNTIME_DIR/kantai/admin.sock http://localhost/metrics | awk '/^kantai_latency_probes_total/ {s+=$2} END {print s}')
sleep 20
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
probes1=$(curl -s --unix-socket $XDG_RUNTIME_DIR/kantai/admin.sock http://localhost/metrics | awk '/^kantai_latency_probes_total/ {s+=$2} END {print s}')
tck=$(getconf CLK_TCK)
echo "idle CPU: $(echo "scale=3; ($t1-$t0)/$tck/20" | bc) cores"
echo "RSS: $(awk '/VmRSS/ {print $2/1024 " MiB"}' /proc/$pid/status)"
echo "probes/s: $(echo "scale=1; ($probes1-$probes0)/20" | bc)"
bin/kantai get latency -o json > /tmp/k100-lat.json
bin/kantai testbed show examples/testbeds/regions-100.yaml -o json > /tmp/k100-tb.json
echo "matrix error at $(echo "$(date +%s.%N) - $start" | bc | cut -d. -f1) s:"
bin/matrixerr -testbed examples/testbeds/regions-100.yaml -matrix /tmp/k100-lat.json
while [ "$(echo "$(date +%s.%N) - $start < 300" | bc)" = 1 ]; do sleep 1; done
bin/kantai get latency -o json > /tmp/k100-lat-300.json
echo "matrix error at $(echo "$(date +%s.%N) - $start" | bc | cut -d. -f1) s:"
bin/matrixerr -testbed examples/testbeds/regions-100.yaml -matrix /tmp/k100-lat-300.json
bin/kantai down >/dev/null 2>&1
wait $pid
