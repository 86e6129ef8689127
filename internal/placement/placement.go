package placement

import (
	"cmp"
	"maps"
	"slices"
	"strings"
	"time"
)

// Node is a machine that can run replicas.
type Node struct {
	Name string
	// Capacity is the most replicas the node may run, of all functions.
	Capacity int
	// Used is the replicas the node runs now, of all functions, this one
	// included.
	Used int
}

// Replica is one existing replica of the function being planned.
type Replica struct {
	Name string
	Node string
	// Origin is the node whose demand the replica was added for; "" when it
	// serves no origin in particular.
	Origin  string
	Ready   bool
	Created time.Time
}

// Cost is the expected response time of a request entering at origin and
// served on node: latency(origin→node) + processing(node). For origin ""
// it should answer the node's mean cost over all origins; MeanCost wraps a
// Cost to do so.
type Cost func(origin, node string) time.Duration

// Input is everything a policy decides from, for one function.
type Input struct {
	Nodes    []Node
	Replicas []Replica
	// Want is the replicas wanted per origin, as autoscale.Decision.PerOrigin.
	// Origins absent from Want want none.
	Want map[string]int
	Cost Cost
}

// Add asks for one new replica on Node, attributed to Origin.
type Add struct {
	Node   string
	Origin string
}

// Plan is what to change. Adds and removes are independent: capacity that a
// Remove frees is not reused in the same plan, since the caller may start
// the adds first; the next plan sees it.
type Plan struct {
	Add []Add
	// Remove names replicas to delete.
	Remove []string
	// Unplaced counts wanted replicas no node had room for; the caller
	// tries again with the next plan.
	Unplaced int
}

// Policy decides where replicas go. Implementations are pure: the same
// Input gives the same Plan.
type Policy interface {
	Name() string
	Plan(in Input) Plan
}

// MeanCost returns a Cost that answers like cost for every origin but "",
// and for "" answers the mean of cost(i, node) over the origins i in nodes:
// the expected response time of a replica that serves all origins alike.
// The means are computed once, here.
func MeanCost(cost Cost, nodes []string) Cost {
	mean := make(map[string]time.Duration, len(nodes))
	for _, j := range nodes {
		var total time.Duration
		for _, i := range nodes {
			total += cost(i, j)
		}
		mean[j] = total / time.Duration(len(nodes))
	}
	return func(origin, node string) time.Duration {
		if origin == "" {
			if m, ok := mean[node]; ok {
				return m
			}
		}
		return cost(origin, node)
	}
}

// originOrder returns the origins of want and have: named origins in name
// order, then "" last, since a replica without an origin has the least
// claim on a scarce nearby node.
func originOrder(want map[string]int, have map[string][]Replica) []string {
	names := make([]string, 0, len(want)+len(have))
	for o := range want {
		names = append(names, o)
	}
	for o := range have {
		if _, ok := want[o]; !ok {
			names = append(names, o)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if (a == "") != (b == "") {
			if a == "" {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	return names
}

// byOrigin groups replicas by origin.
func byOrigin(replicas []Replica) map[string][]Replica {
	m := map[string][]Replica{}
	for _, r := range replicas {
		m[r.Origin] = append(m[r.Origin], r)
	}
	return m
}

// free returns each node's free capacity, never negative, in node order.
func free(nodes []Node) []int {
	f := make([]int, len(nodes))
	for i, n := range nodes {
		f[i] = max(n.Capacity-n.Used, 0)
	}
	return f
}

// newerFirst orders replicas by creation time, newest first, then by name.
func newerFirst(a, b Replica) int {
	if c := b.Created.Compare(a.Created); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// unreadyFirst orders unready replicas before ready ones.
func unreadyFirst(a, b Replica) int {
	switch {
	case a.Ready == b.Ready:
		return 0
	case !a.Ready:
		return -1
	default:
		return 1
	}
}

// turns lists the origins that get the next replicas, one entry per
// replica: the named origins take turns, one replica each in name order,
// so a scarce nearby node is not taken whole by the first origin; ""
// comes after all of them. At most n entries.
func turns(origins []string, deficit map[string]int, n int) []string {
	left := maps.Clone(deficit)
	queue := make([]string, 0, n)
	for progress := true; progress && len(queue) < n; {
		progress = false
		for _, o := range origins {
			if o != "" && left[o] > 0 && len(queue) < n {
				queue = append(queue, o)
				left[o]--
				progress = true
			}
		}
	}
	for ; left[""] > 0 && len(queue) < n; left[""]-- {
		queue = append(queue, "")
	}
	return queue
}
