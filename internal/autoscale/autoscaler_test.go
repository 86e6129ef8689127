package autoscale

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func demoSpec() Spec {
	s := DefaultSpec()
	s.Window = 12 * time.Second
	s.Target = 10
	return s
}

// feed records concurrency c for origin once per second at from, from+1s,
// ... up to and including to.
func feed(a *Autoscaler, origin string, from, to time.Time, c float64) {
	for now := from; !now.After(to); now = now.Add(time.Second) {
		a.Record(origin, now, c)
	}
}

// decide calls Decide and checks the invariants every decision keeps.
func decide(t *testing.T, a *Autoscaler, now time.Time, ready int) Decision {
	t.Helper()
	d := a.Decide(now, ready)
	total := 0
	for o, n := range d.PerOrigin {
		if n <= 0 {
			t.Errorf("at %v: PerOrigin[%q] = %d, want > 0", now.Sub(t0), o, n)
		}
		total += n
	}
	if got, want := d.Total, total; got != want {
		t.Errorf("at %v: Total = %d, want sum(PerOrigin) = %d (%v)", now.Sub(t0), got, want, d.PerOrigin)
	}
	return d
}

func checkPerOrigin(t *testing.T, d Decision, want map[string]int) {
	t.Helper()
	if !maps.Equal(d.PerOrigin, want) {
		t.Errorf("PerOrigin = %v, want %v (reason %q)", d.PerOrigin, want, d.Reason)
	}
}

func TestAutoscaler_Decide(t *testing.T) {
	tests := []struct {
		name   string
		spec   func(*Spec)
		load   map[string]float64 // steady concurrency per origin for 70 s
		ready  int
		want   map[string]int
		stable float64
	}{
		{name: "steady load", load: map[string]float64{"node1": 35}, ready: 4, want: map[string]int{"node1": 4}, stable: 35},
		{name: "exact multiple", load: map[string]float64{"node1": 40}, ready: 4, want: map[string]int{"node1": 4}, stable: 40},
		{name: "light load keeps one", load: map[string]float64{"node1": 0.2}, ready: 1, want: map[string]int{"node1": 1}, stable: 0.2},
		{
			name:   "two origins scaled separately",
			load:   map[string]float64{"node1": 35, "node3": 12},
			ready:  6,
			want:   map[string]int{"node1": 4, "node3": 2},
			stable: 47,
		},
		{
			name:   "silent origin wants nothing",
			load:   map[string]float64{"node1": 35, "node2": 0},
			ready:  4,
			want:   map[string]int{"node1": 4},
			stable: 35,
		},
		{
			name:   "min scale adds unattributed",
			spec:   func(s *Spec) { s.MinScale = 3 },
			load:   map[string]float64{"node1": 5},
			ready:  3,
			want:   map[string]int{"node1": 1, "": 2},
			stable: 5,
		},
		{
			name:   "max scale trims least demand first",
			spec:   func(s *Spec) { s.MaxScale = 4 },
			load:   map[string]float64{"node1": 40, "node2": 25, "node3": 10},
			ready:  4,
			want:   map[string]int{"node1": 4},
			stable: 75,
		},
		{
			name:   "max scale partial trim",
			spec:   func(s *Spec) { s.MaxScale = 6 },
			load:   map[string]float64{"node1": 40, "node2": 25, "node3": 10},
			ready:  6,
			want:   map[string]int{"node1": 4, "node2": 2},
			stable: 75,
		},
		{
			name:   "scale-down rate limit",
			load:   map[string]float64{"node1": 10},
			ready:  10,
			want:   map[string]int{"node1": 1, "": 4},
			stable: 10,
		},
		{
			name:   "scale-up rate limit",
			spec:   func(s *Spec) { s.MaxScaleUpRate = 2 },
			load:   map[string]float64{"node1": 100},
			ready:  1,
			want:   map[string]int{"node1": 2},
			stable: 100,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSpec()
			s.Target = 10
			if tc.spec != nil {
				tc.spec(&s)
			}
			a := New(s, t0)
			end := t0.Add(70 * time.Second)
			for o, c := range tc.load {
				feed(a, o, t0, end, c)
			}
			d := decide(t, a, end, tc.ready)
			checkPerOrigin(t, d, tc.want)
			if got, want := d.StableConcurrency, tc.stable; !closeTo(got, want) {
				t.Errorf("StableConcurrency = %v, want %v", got, want)
			}
		})
	}
}

