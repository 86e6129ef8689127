package bench

import (
	"testing"

	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/bench/stats"
)

func withFunction(c scenario.Check, fn string) scenario.Check {
	c.Function = fn
	return c
}

func TestEvaluateChecks(t *testing.T) {
	knative := Observed{
		Summary: stats.Summary{Count: 100, Completed: 100, MeanMs: 70, P50Ms: 62, P99Ms: 140},
		ByOrigin: map[string]stats.Summary{
			"node1": {Count: 50, Completed: 50, MeanMs: 20},
			"node3": {Count: 50, Completed: 50, MeanMs: 120},
		},
	}
	kantai := Observed{
		Summary: stats.Summary{Count: 160, Completed: 150, MeanMs: 7, P50Ms: 6, P99Ms: 300},
		ByOrigin: map[string]stats.Summary{
			"node1": {Count: 80, Completed: 75, MeanMs: 25},
			"node3": {Count: 80, Completed: 75, MeanMs: 8},
		},
	}
	// Function "heavy": kantai is slower than knative there, faster overall.
	knative.Functions = map[string]Observed{"heavy": {
		Summary:  stats.Summary{Count: 10, Completed: 10, MeanMs: 130},
		ByOrigin: map[string]stats.Summary{"node3": {Count: 10, Completed: 10, MeanMs: 130}},
	}}
	kantai.Functions = map[string]Observed{"heavy": {
		Summary:  stats.Summary{Count: 10, Completed: 10, MeanMs: 140},
		ByOrigin: map[string]stats.Summary{"node3": {Count: 10, Completed: 10, MeanMs: 140}},
	}}
	observed := map[string]Observed{
		"knative": knative,
		"kantai":  kantai,
		"faast":   {Err: "boom"},
		"local-first": {Summary: stats.Summary{Count: 10}, ByOrigin: map[string]stats.Summary{
			"node3": {Count: 10},
		}},
		scenario.Oracle: {Summary: stats.Summary{Count: 10, Completed: 10, P50Ms: 5}},
	}
	check := func(kind, policy, baseline, metric string, factor float64, origin string) scenario.Check {
		return scenario.Check{Kind: kind, Policy: policy, Baseline: baseline, Metric: metric, Factor: factor, Origin: origin}
	}
	tests := []struct {
		name   string
		check  scenario.Check
		status []string
	}{
		{"fasterBy pass", check(scenario.CheckFasterBy, "kantai", "knative", "p50", 10, ""), []string{StatusPass}},
		{"fasterBy miss", check(scenario.CheckFasterBy, "kantai", "knative", "p50", 18, ""), []string{StatusMiss}},
		{"atLeast pass", check(scenario.CheckAtLeast, "kantai", "knative", "completed", 1.4, ""), []string{StatusPass}},
		{"atLeast miss", check(scenario.CheckAtLeast, "kantai", "knative", "completed", 1.6, ""), []string{StatusMiss}},
		{"atMost pass at the boundary", check(scenario.CheckAtMost, "kantai", "knative", "p99", 300.0/140, ""), []string{StatusPass}},
		{"atMost miss", check(scenario.CheckAtMost, "kantai", "knative", "p99", 2, ""), []string{StatusMiss}},
		{"each origin", check(scenario.CheckAtMost, "kantai", "knative", "mean", 1, scenario.OriginEach), []string{StatusMiss, StatusPass}},
		{"one origin", check(scenario.CheckAtMost, "kantai", "knative", "mean", 1, "node3"), []string{StatusPass}},
		{"origin without data", check(scenario.CheckAtMost, "kantai", "knative", "mean", 1, "node2"), []string{StatusMiss}},
		{"oracle", check(scenario.CheckAtMost, "kantai", scenario.Oracle, "p50", 1.15, ""), []string{StatusMiss}},
		{"failed policy", check(scenario.CheckAtMost, "faast", "knative", "mean", 1, ""), []string{StatusMiss}},
		{"failed baseline", check(scenario.CheckAtLeast, "kantai", "faast", "completed", 1, ""), []string{StatusMiss}},
		{"nothing completed is never a pass", check(scenario.CheckAtMost, "local-first", "knative", "mean", 1, ""), []string{StatusMiss}},
		{"nothing completed per origin", check(scenario.CheckAtMost, "local-first", "knative", "mean", 1, "node3"), []string{StatusMiss}},
		{"policy not run", check(scenario.CheckAtMost, "round-robin", "knative", "mean", 1, ""), []string{StatusSkip}},
		{"function", withFunction(check(scenario.CheckAtMost, "kantai", "knative", "mean", 1, ""), "heavy"), []string{StatusMiss}},
		{"function, looser", withFunction(check(scenario.CheckAtMost, "kantai", "knative", "mean", 1.1, ""), "heavy"), []string{StatusPass}},
		{"function, each of its origins", withFunction(check(scenario.CheckAtMost, "kantai", "knative", "mean", 1.1, scenario.OriginEach), "heavy"), []string{StatusPass}},
		{"function without figures", withFunction(check(scenario.CheckAtMost, "kantai", "knative", "mean", 1, ""), "light"), []string{StatusMiss}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EvaluateChecks([]scenario.Check{tt.check}, observed, map[string][]string{"": {"node1", "node3"}, "heavy": {"node3"}})
			if len(got) != len(tt.status) {
				t.Fatalf("%d results, want %d", len(got), len(tt.status))
			}
			for i, r := range got {
				if r.Status != tt.status[i] {
					t.Errorf("result %d (%s) = %s (%s), want %s", i, r.Description, r.Status, r.Note, tt.status[i])
				}
				if r.Status == StatusMiss && !r.compared && r.Note == "" {
					t.Errorf("result %d: a miss without comparison must say why", i)
				}
			}
		})
	}
}

func TestRatios(t *testing.T) {
	base := stats.Summary{Count: 10, Completed: 10, MeanMs: 10, P50Ms: 8, Throughput: 5}
	s := stats.Summary{Count: 20, Completed: 20, MeanMs: 5, P50Ms: 2, Throughput: 10}
	r := Ratios(s, base)
	if r["mean"] != 0.5 || r["p50"] != 0.25 || r["completed"] != 2 || r["throughput"] != 2 {
		t.Errorf("Ratios() = %v", r)
	}
	if _, ok := r["p99"]; ok {
		t.Error("Ratios() has p99 although the baseline's is zero")
	}
	if r := Ratios(stats.Summary{Count: 3}, base); len(r) != 2 || r["completed"] != 0 {
		t.Errorf("Ratios() of a run with no completion = %v, want completed and throughput 0 and no latency ratio", r)
	}
	if o := OracleRatios(s, base); len(o) != 2 || o["mean"] != 0.5 {
		t.Errorf("OracleRatios() = %v, want latency ratios only", o)
	}
}
