package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// seedCost is the seed's walkthrough: node1 and node2 are cloud nodes 1 ms
// apart, node3 is an edge node 50 ms from both; processing takes 4 ms
// everywhere.
func seedCost(origin, node string) time.Duration {
	const processing = 4 * time.Millisecond
	if origin == node {
		return processing
	}
	if origin == "node3" || node == "node3" {
		return 50*time.Millisecond + processing
	}
	return time.Millisecond + processing
}

var seedNames = []string{"node1", "node2", "node3"}

// seedNodes returns the walkthrough's nodes with the given use.
func seedNodes(used1, used2, used3 int) []Node {
	return []Node{
		{Name: "node1", Capacity: 10, Used: used1},
		{Name: "node2", Capacity: 10, Used: used2},
		{Name: "node3", Capacity: 3, Used: used3},
	}
}

func rep(name, node, origin string, ready bool, age time.Duration) Replica {
	return Replica{Name: name, Node: node, Origin: origin, Ready: ready, Created: t0.Add(-age)}
}

func checkPlan(t *testing.T, got, want Plan) {
	t.Helper()
	if !slices.Equal(got.Add, want.Add) {
		t.Errorf("Add = %v, want %v", got.Add, want.Add)
	}
	if !slices.Equal(got.Remove, want.Remove) {
		t.Errorf("Remove = %v, want %v", got.Remove, want.Remove)
	}
	if got, want := got.Unplaced, want.Unplaced; got != want {
		t.Errorf("Unplaced = %d, want %d", got, want)
	}
}

func TestNearest_Plan(t *testing.T) {
	edge3 := []Replica{
		rep("h-node3-a", "node3", "node3", true, 3*time.Minute),
		rep("h-node3-b", "node3", "node3", true, 2*time.Minute),
		rep("h-node3-c", "node3", "node3", true, time.Minute),
	}
	tests := []struct {
		name     string
		nodes    []Node
		replicas []Replica
		want     map[string]int
		plan     Plan
	}{
		{
			name:  "demand at node3 runs on node3",
			nodes: seedNodes(0, 0, 0),
			want:  map[string]int{"node3": 1},
			plan:  Plan{Add: []Add{{Node: "node3", Origin: "node3"}}},
		},
		{
			name:     "node3 full sends the fourth to node1",
			nodes:    seedNodes(0, 0, 3),
			replicas: edge3,
			want:     map[string]int{"node3": 4},
			plan:     Plan{Add: []Add{{Node: "node1", Origin: "node3"}}},
		},
		{
			name:  "planned adds count against capacity",
			nodes: seedNodes(0, 0, 1),
			want:  map[string]int{"node3": 4},
			plan: Plan{Add: []Add{
				{Node: "node3", Origin: "node3"},
				{Node: "node3", Origin: "node3"},
				{Node: "node1", Origin: "node3"},
				{Node: "node1", Origin: "node3"},
			}},
		},
		{
			name:  "demand at node1 runs on node1",
			nodes: seedNodes(0, 0, 0),
			want:  map[string]int{"node1": 1},
			plan:  Plan{Add: []Add{{Node: "node1", Origin: "node1"}}},
		},
		{
			name:  "demand at node2 runs on node2",
			nodes: seedNodes(10, 0, 0),
			want:  map[string]int{"node2": 1},
			plan:  Plan{Add: []Add{{Node: "node2", Origin: "node2"}}},
		},
		{
			name:     "demand falls: the farthest goes",
			nodes:    seedNodes(1, 0, 3),
			replicas: append(slices.Clone(edge3), rep("h-node1-d", "node1", "node3", true, 4*time.Minute)),
			want:     map[string]int{"node3": 3},
			plan:     Plan{Remove: []string{"h-node1-d"}},
		},
		{
			name:  "demand falls: unready before farthest",
			nodes: seedNodes(1, 0, 2),
			replicas: []Replica{
				rep("far", "node1", "node3", true, time.Minute),
				rep("near-unready", "node3", "node3", false, time.Minute),
				rep("near", "node3", "node3", true, time.Minute),
			},
			want: map[string]int{"node3": 2},
			plan: Plan{Remove: []string{"near-unready"}},
		},
		{
			name:     "demand falls: newest among equals",
			nodes:    seedNodes(0, 0, 3),
			replicas: edge3,
			want:     map[string]int{"node3": 1},
			plan:     Plan{Remove: []string{"h-node3-c", "h-node3-b"}},
		},
		{
			name:     "origin without demand loses all",
			nodes:    seedNodes(0, 0, 3),
			replicas: edge3,
			want:     map[string]int{},
			plan:     Plan{Remove: []string{"h-node3-c", "h-node3-b", "h-node3-a"}},
		},
		{
			name:  "unattributed goes to the cloud",
			nodes: seedNodes(0, 0, 0),
			want:  map[string]int{"": 1},
			plan:  Plan{Add: []Add{{Node: "node1", Origin: ""}}},
		},
		{
			name:     "demand replaces the initial replica",
			nodes:    seedNodes(1, 0, 0),
			replicas: []Replica{rep("initial", "node1", "", true, time.Minute)},
			want:     map[string]int{"node3": 1},
			plan:     Plan{Add: []Add{{Node: "node3", Origin: "node3"}}, Remove: []string{"initial"}},
		},
		{
			name:  "no room anywhere",
			nodes: seedNodes(10, 10, 3),
			want:  map[string]int{"node3": 2},
			plan:  Plan{Unplaced: 2},
		},
		{
			name:  "origins take turns for scarce room",
			nodes: seedNodes(9, 10, 1),
			want:  map[string]int{"node1": 3, "node3": 3, "": 1},
			plan: Plan{
				Add: []Add{
					{Node: "node1", Origin: "node1"},
					{Node: "node3", Origin: "node3"},
					{Node: "node3", Origin: "node1"},
				},
				Unplaced: 4,
			},
		},
		{
			name:  "negative want counts as zero",
			nodes: seedNodes(0, 0, 0),
			want:  map[string]int{"node3": -2},
			plan:  Plan{},
		},
	}
	cost := MeanCost(seedCost, seedNames)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Nearest{}.Plan(Input{Nodes: tc.nodes, Replicas: tc.replicas, Want: tc.want, Cost: cost})
			checkPlan(t, got, tc.plan)
		})
	}
}

