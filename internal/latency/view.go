package latency

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// PeerCoord is a node's coordinate and the time the node last moved it,
// on that node's clock. Agents pass them on in /ping answers; a newer one
// replaces an older one.
type PeerCoord struct {
	Coord
	Updated time.Time `json:"updated"`
}

// freshness says when entries turn stale and whether missing or old
// measurements are replaced by estimates from coordinates.
type freshness struct {
	staleAfter      time.Duration // measured entries
	coordStaleAfter time.Duration // estimated entries: age of the older coordinate
	estimate        bool          // coordinate mode
	gossip          int           // coordinates per /ping answer besides the node's own
}

// filterSize is how many recent samples per peer feed the coordinate: the
// median of the last three discards a single delayed probe, as serf's
// latency filter does.
const filterSize = 3

// view is one node's knowledge of the matrix: its own row, measured; the
// rows peers reported about themselves; its own coordinate and the ones it
// learnt. It holds only the current members' data. It is pure: time and
// randomness come in as arguments, and it is not safe for concurrent use.
type view struct {
	self    string
	viv     VivaldiConfig
	est     *Estimator
	m       Matrix
	members map[string]bool // peers, self excluded

	coord   PeerCoord // own; Updated is zero until the first update
	coords  map[string]PeerCoord
	filt    map[string][]time.Duration
	suspect map[string]bool // peers whose last sample was off their level
	adj     adjuster
	gossipC int // rotating cursor over coords for gossip
	// coordNames is coords' keys in name order, for gossip; nil when a
	// key was added or removed since (every answer gossips, and sorting
	// the names each time was most of an answer's allocation).
	coordNames []string
	pruned     time.Time // when other rows were last pruned
}

func newView(self string, alpha float64, viv VivaldiConfig) *view {
	return &view{
		self: self, viv: viv, est: NewEstimator(alpha), m: Matrix{self: Row{}},
		members: map[string]bool{}, coord: PeerCoord{Coord: viv.NewCoord()},
		coords: map[string]PeerCoord{}, filt: map[string][]time.Duration{}, suspect: map[string]bool{},
	}
}

// setMembers makes peers the set of members and forgets all about nodes
// that left.
func (v *view) setMembers(peers []string) {
	keep := map[string]bool{}
	for _, p := range peers {
		if p != v.self {
			keep[p] = true
		}
	}
	for p := range v.members {
		if !keep[p] {
			v.forget(p)
		}
	}
	v.members = keep
}

// forget drops peer's row, its column and its coordinate.
func (v *view) forget(peer string) {
	delete(v.members, peer)
	delete(v.m, peer)
	for _, row := range v.m {
		delete(row, peer)
	}
	if _, ok := v.coords[peer]; ok {
		delete(v.coords, peer)
		v.coordNames = nil
	}
	delete(v.filt, peer)
	delete(v.suspect, peer)
	v.est.Forget(peer)
}

// observe records a successful probe to peer, and moves the node's
// coordinate if the peer sent its own. It reports whether the sample went
// into the smoothed RTT: a spike (more than 1.5 times the median of the
// last three samples, plus a millisecond) is left out, because a lone
// spike on loopback is the CPU queue of a busy machine, not the network.
// A real change passes from its second sample on. The probe still counts
// as news from the path.
func (v *view) observe(peer string, rtt time.Duration, now time.Time, remote *PeerCoord, rng *rand.Rand) (bool, error) {
	if rtt < 0 || rtt > MaxRTT {
		return false, fmt.Errorf("rtt sample to %q out of range [0, %v]: %v", peer, MaxRTT, rtt)
	}
	f := append(v.filt[peer], rtt)
	if len(f) > filterSize {
		f = f[len(f)-filterSize:]
	}
	v.filt[peer] = f
	sorted := slices.Sorted(slices.Values(f))
	median := sorted[len(sorted)/2]
	took := len(f) < filterSize || rtt <= median*3/2+time.Millisecond
	prev, known := v.est.Estimate(peer)
	delete(v.suspect, peer)
	if known && offLevel(prev, rtt) {
		v.suspect[peer] = true // maybe a change: probe again soon
	}
	if took {
		if known && len(f) >= 2 && shifted(prev, f[len(f)-2], rtt) {
			// The path changed: start over from the two samples
			// since, instead of drifting there at 1/8 per sample
			// (minutes when a sweep brings one sample a half-minute).
			v.est.Forget(peer)
			if _, err := v.est.Observe(peer, f[len(f)-2]); err != nil {
				return false, err
			}
		}
		est, err := v.est.Observe(peer, rtt)
		if err != nil {
			return false, err
		}
		v.m[v.self][peer] = Entry{
			RTT:     est.RTT.Seconds(),
			Jitter:  est.Jitter.Seconds(),
			Samples: est.Samples,
			Updated: now,
		}
	} else {
		e := v.m[v.self][peer]
		e.Failures, e.Stale, e.Updated = 0, false, now
		v.m[v.self][peer] = e
	}
	if remote != nil && v.learn(peer, *remote) {
		c := v.viv.Update(v.coord.Coord, remote.Coord, median, rng)
		c.Adjustment = v.adj.add(median.Seconds() - c.distance(remote.Coord))
		v.coord = PeerCoord{Coord: c, Updated: now}
	}
	return took, nil
}

