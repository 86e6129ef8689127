package control

import (
	"maps"
	"strings"
	"testing"
	"time"

	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/placement"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func sec(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// seed's three nodes: two cloud nodes 1 ms apart, an edge node 50 ms away.
func rtt(from, to string) (time.Duration, bool) {
	if from == to {
		return 0, true
	}
	if from == "node3" || to == "node3" {
		return 50 * time.Millisecond, true
	}
	return time.Millisecond, true
}

func nodes(capacity ...int) []Node {
	names := []string{"node1", "node2", "node3"}
	out := make([]Node, len(capacity))
	for i, c := range capacity {
		out[i] = Node{Name: names[i], Capacity: c}
	}
	return out
}

func spec(mut func(*autoscale.Spec)) autoscale.Spec {
	s := autoscale.DefaultSpec()
	s.Window = 12 * time.Second
	s.Target = 10
	if mut != nil {
		mut(&s)
	}
	return s
}

// world plays a home in virtual time: each step's output is carried out
// at once, and replicas started are ready by the next step unless
// starting holds them.
type world struct {
	rev      *Revision
	replicas []Replica
	nodes    []Node
	seq      int
	starting bool
}

func (w *world) step(t *testing.T, now time.Time, demand ...Demand) Output {
	t.Helper()
	used := map[string]int{}
	for i, r := range w.replicas {
		used[r.Node]++
		if !w.starting {
			w.replicas[i].Ready = true
		}
	}
	ns := make([]Node, len(w.nodes))
	for i, n := range w.nodes {
		n.Used = used[n.Name]
		ns[i] = n
	}
	out := w.rev.Step(Input{Now: now, Demand: demand, Nodes: ns, Replicas: w.replicas, RTT: rtt})
	ch := Diff(out, w.replicas)
	stop := map[string]bool{}
	for _, name := range ch.Stop {
		stop[name] = true
	}
	keep := w.replicas[:0]
	for _, r := range w.replicas {
		if !stop[r.Name] {
			keep = append(keep, r)
		}
	}
	w.replicas = keep
	for _, a := range ch.Start {
		w.seq++
		w.replicas = append(w.replicas, Replica{Name: a.Node + "-" + string(rune('a'+w.seq)), Node: a.Node, Origin: a.Origin, Created: now})
	}
	return out
}

func TestStep(t *testing.T) {
	tests := []struct {
		name  string
		spec  func(*autoscale.Spec)
		nodes []Node
		run   func(t *testing.T, w *world)
	}{
		{name: "scale from zero at the origin", spec: func(s *autoscale.Spec) { s.InitialScale = 0 }, nodes: nodes(10, 10, 3),
			run: func(t *testing.T, w *world) {
				if out := w.step(t, sec(1)); out.Total() != 0 {
					t.Fatalf("no demand: %v, want nothing", out.Desired)
				}
				out := w.step(t, sec(2), Demand{"node3", 1})
				if !maps.Equal(out.Desired, map[string]int{"node3": 1}) || out.Origins["node3"]["node3"] != 1 {
					t.Errorf("demand at node3: %v %v, want one replica on node3 for node3", out.Desired, out.Origins)
				}
			}},
		{name: "spill when the origin is full", nodes: nodes(10, 10, 1), spec: func(s *autoscale.Spec) { s.InitialScale = 0 },
			run: func(t *testing.T, w *world) {
				out := w.step(t, sec(1), Demand{"node3", 25})
				if out.Desired["node3"] != 1 || out.Desired["node1"]+out.Desired["node2"] != 2 {
					t.Errorf("25 at node3 with room for 1: %v, want 1 on node3 and 2 in the cloud", out.Desired)
				}
			}},
		{name: "affinity: no capacity, no replica", nodes: nodes(0, 10, 0), spec: func(s *autoscale.Spec) { s.InitialScale = 0 },
			run: func(t *testing.T, w *world) {
				out := w.step(t, sec(1), Demand{"node3", 1})
				if !maps.Equal(out.Desired, map[string]int{"node2": 1}) {
					t.Errorf("only node2 allowed: %v", out.Desired)
				}
			}},
		{name: "every node full: unplaced", nodes: nodes(0, 0, 0), spec: func(s *autoscale.Spec) { s.InitialScale = 0 },
			run: func(t *testing.T, w *world) {
				out := w.step(t, sec(1), Demand{"node1", 1})
				if out.Total() != 0 || out.Unplaced != 1 || !strings.Contains(out.Reason, "unplaced") {
					t.Errorf("got %v unplaced %d %q, want one unplaced", out.Desired, out.Unplaced, out.Reason)
				}
			}},
		{name: "initial scale then scale to zero after the window", nodes: nodes(10, 10, 3),
			run: func(t *testing.T, w *world) {
				if out := w.step(t, sec(1)); out.Total() != 1 {
					t.Fatalf("initial scale: %v, want 1", out.Desired)
				}
				if out := w.step(t, sec(11)); out.Total() != 1 {
					t.Errorf("within the window: %v, want 1", out.Desired)
				}
				if out := w.step(t, sec(13)); out.Total() != 0 {
					t.Errorf("after the window: %v, want 0", out.Desired)
				}
			}},
		{name: "min and max scale", nodes: nodes(10, 10, 3), spec: func(s *autoscale.Spec) { s.MinScale, s.MaxScale = 2, 3 },
			run: func(t *testing.T, w *world) {
				if out := w.step(t, sec(1)); out.Total() != 2 {
					t.Errorf("min-scale 2: %v", out.Desired)
				}
				if out := w.step(t, sec(2), Demand{"node1", 100}); out.Decision.Total != 3 {
					t.Errorf("max-scale 3 under demand for 10: decision %d", out.Decision.Total)
				}
				if out := w.step(t, sec(3), Demand{"node1", 100}); out.Total() != 3 {
					t.Errorf("once the replacements are ready: %v, want 3", out.Desired)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &world{rev: New(Config{Spec: spec(tt.spec), Placement: placement.Nearest{}, Created: t0}), nodes: tt.nodes}
			tt.run(t, w)
		})
	}
}

// A controller that restarts has no history: for one stable window it
// scales nothing down, though its fresh autoscaler would ask for zero.
func TestStep_restartHoldsForAWindow(t *testing.T) {
	created := t0.Add(-time.Hour)
	started := t0
	var replicas []Replica
	for i, n := range []string{"node1", "node1", "node3", "node3"} {
		replicas = append(replicas, Replica{Name: n + "-" + string(rune('a'+i)), Node: n, Origin: n, Ready: true, Created: created})
	}
	fresh := &world{rev: New(Config{Spec: spec(nil), Created: created}), nodes: nodes(10, 10, 3), replicas: append([]Replica(nil), replicas...)}
	if out := fresh.step(t, started); maps.Equal(out.Desired, map[string]int{"node1": 2, "node3": 2}) {
		t.Fatalf("without the hold the step keeps %v; the test shows nothing", out.Desired)
	}
	w := &world{rev: New(Config{Spec: spec(nil), Created: created, Resumed: true, Started: started}), nodes: nodes(10, 10, 3), replicas: replicas}
	for s := 0; s < 12; s++ {
		out := w.step(t, started.Add(time.Duration(s)*time.Second))
		if out.Desired["node1"] != 2 || out.Desired["node3"] != 2 {
			t.Fatalf("%ds after restart: %v (%s), want 2 on node1 and node3", s, out.Desired, out.Reason)
		}
	}
	// Then the rate-limited scale-down resumes and reaches zero.
	for s := 13; ; s++ {
		out := w.step(t, started.Add(time.Duration(s)*time.Second))
		if out.Total() == 0 {
			break
		}
		if strings.Contains(out.Reason, "restart") || s > 30 {
			t.Fatalf("%ds after restart: %v (%s), want scale-down to zero", s, out.Desired, out.Reason)
		}
	}
}

// Make before break: a replica being replaced keeps serving until its
// successor is ready.
func TestStep_makeBeforeBreak(t *testing.T) {
	w := &world{rev: New(Config{Spec: spec(nil), Created: t0}), nodes: nodes(10, 10, 3),
		replicas: []Replica{{Name: "initial", Node: "node1", Origin: "", Ready: true, Created: t0}}}
	// Demand at node3 wants its own replica there; the unattributed one
	// goes, but only once the new one is ready.
	for s := 1; s <= 2; s++ {
		out := w.step(t, sec(s), Demand{"node3", 1})
		if out.Desired["node1"] != 1 || !strings.Contains(out.Reason, "make before break") {
			t.Fatalf("step %d: %v %q, want the initial replica kept", s, out.Desired, out.Reason)
		}
		w.starting = true // the successor is still starting at step 2

	}
	w.starting = false
	if out := w.step(t, sec(3), Demand{"node3", 1}); !maps.Equal(out.Desired, map[string]int{"node3": 1}) {
		t.Errorf("successor ready: %v, want only node3", out.Desired)
	}
}

func TestStep_unreachableAndFixed(t *testing.T) {
	rev := New(Config{Spec: spec(func(s *autoscale.Spec) { s.MinScale = 3 }), Created: t0})
	if out := rev.Step(Input{Now: sec(1), Nodes: nodes(10, 10, 3), Unreachable: true}); out.Total() != 0 || out.Reason != "unreachable" {
		t.Errorf("unreachable: %v %q, want none", out.Desired, out.Reason)
	}
	out := rev.Step(Input{Now: sec(2), Nodes: nodes(10, 10, 3), Fixed: map[string]int{"node2": 2, "node3": 0}})
	if !maps.Equal(out.Desired, map[string]int{"node2": 2}) {
		t.Errorf("fixed: %v", out.Desired)
	}
}

// Processing estimates follow the samples, and a node never measured is
// priced by its speed: an edge node twice as slow loses a replica for
// demand 10 ms away to the cloud once the function is known to be slow.
func TestStep_processingAndSpeed(t *testing.T) {
	rev := New(Config{Spec: spec(func(s *autoscale.Spec) { s.InitialScale = 0 }), Created: t0})
	ns := nodes(10, 10, 3)
	ns[2].Speed = 2
	near := func(from, to string) (time.Duration, bool) {
		if from == to {
			return 0, true
		}
		return 10 * time.Millisecond, true
	}
	out := rev.Step(Input{Now: sec(1), Nodes: ns, RTT: near, Service: []Service{{Node: "node1", Responses: 10, Mean: 80 * time.Millisecond}}})
	if out.Processing["node1"] != 80*time.Millisecond {
		t.Fatalf("processing = %v, want node1 80ms", out.Processing)
	}
	out = rev.Step(Input{Now: sec(2), Nodes: ns, RTT: near, Demand: []Demand{{"node3", 1}}})
	if out.Desired["node3"] != 0 {
		t.Errorf("demand at a slow edge node: %v, want the replica in the cloud (10ms + 80ms < 160ms)", out.Desired)
	}
}

func TestDiff(t *testing.T) {
	reps := []Replica{
		{Name: "a", Node: "node1", Origin: "node1", Ready: true, Created: sec(1)},
		{Name: "b", Node: "node1", Origin: "node1", Ready: true, Created: sec(2)},
		{Name: "c", Node: "node1", Origin: "node1", Ready: false, Created: sec(0)},
		{Name: "d", Node: "node2", Origin: "", Ready: true, Created: sec(0)},
	}
	out := Output{Desired: map[string]int{"node1": 1, "node3": 2},
		Origins: map[string]map[string]int{"node1": {"node1": 1}, "node3": {"node3": 2}}}
	ch := Diff(out, reps)
	if got := strings.Join(ch.Stop, ","); got != "c,b,d" {
		t.Errorf("stop %s, want c (unready), b (newest), d (node2 unwanted)", got)
	}
	if len(ch.Start) != 2 || ch.Start[0] != (placement.Add{Node: "node3", Origin: "node3"}) {
		t.Errorf("start %v, want two on node3 for node3", ch.Start)
	}
}

// One bad period cannot price a node out for ever: its estimate loses
// weight with age, and without samples it expires and the node is priced
// by inference from the others and its speed.
func TestStep_estimatesAgeAndExpire(t *testing.T) {
	rev := New(Config{Spec: spec(nil), Created: t0})
	ns := nodes(10, 10, 3)
	ns[2].Speed = 2
	step := func(at time.Time, samples ...Service) Output {
		return rev.Step(Input{Now: at, Nodes: ns, RTT: rtt, Fixed: map[string]int{}, Service: samples})
	}
	out := step(sec(0), Service{Node: "node1", Responses: 100, Mean: 500 * time.Millisecond}, Service{Node: "node2", Responses: 100, Mean: 10 * time.Millisecond})
	if out.Processing["node1"] != 500*time.Millisecond || out.Inferred["node1"] {
		t.Fatalf("measured: %v", out.Processing)
	}
	if got := out.Processing["node3"]; got != 510*time.Millisecond || !out.Inferred["node3"] {
		t.Errorf("node3 (speed 2, unmeasured) = %v inferred=%v, want (500+10)/2 × 2 = 510ms", got, out.Inferred["node3"])
	}
	// Two half-lives later, 100 old slow samples weigh as 25: a batch of
	// 40 fast ones brings the estimate below 250ms (360ms without ageing).
	out = step(t0.Add(2*EstimateHalfLife), Service{Node: "node1", Responses: 40, Mean: 10 * time.Millisecond})
	if got := out.Processing["node1"]; got > 250*time.Millisecond {
		t.Errorf("after two half-lives, 40 samples of 10ms moved 100 old samples of 500ms only to %v", got)
	}
	// node2 has had no samples for longer than the expiry: inferred now,
	// from node1's estimate.
	out = step(t0.Add(EstimateExpiry + time.Second))
	if !out.Inferred["node2"] || out.Processing["node2"] != out.Processing["node1"] {
		t.Errorf("node2 past its expiry: %v inferred %v, want node1's time", out.Processing, out.Inferred)
	}
}

// Placement sees node speed and moves: a replica placed at a slow edge node
// for its users moves to the cloud once the edge is measured slow enough
// that the cloud, round trip included, is clearly faster; make before
// break, and no second move within MoveInterval.
func TestStep_movesToAClearlyBetterNode(t *testing.T) {
	ns := nodes(10, 10, 3)
	ns[2].Speed = 2
	w := &world{rev: New(Config{Spec: spec(func(s *autoscale.Spec) { s.InitialScale = 0 }), Created: t0}), nodes: ns}
	out := w.step(t, sec(1), Demand{"node3", 1})
	if !maps.Equal(out.Desired, map[string]int{"node3": 1}) {
		t.Fatalf("nothing measured: %v, want the replica at the edge", out.Desired)
	}
	// The edge takes 160ms (the cloud would take 80: speed 1 against 2);
	// from node3 the cloud costs 50 + 80 = 130ms < 160 × 0.9.
	w.rev.Step(Input{Now: sec(2), Nodes: ns, RTT: rtt, Replicas: w.replicas, Demand: []Demand{{"node3", 1}},
		Service: []Service{{Node: "node3", Responses: 20, Mean: 160 * time.Millisecond}}})
	out = w.step(t, sec(3), Demand{"node3", 1})
	if out.Desired["node3"] != 1 || out.Desired["node1"]+out.Desired["node2"] != 1 || !strings.Contains(out.Reason, "moving") {
		t.Fatalf("after measuring: %v (%s), want a successor in the cloud beside the edge replica", out.Desired, out.Reason)
	}
	w.starting = true
	out = w.step(t, sec(4), Demand{"node3", 1})
	if out.Desired["node3"] != 1 {
		t.Fatalf("successor still starting: %v (%s), want the edge replica kept", out.Desired, out.Reason)
	}
	w.starting = false
	out = w.step(t, sec(5), Demand{"node3", 1})
	if out.Desired["node3"] != 0 || out.Total() != 1 {
		t.Errorf("successor ready: %v (%s), want one replica, in the cloud", out.Desired, out.Reason)
	}
	for s := 6; s < 30; s++ {
		if out := w.step(t, sec(s), Demand{"node3", 1}); strings.Contains(out.Reason, "moving") {
			t.Fatalf("second move at %ds: %s", s, out.Reason)
		}
	}
}