func TestAutoscaler_Decide_rateLimitRestoresPrevious(t *testing.T) {
	s := DefaultSpec()
	s.Target = 10
	a := New(s, t0)
	feed(a, "node1", t0, t0.Add(70*time.Second), 60)
	feed(a, "node2", t0, t0.Add(70*time.Second), 40)
	d := decide(t, a, t0.Add(70*time.Second), 10)
	checkPerOrigin(t, d, map[string]int{"node1": 6, "node2": 4})

	// Both drop to almost nothing: at most halve, and keep the replicas
	// where the previous decision had them, busiest origin first.
	feed(a, "node1", t0.Add(71*time.Second), t0.Add(140*time.Second), 1)
	feed(a, "node2", t0.Add(71*time.Second), t0.Add(140*time.Second), 0.5)
	d = decide(t, a, t0.Add(140*time.Second), 10)
	checkPerOrigin(t, d, map[string]int{"node1": 4, "node2": 1})
	if got, want := d.Reason, "stable, scale-down limited"; got != want {
		t.Errorf("Reason = %q, want %q", got, want)
	}
}

func TestAutoscaler_Decide_panic(t *testing.T) {
	s := DefaultSpec() // window 60 s, panic window 6 s, threshold 200%
	s.Target = 10
	a := New(s, t0)
	now := t0
	ready := 1
	var lastOver time.Time
	step := func(c float64) Decision {
		t.Helper()
		now = now.Add(time.Second)
		a.Record("node3", now, c)
		d := decide(t, a, now, ready)
		if math.Ceil(d.PanicConcurrency/s.Target) >= 2*float64(max(ready, 1)) {
			lastOver = now
		}
		ready = d.Total // replicas become ready at once
		return d
	}
	for range 70 {
		if d := step(8); d.Panic {
			t.Fatalf("steady load: Panic = true, want false")
		}
	}
	if got, want := ready, 1; got != want {
		t.Fatalf("before the burst: Total = %d, want %d", got, want)
	}

	// A burst: the panic window sees it at once.
	d := step(100)
	if !d.Panic {
		t.Fatalf("first second of the burst: Panic = false, want true (%+v)", d)
	}
	for range 10 {
		d = step(100)
	}
	peak := d.Total
	if got, want := peak, 10; got != want {
		t.Errorf("during the burst: Total = %d, want %d", got, want)
	}

	// The burst ends. No scale-down while panicking, and panic lasts one
	// stable window past the last time the condition held.
	prev := peak
	var exit time.Time
	for range 120 {
		d = step(8)
		if d.Panic {
			if d.Total < prev {
				t.Fatalf("at %v in panic: Total = %d, want >= %d", now.Sub(t0), d.Total, prev)
			}
			prev = d.Total
			continue
		}
		if exit.IsZero() {
			exit = now
		}
	}
	if exit.IsZero() {
		t.Fatalf("panic never ended")
	}
	if got, want := exit.Sub(lastOver), s.Window; got != want {
		t.Errorf("panic ended %v after the condition last held, want %v", got, want)
	}
	if got, want := d.Total, 1; got != want {
		t.Errorf("long after the burst: Total = %d, want %d (%s)", got, want, d.Reason)
	}
}

func TestAutoscaler_Decide_panicKeepsOtherOrigins(t *testing.T) {
	s := DefaultSpec()
	s.Target = 10
	a := New(s, t0)
	feed(a, "node1", t0, t0.Add(70*time.Second), 40)
	d := decide(t, a, t0.Add(70*time.Second), 4)
	checkPerOrigin(t, d, map[string]int{"node1": 4})

	// node1 goes quiet while node3 bursts: panic holds node1's replicas.
	for i := 71; i <= 75; i++ {
		now := t0.Add(time.Duration(i) * time.Second)
		a.Record("node1", now, 0)
		a.Record("node3", now, 200)
	}
	d = decide(t, a, t0.Add(75*time.Second), 4)
	if !d.Panic {
		t.Fatalf("Panic = false, want true (%+v)", d)
	}
	if got, want := d.PerOrigin["node1"], 4; got != want {
		t.Errorf("PerOrigin[node1] = %d, want %d", got, want)
	}
	if got, want := d.PerOrigin["node3"], 17; got != want { // 5 s of 200 over 6 s
		t.Errorf("PerOrigin[node3] = %d, want %d", got, want)
	}
}