// A path is taken to have changed when the mean of its last two samples
// lies farther from its smoothed mean than shiftSigmas standard errors of
// the difference (σ·√(1/2 + 1/n), σ the path's jitter, n its samples, at
// most poolCap), shiftShare of the mean and shiftMin, with both samples on
// the same side and each beyond half of that, once the path has
// shiftSamples samples. Without a change that happens about once in 400
// pairs of samples of a path with normal jitter; a 40 ms jump on an
// 80 ± 15 ms link is caught at its second sample about two times in
// three, on a 10 ± 2 ms link always (its first sample is left out as a
// spike).
const (
	shiftSigmas  = 3.0
	shiftShare   = 0.1
	shiftMin     = 2 * time.Millisecond
	shiftSamples = 6
)

// shiftTolerance is how far apart two means of a path's RTT, of na and nb
// samples, may lie without showing a change, for a path of mean seconds
// and standard deviation jitter.
func shiftTolerance(mean, jitter float64, na, nb int) float64 {
	se := jitter * math.Sqrt(1/float64(min(max(na, 1), poolCap))+1/float64(min(max(nb, 1), poolCap)))
	return max(shiftSigmas*se, shiftShare*mean, shiftMin.Seconds())
}

// offLevel reports whether sample x lies far enough from est for a
// second sample as far on the same side to show a change (see shifted).
func offLevel(est Estimate, x time.Duration) bool {
	if est.Samples < shiftSamples {
		return false
	}
	m := est.RTT.Seconds()
	return math.Abs(x.Seconds()-m) >= shiftTolerance(m, est.Jitter.Seconds(), 2, est.Samples)/2
}

// recheck returns a peer whose last sample was off its level, if any (the
// first in name order), and forgets the suspicion: one recheck each.
func (v *view) recheck() (string, bool) {
	if len(v.suspect) == 0 {
		return "", false
	}
	p := slices.Min(slices.Collect(maps.Keys(v.suspect)))
	delete(v.suspect, p)
	return p, true
}

// shifted reports whether samples a then b show that the path estimated
// by est changed.
func shifted(est Estimate, a, b time.Duration) bool {
	if est.Samples < shiftSamples {
		return false
	}
	m := est.RTT.Seconds()
	t := shiftTolerance(m, est.Jitter.Seconds(), 2, est.Samples)
	x, y := a.Seconds()-m, b.Seconds()-m
	if math.Abs(x) < t/2 || math.Abs(y) < t/2 || (x > 0) != (y > 0) {
		return false // each must be well off, on the same side
	}
	return math.Abs(x+y)/2 > t
}

// answer takes in a successful probe's outcome: the round trip, then the
// answer pr of peer (its own row and the coordinates it sent). In
// coordinate mode it prunes old rows, at most once per interval. It
// reports whether the sample went into the smoothed RTT (see observe).
func (v *view) answer(peer string, rtt time.Duration, now time.Time, pr pingResponse, f freshness, interval time.Duration, rng *rand.Rand) (bool, error) {
	took, err := v.observe(peer, rtt, now, pr.Coord, rng)
	if err != nil {
		return false, err
	}
	v.merge(peer, pr.Row)
	if f.estimate && now.Sub(v.pruned) >= interval {
		v.prune(now, f.coordStaleAfter)
		v.pruned = now
	}
	for node, c := range pr.Coords {
		v.learn(node, c)
	}
	return took, nil
}

// ping is the node's answer to a /ping from node to: its measured row, its coordinate
// and the next f.gossip coordinates it knows. The answer shares the
// coordinates' vectors with the view.
func (v *view) ping(now time.Time, f freshness, to string) pingResponse {
	c := v.coord
	return pingResponse{Node: v.self, Row: v.report(now, f, to), Coord: &c, Coords: v.gossip(f.gossip)}
}

