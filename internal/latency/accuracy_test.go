package latency

import (
	"math"
	"testing"
	"time"
)

func TestMatrixAccuracy(t *testing.T) {
	truth := map[[2]string]time.Duration{
		{"a", "b"}: ms(100), {"b", "a"}: ms(100),
		{"a", "c"}: ms(10), {"c", "a"}: ms(10),
		{"b", "c"}: ms(20), {"c", "b"}: ms(20),
	}
	get := func(from, to string) (time.Duration, bool) { d, ok := truth[[2]string{from, to}]; return d, ok }
	m := Matrix{
		// 6 ms off a 100 ms path: allowance 6 ms (median), 13 ms (p95)
		"a": {"b": {RTT: 0.106, Samples: 3}, "c": {RTT: 0.0115, Estimated: true}},
		// b→a missing; b→c 1 ms off 20 ms: allowance 2 ms, 5 ms
		"b": {"c": {RTT: 0.019, Samples: 1}, "x": {RTT: 1, Samples: 1}},
		// c→a 0; c→b never measured: missing
		"c": {"a": {RTT: 0.010, Samples: 9}, "b": {Failures: 2}},
	}
	got := MatrixAccuracy(m, []string{"a", "b", "c"}, get)
	near := func(x, y float64) bool { return math.Abs(x-y) < 1e-9 }
	// Errors: 6, 1.5 (estimated), 1, 0 ms.
	if got.All.Entries != 4 || got.All.Missing != 2 {
		t.Errorf("entries %d missing %d, want 4 and 2", got.All.Entries, got.All.Missing)
	}
	// Sorted errors 0, 1, 1.5, 6: the median rank ⌊0.5·4⌋ = 2 is 1.5 ms,
	// the p95 rank 3 is 6 ms.
	if !near(got.All.MedianMs, 1.5) || !near(got.All.P95Ms, 6) {
		t.Errorf("median %v p95 %v ms, want 1.5 and 6", got.All.MedianMs, got.All.P95Ms)
	}
	// Ratios to the median allowance: 6/6, 1.5/1.5, 1/2, 0 → sorted 0,
	// 0.5, 1, 1 → median 1. To the p95 allowance: 6/13, 1.5/4, 1/5, 0 →
	// the largest, 6/13.
	if !near(got.All.MedianRatio, 1) || !near(got.All.P95Ratio, 6.0/13) {
		t.Errorf("ratios %v / %v, want 1 / %v", got.All.MedianRatio, got.All.P95Ratio, 6.0/13)
	}
	if got.All.Met() || !got.Measured.Met() {
		t.Errorf("met: all %v (2 missing), measured %v; want false, true", got.All.Met(), got.Measured.Met())
	}
	if got.Estimated.Entries != 1 || !near(got.Estimated.MedianMs, 1.5) || got.Measured.Entries != 3 || !near(got.Measured.P95Ms, 6) {
		t.Errorf("estimated %+v, measured %+v", got.Estimated, got.Measured)
	}
	if (ErrorStats{}).Met() {
		t.Error("no entries counts as met")
	}
	if s := (ErrorStats{Entries: 1, MedianRatio: 1.01}); s.Met() {
		t.Error("a median over its allowance counts as met")
	}
}