func TestAutoscaler_Decide_scaleToZero(t *testing.T) {
	tests := []struct {
		name      string
		retention time.Duration
		stop      time.Duration // offset of the last non-zero sample from t0
		feedZeros bool          // report zeros after stop, or nothing
	}{
		{name: "zeros reported", stop: 30 * time.Second, feedZeros: true},
		{name: "origin goes silent", stop: 30 * time.Second},
		{name: "stop off the second", stop: 30*time.Second + 400*time.Millisecond, feedZeros: true},
		{name: "retention delays", retention: 5 * time.Second, stop: 30 * time.Second, feedZeros: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := demoSpec()
			s.ScaleToZeroRetention = tc.retention
			a := New(s, t0)
			stop := t0.Add(tc.stop)
			feed(a, "node3", stop.Add(-20*time.Second), stop, 5)
			zeroAt := stop.Add(s.Window + tc.retention)
			for now := stop; now.Before(zeroAt.Add(3 * time.Second)); now = now.Add(100 * time.Millisecond) {
				if tc.feedZeros && now.After(stop) && now.Sub(stop)%time.Second == 0 {
					a.Record("node3", now, 0)
				}
				d := decide(t, a, now, 1)
				want := map[string]int{"node3": 1}
				if !now.Before(zeroAt) {
					want = map[string]int{}
				}
				if !maps.Equal(d.PerOrigin, want) {
					t.Fatalf("at stop+%v: PerOrigin = %v, want %v (%s)", now.Sub(stop), d.PerOrigin, want, d.Reason)
				}
			}
		})
	}
}

func TestAutoscaler_Decide_initialScale(t *testing.T) {
	tests := []struct {
		name    string
		initial int
		min     int
		at      time.Duration
		want    map[string]int
	}{
		{name: "demo at creation", initial: 1, at: 0, want: map[string]int{"": 1}},
		{name: "demo before the window", initial: 1, at: 11900 * time.Millisecond, want: map[string]int{"": 1}},
		{name: "demo after the window", initial: 1, at: 12 * time.Second, want: map[string]int{}},
		{name: "initial three", initial: 3, at: 5 * time.Second, want: map[string]int{"": 3}},
		{name: "initial zero", initial: 0, at: 0, want: map[string]int{}},
		{name: "min scale wins after the window", initial: 1, min: 2, at: 20 * time.Second, want: map[string]int{"": 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := demoSpec()
			s.InitialScale, s.MinScale = tc.initial, tc.min
			a := New(s, t0)
			ready := 0
			for now := t0; !now.After(t0.Add(tc.at)); now = now.Add(100 * time.Millisecond) {
				d := decide(t, a, now, ready)
				ready = d.Total
				if now.Equal(t0.Add(tc.at)) || now.Add(100*time.Millisecond).After(t0.Add(tc.at)) {
					checkPerOrigin(t, d, tc.want)
				}
			}
		})
	}
}

func TestAutoscaler_Decide_initialScaleThenDemand(t *testing.T) {
	a := New(demoSpec(), t0)
	checkPerOrigin(t, decide(t, a, t0, 0), map[string]int{"": 1})
	a.Record("node3", t0.Add(2*time.Second), 3)
	// Demand takes over the initial replica's place.
	checkPerOrigin(t, decide(t, a, t0.Add(2*time.Second), 1), map[string]int{"node3": 1})
}

