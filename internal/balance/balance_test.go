package balance

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

const ms = time.Millisecond

// seedView is the seed's testbed seen from node index origin: node1 and
// node2 1 ms apart, node3 50 ms from both, 4 ms processing everywhere.
func seedView(origin int, replicas ...Replica) *View {
	rtt := [3][3]time.Duration{{0, 1 * ms, 50 * ms}, {1 * ms, 0, 50 * ms}, {50 * ms, 50 * ms, 0}}
	v := &View{Origin: origin, Replicas: replicas}
	for j := 0; j < 3; j++ {
		v.Nodes = append(v.Nodes, Node{RTT: rtt[origin][j], Processing: 4 * ms})
	}
	return v
}

func counts(t *testing.T, p Policy, v *View, n int) []int {
	t.Helper()
	got := make([]int, len(v.Replicas))
	for i := 0; i < n; i++ {
		k := p.Pick(v)
		if k < 0 {
			t.Fatalf("Pick returned -1 with replicas %+v", v.Replicas)
		}
		got[k]++
	}
	return got
}

func TestWeights(t *testing.T) {
	tests := []struct {
		name      string
		origin    int
		available []bool
		want      []float64
	}{
		{"edge origin, all ready", 2, []bool{true, true, true}, []float64{(1 / 54.0) / (2/54.0 + 1/4.0), (1 / 54.0) / (2/54.0 + 1/4.0), (1 / 4.0) / (2/54.0 + 1/4.0)}},
		{"cloud origin, edge only", 0, []bool{false, false, true}, []float64{0, 0, 1}},
		{"none ready is identity", 1, []bool{false, false, false}, []float64{0, 1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Weights(seedView(tt.origin).Nodes, tt.available, tt.origin, nil)
			for j := range tt.want {
				if math.Abs(got[j]-tt.want[j]) > 1e-9 {
					t.Errorf("w[%d] = %.4f, want %.4f", j, got[j], tt.want[j])
				}
			}
		})
	}
}

func TestFaaSt_followsWeights(t *testing.T) {
	p := &FaaSt{rng: rand.New(rand.NewPCG(1, 2))}
	v := seedView(2, Replica{Node: 0}, Replica{Node: 1}, Replica{Node: 2}, Replica{Node: 2})
	const n = 100000
	got := counts(t, p, v, n)
	w := Weights(v.Nodes, []bool{true, true, true}, 2, nil)
	for j, want := range []float64{w[0], w[1], w[2] / 2, w[2] / 2} {
		if share := float64(got[j]) / n; math.Abs(share-want) > 0.01 {
			t.Errorf("replica %d share = %.3f, want %.3f", j, share, want)
		}
	}
	// Round robin inside node 3: its two replicas alternate.
	if d := got[2] - got[3]; d < -1 || d > 1 {
		t.Errorf("node3 replicas got %d and %d, want round robin", got[2], got[3])
	}
}

func TestPolicies_skipFull(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			p, err := New(name, rand.New(rand.NewPCG(3, 4)))
			if err != nil {
				t.Fatal(err)
			}
			v := seedView(0, Replica{Node: 0, Capacity: 1, InFlight: 1}, Replica{Node: 0, Capacity: 2})
			for i := 0; i < 50; i++ {
				if k := p.Pick(v); k != 1 {
					t.Fatalf("Pick = %d, want 1 (replica 0 is full)", k)
				}
			}
			v.Replicas[1].InFlight = 2
			if k := p.Pick(v); k != -1 {
				t.Errorf("Pick = %d with every replica full, want -1", k)
			}
			if k := p.Pick(seedView(0)); k != -1 {
				t.Errorf("Pick = %d with no replicas, want -1", k)
			}
		})
	}
}

func TestLocalFirst(t *testing.T) {
	p := &LocalFirst{}
	v := seedView(2, Replica{Node: 0}, Replica{Node: 2, Capacity: 1})
	if got := counts(t, p, v, 10); got[1] != 10 {
		t.Errorf("local replica got %d of 10", got[1])
	}
	v.Replicas[1].InFlight = 1
	if k := p.Pick(v); k != -1 {
		t.Errorf("Pick = %d with the local replica full, want -1 (wait locally)", k)
	}
	v = seedView(2, Replica{Node: 0}, Replica{Node: 1})
	if got := counts(t, p, v, 10); got[0] != 5 || got[1] != 5 {
		t.Errorf("no local replica: got %v, want round robin 5/5", got)
	}
}

