package bench

import (
	"fmt"

	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/bench/stats"
)

// Check outcomes.
const (
	StatusPass = "PASS"
	StatusMiss = "MISS"
	// StatusSkip marks a check whose policy was left out of the run on
	// purpose (Options.Policies). A policy that failed is a MISS.
	StatusSkip = "SKIP"
)

// Observed is what checks read of one policy (or of the oracle).
type Observed struct {
	Summary  stats.Summary
	ByOrigin map[string]stats.Summary
	// Err is set when the policy's run failed.
	Err string
	// Functions holds each function's own figures (and, for the oracle,
	// each function's own oracle), by function name.
	Functions map[string]Observed
}

// CheckResult is one evaluated check; a check with origin "each" yields one
// result per origin.
type CheckResult struct {
	scenario.Check
	Description   string   `json:"description"`
	Value         float64  `json:"value"`
	BaselineValue float64  `json:"baselineValue"`
	Ratio         *float64 `json:"ratio,omitempty"`
	Status        string   `json:"status"`
	Note          string   `json:"note,omitempty"`

	compared bool
}

// EvaluateChecks evaluates declarative checks against observed summaries,
// keyed by policy name (and scenario.Oracle). A policy absent from observed
// was not run: its checks are SKIP. Missing data, failed runs and
// zero-completion runs are MISS, never PASS. origins lists the load's origin
// nodes by function ("" for all functions), for "each". A check that names a
// function compares that function's figures.
func EvaluateChecks(checks []scenario.Check, observed map[string]Observed, origins map[string][]string) []CheckResult {
	var out []CheckResult
	for _, c := range checks {
		if c.Origin != scenario.OriginEach {
			out = append(out, evaluate(c, observed))
			continue
		}
		for _, o := range origins[c.Function] {
			c1 := c
			c1.Origin = o
			out = append(out, evaluate(c1, observed))
		}
	}
	return out
}

func evaluate(c scenario.Check, observed map[string]Observed) CheckResult {
	r := CheckResult{Check: c, Description: c.String(), Status: StatusMiss}
	pol, okP := observed[c.Policy]
	base, okB := observed[c.Baseline]
	switch {
	case !okP || !okB:
		var missing []string
		if !okP {
			missing = append(missing, c.Policy)
		}
		if !okB {
			missing = append(missing, c.Baseline)
		}
		r.Status = StatusSkip
		r.Note = fmt.Sprintf("not run: %v", missing)
		return r
	case pol.Err != "":
		r.Note = c.Policy + " failed: " + pol.Err
		return r
	case base.Err != "":
		r.Note = c.Baseline + " failed: " + base.Err
		return r
	}
	if c.Function != "" {
		var okF bool
		if pol, okF = pol.Functions[c.Function]; !okF {
			r.Note = fmt.Sprintf("%s has no figures for function %s", c.Policy, c.Function)
			return r
		}
		if base, okF = base.Functions[c.Function]; !okF {
			r.Note = fmt.Sprintf("%s has no figures for function %s", c.Baseline, c.Function)
			return r
		}
	}
	ps, bs, note := pick(c, pol, base)
	if note != "" {
		r.Note = note
		return r
	}
	v, ok1 := ps.Value(c.Metric)
	b, ok2 := bs.Value(c.Metric)
	if !ok1 || !ok2 {
		r.Note = "unknown metric " + c.Metric
		return r
	}
	r.Value, r.BaselineValue, r.compared = v, b, true
	if b != 0 {
		ratio := v / b
		r.Ratio = &ratio
	}
	if stats.IsLatency(c.Metric) {
		if ps.Completed == 0 {
			r.Note = c.Policy + " completed no request"
			return r
		}
		if bs.Completed == 0 {
			r.Note = c.Baseline + " completed no request"
			return r
		}
	}
	var pass bool
	switch c.Kind {
	case scenario.CheckAtMost:
		pass = v <= c.Factor*b
	case scenario.CheckAtLeast:
		pass = v >= c.Factor*b
	case scenario.CheckFasterBy:
		pass = b >= c.Factor*v
	default:
		r.Note = "unknown kind " + c.Kind
		return r
	}
	if pass {
		r.Status = StatusPass
	}
	return r
}

// pick selects the summaries a check compares: all requests, or one origin's.
func pick(c scenario.Check, pol, base Observed) (ps, bs stats.Summary, note string) {
	if c.Origin == "" {
		return pol.Summary, base.Summary, ""
	}
	ps, ok1 := pol.ByOrigin[c.Origin]
	bs, ok2 := base.ByOrigin[c.Origin]
	switch {
	case !ok1:
		return ps, bs, fmt.Sprintf("%s has no request from origin %s", c.Policy, c.Origin)
	case !ok2:
		return ps, bs, fmt.Sprintf("%s has no request from origin %s", c.Baseline, c.Origin)
	}
	return ps, bs, ""
}

// CountChecks tallies check results by status.
func CountChecks(rs []CheckResult) (pass, miss, skip int) {
	for _, r := range rs {
		switch r.Status {
		case StatusPass:
			pass++
		case StatusSkip:
			skip++
		default:
			miss++
		}
	}
	return pass, miss, skip
}

// ratioMetrics are compared to the baseline; the oracle has latencies only.
var ratioMetrics = []string{
	stats.MetricCompleted, stats.MetricThroughput, stats.MetricMean, stats.MetricP50,
	stats.MetricP90, stats.MetricP95, stats.MetricP99, stats.MetricMax,
}

// Ratios returns s.metric / base.metric for the metrics where both are
// defined (base non-zero; latencies only when both completed requests).
func Ratios(s, base stats.Summary) map[string]float64 {
	out := map[string]float64{}
	for _, m := range ratioMetrics {
		if stats.IsLatency(m) && (s.Completed == 0 || base.Completed == 0) {
			continue
		}
		v, _ := s.Value(m)
		b, _ := base.Value(m)
		if b != 0 {
			out[m] = v / b
		}
	}
	return out
}

// OracleRatios is Ratios restricted to response times.
func OracleRatios(s, oracle stats.Summary) map[string]float64 {
	out := Ratios(s, oracle)
	for m := range out {
		if !stats.IsLatency(m) {
			delete(out, m)
		}
	}
	return out
}