// prune drops the entries of other nodes' rows not updated within maxAge,
// so that in coordinate mode, where every row learnt holds only a node's
// recent neighbours, the view stays O(n) instead of filling up to n² with
// old measurements that estimates replace anyway.
func (v *view) prune(now time.Time, maxAge time.Duration) {
	for from, row := range v.m {
		if from == v.self {
			continue
		}
		for to, e := range row {
			if now.Sub(e.Updated) > maxAge {
				delete(row, to)
			}
		}
		if len(row) == 0 {
			delete(v.m, from)
		}
	}
}

// maxHeardSamples bounds the sample count a peer may claim, so that sums
// of counts cannot overflow; a mean weighs at most poolCap anyway.
const maxHeardSamples = 1 << 20

// heard records what peer measured of the path to this node, as it said
// in a probe: RTT and jitter in seconds and the sample count. A round trip is the
// same path both ways, so the two nodes' measurements are of one quantity
// and ownEntry pools them. It goes into peer's row, as peer's own report
// of its row would; values that are not plausible are ignored.
func (v *view) heard(peer string, rtt, jitter float64, samples int, now time.Time) {
	if peer == v.self || !v.members[peer] || samples <= 0 || !(rtt > 0) || rtt > MaxRTT.Seconds() {
		return
	}
	if !(jitter >= 0) || jitter > MaxRTT.Seconds() {
		jitter = 0
	}
	row := v.m[peer]
	if row == nil {
		row = Row{}
		v.m[peer] = row
	}
	if old, ok := row[v.self]; ok && old.Updated.After(now) {
		return
	}
	row[v.self] = Entry{RTT: rtt, Jitter: jitter, Samples: min(samples, maxHeardSamples), Updated: now}
}

// fail records a failed probe to peer, keeping the last good values.
func (v *view) fail(peer string, now time.Time) {
	e := v.m[v.self][peer]
	e.Failures++
	e.Stale = true
	e.Updated = now
	v.m[v.self][peer] = e
}

// merge takes in the row that node from reported about itself, with Merge.
// The node's own row is never overwritten, and paths to nodes that are not
// members are dropped.
func (v *view) merge(from string, row Row) {
	if from == v.self || !v.members[from] {
		return
	}
	in := make(Row, len(row))
	for to, e := range row {
		if to == v.self || v.members[to] {
			in[to] = e
		}
	}
	v.m[from] = Merge(Matrix{from: v.m[from]}, Matrix{from: in})[from]
}

// learn takes in a member's coordinate if it is valid and newer than the
// one known; it reports whether the coordinate is usable.
func (v *view) learn(node string, pc PeerCoord) bool {
	if node == v.self || !v.members[node] || !v.viv.Valid(pc.Coord) {
		return false
	}
	if old, ok := v.coords[node]; !ok || pc.Updated.After(old.Updated) {
		pc.Vec = slices.Clone(pc.Vec)
		v.coords[node] = pc
		if !ok {
			v.coordNames = nil
		}
	}
	return true
}

// gossip returns up to n known coordinates, the next ones in name order
// after those returned last time, so that repeated answers pass the whole
// table on.
func (v *view) gossip(n int) map[string]PeerCoord {
	if n <= 0 || len(v.coords) == 0 {
		return nil
	}
	if v.coordNames == nil {
		v.coordNames = slices.Sorted(maps.Keys(v.coords))
	}
	names := v.coordNames
	out := make(map[string]PeerCoord, min(n, len(names)))
	for i := 0; i < n && i < len(names); i++ {
		name := names[(v.gossipC+i)%len(names)]
		out[name] = v.coords[name]
	}
	v.gossipC = (v.gossipC + n) % len(names)
	return out
}

// ownEntry is the node's entry for the path to peer: the measurement
// while it is fresh or the last probe failed; otherwise, in coordinate
// mode, the estimate; otherwise the old measurement, stale.
func (v *view) ownEntry(peer string, now time.Time, f freshness) (Entry, bool) {
	e, ok := v.m[v.self][peer]
	keep := f.staleAfter
	fresh := ok && (e.Failures > 0 || now.Sub(e.Updated) <= keep)
	if rev, rok := v.m[peer][v.self]; f.estimate && rok && rev.Samples > 0 && !rev.Estimated && now.Sub(rev.Updated) <= keep && (!ok || e.Failures == 0) {
		// The peer's measurement of the same round trip.
		if !fresh || e.Samples == 0 {
			e = Entry{RTT: rev.RTT, Jitter: rev.Jitter, Samples: rev.Samples, Updated: rev.Updated}
		} else {
			e = pool(e, rev)
		}
		ok, fresh = true, true
	}
	if f.estimate && (!fresh || e.Samples == 0) {
		if est, ok := v.estimate(peer, now, f); ok {
			if e.Failures > 0 {
				// Never measured and the last probe failed: the
				// estimate, marked stale, with the failures.
				est.Stale, est.Failures = true, e.Failures
			}
			return est, true
		}
	}
	if ok && now.Sub(e.Updated) > keep {
		e.Stale = true
	}
	return e, ok
}

