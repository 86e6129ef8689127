package latency

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// drive runs the planner from start to end as the agent's loop would (wake
// at next, take what is due) and returns every probe with its time.
func drive(p *planner, end time.Time) (times []time.Time, peers []string) {
	for {
		t, ok := p.next()
		if !ok || !t.Before(end) {
			return
		}
		for _, peer := range p.take(t) {
			times = append(times, t)
			peers = append(peers, peer)
		}
	}
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node%04d", i)
	}
	return out
}

func TestPlanner_meshSpreadsProbes(t *testing.T) {
	const n, rounds = 1000, 5
	p := newPlanner("self", time.Second, 100*time.Millisecond, -1, 3, 8, 0, rand.New(rand.NewPCG(1, 2)))
	p.setPeers(names(n), t0)
	times, peers := drive(p, t0.Add(rounds*time.Second))
	if len(times) != n*rounds {
		t.Fatalf("%d probes in %d rounds of %d peers, want %d", len(times), rounds, n, n*rounds)
	}
	// Every peer once per round.
	perRound := map[[2]any]int{}
	for i, tm := range times {
		perRound[[2]any{peers[i], int(tm.Sub(t0) / time.Second)}]++
	}
	for k, c := range perRound {
		if c != 1 {
			t.Errorf("peer %v probed %d times in round %v", k[0], c, k[1])
		}
	}
	if len(perRound) != n*rounds {
		t.Errorf("%d (peer, round) pairs, want %d", len(perRound), n*rounds)
	}
	// Spread: no 10 ms slot holds more than three times its share (10).
	slots := map[int64]int{}
	for _, tm := range times {
		slots[int64(tm.Sub(t0)/(10*time.Millisecond))]++
	}
	for s, c := range slots {
		if c > 30 {
			t.Errorf("%d probes in the 10 ms from %v; a burst", c, time.Duration(s)*10*time.Millisecond)
		}
	}
	// The same peer is probed at about the same phase in every round
	// (within the jitter), so its samples are evenly spaced.
	first := map[string]time.Duration{}
	for i, tm := range times {
		phase := tm.Sub(t0) % time.Second
		if f, ok := first[peers[i]]; !ok {
			first[peers[i]] = phase
		} else if d := (phase - f).Abs(); d > 100*time.Millisecond {
			t.Fatalf("peer %s at phase %v and %v", peers[i], f, phase)
		}
	}
}

func TestPlanner_phasesDifferPerProber(t *testing.T) {
	a := newPlanner("a", time.Second, 0, -1, 3, 8, 0, rand.New(rand.NewPCG(1, 2)))
	b := newPlanner("b", time.Second, 0, -1, 3, 8, 0, rand.New(rand.NewPCG(1, 2)))
	a.setPeers([]string{"x"}, t0)
	b.setPeers([]string{"x"}, t0)
	ta, _ := a.next()
	tb, _ := b.next()
	if ta.Equal(tb) {
		t.Errorf("a and b probe x at the same moment %v", ta)
	}
}

func TestPlanner_coordinateMode(t *testing.T) {
	const n, rounds = 200, 300
	p := newPlanner("self", time.Second, 100*time.Millisecond, 16, 3, 8, 0, rand.New(rand.NewPCG(3, 4)))
	p.setPeers(names(n), t0)
	if p.mesh {
		t.Fatal("200 peers probed as a mesh")
	}
	times, peers := drive(p, t0.Add(rounds*time.Second))
	if len(times) != 3*rounds {
		t.Errorf("%d probes in %d rounds, want 3 per round", len(times), rounds)
	}
	perRound := map[int]int{}
	for _, tm := range times {
		perRound[int(tm.Sub(t0)/time.Second)]++
	}
	for r, c := range perRound {
		if c != 3 {
			t.Errorf("round %d: %d probes, want 3", r, c)
		}
	}
	// The neighbour set drifts: over 300 rounds (about 110 passes, each
	// swapping one member) many different peers are measured.
	distinct := map[string]bool{}
	for _, p := range peers {
		distinct[p] = true
	}
	if len(distinct) < 60 {
		t.Errorf("%d distinct peers probed in %d rounds, want the neighbour set to drift", len(distinct), rounds)
	}
	// At any moment the recent probes touch only a few peers: the
	// neighbour set, so the agent keeps few connections.
	recent := map[string]bool{}
	for _, p := range peers[len(peers)-24:] {
		recent[p] = true
	}
	if len(recent) > 12 {
		t.Errorf("last 8 rounds touched %d peers, want about the 8 neighbours", len(recent))
	}
}

