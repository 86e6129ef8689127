package fleetenv

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"kantai.dev/kantai/internal/bench"
	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/testbed"
)

// TestEvents runs the example live-changes scenario, shortened, on the real
// fleet: the run has a phase per event, the agents' view of the slowed
// link is reported, and after node3 goes down round-robin serves every
// request from node2 (the gateway offers a request whose replica cannot be
// reached to another replica).
func TestEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the fleet for about 10s")
	}
	sc, err := scenario.ReadFile("../../../examples/scenarios/live-changes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i := range sc.Testbed.Nodes {
		sc.Testbed.Nodes[i].Address = "127.78.81." + string(rune('1'+i))
	}
	sc.Duration, sc.Warmup = testbed.Duration(6*time.Second), testbed.Duration(time.Second)
	sc.Events[0].At, sc.Events[1].At = testbed.Duration(2*time.Second), testbed.Duration(4*time.Second)
	sc.Policies = sc.Policies[:1]
	if sc.Policies[0].Name != "round-robin" {
		t.Fatalf("first policy %q, want round-robin", sc.Policies[0].Name)
	}
	exe, _ := os.Executable()
	env := &Env{FunctionCommand: []string{exe}, GatewayPort: 38090, AgentPort: 39697}
	var table bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bench.Run(ctx, env, []*scenario.Scenario{sc}, bench.Options{Seed: 1, Out: &table})
	t.Log("\n" + table.String())
	if err != nil {
		t.Fatal(err)
	}
	pr := res.Cells[0].Policies[0]
	if pr.Error != "" {
		t.Fatal(pr.Error)
	}
	if len(pr.Phases) != 3 {
		t.Fatalf("%d phases, want 3: %+v", len(pr.Phases), pr.Phases)
	}
	slowed, down := pr.Phases[1], pr.Phases[2]
	if !strings.Contains(slowed.Event, "link node1–node2 latency 80ms") || slowed.LatencySettled == "" {
		t.Errorf("second phase %+v, want the link change with its settling time", slowed)
	}
	if !strings.Contains(down.Event, "node node3 down") || down.FailuresUntil == "" {
		t.Errorf("third phase %+v, want node3 down with the time failures lasted", down)
	}
	if share := down.Summary.ServedBy["node3"]; share != 0 || down.Summary.Completed == 0 {
		t.Errorf("after node3 went down: %d completed, node3 served %.0f%%; want requests completed, none by node3", down.Summary.Completed, 100*share)
	}
}
