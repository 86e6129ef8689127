package placement

import (
	"cmp"
	"slices"
	"time"
)

// Nearest is the seed's per-node scheduler: a replica wanted for origin k
// goes to the node j with the smallest Cost(k, j) that has room, and a
// surplus replica of origin k is the one that serves k worst.
type Nearest struct{}

var _ Policy = Nearest{}

func init() { Register(Nearest{}.Name(), func() Policy { return Nearest{} }) }

// Name returns "nearest".
func (Nearest) Name() string { return "nearest" }

// Plan compares, per origin, the wanted count with the replicas attributed
// to it. Origins short of replicas take turns (see turns); each replica goes
// to the cheapest node for its origin among those with free capacity,
// counting the adds already planned (ties by node name). Origins with a
// surplus lose unready replicas first, then those on the most expensive
// node for that origin, then the newest.
func (Nearest) Plan(in Input) Plan {
	have := byOrigin(in.Replicas)
	origins := originOrder(in.Want, have)
	cost := costOrZero(in.Cost)
	var p Plan

	deficit := make(map[string]int, len(origins))
	missing := 0
	for _, o := range origins {
		want := max(in.Want[o], 0)
		switch n := len(have[o]); {
		case want > n:
			deficit[o] = want - n
			missing += want - n
		case want < n:
			p.Remove = append(p.Remove, farthest(have[o], o, cost, n-want)...)
		}
	}
	if missing == 0 {
		return p
	}

	freeCap := free(in.Nodes)
	rows := map[string][]time.Duration{} // cost from each origin, per node, computed once
	for i, o := range turns(origins, deficit, missing) {
		row, ok := rows[o]
		if !ok {
			row = make([]time.Duration, len(in.Nodes))
			for j, n := range in.Nodes {
				row[j] = cost(o, n.Name)
			}
			rows[o] = row
		}
		j := cheapest(in.Nodes, freeCap, row)
		if j < 0 {
			// Every node is full, for this origin and all that follow.
			p.Unplaced = missing - i
			break
		}
		p.Add = append(p.Add, Add{Node: in.Nodes[j].Name, Origin: o})
		freeCap[j]--
	}
	return p
}

// cheapest returns the index of the node with free capacity and the least
// cost, ties broken by name; -1 when every node is full.
func cheapest(nodes []Node, freeCap []int, row []time.Duration) int {
	best := -1
	for j := range nodes {
		if freeCap[j] <= 0 {
			continue
		}
		if best < 0 || row[j] < row[best] || row[j] == row[best] && nodes[j].Name < nodes[best].Name {
			best = j
		}
	}
	return best
}

// farthest returns the names of the n replicas of origin to remove:
// unready first, then the most expensive for origin, then the newest.
func farthest(replicas []Replica, origin string, cost Cost, n int) []string {
	type scored struct {
		r    Replica
		cost time.Duration
	}
	s := make([]scored, len(replicas))
	for i, r := range replicas {
		s[i] = scored{r: r, cost: cost(origin, r.Node)}
	}
	slices.SortFunc(s, func(a, b scored) int {
		if c := unreadyFirst(a.r, b.r); c != 0 {
			return c
		}
		if c := cmp.Compare(b.cost, a.cost); c != 0 {
			return c
		}
		return newerFirst(a.r, b.r)
	})
	names := make([]string, n)
	for i := range n {
		names[i] = s[i].r.Name
	}
	return names
}

// costOrZero treats a missing cost function as "every node costs the same".
func costOrZero(c Cost) Cost {
	if c != nil {
		return c
	}
	return func(string, string) time.Duration { return 0 }
}
