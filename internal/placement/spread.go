package placement

import (
	"cmp"
	"slices"
)

// Spread is the baseline: what Kubernetes' default scheduler does for a
// plain Deployment. It ignores where demand enters: it adds replicas on the
// node running the fewest replicas of the function (then the one with the
// most free capacity, then by name) and removes them from the node running
// the most (unready first, then newest). Adds still carry an origin, taken
// from the origins short of replicas, so per-origin accounting balances.
type Spread struct{}

var _ Policy = Spread{}

func init() { Register(Spread{}.Name(), func() Policy { return Spread{} }) }

// Name returns "spread".
func (Spread) Name() string { return "spread" }

// Plan moves the total toward the sum of Want.
func (Spread) Plan(in Input) Plan {
	var p Plan
	want := 0
	for _, n := range in.Want {
		want += max(n, 0)
	}
	switch have := len(in.Replicas); {
	case want > have:
		p.Add, p.Unplaced = spreadAdds(in, want-have)
	case want < have:
		p.Remove = spreadRemoves(in.Replicas, have-want)
	}
	return p
}

// spreadAdds places n replicas on the least-loaded nodes.
func spreadAdds(in Input, n int) ([]Add, int) {
	count := map[string]int{}
	for _, r := range in.Replicas {
		count[r.Node]++
	}
	freeCap := free(in.Nodes)

	// The origins short of replicas, one entry per missing replica, in the
	// same turns as Nearest; any rest has no origin.
	have := byOrigin(in.Replicas)
	origins := originOrder(in.Want, have)
	deficit := make(map[string]int, len(origins))
	for _, o := range origins {
		deficit[o] = max(in.Want[o]-len(have[o]), 0)
	}
	queue := turns(origins, deficit, n)
	for len(queue) < n {
		queue = append(queue, "")
	}

	var adds []Add
	for i, o := range queue {
		best := -1
		for j, node := range in.Nodes {
			if freeCap[j] <= 0 {
				continue
			}
			if best < 0 {
				best = j
				continue
			}
			b := in.Nodes[best]
			c := cmp.Or(
				cmp.Compare(count[node.Name], count[b.Name]),
				cmp.Compare(freeCap[best], freeCap[j]),
				cmp.Compare(node.Name, b.Name),
			)
			if c < 0 {
				best = j
			}
		}
		if best < 0 {
			return adds, len(queue) - i
		}
		adds = append(adds, Add{Node: in.Nodes[best].Name, Origin: o})
		freeCap[best]--
		count[in.Nodes[best].Name]++
	}
	return adds, 0
}

// spreadRemoves picks n replicas from the most-loaded nodes.
func spreadRemoves(replicas []Replica, n int) []string {
	perNode := map[string][]Replica{}
	for _, r := range replicas {
		perNode[r.Node] = append(perNode[r.Node], r)
	}
	nodes := make([]string, 0, len(perNode))
	for node, rs := range perNode {
		slices.SortFunc(rs, func(a, b Replica) int {
			return cmp.Or(unreadyFirst(a, b), newerFirst(a, b))
		})
		nodes = append(nodes, node)
	}
	slices.Sort(nodes)
	names := make([]string, 0, n)
	for range n {
		best := -1
		for i, node := range nodes {
			if k := len(perNode[node]); k > 0 && (best < 0 || k > len(perNode[nodes[best]])) {
				best = i
			}
		}
		node := nodes[best]
		names = append(names, perNode[node][0].Name)
		perNode[node] = perNode[node][1:]
	}
	return names
}