func TestPowerOfTwo_prefersFewerInFlight(t *testing.T) {
	p := &PowerOfTwo{rng: rand.New(rand.NewPCG(5, 6))}
	v := seedView(2, Replica{Node: 0, InFlight: 5}, Replica{Node: 2, InFlight: 0})
	if got := counts(t, p, v, 100); got[1] != 100 {
		t.Errorf("got %v, want all on the idle replica", got)
	}
	// Distance is ignored: equal load spreads evenly across tiers.
	v = seedView(2, Replica{Node: 0}, Replica{Node: 2})
	got := counts(t, p, v, 10000)
	if got[0] < 4500 || got[0] > 5500 {
		t.Errorf("got %v, want about half on the far replica", got)
	}
}

func TestExpectedTime(t *testing.T) {
	p := &ExpectedTime{rng: rand.New(rand.NewPCG(7, 8))}
	tests := []struct {
		name string
		v    *View
		want int
	}{
		{"idle local wins over cloud", seedView(2, Replica{Node: 0}, Replica{Node: 2}), 1},
		{"lightly loaded local still wins", seedView(2, Replica{Node: 0}, Replica{Node: 2, InFlight: 3}), 1},
		{"queue longer than the RTT spills to cloud", seedView(2, Replica{Node: 0}, Replica{Node: 2, InFlight: 20}), 0},
		{"cloud origin stays on cloud", seedView(0, Replica{Node: 1}, Replica{Node: 2}), 0},
		{"least loaded of equals", seedView(0, Replica{Node: 0, InFlight: 2}, Replica{Node: 0, InFlight: 1}), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Pick(tt.v); got != tt.want {
				t.Errorf("Pick = %d, want %d", got, tt.want)
			}
		})
	}
	// With eight workers per replica, six requests in flight do not queue:
	// the local replica stays cheaper than an idle one 1 ms away.
	v8 := seedView(0, Replica{Node: 0, InFlight: 6}, Replica{Node: 1})
	v8.Parallelism = 8
	if got := p.Pick(v8); got != 0 {
		t.Errorf("local replica with free workers: Pick = %d, want 0", got)
	}
	v8.Replicas[0].InFlight = 12
	if got := p.Pick(v8); got != 1 {
		t.Errorf("local replica with a queue: Pick = %d, want 1", got)
	}
	// A slow fresh service estimate at the edge (the fleet's queue there)
	// moves traffic to the cloud even with no in-flight of our own.
	v := seedView(2, Replica{Node: 0}, Replica{Node: 2})
	v.Nodes[2].Service = 80 * ms
	if got := p.Pick(v); got != 0 {
		t.Errorf("with a congested edge, Pick = %d, want 0", got)
	}
	// Idle equals share the load.
	v = seedView(0, Replica{Node: 0}, Replica{Node: 0})
	if got := counts(t, p, v, 1000); got[0] < 400 || got[1] < 400 {
		t.Errorf("idle equal replicas got %v, want an even split", got)
	}
}

func TestNew_unknown(t *testing.T) {
	if _, err := New("nope", nil); err == nil {
		t.Fatal("New(nope) succeeded")
	}
}

func BenchmarkPick(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			p, _ := New(name, rand.New(rand.NewPCG(1, 1)))
			v := seedView(2)
			for i := 0; i < 12; i++ {
				v.Replicas = append(v.Replicas, Replica{Node: i % 3, InFlight: i % 4, Capacity: 10})
			}
			b.ReportAllocs()
			for b.Loop() {
				p.Pick(v)
			}
		})
	}
}

// A stale node is probed only when its round trip alone could beat the
// best expected time.
func TestExpectedTime_probes(t *testing.T) {
	tests := []struct {
		name      string
		origin    int
		localProc time.Duration
		want      int // replica index
	}{
		{"edge origin, slow local: probe the cloud", 2, 160 * ms, 0},
		{"edge origin, fast local: no probe worth it", 2, 4 * ms, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := seedView(tt.origin, Replica{Node: 0}, Replica{Node: 2})
			v.Nodes[0].Processing, v.Nodes[0].Probe = 500*ms, true // once measured slow
			v.Nodes[2].Processing = tt.localProc
			p := &ExpectedTime{rng: rand.New(rand.NewPCG(1, 2))}
			if got := p.Pick(v); got != tt.want {
				t.Errorf("Pick = %d, want %d", got, tt.want)
			}
		})
	}
}
