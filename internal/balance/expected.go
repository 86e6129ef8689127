package balance

import (
	"math/rand/v2"
	"time"
)

// ExpectedTime is kantai's policy. It sends each request to the replica with
// the smallest expected response time, as far as this gateway can tell:
//
//	e_r = RTT(origin, node_r) + S(node_r) + P(node_r) · max(0, inflight_r + 1 − c) / c
//
// where S is the gateway's fresh estimate of the time a request spends at
// the node (processing plus whatever queue the whole fleet has built there,
// taken from its own recent responses), P is the function's processing time
// there, c is how many requests a replica processes at once, and inflight_r
// is this gateway's own requests outstanding at replica r: once c of them
// are being processed, each further one delays the next by P/c.
//
// It fixes the two ways FaaSt fails, both measured on the seed's lab:
//   - Overload. FaaSt's weights ignore queues, so it keeps sending the edge
//     node its fixed share however long the edge queue grows (the seed's
//     mean crossed the baseline between 80 and 90 users, p99 reached
//     seconds). Here a queue raises the node's expected time until remote
//     replicas, RTT included, are cheaper, and requests spill there.
//   - Nearby users made slower. FaaSt sends a fixed fraction of every
//     origin's requests to every node, including far ones, even when local
//     replicas are idle (the seed's cloud users got 32 ms instead of 23).
//     Here a request leaves its node only when that is expected to be
//     faster, so an origin with idle local capacity keeps all its requests.
//
// Ties (for example several idle local replicas) are broken by starting the
// scan at a random replica, which spreads load evenly among equals. A node
// the gateway marks Probe (its estimate went stale) gets the next request
// if its round trip alone is below the best expected time: the bounded
// price of learning that a slow node became fast.
type ExpectedTime struct{ rng *rand.Rand }

func init() { Register("kantai", func(rng *rand.Rand) Policy { return &ExpectedTime{rng: rng} }) }

var _ Policy = (*ExpectedTime)(nil)

func (p *ExpectedTime) Pick(v *View) int {
	n := len(v.Replicas)
	if n == 0 {
		return -1
	}
	start := 0
	if n > 1 {
		start = p.rng.IntN(n)
	}
	best, bestCost := -1, 0.0
	probe, probeRTT := -1, time.Duration(0)
	for i := 0; i < n; i++ {
		k := start + i
		if k >= n {
			k -= n
		}
		r := &v.Replicas[k]
		if r.Full() {
			continue
		}
		node := &v.Nodes[r.Node]
		if node.Probe && (probe < 0 || node.RTT < probeRTT) {
			probe, probeRTT = k, node.RTT
		}
		cost := expected(v, r, node)
		if best < 0 || cost < bestCost {
			best, bestCost = k, cost
		}
	}
	// A node whose estimate went stale gets a request when it could win
	// even by the round trip alone, so a node that was slow once is not
	// priced by that for ever.
	if probe >= 0 && float64(probeRTT) < bestCost {
		return probe
	}
	return best
}

// Expected is the time the kantai policy expects the next request to take
// at replica k of v: the formula above.
func Expected(v *View, k int) time.Duration {
	r := &v.Replicas[k]
	return time.Duration(expected(v, r, &v.Nodes[r.Node]))
}

func expected(v *View, r *Replica, node *Node) float64 {
	par := float64(max(v.Parallelism, 1))
	proc := node.Processing
	svc := node.Service
	if svc == 0 {
		svc = proc
	}
	if proc == 0 {
		proc = max(svc, minCost)
	}
	cost := float64(node.RTT + svc)
	if waiting := float64(r.InFlight+1) - par; waiting > 0 {
		cost += float64(proc) * waiting / par
	}
	return cost
}
