package balance

import (
	"math/rand/v2"
)

// FaaSt is the seed's latency-aware rule: a request from node i goes to node
// j with probability w_ij = (1/r_ij) / Σ_k (1/r_ik), r_ij = RTT_ij + P_j, over
// the nodes that have a replica with room; then round-robin among that
// node's replicas. P_j is the fleet-wide average processing time on j, so
// the rule ignores queues and this gateway's own in-flight load.
type FaaSt struct {
	rng *rand.Rand
	rr  []int // per node, next replica offset
}

func init() { Register("faast", func(rng *rand.Rand) Policy { return &FaaSt{rng: rng} }) }

var _ Policy = (*FaaSt)(nil)

// Weights computes one row of the FaaSt matrix: for each node, the share of
// requests from the origin, over the nodes marked available. When none is
// available it returns the identity row (everything stays at the origin).
func Weights(nodes []Node, available []bool, origin int, out []float64) []float64 {
	out = out[:0]
	var sum float64
	for j, n := range nodes {
		w := 0.0
		if available[j] {
			w = 1 / float64(max(n.RTT+n.Processing, minCost))
		}
		out = append(out, w)
		sum += w
	}
	if sum == 0 {
		for j := range out {
			out[j] = 0
		}
		if origin >= 0 && origin < len(out) {
			out[origin] = 1
		}
		return out
	}
	for j := range out {
		out[j] /= sum
	}
	return out
}

func (p *FaaSt) Pick(v *View) int {
	if len(p.rr) < len(v.Nodes) {
		p.rr = make([]int, len(v.Nodes))
	}
	// Draw a node by weight without materialising the row: first the total
	// of 1/r over available nodes, then walk to the drawn point.
	var sum float64
	for j := range v.Nodes {
		if nodeHasRoom(v, j) {
			sum += inverseCost(v.Nodes[j])
		}
	}
	if sum == 0 {
		return -1
	}
	x := p.rng.Float64() * sum
	chosen := -1
	for j := range v.Nodes {
		if !nodeHasRoom(v, j) {
			continue
		}
		chosen = j
		if x -= inverseCost(v.Nodes[j]); x < 0 {
			break
		}
	}
	// Round-robin among the chosen node's replicas with room.
	n := len(v.Replicas)
	for i := 0; i < n; i++ {
		k := (p.rr[chosen] + i) % n
		if r := &v.Replicas[k]; r.Node == chosen && !r.Full() {
			p.rr[chosen] = k + 1
			return k
		}
	}
	return -1
}

func inverseCost(n Node) float64 { return 1 / float64(max(n.RTT+n.Processing, minCost)) }

func nodeHasRoom(v *View, node int) bool {
	for i := range v.Replicas {
		if r := &v.Replicas[i]; r.Node == node && !r.Full() {
			return true
		}
	}
	return false
}