func TestAutoscaler_Record_gapsAndOrder(t *testing.T) {
	samples := make([]time.Time, 0, 60)
	for i := range 60 {
		samples = append(samples, t0.Add(time.Duration(i)*time.Second))
	}
	inOrder := New(DefaultSpec(), t0)
	for _, at := range samples {
		inOrder.Record("node1", at, 250)
	}
	shuffled := New(DefaultSpec(), t0)
	r := rand.New(rand.NewPCG(1, 2))
	perm := r.Perm(len(samples))
	for _, i := range perm {
		shuffled.Record("node1", samples[i], 250)
	}
	jittery := New(DefaultSpec(), t0)
	for i, at := range samples {
		if i%7 == 3 {
			continue // a missed report
		}
		jittery.Record("node1", at.Add(time.Duration(r.IntN(900))*time.Millisecond), 250)
	}
	now := t0.Add(59*time.Second + 500*time.Millisecond)
	for name, a := range map[string]*Autoscaler{"in order": inOrder, "shuffled": shuffled, "jittery": jittery} {
		t.Run(name, func(t *testing.T) {
			d := decide(t, a, now, 3)
			if got, want := d.StableConcurrency, 250.0; !closeTo(got, want) {
				t.Errorf("StableConcurrency = %v, want %v", got, want)
			}
			checkPerOrigin(t, d, map[string]int{"node1": 3})
		})
	}
}

func TestAutoscaler_Record_invalid(t *testing.T) {
	a := New(demoSpec(), t0)
	a.Record("node1", t0, -5)
	a.Record("node2", t0, math.NaN())
	d := decide(t, a, t0.Add(13*time.Second), 0)
	if got, want := d.Total, 0; got != want {
		t.Errorf("Total = %d, want %d (%v)", got, want, d.PerOrigin)
	}
}

func TestAutoscaler_Decide_startNotDiluted(t *testing.T) {
	// Three seconds of data must not be averaged over a 60 s window.
	a := New(DefaultSpec(), t0)
	feed(a, "node1", t0, t0.Add(2*time.Second), 150)
	d := decide(t, a, t0.Add(2*time.Second), 2)
	if got, want := d.StableConcurrency, 150.0; !closeTo(got, want) {
		t.Errorf("StableConcurrency = %v, want %v", got, want)
	}
}

func TestAutoscaler_Decide_forgetsSilentOrigins(t *testing.T) {
	a := New(demoSpec(), t0)
	for i := range 100 {
		a.Record(fmt.Sprintf("node%d", i), t0, 1)
	}
	decide(t, a, t0, 0)
	decide(t, a, t0.Add(time.Minute), 0) // the previous decision still names them
	decide(t, a, t0.Add(time.Minute+time.Second), 0)
	if got, want := len(a.origins), 0; got != want {
		t.Errorf("origins remembered = %d, want %d", got, want)
	}
}

// BenchmarkAutoscaler_Decide ticks one function: every origin reports once
// and the function decides, as the control loop does each second.
func BenchmarkAutoscaler_Decide(b *testing.B) {
	for _, origins := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("origins=%d", origins), func(b *testing.B) {
			names := make([]string, origins)
			for i := range names {
				names[i] = fmt.Sprintf("node%d", i)
			}
			a := New(DefaultSpec(), t0)
			now := t0
			for range 60 {
				now = now.Add(time.Second)
				for i, n := range names {
					a.Record(n, now, float64(i%7)*10)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				now = now.Add(time.Second)
				for i, n := range names {
					a.Record(n, now, float64(i%7)*10)
				}
				a.Decide(now, origins*3)
			}
		})
	}
}

// BenchmarkAutoscaler_Fleet ticks a fleet of 50 functions seen at 100
// gateways once per iteration.
func BenchmarkAutoscaler_Fleet(b *testing.B) {
	const functions, nodes = 50, 100
	names := make([]string, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("node%d", i)
	}
	fleet := make([]*Autoscaler, functions)
	now := t0
	for f := range fleet {
		fleet[f] = New(DefaultSpec(), t0)
	}
	tick := func() {
		now = now.Add(time.Second)
		for f, a := range fleet {
			for i, n := range names {
				a.Record(n, now, float64((i+f)%5)*20)
			}
			a.Decide(now, 100)
		}
	}
	for range 60 {
		tick()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tick()
	}
}