func TestPlanner_setPeers(t *testing.T) {
	p := newPlanner("self", time.Second, 100*time.Millisecond, 4, 2, 2, 0, rand.New(rand.NewPCG(5, 6)))
	p.setPeers([]string{"a", "b", "c"}, t0)
	if !p.mesh {
		t.Fatal("4 nodes with a mesh limit of 4 not probed as a mesh")
	}
	dueB := p.due["b"]
	// Half a round later d joins; b keeps its moment, c leaves.
	now := t0.Add(500 * time.Millisecond)
	p.setPeers([]string{"a", "b", "d"}, now)
	if !p.due["b"].Equal(dueB) {
		t.Errorf("b's moment moved from %v to %v", dueB, p.due["b"])
	}
	if _, ok := p.due["c"]; ok {
		t.Errorf("c still scheduled after leaving")
	}
	if d := p.due["d"]; d.Before(now) || !d.Before(now.Add(2*time.Second)) {
		t.Errorf("d due at %v, want within the next two rounds from %v", d, now)
	}
	_, peers := drive(p, t0.Add(10*time.Second))
	if slices.Contains(peers, "c") {
		t.Errorf("c probed after leaving")
	}
	// A fifth node: coordinate mode, two slots, neighbours among members.
	p.setPeers([]string{"a", "b", "d", "e"}, t0.Add(10*time.Second))
	if p.mesh || len(p.due) != 2 || len(p.nb) != 2 {
		t.Fatalf("after growing to 5 nodes: mesh %v, %d slots, neighbours %v", p.mesh, len(p.due), p.nb)
	}
	p.setPeers([]string{"a"}, t0.Add(10*time.Second))
	if !p.mesh || len(p.due) != 1 {
		t.Errorf("after shrinking to 2 nodes: mesh %v, due %v", p.mesh, p.due)
	}
}

func TestPlanner_lateWakeUp(t *testing.T) {
	p := newPlanner("self", time.Second, 100*time.Millisecond, -1, 3, 8, 0, rand.New(rand.NewPCG(7, 8)))
	p.setPeers([]string{"a", "b"}, t0)
	// The loop wakes ten rounds late: each peer fires once, and its next
	// moment is in the future, in the current round or the next.
	late := t0.Add(10*time.Second + 500*time.Millisecond)
	if got := p.take(late); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("take = %v, want [a b]", got)
	}
	for k, d := range p.due {
		if !d.After(late) || d.After(late.Add(2*time.Second)) {
			t.Errorf("%s next due %v, want after %v within two rounds", k, d, late)
		}
	}
	if got := p.take(late); len(got) != 0 {
		t.Errorf("second take at the same time = %v", got)
	}
}

