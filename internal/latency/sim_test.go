package latency

import (
	"container/heap"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// A simulated fleet in virtual time, after serf's coordinate/phantom.go:
// a known latency matrix, every node running the agent's probing plan
// (planner) and coordinate update (VivaldiConfig.Update, with the agent's
// median-of-three filter), no sockets and no clock. A probe's answer
// carries the peer's current coordinate, as /ping does. The simulation
// evaluates the coordinates themselves: every node is assumed to know
// every other node's current coordinate; how fast the /ping answers spread
// them is not simulated.

// regions are real places, so distances between them are real distances.
var regions = []struct {
	name     string
	lat, lon float64
}{
	{"frankfurt", 50.1, 8.7}, {"london", 51.5, -0.1}, {"virginia", 38.9, -77.4},
	{"oregon", 45.6, -121.2}, {"saopaulo", -23.5, -46.6}, {"tokyo", 35.7, 139.7},
	{"singapore", 1.35, 103.8}, {"sydney", -33.9, 151.2}, {"mumbai", 19.1, 72.9},
	{"johannesburg", -26.2, 28.0},
}

// world is a real-world-like latency matrix, computed on demand: nodes
// spread around ten regions (σ 300 km), propagation at 200,000 km/s
// (light in fibre) over routes twice the great-circle distance, a
// per-pair route factor within ±15 % (so the triangle inequality does not
// always hold, as on the Internet), and a per-node access delay: 20 % of
// the nodes are cloud nodes (0.1–0.5 ms), the rest edge nodes behind an
// uplink of 1–15 ms (log-uniform).
type world struct {
	pos    [][3]float64
	access []float64 // seconds, one way
	region []int
}

func newWorld(n int, seed uint64) *world {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &world{pos: make([][3]float64, n), access: make([]float64, n), region: make([]int, n)}
	for i := range n {
		r := rng.IntN(len(regions))
		w.region[i] = r
		const sigma = 300.0 / 6371 // radians
		lat := regions[r].lat*math.Pi/180 + rng.NormFloat64()*sigma
		lon := regions[r].lon*math.Pi/180 + rng.NormFloat64()*sigma/math.Max(math.Cos(lat), 0.2)
		w.pos[i] = [3]float64{math.Cos(lat) * math.Cos(lon), math.Cos(lat) * math.Sin(lon), math.Sin(lat)}
		if rng.Float64() < 0.2 {
			w.access[i] = (0.1 + 0.4*rng.Float64()) / 1000
		} else {
			w.access[i] = math.Exp(math.Log(1)+rng.Float64()*(math.Log(15)-math.Log(1))) / 1000
		}
	}
	return w
}

// rtt is the true round trip between i and j, in seconds.
func (w *world) rtt(i, j int) float64 {
	if i == j {
		return 0
	}
	a, b := w.pos[i], w.pos[j]
	dot := math.Max(-1, math.Min(1, a[0]*b[0]+a[1]*b[1]+a[2]*b[2]))
	km := math.Acos(dot) * 6371
	lo, hi := uint64(min(i, j)), uint64(max(i, j))
	factor := 1 + 0.3*(float64(splitmix(lo<<32|hi)%1000)/1000-0.5)
	return 2*(2*km/200000)*factor + 2*(w.access[i]+w.access[j]) + 0.0002
}

type simConfig struct {
	seconds  int     // virtual time simulated
	seed     uint64  // the nodes' random sources
	noise    float64 // mean extra delay of a sample, relative to the RTT (queueing); default 0.05
	pairs    int     // pairs sampled for the error; default 20,000
	changeAt int     // if > 0: at this second, changed nodes' access delay grows by changeBy
	changed  int     // how many nodes change
	changeBy float64 // seconds, one way
	perRound int     // probes per node per round; default DefaultProbesPerRound
	// randomOnly: neighbours are chosen at random only, not half near
	randomOnly bool
	debug      func(format string, args ...any)
	// gossip: also simulate how /ping answers spread coordinates (each
	// answer: the peer's own plus gossipSize it knows, in rotation)
	gossip bool
}

type simResult struct {
	// median and p90 relative error over all sampled pairs at the end
	finalMedian, finalP90 float64
	// median relative error over pairs within one region, the ones a
	// load balancer compares most
	nearMedian float64
	// median absolute error in seconds, all pairs and near pairs
	finalAbs, nearAbs   float64
	probesPerNodeSecond float64
	// seconds from the start until the median error is within 10 % of
	// its final value
	settle float64
	// the affected pairs' median error just before the change, the worst
	// after it, and the seconds after the change until it is back within
	// 10 % (or 0.01) of its level before
	beforeChange, worstAfter, convergeAfterChange float64
	// the same for the median absolute error, in seconds, plus the
	// seconds until half of the jump is recovered
	beforeChangeAbs, worstAfterAbs, convergeAfterChangeAbs, halfAfterChangeAbs float64
	updateCost                                                                 time.Duration // wall time per probe
	// gossip: seconds until 99 % of the sampled pairs know each other's
	// coordinate (-1: never); at the end, the share known, and the median
	// and p90 age of the coordinate known, in seconds, and the share older
	// than the agent's staleness limit for estimates
	known99, knownEnd, ageMedian, ageP90, ageStale float64
}

type simNode struct {
	// gossip state: when the coordinate of each node known here was
	// updated (virtual seconds, -1 unknown), the known nodes in order,
	// and the rotation cursor
	known   []float32
	order   []int32
	cursor  int
	movedAt float32 // when this node's coordinate last moved
	plan    *planner
	coord   Coord
	filt    map[int][]float64
	adj     adjuster
	next    time.Time
	index   int
}

type nodeHeap []*simNode

func (h nodeHeap) Len() int           { return len(h) }
func (h nodeHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h nodeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index, h[j].index = i, j }
func (h *nodeHeap) Push(x any)        { n := x.(*simNode); n.index = len(*h); *h = append(*h, n) }
func (h *nodeHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}

func simulate(w *world, cfg simConfig) simResult {
	if cfg.noise == 0 {
		cfg.noise = 0.05
	}
	if cfg.pairs == 0 {
		cfg.pairs = 20000
	}
	if cfg.perRound == 0 {
		cfg.perRound = DefaultProbesPerRound
	}
	n := len(w.pos)
	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed+1))
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%06d", i) // sorted by index
	}
	var viv VivaldiConfig
	nodes := make([]*simNode, n)
	h := make(nodeHeap, 0, n)
	for i := range nodes {
		nrng := rand.New(rand.NewPCG(cfg.seed, uint64(i)))
		nd := &simNode{
			plan:  newPlanner(names[i], time.Second, 100*time.Millisecond, DefaultMeshLimit, cfg.perRound, DefaultNeighbors, sweepRounds*cfg.perRound, nrng),
			coord: viv.NewCoord(),
			filt:  map[int][]float64{},
		}
		if !cfg.randomOnly {
			nd.plan.near = func(peer string) (time.Duration, bool) {
				j, _ := strconv.Atoi(peer[1:])
				return nd.coord.Distance(nodes[j].coord)
			}
		}
		nodes[i] = nd
	}
	if cfg.gossip {
		for _, nd := range nodes {
			nd.known = make([]float32, n)
			for k := range nd.known {
				nd.known[k] = -1
			}
		}
	}
	learn := func(nd *simNode, k int, at float32) {
		if nd.known[k] < 0 {
			pos, _ := slices.BinarySearch(nd.order, int32(k))
			nd.order = slices.Insert(nd.order, pos, int32(k))
		}
		if at > nd.known[k] {
			nd.known[k] = at
		}
	}
	var knownSeries []float64
	for _, nd := range nodes {
		nd.plan.setPeers(names, t0)
		nd.next, _ = nd.plan.next()
		heap.Push(&h, nd)
	}
	pairs := make([][2]int, cfg.pairs)
	for k := range pairs {
		i, j := rng.IntN(n), rng.IntN(n-1)
		if j >= i {
			j++
		}
		pairs[k] = [2]int{i, j}
	}
	changed := map[int]bool{}
	for len(changed) < cfg.changed {
		changed[rng.IntN(n)] = true
	}
	var affected [][2]int
	for len(affected) < cfg.pairs/4 && len(changed) > 0 {
		for _, i := range slices.Sorted(maps.Keys(changed)) { // sorted: the draws must not depend on map order
			j := rng.IntN(n)
			if j != i {
				affected = append(affected, [2]int{i, j})
			}
		}
	}
	absErr := func(ps [][2]int) float64 {
		e := make([]float64, len(ps))
		for k, p := range ps {
			e[k] = math.Abs(nodes[p[0]].coord.adjusted(nodes[p[1]].coord) - w.rtt(p[0], p[1]))
		}
		slices.Sort(e)
		return e[len(e)/2]
	}
	errs := func(ps [][2]int) (median, p90 float64) {
		e := make([]float64, len(ps))
		for k, p := range ps {
			truth := w.rtt(p[0], p[1])
			e[k] = math.Abs(nodes[p[0]].coord.adjusted(nodes[p[1]].coord)-truth) / truth
		}
		slices.Sort(e)
		return e[len(e)/2], e[len(e)*9/10]
	}

	var (
		probes    int
		medians   []float64 // per second, all pairs
		affMed    []float64 // per second, affected pairs
		affAbs    []float64 // per second, affected pairs, absolute
		start     = time.Now()
		second    = 1
		res       simResult
		changedOn bool
	)
	end := t0.Add(time.Duration(cfg.seconds) * time.Second)
	for h.Len() > 0 {
		nd := h[0]
		now := nd.next
		for !now.Before(t0.Add(time.Duration(second) * time.Second)) {
			// Evaluate at each virtual second.
			m, _ := errs(pairs)
			medians = append(medians, m)
			if cfg.gossip {
				k := 0
				for _, p := range pairs {
					if nodes[p[0]].known[p[1]] >= 0 {
						k++
					}
				}
				knownSeries = append(knownSeries, float64(k)/float64(len(pairs)))
			}
			if len(affected) > 0 {
				am, _ := errs(affected)
				affMed = append(affMed, am)
				affAbs = append(affAbs, absErr(affected))
			}
			if cfg.changeAt > 0 && second == cfg.changeAt && !changedOn {
				changedOn = true
				for i := range changed {
					w.access[i] += cfg.changeBy
				}
			}
			second++
		}
		if !now.Before(end) {
			break
		}
		idx, _ := strconv.Atoi(nd.plan.self[1:])
		for _, peer := range nd.plan.take(now) {
			j, _ := strconv.Atoi(peer[1:])
			truth := w.rtt(idx, j)
			sample := truth * (1 + cfg.noise*rng.ExpFloat64())
			f := append(nd.filt[j], sample)
			if len(f) > filterSize {
				f = f[len(f)-filterSize:]
			}
			nd.filt[j] = f
			sorted := slices.Sorted(slices.Values(f))
			rtt := seconds(sorted[len(sorted)/2])
			nd.coord = viv.Update(nd.coord, nodes[j].coord, rtt, nd.plan.rng)
			nd.coord.Adjustment = nd.adj.add(rtt.Seconds() - nd.coord.distance(nodes[j].coord))
			probes++
			if cfg.gossip {
				peer := nodes[j]
				learn(nd, j, peer.movedAt)
				if m := len(peer.order); m > 0 {
					for g := range min(gossipSize, m) {
						k := int(peer.order[(peer.cursor+g)%m])
						if k != idx {
							learn(nd, k, peer.known[k])
						}
					}
					peer.cursor = (peer.cursor + gossipSize) % m
				}
				nd.movedAt = float32(now.Sub(t0).Seconds())
			}
		}
		nd.next, _ = nd.plan.next()
		heap.Fix(&h, 0)
	}
	elapsed := time.Since(start)
	if cfg.gossip {
		res.known99 = -1
		for s, k := range knownSeries {
			if k >= 0.99 {
				res.known99 = float64(s + 1)
				break
			}
		}
		var ages []float64
		stale := 0
		for _, p := range pairs {
			if at := nodes[p[0]].known[p[1]]; at >= 0 {
				age := float64(cfg.seconds) - float64(at)
				ages = append(ages, age)
				if age > coordStaleAfter(time.Second, n-1, cfg.perRound).Seconds() {
					stale++
				}
			}
		}
		slices.Sort(ages)
		res.knownEnd = float64(len(ages)) / float64(len(pairs))
		if len(ages) > 0 {
			res.ageMedian, res.ageP90 = ages[len(ages)/2], ages[len(ages)*9/10]
			res.ageStale = float64(stale) / float64(len(ages))
		}
	}
	res.finalMedian, res.finalP90 = errs(pairs)
	var near [][2]int
	for len(near) < cfg.pairs/4 {
		i, j := rng.IntN(n), rng.IntN(n)
		if i != j && w.region[i] == w.region[j] {
			near = append(near, [2]int{i, j})
		}
	}
	res.nearMedian, _ = errs(near)
	res.finalAbs, res.nearAbs = absErr(pairs), absErr(near)
	res.probesPerNodeSecond = float64(probes) / float64(n) / float64(cfg.seconds)
	res.updateCost = elapsed / time.Duration(max(probes, 1))
	last := medians[len(medians)-1]
	if cfg.changeAt > 0 {
		last = medians[cfg.changeAt-1]
	}
	for s, m := range medians {
		if m <= last*1.1 {
			res.settle = float64(s + 1)
			break
		}
	}
	if cfg.debug != nil {
		for s := range affMed {
			cfg.debug("second %d: all %.3f affected %.3f abs %.2f ms", s+1, medians[s], affMed[s], affAbs[s]*1e3)
		}
	}
	if cfg.changeAt > 0 && len(affMed) > cfg.changeAt {
		res.beforeChange, res.worstAfter, res.convergeAfterChange = afterChange(affMed, cfg.changeAt, 0.01)
		res.beforeChangeAbs, res.worstAfterAbs, res.convergeAfterChangeAbs = afterChange(affAbs, cfg.changeAt, 0.001)
		res.halfAfterChangeAbs = -1
		for s := cfg.changeAt; s < len(affAbs); s++ {
			if affAbs[s] <= res.beforeChangeAbs+(res.worstAfterAbs-res.beforeChangeAbs)/2 {
				res.halfAfterChangeAbs = float64(s + 1 - cfg.changeAt)
				break
			}
		}
	}
	return res
}

// afterChange reads a per-second error series around a change made at
// second at: the level before, the worst after, and the seconds until the
// error is back within 10 % (or slack) of the level before; -1 if never.
func afterChange(series []float64, at int, slack float64) (before, worst, converge float64) {
	before = series[at-1]
	converge = -1
	for s := at; s < len(series); s++ {
		worst = max(worst, series[s])
		if series[s] <= max(before*1.1, before+slack) {
			converge = float64(s + 1 - at)
			break
		}
	}
	return before, worst, converge
}

// splitmix is SplitMix64's output function: a fixed, well-mixed hash of x.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
