package gateway

import (
	"context"
	"hash/fnv"
	"time"
)

// Stats are a gateway's cumulative counters: reading them changes
// nothing, so a missed or repeated reading loses nothing, and a reader
// that sees Epoch change knows the gateway restarted and counts from zero.
type Stats struct {
	Node  string    `json:"node"`
	Epoch uint64    `json:"epoch"`
	At    time.Time `json:"at"`
	// Revisions are in key order.
	Revisions []RevisionStats `json:"revisions"`
}

// RevisionStats is what one gateway has seen of one revision.
type RevisionStats struct {
	Revision string `json:"revision"`
	// Since is when this gateway began counting the revision.
	Since    time.Time `json:"since"`
	Requests uint64    `json:"requests"`
	// Area is the time integral of the requests inside the gateway
	// (waiting or in flight), in request-seconds.
	Area    float64     `json:"area"`
	Waiting int         `json:"waiting"`
	Dest    []DestStats `json:"dest,omitempty"`
}

// DestStats is what one gateway has seen of one revision at one node.
type DestStats struct {
	Node string `json:"node"`
	// Responses counts responses with a service-time sample; Service sums
	// those samples, in seconds.
	Responses uint64  `json:"responses"`
	Service   float64 `json:"service"`
	InFlight  int     `json:"inFlight"`
}

// Stats returns the cumulative counters at the gateway's clock.
func (g *Gateway) Stats() Stats {
	now := g.now()
	st := Stats{Node: g.cfg.Node, Epoch: g.epoch, At: now}
	for _, rev := range g.revisionsSorted() {
		rev.mu.Lock()
		rev.integrateLocked(now)
		rs := RevisionStats{Revision: rev.key, Since: rev.counting, Requests: rev.requests, Area: rev.area, Waiting: len(rev.waiters)}
		inflight := rev.inflightByNodeLocked()
		for j := range rev.dest {
			d := &rev.dest[j]
			if d.count > 0 || inflight[j] > 0 {
				rs.Dest = append(rs.Dest, DestStats{Node: d.node, Responses: d.count, Service: d.sumService, InFlight: inflight[j]})
			}
		}
		rev.mu.Unlock()
		st.Revisions = append(st.Revisions, rs)
	}
	return st
}

// inflightByNodeLocked counts requests outstanding per node; rev.mu held.
func (rev *revision) inflightByNodeLocked() []int {
	inflight := make([]int, len(rev.nodes))
	for _, r := range rev.all() {
		if r.node >= 0 {
			inflight[r.node] += r.inflight
		}
	}
	return inflight
}

// Window is the demand and service seen at one gateway for one revision
// between two readings of its Stats.
type Window struct {
	Revision string
	Seconds  float64
	// Concurrency is the mean number of requests inside the gateway.
	Concurrency float64
	Requests    uint64
	Waiting     int
	Dest        []DestWindow
}

// DestWindow is one node's share of a Window.
type DestWindow struct {
	Node      string
	Responses uint64
	// MeanService is the mean service time of those responses.
	MeanService time.Duration
	InFlight    int
}

// Since returns, per revision, what happened between prev and s. A
// revision that prev does not have, or every revision when the epochs
// differ (the gateway restarted), counts from when the gateway began
// counting it. Revisions with no time elapsed are left out.
func (s Stats) Since(prev Stats) []Window {
	old := map[string]*RevisionStats{}
	if prev.Epoch == s.Epoch {
		for i := range prev.Revisions {
			old[prev.Revisions[i].Revision] = &prev.Revisions[i]
		}
	}
	out := make([]Window, 0, len(s.Revisions))
	for _, cur := range s.Revisions {
		from, base := cur.Since, RevisionStats{}
		if p, ok := old[cur.Revision]; ok && !p.Since.Before(cur.Since) && !prev.At.Before(cur.Since) {
			from, base = prev.At, *p
		}
		secs := s.At.Sub(from).Seconds()
		if secs <= 0 {
			continue
		}
		w := Window{Revision: cur.Revision, Seconds: secs, Concurrency: max(cur.Area-base.Area, 0) / secs,
			Requests: cur.Requests - min(base.Requests, cur.Requests), Waiting: cur.Waiting}
		before := map[string]DestStats{}
		for _, d := range base.Dest {
			before[d.Node] = d
		}
		for _, d := range cur.Dest {
			b := before[d.Node]
			dw := DestWindow{Node: d.Node, InFlight: d.InFlight}
			if d.Responses > b.Responses {
				dw.Responses = d.Responses - b.Responses
				dw.MeanService = time.Duration((d.Service - b.Service) / float64(dw.Responses) * float64(time.Second))
			}
			if dw.Responses > 0 || dw.InFlight > 0 {
				w.Dest = append(w.Dest, dw)
			}
		}
		out = append(out, w)
	}
	return out
}

// Refresh brings the gateway's own view up to date: round-trip times from
// its RTT source, fresh service estimates that have gone stale, and the
// gauges. Run calls it periodically.
func (g *Gateway) Refresh() {
	now := g.now()
	g.mu.Lock()
	nodes := g.nodes
	g.mu.Unlock()
	rtts := make(map[string]time.Duration, len(nodes))
	for _, n := range nodes {
		if n != g.cfg.Node && g.cfg.RTT != nil {
			if d, ok := g.cfg.RTT(n); ok {
				rtts[n] = d
			}
		}
	}
	for _, rev := range g.revisionsSorted() {
		rev.mu.Lock()
		inflight := rev.inflightByNodeLocked()
		hasReplica := make([]bool, len(rev.dest))
		for _, r := range rev.reps {
			hasReplica[r.node] = true
		}
		for j := range rev.dest {
			d := &rev.dest[j]
			node := &rev.view.Nodes[j]
			node.RTT = rtts[d.node]
			if now.Sub(d.lastSample) > staleService {
				node.Service = 0
				// No fresh sample: ask for one, at most every probeInterval.
				node.Probe = hasReplica[j] && now.Sub(d.lastProbe) >= probeInterval
			}
			if d.inflight != nil {
				d.inflight.Set(float64(inflight[j]))
			}
		}
		rev.publishEstimatesLocked()
		rev.queued.Set(float64(len(rev.waiters)))
		if len(rev.reps) == 0 {
			rev.buffered.Set(float64(len(rev.waiters)))
		} else {
			rev.buffered.Set(0)
		}
		rev.mu.Unlock()
	}
}

// Run refreshes the gateway every interval until ctx ends. After the first
// refresh the ticks keep a phase of their own, derived from the node's
// name: gateways started together (a fleet of a hundred in one process)
// would otherwise all refresh in the same instant, and the burst of work
// delays every request that arrives in it.
func (g *Gateway) Run(ctx context.Context, interval time.Duration) {
	g.Refresh()
	phase := time.NewTimer(refreshPhase(g.cfg.Node, interval))
	select {
	case <-ctx.Done():
		phase.Stop()
		return
	case <-phase.C:
	}
	g.Refresh()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Refresh()
		}
	}
}

// refreshPhase is node's offset in [0, interval): a hash of its name, so
// that it is the same at every start and differs between nodes.
func refreshPhase(node string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(node))
	return time.Duration(h.Sum64() % uint64(interval))
}