// TestPlanner_sweep checks that a fleet within the sweep limit is probed
// all in turn: every peer once per sweep of peers/perRound rounds, at
// perRound probes per round; beyond the limit, the neighbour set.
func TestPlanner_sweep(t *testing.T) {
	peers := names(31) // 30 peers besides node0000
	p := newPlanner("node0000", time.Second, 100*time.Millisecond, 16, 3, 8, 30, rand.New(rand.NewPCG(9, 10)))
	p.setPeers(peers, t0)
	if p.mesh || len(p.nb) != 30 {
		t.Fatalf("31 nodes, mesh limit 16, sweep limit 30: mesh %v, %d neighbours; want coordinates and all 30", p.mesh, len(p.nb))
	}
	_, got := drive(p, t0.Add(40*time.Second)) // four sweeps of ten rounds
	if len(got) != 120 {
		t.Fatalf("%d probes in 40 rounds, want 120", len(got))
	}
	for s := range 4 {
		sweep := slices.Sorted(slices.Values(got[30*s : 30*(s+1)]))
		if !slices.Equal(sweep, peers[1:]) {
			t.Errorf("sweep %d probed %v, want every peer once", s, sweep)
		}
	}
	// A peer to recheck goes first, out of turn, in a sweep only.
	again := []string{"node0007"}
	recheck := func() (string, bool) {
		if len(again) == 0 {
			return "", false
		}
		p := again[0]
		again = again[1:]
		return p, true
	}
	p.recheck = recheck
	if got := p.take(p.due["#0"]); len(got) != 1 || got[0] != "node0007" {
		t.Errorf("take with node0007 to recheck = %v", got)
	}
	q := newPlanner("node0000", time.Second, 100*time.Millisecond, 16, 3, 8, 29, rand.New(rand.NewPCG(9, 10)))
	q.setPeers(peers, t0)
	if len(q.nb) != 8 {
		t.Errorf("30 peers over a sweep limit of 29: %d neighbours, want 8", len(q.nb))
	}
	again, q.recheck = []string{"node0007"}, recheck
	if got := q.take(q.due["#0"]); len(got) != 1 || got[0] == "node0007" && !slices.Contains(q.nb, "node0007") {
		t.Errorf("take beyond the sweep limit with node0007 to recheck = %v, want a neighbour", got)
	}
	if len(again) != 1 {
		t.Error("the planner asked for a recheck beyond the sweep limit")
	}
}

func TestGossipFor(t *testing.T) {
	tests := []struct{ peers, perRound, want int }{
		{5, 1, minGossip},
		{99, 3, 5}, // the 100-node testbed: ⌈99/24⌉
		{383, 3, 16},
		{999, 3, gossipSize},
		{4999, 3, gossipSize},
		{99, 0, 13}, // perRound 0 counts as 1
	}
	for _, tt := range tests {
		if got := gossipFor(tt.peers, tt.perRound); got != tt.want {
			t.Errorf("gossipFor(%d, %d) = %d, want %d", tt.peers, tt.perRound, got, tt.want)
		}
	}
	// The staleness limit of estimates follows the gossip: sixty
	// intervals up to a few hundred nodes, ten times the refresh bound
	// beyond.
	for _, tt := range []struct {
		peers int
		want  time.Duration
	}{{50, time.Minute}, {99, 70 * time.Second}, {999, 210 * time.Second}, {4999, 1050 * time.Second}} {
		if got := coordStaleAfter(time.Second, tt.peers, 3); got != tt.want {
			t.Errorf("coordStaleAfter(1s, %d, 3) = %v, want %v", tt.peers, got, tt.want)
		}
	}
}

// sweepPeriod: only a swept fleet (coordinate mode, every peer in turn)
// has one, the time a peer waits for its next turn.
func TestPlanner_sweepPeriod(t *testing.T) {
	for _, c := range []struct {
		name                    string
		peers, meshLimit, sweep int
		want                    time.Duration
	}{
		{name: "full mesh", peers: 10, meshLimit: 16, sweep: 120, want: 0},
		{name: "swept, 99 peers at 3 a round", peers: 99, meshLimit: 16, sweep: 120, want: 33 * time.Second},
		{name: "swept, 100 peers rounds up", peers: 100, meshLimit: 16, sweep: 120, want: 34 * time.Second},
		{name: "beyond the sweep: neighbours", peers: 500, meshLimit: 16, sweep: 120, want: 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPlanner("self", time.Second, 0, c.meshLimit, 3, 8, c.sweep, rand.New(rand.NewPCG(1, 2)))
			peers := make([]string, c.peers)
			for i := range peers {
				peers[i] = fmt.Sprintf("n%03d", i)
			}
			p.setPeers(peers, time.Unix(0, 0))
			if got := p.sweepPeriod(); got != c.want {
				t.Errorf("sweepPeriod() = %v, want %v", got, c.want)
			}
		})
	}
}
