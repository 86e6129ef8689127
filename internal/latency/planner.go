package latency

import (
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Defaults for the probing plan.
const (
	// DefaultMeshLimit is the largest fleet, this node included, that is
	// probed as a full mesh. Beyond it every node probes a few neighbours
	// per interval and the rest of its row is estimated from coordinates.
	// At 16 nodes a full mesh costs 15 probes per node per interval.
	DefaultMeshLimit = 16
	// DefaultProbesPerRound is how many peers a node probes per interval
	// in coordinate mode: serf probes one node per gossip round; three per
	// second let coordinates settle in tens of seconds (see the
	// simulation benchmarks) at a cost that does not grow with the fleet.
	DefaultProbesPerRound = 3
	// DefaultNeighbors is the size of the neighbour set a node probes in
	// turn in coordinate mode. One member is replaced by a random peer
	// after each full pass, so over time a node measures many peers, near
	// and far, as [1] recommends, while holding only a few connections.
	DefaultNeighbors = 8
	// sweepRounds sets where a small fleet is swept (Config.SweepLimit):
	// when every peer can be probed within this many intervals (at most
	// 120 peers at three probes per interval), the neighbour set is the
	// whole fleet, so a node measures every path, each in its turn, and
	// an estimate is only a stop-gap until the first sweep is done. It is
	// below the sixty intervals a measurement is kept for (see
	// Config.StaleAfter), so a swept fleet's matrix is all measured.
	sweepRounds = 40
)

// planner decides when to probe which peer. It is pure: the caller passes
// the time and owns the random source.
//
// Time is cut into rounds of one interval, aligned on multiples of the
// interval since the Unix epoch. In a round every key (a peer in full-mesh
// mode, one of a few probe slots in coordinate mode) is due once, at
// round start + its phase + a random jitter, strictly inside the round.
// The phase is a hash of the prober and the key, so two agents probe the
// same peer at different moments and a node's probes are spread over the
// interval instead of leaving in one burst.
type planner struct {
	self      string
	interval  time.Duration
	jitter    time.Duration
	meshLimit int
	perRound  int
	nbSize    int
	sweep     int // sweep up to this many peers (see Config.SweepLimit)
	rng       *rand.Rand

	peers  []string // sorted
	mesh   bool
	due    map[string]time.Time // key → next due time
	nb     []string             // coordinate mode: neighbour set
	cursor int
	// near, if set, estimates the RTT to a peer; three in four of the
	// neighbour set's newcomers are then the nearest of a few random peers.
	near func(peer string) (time.Duration, bool)
	// recheck, if set, names a peer whose last sample looked like a
	// change; in a sweep it is probed next, out of turn, so that a change
	// is confirmed in a second rather than a sweep later.
	recheck func() (string, bool)
}

// nearSample is how many random peers are compared when a neighbour is
// chosen for being near.
const nearSample = 16

func newPlanner(self string, interval, jitter time.Duration, meshLimit, perRound, neighbors, sweep int, rng *rand.Rand) *planner {
	return &planner{
		self: self, interval: interval, jitter: min(jitter, interval/2), meshLimit: meshLimit,
		perRound: perRound, nbSize: neighbors, sweep: sweep, rng: rng, due: map[string]time.Time{},
	}
}

// setPeers replaces the set of peers. Keys that remain keep their next due
// time; new keys are due in the current round if their moment has not
// passed yet, else in the next.
//
// peers may contain the planner's own node, which is never probed; a
// sorted slice is kept as it is (not copied), which lets a simulation of
// thousands of nodes share one list.
func (p *planner) setPeers(peers []string, now time.Time) {
	if !slices.IsSorted(peers) {
		peers = slices.Sorted(slices.Values(peers))
	}
	p.peers = peers
	n := p.others()
	p.mesh = p.meshLimit <= 0 || n+1 <= p.meshLimit
	keys := map[string]bool{}
	if p.mesh {
		for _, peer := range p.peers {
			if peer != p.self {
				keys[peer] = true
			}
		}
		p.nb = nil
	} else {
		for i := range min(p.perRound, n) {
			keys["#"+strconv.Itoa(i)] = true
		}
		p.nb = slices.DeleteFunc(p.nb, func(n string) bool { _, ok := slices.BinarySearch(p.peers, n); return !ok })
		p.fillNeighbors()
	}
	for k := range p.due {
		if !keys[k] {
			delete(p.due, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) { // sorted: the jitter draws must not depend on map order
		if _, ok := p.due[k]; !ok {
			start := now.Truncate(p.interval)
			t := p.at(start, k)
			if t.Before(now) {
				t = p.at(start.Add(p.interval), k)
			}
			p.due[k] = t
		}
	}
}

// at is key's moment in the round that starts at start: start + phase +
// jitter, with phase in (0, interval − jitter) and jitter in (0, jitter].
func (p *planner) at(start time.Time, key string) time.Time {
	h := fnv.New64a()
	h.Write([]byte(p.self))
	h.Write([]byte{0})
	h.Write([]byte(key))
	span := max(int64(p.interval-p.jitter)-1, 1)
	t := start.Add(time.Duration(1 + h.Sum64()%uint64(span)))
	if p.jitter > 0 {
		t = t.Add(time.Duration(1 + p.rng.Int64N(int64(p.jitter))))
	}
	return t
}

// after returns key's moment in the round after the one of its last
// moment; if time has jumped further than that, its moment in the round
// of now or else the one after, so that a late wake-up never fires a key
// twice nor skips the current round.
func (p *planner) after(last, now time.Time, key string) time.Time {
	if t := p.at(last.Truncate(p.interval).Add(p.interval), key); t.After(now) {
		return t
	}
	start := now.Truncate(p.interval)
	if t := p.at(start, key); t.After(now) {
		return t
	}
	return p.at(start.Add(p.interval), key)
}

// next returns when the next probe is due; false if there is no peer.
func (p *planner) next() (time.Time, bool) {
	var first time.Time
	for _, t := range p.due {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, !first.IsZero()
}

// take returns the peers due at now, sorted, and moves their keys to
// their moment in the round after now.
func (p *planner) take(now time.Time) []string {
	var keys []string
	for k, t := range p.due {
		if !t.After(now) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys) // the neighbour choice below must not depend on map order
	var out []string
	for _, k := range keys {
		p.due[k] = p.after(p.due[k], now, k)
		peer := k
		if !p.mesh {
			peer = p.nextNeighbor()
		}
		if peer != "" && !slices.Contains(out, peer) {
			out = append(out, peer)
		}
	}
	slices.Sort(out)
	return out
}

// nextNeighbor returns the next member of the neighbour set and, after a
// full pass, swaps one member for a random non-member.
func (p *planner) nextNeighbor() string {
	if len(p.nb) == 0 {
		return ""
	}
	if p.recheck != nil && p.others() <= p.sweep { // a neighbour's turn comes soon anyway
		if peer, ok := p.recheck(); ok {
			return peer
		}
	}
	if p.cursor >= len(p.nb) {
		p.cursor = 0
		if p.others() > len(p.nb) {
			i := p.rng.IntN(len(p.nb))
			p.nb = slices.Delete(p.nb, i, i+1)
		}
		p.fillNeighbors()
	}
	n := p.nb[p.cursor]
	p.cursor++
	return n
}

// others is the number of peers, the planner's own node not counted.
func (p *planner) others() int {
	if _, found := slices.BinarySearch(p.peers, p.self); found {
		return len(p.peers) - 1
	}
	return len(p.peers)
}

// fillNeighbors tops the neighbour set up with random peers; with a near
// function, three newcomers in four are the nearest of nearSample random
// peers. Vivaldi fits distant nodes from random neighbours alone, but fits
// near ones (which a load balancer compares most) better when most
// neighbours are near (§5.5 of [1], see Coord). In BenchmarkSimulatedFleet
// (1,000 nodes) three near in four rather than one in two brought the
// median relative error within a region from 0.26 to 0.20 and over all
// pairs from 0.101 to 0.096 (p90 0.29 to 0.26), with the same recovery
// after a change; seven in eight did better still at rest but took 39 s
// instead of 6 to recover, and all near made far pairs worse (p90 0.34).
// sweepPeriod is how long a peer waits for its next turn when every peer
// is probed in turn (a small fleet in coordinate mode), or 0 otherwise.
func (p *planner) sweepPeriod() time.Duration {
	if p.mesh || p.others() > p.sweep || p.perRound <= 0 {
		return 0
	}
	rounds := (p.others() + p.perRound - 1) / p.perRound
	return time.Duration(rounds) * p.interval
}

func (p *planner) fillNeighbors() {
	want := min(p.nbSize, p.others())
	if p.others() <= p.sweep {
		want = p.others()
	}
	for len(p.nb) < want {
		c := p.randomPeer()
		if p.near != nil && p.rng.IntN(4) > 0 {
			best, bestD := c, time.Duration(-1)
			for range nearSample {
				cand := p.randomPeer()
				if d, ok := p.near(cand); ok && (bestD < 0 || d < bestD) && !slices.Contains(p.nb, cand) {
					best, bestD = cand, d
				}
			}
			c = best
		}
		if !slices.Contains(p.nb, c) {
			p.nb = append(p.nb, c)
		}
	}
}

// randomPeer returns a random peer other than the node itself.
func (p *planner) randomPeer() string {
	for {
		if c := p.peers[p.rng.IntN(len(p.peers))]; c != p.self {
			return c
		}
	}
}
