// Command matrixerr compares a fleet's latency matrix (kantai get latency
// -o json) with its testbed's configured latencies and prints the error
// against issue 12's target: median and p95 absolute error, each entry's
// error divided by its own allowance (median ≤ 1 ms + 5 %, p95 ≤ 3 ms +
// 10 % of the configured RTT), for all entries and for measured and
// estimated ones apart. hack/fleet100.sh runs it.
//
//	go run ./hack/matrixerr -testbed examples/testbeds/regions-100.yaml -matrix /tmp/k100-lat.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/testbed"
)

func main() {
	tbPath := flag.String("testbed", "", "testbed file (YAML or JSON)")
	mPath := flag.String("matrix", "", "matrix as JSON (kantai get latency -o json)")
	flag.Parse()
	if err := run(*tbPath, *mPath); err != nil {
		fmt.Fprintln(os.Stderr, "matrixerr:", err)
		os.Exit(1)
	}
}

func run(tbPath, mPath string) error {
	if tbPath == "" || mPath == "" {
		return fmt.Errorf("-testbed and -matrix are both required")
	}
	tb, err := testbed.Load(tbPath)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(mPath)
	if err != nil {
		return err
	}
	var m latency.Matrix
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%s: %w", mPath, err)
	}
	truth := func(from, to string) (time.Duration, bool) {
		l, ok := tb.LinkBetween(from, to)
		return l.Latency.D(), ok
	}
	acc := latency.MatrixAccuracy(m, tb.NodeNames(), truth)
	line := func(name string, s latency.ErrorStats) {
		fmt.Printf("%-9s %5d entries: median %6.2f ms, p95 %6.2f ms; allowance used: median ×%.2f, p95 ×%.2f\n",
			name, s.Entries, s.MedianMs, s.P95Ms, s.MedianRatio, s.P95Ratio)
	}
	line("all", acc.All)
	line("measured", acc.Measured)
	line("estimated", acc.Estimated)
	verdict := "MISSED"
	if acc.All.Met() {
		verdict = "met"
	}
	fmt.Printf("missing %d; target (median ≤ 1 ms + 5 %%, p95 ≤ 3 ms + 10 %%) %s\n", acc.All.Missing, verdict)
	return nil
}
