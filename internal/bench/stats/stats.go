// Package stats summarises benchmark observations the way the paper's
// measurements were summarised: nearest-rank percentiles over successful
// responses, counts, throughput and where requests were served.
package stats

import (
	"math"
	"slices"
	"time"
)

// Obs is one observed (or oracle-sampled) request.
type Obs struct {
	// Origin is the node whose users sent the request.
	Origin string
	// Node is the node that served it; empty when unknown.
	Node string
	// Latency is the end-to-end response time.
	Latency time.Duration
	// OK reports a successful (2xx) response. Latency statistics only cover
	// successful requests, as in the paper's data.
	OK bool
}

// Summary describes one set of requests. Times are in milliseconds.
type Summary struct {
	// Count is every request issued in the measured window.
	Count int `json:"count"`
	// Completed is the requests that got a 2xx response.
	Completed int `json:"completed"`
	// Errors is Count − Completed: non-2xx answers, transport errors,
	// requests refused by the generator's bound and unfinished ones.
	Errors int     `json:"errors"`
	MeanMs float64 `json:"meanMs"`
	MinMs  float64 `json:"minMs"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
	P95Ms  float64 `json:"p95Ms"`
	P99Ms  float64 `json:"p99Ms"`
	MaxMs  float64 `json:"maxMs"`
	// Throughput is completed requests per second of the measured window;
	// zero when the window is unknown (oracle samples).
	Throughput float64 `json:"throughput"`
	// ServedBy is each serving node's share of the completed requests
	// (0–1). Requests without a serving node are counted under "".
	ServedBy map[string]float64 `json:"servedBy,omitempty"`
}

// Metric names accepted by Value, as written in scenario checks.
const (
	MetricCount      = "count"
	MetricCompleted  = "completed"
	MetricErrors     = "errors"
	MetricMean       = "mean"
	MetricP50        = "p50"
	MetricP90        = "p90"
	MetricP95        = "p95"
	MetricP99        = "p99"
	MetricMax        = "max"
	MetricThroughput = "throughput"
)

// Metrics lists every metric name, in display order.
var Metrics = []string{
	MetricCount, MetricCompleted, MetricErrors, MetricMean, MetricP50,
	MetricP90, MetricP95, MetricP99, MetricMax, MetricThroughput,
}

// IsLatency reports whether a metric is a response time, which is only
// meaningful when some request completed.
func IsLatency(metric string) bool {
	switch metric {
	case MetricMean, MetricP50, MetricP90, MetricP95, MetricP99, MetricMax:
		return true
	}
	return false
}

// Value returns a metric by name; ok is false for an unknown name.
func (s Summary) Value(metric string) (v float64, ok bool) {
	switch metric {
	case MetricCount:
		return float64(s.Count), true
	case MetricCompleted:
		return float64(s.Completed), true
	case MetricErrors:
		return float64(s.Errors), true
	case MetricMean:
		return s.MeanMs, true
	case MetricP50:
		return s.P50Ms, true
	case MetricP90:
		return s.P90Ms, true
	case MetricP95:
		return s.P95Ms, true
	case MetricP99:
		return s.P99Ms, true
	case MetricMax:
		return s.MaxMs, true
	case MetricThroughput:
		return s.Throughput, true
	}
	return 0, false
}

// Percentile returns the nearest-rank percentile p (0–100) of an ascending
// sample: the value at index ceil(p/100·n)−1, clamped to the sample. It
// returns 0 for an empty sample.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The small slack keeps 0.95·100 = 95.00000000000001 at rank 95.
	rank := math.Ceil(p*float64(n)/100 - 1e-9)
	i := int(rank) - 1
	if i < 0 {
		i = 0
	}
	if i >= n {
		i = n - 1
	}
	return sorted[i]
}

// Summarize computes the summary of a set of observations over a measured
// window (zero window: throughput left at zero).
func Summarize(obs []Obs, window time.Duration) Summary {
	s := Summary{Count: len(obs)}
	lat := make([]time.Duration, 0, len(obs))
	served := map[string]int{}
	var sum time.Duration
	for _, o := range obs {
		if !o.OK {
			continue
		}
		lat = append(lat, o.Latency)
		sum += o.Latency
		served[o.Node]++
	}
	s.Completed = len(lat)
	s.Errors = s.Count - s.Completed
	if window > 0 {
		s.Throughput = float64(s.Completed) / window.Seconds()
	}
	if len(lat) == 0 {
		return s
	}
	slices.Sort(lat)
	s.MeanMs = ms(sum) / float64(len(lat))
	s.MinMs = ms(lat[0])
	s.P50Ms = ms(Percentile(lat, 50))
	s.P90Ms = ms(Percentile(lat, 90))
	s.P95Ms = ms(Percentile(lat, 95))
	s.P99Ms = ms(Percentile(lat, 99))
	s.MaxMs = ms(lat[len(lat)-1])
	s.ServedBy = make(map[string]float64, len(served))
	for node, c := range served {
		s.ServedBy[node] = float64(c) / float64(len(lat))
	}
	return s
}

// ByOrigin summarises each origin's observations separately.
func ByOrigin(obs []Obs, window time.Duration) map[string]Summary {
	groups := map[string][]Obs{}
	for _, o := range obs {
		groups[o.Origin] = append(groups[o.Origin], o)
	}
	out := make(map[string]Summary, len(groups))
	for origin, g := range groups {
		out[origin] = Summarize(g, window)
	}
	return out
}

// Point is one step of an empirical CDF: a share Y of the sample is at most
// X milliseconds.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// CDF returns the empirical CDF of the successful observations' latencies
// with at most maxPoints points (evenly spaced in rank; the last point is
// always the maximum). maxPoints < 2 means no limit.
func CDF(obs []Obs, maxPoints int) []Point {
	lat := make([]time.Duration, 0, len(obs))
	for _, o := range obs {
		if o.OK {
			lat = append(lat, o.Latency)
		}
	}
	slices.Sort(lat)
	return CDFSorted(lat, maxPoints)
}

// CDFSorted is CDF over an ascending sample of latencies.
func CDFSorted(sorted []time.Duration, maxPoints int) []Point {
	n := len(sorted)
	if n == 0 {
		return nil
	}
	step := 1
	if maxPoints >= 2 && n > maxPoints {
		step = (n + maxPoints - 2) / (maxPoints - 1)
	}
	pts := make([]Point, 0, n/step+1)
	for i := step - 1; i < n; i += step {
		pts = append(pts, Point{X: ms(sorted[i]), Y: float64(i+1) / float64(n)})
	}
	if last := pts[len(pts)-1]; last.Y < 1 {
		pts = append(pts, Point{X: ms(sorted[n-1]), Y: 1})
	}
	return pts
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
