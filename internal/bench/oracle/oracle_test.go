package oracle

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"kantai.dev/kantai/internal/bench/stats"
	"kantai.dev/kantai/internal/testbed"
)

// fixed is a constant processing time.
type fixed time.Duration

func (f fixed) Sample(*rand.Rand) time.Duration { return time.Duration(f) }
func (f fixed) Expected() time.Duration         { return time.Duration(f) }

// smallTestbed: two cloud nodes 1 ms apart, a slow edge node (speed 3)
// 40 ± 5 ms from both.
func smallTestbed(t *testing.T) *testbed.Testbed {
	t.Helper()
	tb, err := testbed.Parse([]byte(`
nodes:
- {name: node1, role: cloud, capacity: 4}
- {name: node2, role: cloud, capacity: 4}
- {name: edge, role: edge, capacity: 2, speed: 3}
links:
- {a: node1, b: node2, latency: 1ms}
- {a: node1, b: edge, latency: 40ms, jitter: 5ms}
- {a: node2, b: edge, latency: 40ms, jitter: 5ms}
`))
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return tb
}

func TestChoose(t *testing.T) {
	tb := smallTestbed(t)
	tests := []struct {
		name   string
		nodes  []string
		proc   time.Duration
		origin string
		want   Choice
	}{
		{
			name: "local node wins when fast enough", nodes: []string{"node1", "node2", "edge"},
			proc: 4 * time.Millisecond, origin: "edge",
			want: Choice{Origin: "edge", Node: "edge", Expected: 12 * time.Millisecond},
		},
		{
			name: "slow local node loses to the cloud", nodes: []string{"node1", "node2", "edge"},
			proc: 30 * time.Millisecond, origin: "edge",
			want: Choice{Origin: "edge", Node: "node1", Expected: 70 * time.Millisecond},
		},
		{
			name: "cloud origin without local replica goes to its neighbour", nodes: []string{"node2", "edge"},
			proc: 4 * time.Millisecond, origin: "node1",
			want: Choice{Origin: "node1", Node: "node2", Expected: 5 * time.Millisecond},
		},
		{
			name: "ties go to the first node", nodes: []string{"node2", "node1"},
			proc: 4 * time.Millisecond, origin: "edge",
			want: Choice{Origin: "edge", Node: "node2", Expected: 44 * time.Millisecond},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Choose(Input{Testbed: tb, Nodes: tt.nodes, Processing: fixed(tt.proc)}, tt.origin)
			if err != nil {
				t.Fatalf("Choose() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("Choose() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestChoose_errors(t *testing.T) {
	tb := smallTestbed(t)
	for name, in := range map[string]Input{
		"no nodes":     {Testbed: tb, Processing: fixed(time.Millisecond)},
		"unknown node": {Testbed: tb, Nodes: []string{"node9"}, Processing: fixed(time.Millisecond)},
	} {
		if _, err := Choose(in, "node1"); err == nil {
			t.Errorf("%s: Choose() error = nil, want an error", name)
		}
	}
	if _, err := Choose(Input{Testbed: tb, Nodes: []string{"node1"}, Processing: fixed(0)}, "nowhere"); err == nil {
		t.Error("unknown origin: Choose() error = nil, want an error")
	}
}

func TestSample(t *testing.T) {
	tb := smallTestbed(t)
	in := Input{
		Testbed:    tb,
		Nodes:      []string{"node1", "edge"},
		Processing: fixed(4 * time.Millisecond),
		PerOrigin:  map[string]int{"edge": 2000, "node2": 1000, "node1": 10},
	}
	obs, choices, err := Sample(in, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatalf("Sample() error = %v", err)
	}
	wantChoices := []Choice{
		{Origin: "edge", Node: "edge", Expected: 12 * time.Millisecond},
		{Origin: "node1", Node: "node1", Expected: 4 * time.Millisecond},
		{Origin: "node2", Node: "node1", Expected: 5 * time.Millisecond},
	}
	if !reflect.DeepEqual(choices, wantChoices) {
		t.Errorf("choices = %+v, want %+v", choices, wantChoices)
	}
	if len(obs) != 3010 {
		t.Fatalf("len(obs) = %d, want 3010", len(obs))
	}
	by := stats.ByOrigin(obs, 0)
	// Same node: no RTT, processing 4 ms × speed 3.
	if s := by["edge"]; s.MinMs != 12 || s.MaxMs != 12 || s.ServedBy["edge"] != 1 {
		t.Errorf("edge origin = %+v, want every sample 12 ms on edge", s)
	}
	if s := by["node1"]; s.MinMs != 4 || s.MaxMs != 4 {
		t.Errorf("node1 origin = %+v, want every sample 4 ms", s)
	}
	// node2 → node1: 1 ms without jitter plus 4 ms.
	if s := by["node2"]; s.P50Ms != 5 || s.MaxMs != 5 || s.ServedBy["node1"] != 1 {
		t.Errorf("node2 origin = %+v, want 5 ms on node1", s)
	}

	again, _, err := Sample(in, rand.New(rand.NewPCG(1, 2)))
	if err != nil || !reflect.DeepEqual(obs, again) {
		t.Error("Sample() is not deterministic for the same seed")
	}
}

func TestSample_jitterClampedAtZero(t *testing.T) {
	tb := smallTestbed(t)
	tb.Links[1].Latency = testbed.Duration(time.Millisecond)
	tb.Links[1].Jitter = testbed.Duration(20 * time.Millisecond)
	in := Input{Testbed: tb, Nodes: []string{"node1"}, Processing: fixed(0), PerOrigin: map[string]int{"edge": 5000}}
	obs, _, err := Sample(in, rand.New(rand.NewPCG(7, 7)))
	if err != nil {
		t.Fatalf("Sample() error = %v", err)
	}
	zeros := 0
	for _, o := range obs {
		if o.Latency < 0 {
			t.Fatalf("negative latency %v", o.Latency)
		}
		if o.Latency == 0 {
			zeros++
		}
	}
	// Normal(1ms, 20ms) is below zero about 48% of the time.
	if zeros < 2000 || zeros > 2800 {
		t.Errorf("%d of 5000 samples clamped to zero, want about 2400", zeros)
	}
	s := stats.Summarize(obs, 0)
	if s.P50Ms < 0 || s.P50Ms > 3 {
		t.Errorf("p50 = %v ms, want near 1 ms", s.P50Ms)
	}
}
