package latency

import (
	"math"
	"testing"
	"time"
)

func ms(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func TestEstimator_Observe(t *testing.T) {
	tests := []struct {
		name       string
		alpha      float64
		samples    []time.Duration
		wantRTT    time.Duration
		wantJitter time.Duration
	}{
		{"first sample initialises", 0, []time.Duration{ms(20)}, ms(20), 0},
		{"constant samples", 0, []time.Duration{ms(5), ms(5), ms(5), ms(5)}, ms(5), 0},
		// Up to 1/alpha samples: exact mean and population std dev.
		{"warm-up is the plain mean", 0, []time.Duration{ms(10), ms(20), ms(30), ms(40)}, ms(25), ms(math.Sqrt(125))},
		{"two samples", 0, []time.Duration{ms(40), ms(60)}, ms(50), ms(10)},
		// alpha 0.5: mean 10, then 10+0.5·10=15; var (1−.5)(0+.5·100)=25 → 5 ms.
		{"weighted after warm-up", 0.5, []time.Duration{ms(10), ms(10), ms(20)}, ms(15), ms(5)},
		{"alpha 1 keeps the last sample", 1, []time.Duration{ms(10), ms(90), ms(30)}, ms(30), 0},
		{"zero is a valid sample", 0, []time.Duration{0}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEstimator(tt.alpha)
			var got Estimate
			for _, s := range tt.samples {
				var err error
				if got, err = e.Observe("peer", s); err != nil {
					t.Fatal(err)
				}
			}
			if !near(got.RTT, tt.wantRTT) || !near(got.Jitter, tt.wantJitter) || got.Samples != len(tt.samples) {
				t.Errorf("estimate = %+v, want RTT %v, jitter %v, %d samples", got, tt.wantRTT, tt.wantJitter, len(tt.samples))
			}
			if again, ok := e.Estimate("peer"); !ok || again != got {
				t.Errorf("Estimate = %+v, %v; want %+v, true", again, ok, got)
			}
		})
	}
}

func near(a, b time.Duration) bool { return (a - b).Abs() <= time.Microsecond }

func TestEstimator_rejects(t *testing.T) {
	e := NewEstimator(0)
	for _, rtt := range []time.Duration{-time.Millisecond, MaxRTT + 1} {
		if _, err := e.Observe("p", rtt); err == nil {
			t.Errorf("Observe(%v) accepted", rtt)
		}
	}
	if _, ok := e.Estimate("p"); ok {
		t.Errorf("rejected samples created an estimate")
	}
}

// TestEstimator_tracks checks that a warm estimate follows a step change and
// converges to a normal distribution's mean and standard deviation.
func TestEstimator_tracks(t *testing.T) {
	e := NewEstimator(0)
	for range 50 {
		e.Observe("p", ms(50))
	}
	var got Estimate
	for range 40 {
		got, _ = e.Observe("p", ms(10))
	}
	if got.RTT > ms(10.5) {
		t.Errorf("after a step from 50 to 10 ms the estimate is %v", got.RTT)
	}
	// Alternating 40 and 60 ms: mean 50, standard deviation 10.
	for i := range 400 {
		got, _ = e.Observe("q", ms(40+20*float64(i%2)))
	}
	if (got.RTT-ms(50)).Abs() > ms(1.5) || (got.Jitter-ms(10)).Abs() > ms(1) {
		t.Errorf("alternating 40/60 ms: %+v, want about 50 ms ± 10 ms", got)
	}
}