func TestNearest_Plan_walkthrough(t *testing.T) {
	// Follow the seed's walkthrough step by step, applying each plan.
	nodes := seedNodes(0, 0, 0)
	var replicas []Replica
	apply := func(p Plan, at time.Duration) {
		for i, a := range p.Add {
			replicas = append(replicas, Replica{
				Name: fmt.Sprintf("hello-%s-%d-%d", a.Node, at/time.Second, i), Node: a.Node,
				Origin: a.Origin, Ready: true, Created: t0.Add(at),
			})
			for j := range nodes {
				if nodes[j].Name == a.Node {
					nodes[j].Used++
				}
			}
		}
		replicas = slices.DeleteFunc(replicas, func(r Replica) bool {
			if !slices.Contains(p.Remove, r.Name) {
				return false
			}
			for j := range nodes {
				if nodes[j].Name == r.Node {
					nodes[j].Used--
				}
			}
			return true
		})
	}
	perNode := func() string {
		counts := map[string]int{}
		for _, r := range replicas {
			counts[r.Node]++
		}
		return fmt.Sprintf("%d-%d-%d", counts["node1"], counts["node2"], counts["node3"])
	}
	cost := MeanCost(seedCost, seedNames)
	steps := []struct {
		at   time.Duration
		want map[string]int
		show string // replicas per node, as the seed's resource prints them
	}{
		{at: 0, want: map[string]int{"": 1}, show: "1-0-0"},
		{at: 12 * time.Second, want: map[string]int{}, show: "0-0-0"},
		{at: 20 * time.Second, want: map[string]int{"node3": 1}, show: "0-0-1"},
		{at: 30 * time.Second, want: map[string]int{"node3": 5}, show: "2-0-3"},
		{at: 40 * time.Second, want: map[string]int{"node3": 5, "node2": 1}, show: "2-1-3"},
		{at: 50 * time.Second, want: map[string]int{"node3": 3, "node2": 1}, show: "0-1-3"},
		{at: 90 * time.Second, want: map[string]int{}, show: "0-0-0"},
	}
	for _, s := range steps {
		apply(Nearest{}.Plan(Input{Nodes: nodes, Replicas: replicas, Want: s.want, Cost: cost}), s.at)
		if got, want := perNode(), s.show; got != want {
			t.Errorf("at %v with %v: replicas per node = %s, want %s", s.at, s.want, got, want)
		}
	}
}

