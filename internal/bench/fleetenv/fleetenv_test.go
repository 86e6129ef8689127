package fleetenv

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kantai.dev/kantai/internal/bench"
	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/function"
)

func TestMain(m *testing.M) {
	function.ServeIfReplica()
	os.Exit(m.Run())
}

// TestCISmoke runs the shipped smoke scenario on the real fleet and checks
// the structure of what the bench reports (not its timings).
func TestCISmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the fleet for about 15s")
	}
	sc, err := scenario.ReadFile("../../../bench/scenarios/ci-smoke.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i := range sc.Testbed.Nodes { // away from a developer's fleet
		sc.Testbed.Nodes[i].Address = "127.78.80." + string(rune('1'+i))
	}
	exe, _ := os.Executable()
	env := &Env{FunctionCommand: []string{exe}, GatewayPort: 38080, AgentPort: 39696}
	out := t.TempDir()
	var table bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bench.Run(ctx, env, []*scenario.Scenario{sc}, bench.Options{OutDir: out, Quick: true, Seed: 1, Out: &table})
	t.Log("\n" + table.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cells) != 1 {
		t.Fatalf("%d cells, want 1", len(res.Cells))
	}
	cell := res.Cells[0]
	if len(cell.Policies) != 2 {
		t.Fatalf("%d policies, want 2", len(cell.Policies))
	}
	for _, p := range cell.Policies {
		if p.Error != "" {
			t.Errorf("%s: %s", p.Policy, p.Error)
		}
		s := p.Summary
		if s.Count == 0 || s.Completed == 0 || s.P50Ms <= 0 || s.Throughput <= 0 || len(s.ServedBy) == 0 {
			t.Errorf("%s: summary %+v lacks figures", p.Policy, s)
		}
		if len(p.ByOrigin) != 2 {
			t.Errorf("%s: by-origin summaries for %d origins, want 2", p.Policy, len(p.ByOrigin))
		}
		if _, ok := p.VsOracle["p95"]; !ok {
			t.Errorf("%s: no ratio to the oracle: %v", p.Policy, p.VsOracle)
		}
	}
	if cell.Policies[0].Gateway == cell.Policies[1].Gateway {
		t.Errorf("knative and kantai ran with the same gateway placement %q", cell.Policies[0].Gateway)
	}
	if cell.Oracle == nil || cell.Oracle.Summary.Count == 0 {
		t.Errorf("no oracle distribution")
	}
	if pass, miss, skip := res.Checks(); pass+miss != len(cell.Checks) || skip != 0 {
		t.Errorf("checks pass=%d miss=%d skip=%d of %d, want all evaluated", pass, miss, skip, len(cell.Checks))
	}
	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Results
	if err := json.Unmarshal(data, &back); err != nil || len(back.Cells) != 1 {
		t.Errorf("results.json does not decode to one cell: %v", err)
	}
	for _, f := range cell.Files {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("output %s missing or empty", f)
		}
	}
	if len(cell.Files) < 2 {
		t.Errorf("files %v, want the CDF and served-where charts", cell.Files)
	}
}

// TestFunctionFor builds each function's manifest from its own fields, and
// names the function's field when the built-in function cannot run it.
func TestFunctionFor(t *testing.T) {
	sc, err := scenario.ReadFile("../../../bench/scenarios/two-functions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		Name       string
		Processing time.Duration
		Workers    int
		Autoscaled bool
	}
	var got []fn
	for i := range sc.Functions {
		m, err := functionFor(sc, i)
		if err != nil {
			t.Fatalf("functionFor(%d) error = %v", i, err)
		}
		got = append(got, fn{m.Name, m.Processing.MeanTime(), m.Workers, len(m.Annotations) > 0})
	}
	want := []fn{{"light", 3 * time.Millisecond, 8, false}, {"heavy", 80 * time.Millisecond, 8, false}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("manifests (-want,+got):\n%s", diff)
	}
	sc.Functions[1].Processing = scenario.Processing{Distribution: scenario.DistNormal, Mean: sc.Functions[1].Processing.Mean}
	if _, err := functionFor(sc, 1); err == nil || !strings.Contains(err.Error(), "functions[1].processing.distribution") {
		t.Errorf("functionFor(normal) error = %v, want one naming functions[1].processing.distribution", err)
	}
}
