package gateway

import (
	"time"

	"kantai.dev/kantai/internal/balance"
)

// Estimate is what this gateway decides from for one revision: per node,
// the figures its policy sees.
type Estimate struct {
	Revision string `json:"revision"`
	// Percent is the revision's share of the route asked about.
	Percent int            `json:"percent"`
	Nodes   []NodeEstimate `json:"nodes"`
}

// NodeEstimate is one node of an Estimate.
type NodeEstimate struct {
	Node string `json:"node"`
	// RTT is the measured round trip from this gateway's node.
	RTT time.Duration `json:"rtt"`
	// Processing is the revision's processing time there, as the control
	// step estimates it from every gateway; Service this gateway's own
	// recent figure (0 when stale).
	Processing time.Duration `json:"processing"`
	Service    time.Duration `json:"service"`
	// Expected is the kantai policy's expected time for the next request
	// at the node's best replica; 0 without a replica there.
	Expected time.Duration `json:"expected"`
	Probe    bool          `json:"probe,omitempty"`
	Replicas int           `json:"replicas"`
	InFlight int           `json:"inFlight"`
	// Responses counts the responses this gateway had from the node.
	Responses uint64 `json:"responses"`
}

// Estimates returns the figures behind this gateway's choices: for the
// revisions a host routes to when host is given (by its first path), else
// for every revision.
// ok is false for a host no route serves.
func (g *Gateway) Estimates(host string) (out []Estimate, ok bool) {
	if host == "" {
		for _, rev := range g.revisionsSorted() {
			out = append(out, rev.estimate(0))
		}
		return out, true
	}
	vh := g.routes.Load().all[routeHost(host)]
	if vh == nil {
		return nil, false
	}
	rt := vh.firstRoute()
	if rt == nil {
		return nil, true
	}
	counts := make([]int, len(rt.targets))
	for _, i := range rt.slots {
		counts[i]++
	}
	for i, t := range rt.targets {
		if t.rev == nil {
			out = append(out, Estimate{Revision: t.revision, Percent: counts[i]})
			continue
		}
		out = append(out, t.rev.estimate(counts[i]))
	}
	return out, true
}

func (rev *revision) estimate(percent int) Estimate {
	rev.mu.Lock()
	defer rev.mu.Unlock()
	e := Estimate{Revision: rev.key, Percent: percent, Nodes: make([]NodeEstimate, len(rev.nodes))}
	for j, n := range rev.view.Nodes {
		e.Nodes[j] = NodeEstimate{Node: rev.nodes[j], RTT: n.RTT, Processing: n.Processing, Service: n.Service,
			Probe: n.Probe, Responses: rev.dest[j].count}
	}
	for k, r := range rev.view.Replicas {
		ne := &e.Nodes[r.Node]
		ne.Replicas++
		ne.InFlight += r.InFlight
		if x := balance.Expected(&rev.view, k); ne.Expected == 0 || x < ne.Expected {
			ne.Expected = x
		}
	}
	return e
}

// publishEstimates sets the estimate gauges of a revision; rev.mu held.
func (rev *revision) publishEstimatesLocked() {
	best := make([]time.Duration, len(rev.nodes))
	for k, r := range rev.view.Replicas {
		if x := balance.Expected(&rev.view, k); best[r.Node] == 0 || x < best[r.Node] {
			best[r.Node] = x
		}
	}
	for j, n := range rev.view.Nodes {
		g := &rev.dest[j].estimate
		if g[0] == nil {
			continue // has held no replica
		}
		g[0].Set(n.RTT.Seconds())
		g[1].Set(n.Processing.Seconds())
		g[2].Set(n.Service.Seconds())
		g[3].Set(best[j].Seconds())
	}
}

// estimateKinds are the values of kantai_gateway_estimate_seconds's
// estimate label, in the order of destStats.estimate.
var estimateKinds = [...]string{"rtt", "processing", "service", "expected"}
