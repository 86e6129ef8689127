package latency

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestVivaldiConfig_Update_twoNodes(t *testing.T) {
	var cfg VivaldiConfig
	rng := rand.New(rand.NewPCG(1, 1))
	a, b := cfg.NewCoord(), cfg.NewCoord()
	for range 200 {
		a = cfg.Update(a, b, 50*time.Millisecond, rng)
		b = cfg.Update(b, a, 50*time.Millisecond, rng)
	}
	d, ok := a.Distance(b)
	if !ok || (d-50*time.Millisecond).Abs() > time.Millisecond {
		t.Errorf("distance after 200 exchanges = %v, %v; want 50 ms ± 1 ms", d, ok)
	}
	if a.Error > 0.05 || b.Error > 0.05 {
		t.Errorf("errors %v, %v; want near 0 for a consistent RTT", a.Error, b.Error)
	}
}

func TestVivaldiConfig_Update_pure(t *testing.T) {
	var cfg VivaldiConfig
	rng := rand.New(rand.NewPCG(2, 2))
	a := Coord{Vec: []float64{0.01, 0, 0, 0, 0, 0, 0, 0}, Height: 0.001, Error: 1}
	b := Coord{Vec: []float64{0, 0.02, 0, 0, 0, 0, 0, 0}, Height: 0.002, Error: 0.5}
	a0, b0 := a, b
	a0.Vec, b0.Vec = slices.Clone(a.Vec), slices.Clone(b.Vec)
	got := cfg.Update(a, b, 80*time.Millisecond, rng)
	if !slices.Equal(a.Vec, a0.Vec) || !slices.Equal(b.Vec, b0.Vec) || a.Height != a0.Height || a.Error != a0.Error {
		t.Errorf("Update changed its inputs")
	}
	before, _ := a.Distance(b)
	after, _ := got.Distance(b)
	if after <= before {
		t.Errorf("an RTT of 80 ms above the predicted %v did not push a away (now %v)", before, after)
	}
	// The force splits between point and height, both growing.
	if got.Height <= a.Height {
		t.Errorf("height %v did not grow from %v", got.Height, a.Height)
	}
}

func TestVivaldiConfig_Update_rejects(t *testing.T) {
	var cfg VivaldiConfig
	rng := rand.New(rand.NewPCG(3, 3))
	good := cfg.NewCoord()
	nan := cfg.NewCoord()
	nan.Vec[3] = math.NaN()
	tests := []struct {
		name   string
		remote Coord
		rtt    time.Duration
	}{
		{"NaN remote", nan, 10 * time.Millisecond},
		{"other dimension", Coord{Vec: []float64{1, 2}, Height: 0.001, Error: 1}, 10 * time.Millisecond},
		{"negative height", Coord{Vec: make([]float64, 8), Height: -1, Error: 1}, 10 * time.Millisecond},
		{"zero RTT", good, 0},
		{"negative RTT", good, -time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := Coord{Vec: []float64{0.01, 0, 0, 0, 0, 0, 0, 0}, Height: 0.001, Error: 1}
			got := cfg.Update(local, tt.remote, tt.rtt, rng)
			if !slices.Equal(got.Vec, local.Vec) || got.Height != local.Height || got.Error != local.Error {
				t.Errorf("Update = %+v, want local unchanged", got)
			}
		})
	}
	if _, ok := good.Distance(Coord{Vec: []float64{1}}); ok {
		t.Errorf("Distance between coordinates of different dimensions")
	}
}

func TestVivaldiConfig_Update_coincidentPoints(t *testing.T) {
	var cfg VivaldiConfig
	rng := rand.New(rand.NewPCG(4, 4))
	a, b := cfg.NewCoord(), cfg.NewCoord()
	got := cfg.Update(a, b, 30*time.Millisecond, rng)
	if d, _ := got.Distance(b); d <= 0 {
		t.Errorf("two nodes at the origin did not separate: %+v", got)
	}
	if !cfg.Valid(got) {
		t.Errorf("invalid coordinate %+v", got)
	}
}

