package stats

import (
	"math"
	"reflect"
	"testing"
	"time"
)

func msSeq(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sample []time.Duration
		p      float64
		want   time.Duration
	}{
		{name: "empty", sample: nil, p: 50, want: 0},
		{name: "one sample p0", sample: msSeq(1), p: 0, want: time.Millisecond},
		{name: "one sample p50", sample: msSeq(1), p: 50, want: time.Millisecond},
		{name: "one sample p100", sample: msSeq(1), p: 100, want: time.Millisecond},
		{name: "p0 is the minimum", sample: msSeq(10), p: 0, want: 1 * time.Millisecond},
		{name: "p100 is the maximum", sample: msSeq(10), p: 100, want: 10 * time.Millisecond},
		{name: "p50 of 10 is the 5th", sample: msSeq(10), p: 50, want: 5 * time.Millisecond},
		{name: "p95 of 10 rounds up to the 10th", sample: msSeq(10), p: 95, want: 10 * time.Millisecond},
		{name: "p90 of 10 is the 9th", sample: msSeq(10), p: 90, want: 9 * time.Millisecond},
		{name: "p95 of 100 is exactly the 95th", sample: msSeq(100), p: 95, want: 95 * time.Millisecond},
		{name: "p99 of 100", sample: msSeq(100), p: 99, want: 99 * time.Millisecond},
		{name: "p29 of 100 despite float error", sample: msSeq(100), p: 29, want: 29 * time.Millisecond},
		{name: "p99.9 of 1000", sample: msSeq(1000), p: 99.9, want: 999 * time.Millisecond},
		{name: "p1 of 3 is the first", sample: msSeq(3), p: 1, want: time.Millisecond},
		{name: "p34 of 3 is the second", sample: msSeq(3), p: 34, want: 2 * time.Millisecond},
		{name: "above 100 clamps", sample: msSeq(3), p: 150, want: 3 * time.Millisecond},
		{name: "negative clamps", sample: msSeq(3), p: -5, want: time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sample, tt.p); got != tt.want {
				t.Errorf("Percentile(n=%d, %v) = %v, want %v", len(tt.sample), tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	ok := func(node string, ms int) Obs {
		return Obs{Origin: "node3", Node: node, Latency: time.Duration(ms) * time.Millisecond, OK: true}
	}
	tests := []struct {
		name   string
		obs    []Obs
		window time.Duration
		want   Summary
	}{
		{name: "empty", obs: nil, window: time.Second, want: Summary{}},
		{
			name:   "only errors",
			obs:    []Obs{{Origin: "node3", Latency: time.Second}, {Origin: "node3"}},
			window: time.Second,
			want:   Summary{Count: 2, Errors: 2},
		},
		{
			name:   "one sample",
			obs:    []Obs{ok("node3", 7)},
			window: 2 * time.Second,
			want: Summary{
				Count: 1, Completed: 1, MeanMs: 7, MinMs: 7, P50Ms: 7, P90Ms: 7, P95Ms: 7, P99Ms: 7, MaxMs: 7,
				Throughput: 0.5, ServedBy: map[string]float64{"node3": 1},
			},
		},
		{
			name: "errors are counted but do not shape latency",
			obs: []Obs{
				ok("node3", 10), ok("node3", 20), ok("node1", 30), ok("node1", 40),
				{Origin: "node3", Latency: 5 * time.Second},
			},
			window: 0,
			want: Summary{
				Count: 5, Completed: 4, Errors: 1, MeanMs: 25, MinMs: 10, P50Ms: 20, P90Ms: 40, P95Ms: 40, P99Ms: 40, MaxMs: 40,
				ServedBy: map[string]float64{"node3": 0.5, "node1": 0.5},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(tt.obs, tt.window)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Summarize() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestSummarize_unordered(t *testing.T) {
	var obs []Obs
	for _, v := range []int{9, 3, 7, 1, 5, 2, 8, 4, 10, 6} {
		obs = append(obs, Obs{Node: "a", Latency: time.Duration(v) * time.Millisecond, OK: true})
	}
	s := Summarize(obs, 0)
	if s.P50Ms != 5 || s.P90Ms != 9 || s.MinMs != 1 || s.MaxMs != 10 || s.MeanMs != 5.5 {
		t.Errorf("Summarize() = %+v, want p50 5, p90 9, min 1, max 10, mean 5.5", s)
	}
}

func TestByOrigin(t *testing.T) {
	obs := []Obs{
		{Origin: "node1", Node: "node1", Latency: time.Millisecond, OK: true},
		{Origin: "node3", Node: "node3", Latency: 3 * time.Millisecond, OK: true},
		{Origin: "node3", Node: "node1", Latency: 50 * time.Millisecond, OK: true},
		{Origin: "node3"},
	}
	got := ByOrigin(obs, time.Second)
	if len(got) != 2 {
		t.Fatalf("ByOrigin() has %d origins, want 2", len(got))
	}
	n3 := got["node3"]
	if n3.Count != 3 || n3.Completed != 2 || n3.Errors != 1 {
		t.Errorf("node3 counts = %d/%d/%d, want 3/2/1", n3.Count, n3.Completed, n3.Errors)
	}
	want := map[string]float64{"node3": 0.5, "node1": 0.5}
	if !reflect.DeepEqual(n3.ServedBy, want) {
		t.Errorf("node3 servedBy = %v, want %v", n3.ServedBy, want)
	}
	if got["node1"].ServedBy["node1"] != 1 {
		t.Errorf("node1 servedBy = %v, want all on node1", got["node1"].ServedBy)
	}
}

func TestSummary_Value(t *testing.T) {
	s := Summary{Count: 1, Completed: 2, Errors: 3, MeanMs: 4, P50Ms: 5, P90Ms: 6, P95Ms: 7, P99Ms: 8, MaxMs: 9, Throughput: 10}
	for i, m := range Metrics {
		v, ok := s.Value(m)
		if !ok || v != float64(i+1) {
			t.Errorf("Value(%q) = %v, %v; want %d, true", m, v, ok, i+1)
		}
	}
	if _, ok := s.Value("p42"); ok {
		t.Error("Value(\"p42\") ok = true, want false")
	}
}

func TestCDF(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		maxPoints int
		wantLen   int
	}{
		{name: "empty", n: 0, maxPoints: 10, wantLen: 0},
		{name: "one sample", n: 1, maxPoints: 10, wantLen: 1},
		{name: "no limit", n: 50, maxPoints: 0, wantLen: 50},
		{name: "under the limit", n: 5, maxPoints: 10, wantLen: 5},
		{name: "downsampled", n: 1000, maxPoints: 100, wantLen: 91},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var obs []Obs
			for i := tt.n; i > 0; i-- {
				obs = append(obs, Obs{Latency: time.Duration(i) * time.Millisecond, OK: true})
			}
			obs = append(obs, Obs{Latency: time.Hour}) // failed: ignored
			pts := CDF(obs, tt.maxPoints)
			if len(pts) != tt.wantLen {
				t.Fatalf("len(CDF) = %d, want %d", len(pts), tt.wantLen)
			}
			if tt.n == 0 {
				return
			}
			if tt.maxPoints >= 2 && len(pts) > tt.maxPoints {
				t.Errorf("len(CDF) = %d, above the limit %d", len(pts), tt.maxPoints)
			}
			for i := 1; i < len(pts); i++ {
				if pts[i].X < pts[i-1].X || pts[i].Y <= pts[i-1].Y {
					t.Fatalf("CDF not increasing at %d: %v then %v", i, pts[i-1], pts[i])
				}
			}
			last := pts[len(pts)-1]
			if last.Y != 1 || last.X != float64(tt.n) {
				t.Errorf("last point = %+v, want {X:%d Y:1}", last, tt.n)
			}
			if math.Abs(pts[0].Y-pts[0].X/float64(tt.n)) > 1e-12 {
				t.Errorf("first point = %+v, share does not match rank", pts[0])
			}
		})
	}
}