// poolCap bounds the weight of one side's mean when two are pooled: an
// exponentially weighted mean with gain 1/8 counts about fifteen samples.
const poolCap = 15

// pool combines the node's measurement e of a path with the peer's
// measurement rev of the same path, weighting each mean by its sample
// count (at most poolCap). If the two disagree by more than a change
// would (see shifted), the path changed and one end has seen it first:
// the more recent of the two is taken alone.
func pool(e, rev Entry) Entry {
	// The jitter of the end with more samples, if it has enough for a
	// jitter to mean something: a jitter from two samples is often
	// far too small, and would split two ends that agree.
	j, n := e.Jitter, e.Samples
	if rev.Samples > n {
		j, n = rev.Jitter, rev.Samples
	}
	if n >= shiftSamples && math.Abs(e.RTT-rev.RTT) > shiftTolerance(e.RTT, j, e.Samples, rev.Samples) {
		if rev.Updated.After(e.Updated) {
			return Entry{RTT: rev.RTT, Jitter: rev.Jitter, Samples: rev.Samples, Updated: rev.Updated}
		}
		return e
	}
	we, wr := float64(min(e.Samples, poolCap)), float64(min(rev.Samples, poolCap))
	e.RTT = (we*e.RTT + wr*rev.RTT) / (we + wr)
	e.Samples += rev.Samples
	if rev.Updated.After(e.Updated) {
		e.Updated = rev.Updated
	}
	return e
}

// estimate computes the path to peer from the two coordinates.
func (v *view) estimate(peer string, now time.Time, f freshness) (Entry, bool) {
	pc, ok := v.coords[peer]
	if !ok || v.coord.Updated.IsZero() {
		return Entry{}, false
	}
	d, ok := v.coord.Distance(pc.Coord)
	if !ok {
		return Entry{}, false
	}
	updated := v.coord.Updated
	if pc.Updated.Before(updated) {
		updated = pc.Updated
	}
	return Entry{RTT: d.Seconds(), Estimated: true, Updated: updated, Stale: now.Sub(updated) > f.coordStaleAfter}, true
}

// row returns the node's own row for every member, staleness applied and,
// in coordinate mode, estimates filled in.
func (v *view) row(now time.Time, f freshness) Row {
	out := make(Row, len(v.members))
	for peer := range v.members {
		if e, ok := v.ownEntry(peer, now, f); ok {
			out[peer] = e
		}
	}
	return out
}

// report returns the measured part of the node's own row, the answer to a
// /ping from node to: in full-mesh mode every measured path; in coordinate
// mode only the path to the asker, if measured within the time a
// measurement is kept, so that an answer stays small (on a slow link its
// size adds to the round trip the asker times) and the asker can pool it
// with its own (see heard). Estimates are never passed on: any node with
// the two coordinates can compute them.
func (v *view) report(now time.Time, f freshness, to string) Row {
	out := Row{}
	if f.estimate {
		if e, ok := v.m[v.self][to]; ok && e.Samples > 0 && now.Sub(e.Updated) <= f.staleAfter {
			out[to] = e
		}
		return out
	}
	for peer, e := range v.m[v.self] {
		if now.Sub(e.Updated) > f.staleAfter {
			e.Stale = true
		}
		out[peer] = e
	}
	return out
}

// snapshot returns a copy of the view: the own row as row returns it, the
// other rows with every entry not updated within staleAfter marked stale.
func (v *view) snapshot(now time.Time, f freshness) Matrix {
	out := make(Matrix, len(v.m))
	for from, r := range v.m {
		if from == v.self {
			continue
		}
		c := r.clone()
		for to, e := range c {
			if now.Sub(e.Updated) > f.staleAfter {
				e.Stale = true
				c[to] = e
			}
		}
		out[from] = c
	}
	out[v.self] = v.row(now, f)
	return out
}

// rtt is the best RTT known to peer: the node's own entry, or before
// there is one the one the peer measured in the other direction (links
// are symmetric).
func (v *view) rtt(peer string, now time.Time, f freshness) (time.Duration, bool) {
	if e, ok := v.ownEntry(peer, now, f); ok && e.Known() {
		return e.Duration(), true
	}
	return v.m.Get(peer, v.self)
}