func TestSpread_Plan(t *testing.T) {
	tests := []struct {
		name     string
		nodes    []Node
		replicas []Replica
		want     map[string]int
		plan     Plan
	}{
		{
			name:  "spreads edge demand over all nodes",
			nodes: seedNodes(0, 0, 0),
			want:  map[string]int{"node3": 4},
			plan: Plan{Add: []Add{
				{Node: "node1", Origin: "node3"},
				{Node: "node2", Origin: "node3"},
				{Node: "node3", Origin: "node3"},
				{Node: "node1", Origin: "node3"},
			}},
		},
		{
			name:  "fewest replicas, then most free capacity",
			nodes: seedNodes(5, 2, 0),
			replicas: []Replica{
				rep("a", "node1", "node1", true, time.Minute),
			},
			want: map[string]int{"node1": 3},
			plan: Plan{Add: []Add{
				{Node: "node2", Origin: "node1"},
				{Node: "node3", Origin: "node1"},
			}},
		},
		{
			name:  "adds carry the origins short of replicas",
			nodes: seedNodes(0, 0, 0),
			replicas: []Replica{
				rep("a", "node1", "node1", true, time.Minute),
			},
			want: map[string]int{"node1": 2, "node3": 2, "": 1},
			plan: Plan{Add: []Add{
				{Node: "node2", Origin: "node1"},
				{Node: "node3", Origin: "node3"},
				{Node: "node1", Origin: "node3"},
				{Node: "node2", Origin: ""},
			}},
		},
		{
			name:  "full node skipped",
			nodes: seedNodes(10, 0, 3),
			want:  map[string]int{"node3": 2},
			plan:  Plan{Add: []Add{{Node: "node2", Origin: "node3"}, {Node: "node2", Origin: "node3"}}},
		},
		{
			name:  "no room anywhere",
			nodes: seedNodes(10, 10, 3),
			want:  map[string]int{"node3": 2},
			plan:  Plan{Unplaced: 2},
		},
		{
			name:  "removes from the most loaded, unready then newest",
			nodes: seedNodes(3, 1, 0),
			replicas: []Replica{
				rep("n1-old", "node1", "node3", true, 3*time.Minute),
				rep("n1-new", "node1", "node3", true, time.Minute),
				rep("n1-unready", "node1", "node3", false, 5*time.Minute),
				rep("n2", "node2", "node3", true, 0),
			},
			want: map[string]int{"node3": 2},
			plan: Plan{Remove: []string{"n1-unready", "n1-new"}},
		},
		{
			name:  "equal totals change nothing",
			nodes: seedNodes(1, 0, 0),
			replicas: []Replica{
				rep("a", "node1", "node1", true, time.Minute),
			},
			want: map[string]int{"node3": 1},
			plan: Plan{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Spread{}.Plan(Input{Nodes: tc.nodes, Replicas: tc.replicas, Want: tc.want, Cost: seedCost})
			checkPlan(t, got, tc.plan)
		})
	}
}

func TestMeanCost(t *testing.T) {
	cost := MeanCost(seedCost, seedNames)
	tests := []struct {
		origin, node string
		want         time.Duration
	}{
		{origin: "", node: "node1", want: 21 * time.Millisecond},
		{origin: "", node: "node2", want: 21 * time.Millisecond},
		{origin: "", node: "node3", want: 112 * time.Millisecond / 3},
		{origin: "node3", node: "node3", want: 4 * time.Millisecond},
		{origin: "node3", node: "node1", want: 54 * time.Millisecond},
	}
	for _, tc := range tests {
		if got, want := cost(tc.origin, tc.node), tc.want; got != want {
			t.Errorf("cost(%q, %q) = %v, want %v", tc.origin, tc.node, got, want)
		}
	}
}

