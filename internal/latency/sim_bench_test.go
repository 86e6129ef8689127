package latency

import (
	"fmt"
	"testing"
)

// BenchmarkSimulatedFleet prints the coordinates' figures for simulated
// fleets of 1,000 and 5,000 nodes in virtual time (see simulate and
// newWorld): 300 s from a cold start, then 1 % of the nodes get 20 ms more
// access delay each way (40 ms more RTT to everyone) and the run goes on
// for 120 s. Run it once:
//
//	go test -run '^$' -bench SimulatedFleet -benchtime 1x ./internal/latency
func BenchmarkSimulatedFleet(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var res simResult
			for range b.N {
				w := newWorld(n, 21)
				res = simulate(w, simConfig{seconds: 420, seed: 22, pairs: 20000, changeAt: 300, changed: n / 100, changeBy: 0.020, gossip: true})
			}
			b.ReportMetric(res.finalMedian, "median-rel-err")
			b.ReportMetric(res.probesPerNodeSecond, "probes/node/s")
			b.ReportMetric(res.convergeAfterChangeAbs, "s-to-converge-after-change")
			b.Logf("%d nodes, 3 probes per node per second: median relative error %.3f (p90 %.3f, median absolute %.2f ms); "+
				"pairs within a region %.3f (median absolute %.2f ms); %.2f probes per node per second; "+
				"within 10%% of the final error %.0f s after a cold start; "+
				"after 1%% of nodes gained 40 ms RTT: their pairs' median relative error %.3f before, worst %.3f, back within 10%% after %.0f s; "+
				"median absolute error %.2f ms before, worst %.2f ms, half the jump recovered after %.0f s, back within 10%% (or 1 ms) after %.0f s; "+
				"%.1f µs of wall time per simulated probe, evaluation included; "+
				"coordinates spread by /ping answers: 99%% of pairs known after %.0f s, %.3f known at the end, "+
				"age of the coordinate known median %.0f s, p90 %.0f s, %.3f older than the agents' limit (estimate marked stale)",
				n, res.finalMedian, res.finalP90, res.finalAbs*1e3, res.nearMedian, res.nearAbs*1e3, res.probesPerNodeSecond,
				res.settle, res.beforeChange, res.worstAfter, res.convergeAfterChange,
				res.beforeChangeAbs*1e3, res.worstAfterAbs*1e3, res.halfAfterChangeAbs, res.convergeAfterChangeAbs, float64(res.updateCost.Nanoseconds())/1e3,
				res.known99, res.knownEnd, res.ageMedian, res.ageP90, res.ageStale)
		})
	}
}
