package latency

import (
	"math"
	"slices"
	"time"
)

// The accuracy target for a fleet's matrix (issue 12): against the
// configured RTT c of each path, the median absolute error at most
// 1 ms + 5 % of c and the 95th percentile at most 3 ms + 10 % of c. The
// allowance differs from path to path, so an entry's error is divided by
// its own allowance, and the target is met when the median of those ratios
// (median allowance) and their 95th percentile (p95 allowance) are at most 1.
const (
	medianSlack = time.Millisecond
	medianShare = 0.05
	p95Slack    = 3 * time.Millisecond
	p95Share    = 0.10
)

// ErrorStats summarises a matrix's error against known RTTs.
type ErrorStats struct {
	// Entries counts the entries compared; Missing the paths with a
	// known RTT and no entry (or no value) in the matrix.
	Entries, Missing int
	// MedianMs and P95Ms are the median and 95th percentile absolute
	// errors in milliseconds.
	MedianMs, P95Ms float64
	// MedianRatio is the median of each entry's error divided by its
	// median allowance (1 ms + 5 %); P95Ratio the 95th percentile of the
	// errors divided by their p95 allowance (3 ms + 10 %). The target is
	// met when both are at most 1.
	MedianRatio, P95Ratio float64
}

// Met reports whether the target is met: every path has an entry, and
// both ratios are at most 1.
func (s ErrorStats) Met() bool {
	return s.Entries > 0 && s.Missing == 0 && s.MedianRatio <= 1 && s.P95Ratio <= 1
}

// Accuracy is a matrix's error, overall and for measured and estimated
// entries apart.
type Accuracy struct {
	All, Measured, Estimated ErrorStats
}

// MatrixAccuracy compares every entry of m between two distinct nodes of
// nodes with truth (the configured RTT, false for an unknown path). Paths
// whose truth is unknown are left out.
func MatrixAccuracy(m Matrix, nodes []string, truth func(from, to string) (time.Duration, bool)) Accuracy {
	var all, meas, est errSamples
	missing := 0
	for _, from := range nodes {
		for _, to := range nodes {
			if from == to {
				continue
			}
			c, ok := truth(from, to)
			if !ok {
				continue
			}
			e, ok := m[from][to]
			if !ok || !e.Known() {
				missing++
				continue
			}
			all.add(e.Duration(), c)
			if e.Estimated {
				est.add(e.Duration(), c)
			} else {
				meas.add(e.Duration(), c)
			}
		}
	}
	out := Accuracy{All: all.stats(), Measured: meas.stats(), Estimated: est.stats()}
	out.All.Missing = missing
	return out
}

type errSamples struct{ abs, med, p95 []float64 }

func (s *errSamples) add(got, want time.Duration) {
	d := math.Abs((got - want).Seconds())
	c := want.Seconds()
	s.abs = append(s.abs, d*1e3)
	s.med = append(s.med, d/(medianSlack.Seconds()+medianShare*c))
	s.p95 = append(s.p95, d/(p95Slack.Seconds()+p95Share*c))
}

func (s *errSamples) stats() ErrorStats {
	return ErrorStats{
		Entries:     len(s.abs),
		MedianMs:    quantile(s.abs, 0.5),
		P95Ms:       quantile(s.abs, 0.95),
		MedianRatio: quantile(s.med, 0.5),
		P95Ratio:    quantile(s.p95, 0.95),
	}
}

// quantile returns the q-quantile of xs (the element at rank ⌊q·n⌋ of the
// sorted values, the last for q = 1); 0 for none. xs is sorted in place.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(q*float64(len(xs))))]
}