func TestRegistry_New(t *testing.T) {
	tests := []struct {
		name    string
		want    string
		wantErr string
	}{
		{name: "", want: "nearest"},
		{name: "nearest", want: "nearest"},
		{name: "spread", want: "spread"},
		{name: "closest", wantErr: `unknown placement policy "closest" (known: nearest, spread`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.name)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New(%q) error = %v, want it to contain %q", tc.name, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q) error = %v", tc.name, err)
			}
			if got, want := p.Name(), tc.want; got != want {
				t.Errorf("New(%q).Name() = %q, want %q", tc.name, got, want)
			}
		})
	}
}

func TestRegistry_Register(t *testing.T) {
	if got, want := Names(), []string{"nearest", "spread"}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	Register("test-only", func() Policy { return Spread{} })
	if _, err := New("test-only"); err != nil {
		t.Errorf("New after Register: %v", err)
	}
	for _, tc := range []struct {
		name    string
		factory Factory
	}{
		{name: "nearest", factory: func() Policy { return Nearest{} }},
		{name: "", factory: func() Policy { return Nearest{} }},
		{name: "nil-factory"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q) did not panic", tc.name)
				}
			}()
			Register(tc.name, tc.factory)
		}()
	}
}

// benchInput builds a fleet of nodes with a random latency matrix and one
// function's replicas and wants, from a seeded source.
func benchInput(nodes, replicas int, seed uint64) Input {
	r := rand.New(rand.NewPCG(seed, 1))
	names := make([]string, nodes)
	in := Input{Want: map[string]int{}}
	for i := range names {
		names[i] = fmt.Sprintf("node%03d", i)
		in.Nodes = append(in.Nodes, Node{Name: names[i], Capacity: 10 + r.IntN(20), Used: r.IntN(10)})
	}
	lat := make(map[[2]string]time.Duration, nodes*nodes)
	for _, a := range names {
		for _, b := range names {
			if a != b {
				lat[[2]string{a, b}] = time.Duration(1+r.IntN(100)) * time.Millisecond
			}
		}
	}
	base := func(o, n string) time.Duration { return lat[[2]string{o, n}] + 4*time.Millisecond }
	in.Cost = MeanCost(base, names)
	for i := range replicas {
		o := names[r.IntN(nodes)]
		in.Replicas = append(in.Replicas, Replica{
			Name: fmt.Sprintf("r%d", i), Node: names[r.IntN(nodes)], Origin: o,
			Ready: r.IntN(10) > 0, Created: t0.Add(-time.Duration(r.IntN(600)) * time.Second),
		})
	}
	for _, o := range names {
		if n := r.IntN(5); n > 0 { // 2 on average: more than the replicas there are
			in.Want[o] = n
		}
	}
	in.Want[""] = 1
	return in
}

// BenchmarkPolicy_Plan plans one function per iteration for each policy
// and fleet size, sequentially and in parallel.
func BenchmarkPolicy_Plan(b *testing.B) {
	for _, name := range Names() {
		p, err := New(name)
		if err != nil {
			b.Fatal(err)
		}
		for _, nodes := range []int{3, 10, 100} {
			in := benchInput(nodes, nodes, 1)
			b.Run(fmt.Sprintf("%s/nodes=%d/sequential", name, nodes), func(b *testing.B) {
				b.ReportAllocs()
				for range b.N {
					p.Plan(in)
				}
			})
			b.Run(fmt.Sprintf("%s/nodes=%d/parallel", name, nodes), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						p.Plan(in)
					}
				})
			})
		}
	}
}

// BenchmarkNearest_Fleet plans 50 functions on 100 nodes per iteration.
func BenchmarkNearest_Fleet(b *testing.B) {
	inputs := make([]Input, 50)
	for i := range inputs {
		inputs[i] = benchInput(100, 100, uint64(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, in := range inputs {
			Nearest{}.Plan(in)
		}
	}
}