// TestVivaldi_simulatedFleet checks the coordinates' accuracy on a known
// latency matrix (a world of regions with edge and cloud nodes, see
// newWorld) in virtual time, with the agents' probing plan: three probes
// per node per second. It is the regression bound; the figures for larger
// fleets are printed by BenchmarkSimulatedFleet.
func TestVivaldi_simulatedFleet(t *testing.T) {
	w := newWorld(300, 11)
	res := simulate(w, simConfig{seconds: 120, seed: 12, pairs: 4000})
	t.Logf("300 nodes, 120 s: median relative error %.3f, p90 %.3f, %.2f probes per node per second",
		res.finalMedian, res.finalP90, res.probesPerNodeSecond)
	if res.finalMedian > 0.15 {
		t.Errorf("median relative error %.3f, want ≤ 0.15", res.finalMedian)
	}
	if res.probesPerNodeSecond > 3.01 {
		t.Errorf("%.2f probes per node per second, want 3", res.probesPerNodeSecond)
	}
}

func TestVector_MarshalJSON(t *testing.T) {
	b, err := json.Marshal(PeerCoord{Coord: Coord{Vec: Vector{0.0123456789, -1e-7, 0}, Height: 0.001, Error: 0.5}, Updated: t0})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"vec":[0.012346,-1e-07,0],"height":0.001,"error":0.5,"updated":"2026-01-01T00:00:00Z"}`
	if string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
	var back PeerCoord
	if err := json.Unmarshal(b, &back); err != nil || back.Vec[0] != 0.012346 || !back.Updated.Equal(t0) {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	if _, err := json.Marshal(Vector{math.NaN()}); err == nil {
		t.Errorf("NaN marshalled")
	}
}

func TestAdjuster(t *testing.T) {
	var a adjuster
	if got := a.add(math.NaN()); got != 0 {
		t.Errorf("a NaN first: %v, want 0", got)
	}
	tests := []struct {
		residual, want float64
	}{
		{0.010, 0.005},                       // half the mean of {10 ms}
		{-0.002, 0.002},                      // half of 4 ms
		{math.Inf(1), 0.002},                 // ignored
		{0.004, (0.010 - 0.002 + 0.004) / 6}, // half the mean of three
	}
	for i, tt := range tests {
		if got := a.add(tt.residual); math.Abs(got-tt.want) > 1e-15 {
			t.Errorf("step %d: add(%v) = %v, want %v", i, tt.residual, got, tt.want)
		}
	}
	// The window keeps the last adjustmentWindow residuals only.
	for range adjustmentWindow {
		a.add(0.001)
	}
	if got := a.add(0.001); math.Abs(got-0.0005) > 1e-15 || len(a.samples) != adjustmentWindow {
		t.Errorf("after a full window of 1 ms: %v with %d samples, want 0.0005 and %d", got, len(a.samples), adjustmentWindow)
	}
}

func TestCoord_adjustment(t *testing.T) {
	a := Coord{Vec: Vector{0, 0}, Height: 0.001, Adjustment: 0.002}
	b := Coord{Vec: Vector{0.003, 0.004}, Height: 0.001, Adjustment: -0.001}
	if d, _ := a.Distance(b); d != 8*time.Millisecond { // 5 + 2·1 + 2 − 1
		t.Errorf("distance with adjustments = %v, want 8ms", d)
	}
	b.Adjustment = -0.02 // would make it negative: ignored
	if d, _ := a.Distance(b); d != 7*time.Millisecond {
		t.Errorf("distance with a too negative adjustment = %v, want 7ms (none)", d)
	}
	cfg := VivaldiConfig{Dims: 2}
	if cfg.Valid(Coord{Vec: Vector{0, 0}, Adjustment: math.NaN()}) {
		t.Error("a NaN adjustment is valid")
	}
	if got := cfg.Update(a, b, 10*time.Millisecond, nil); got.Adjustment != a.Adjustment {
		t.Errorf("Update changed the adjustment: %v", got.Adjustment)
	}
}
