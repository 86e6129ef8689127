package latency

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestView_merge(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	v := newView("a", 0, VivaldiConfig{})
	v.setMembers([]string{"a", "b", "c"})
	if _, err := v.observe("b", ms(20), sec(1), nil, nil); err != nil {
		t.Fatal(err)
	}
	v.observe("c", ms(4), sec(1), nil, nil)
	v.merge("b", Row{"a": {RTT: 0.021, Samples: 3, Updated: sec(1)}, "c": {RTT: 0.002, Samples: 3, Updated: sec(1)}})
	// An older report does not overwrite a newer one.
	v.merge("b", Row{"c": {RTT: 0.5, Samples: 1, Updated: sec(0)}})
	// Nobody overwrites the node's own row.
	v.merge("a", Row{"b": {RTT: 9, Updated: sec(9)}})
	v.fail("c", sec(2))

	m := v.snapshot(sec(2), freshness{staleAfter: 3 * time.Second})
	tests := []struct {
		from, to  string
		want      time.Duration
		wantStale bool
	}{
		{"a", "b", ms(20), false},
		{"a", "c", ms(4), true}, // last probe failed; value kept
		{"b", "a", ms(21), false},
		{"b", "c", ms(2), false},
	}
	for _, tt := range tests {
		got, ok := m.Get(tt.from, tt.to)
		if !ok || !near(got, tt.want) || m[tt.from][tt.to].Stale != tt.wantStale {
			t.Errorf("%s→%s = %v, %v, stale %v; want %v, stale %v", tt.from, tt.to, got, ok, m[tt.from][tt.to].Stale, tt.want, tt.wantStale)
		}
	}
	if m["a"]["c"].Failures != 1 {
		t.Errorf("a→c failures = %d, want 1", m["a"]["c"].Failures)
	}
	if _, ok := m.Get("c", "a"); ok {
		t.Errorf("c→a known without any report from c")
	}
	// Without news for longer than staleAfter, b's row goes stale.
	late := v.snapshot(sec(10), freshness{staleAfter: 3 * time.Second})
	if !late["b"]["c"].Stale || !late["a"]["b"].Stale {
		t.Errorf("entries not marked stale after silence: %+v", late)
	}
	// Snapshots are copies.
	m["a"]["b"] = Entry{}
	if got, _ := v.snapshot(sec(2), freshness{staleAfter: time.Hour}).Get("a", "b"); !near(got, ms(20)) {
		t.Errorf("changing a snapshot changed the view")
	}
	// A success clears the failure.
	v.observe("c", ms(6), sec(3), nil, nil)
	if e := v.row(sec(3), freshness{staleAfter: time.Hour})["c"]; e.Stale || e.Failures != 0 || e.Samples != 2 {
		t.Errorf("after a success a→c = %+v", e)
	}
}

func TestView_observeSpikes(t *testing.T) {
	v := newView("a", 1, VivaldiConfig{}) // alpha 1: the entry is the last sample taken
	v.setMembers([]string{"b"})
	tests := []struct {
		rtt      time.Duration
		wantTook bool
		wantRTT  time.Duration
	}{
		{ms(10), true, ms(10)},
		{ms(40), true, ms(40)}, // fewer than three samples: no median to judge by
		{ms(10), true, ms(10)},
		{ms(10), true, ms(10)},
		{ms(90), false, ms(10)}, // lone spike: median 10 ms
		{ms(10), true, ms(10)},
		{ms(16), true, ms(16)}, // 1.5 × 10 + 1 ms = 16 ms: still taken
		{ms(10), true, ms(10)},
		{ms(50), false, ms(10)}, // the link changes: the first sample looks like a spike…
		{ms(50), true, ms(50)},  // …the second is taken
	}
	for i, tt := range tests {
		took, err := v.observe("b", tt.rtt, t0.Add(time.Duration(i)*time.Second), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := v.m["a"]["b"]
		if took != tt.wantTook || !near(e.Duration(), tt.wantRTT) || !e.Updated.Equal(t0.Add(time.Duration(i)*time.Second)) {
			t.Errorf("sample %d (%v): took %v, entry %+v; want took %v, RTT %v, updated now", i, tt.rtt, took, e, tt.wantTook, tt.wantRTT)
		}
	}
	if _, err := v.observe("b", -1, t0, nil, nil); err == nil {
		t.Errorf("negative sample accepted")
	}
}

func TestView_prune(t *testing.T) {
	v := newView("a", 0, VivaldiConfig{})
	v.setMembers([]string{"b", "c"})
	v.observe("b", ms(5), t0, nil, nil)
	v.merge("b", Row{"a": {RTT: 0.005, Samples: 1, Updated: t0}, "c": {RTT: 0.007, Samples: 1, Updated: t0.Add(time.Minute)}})
	v.merge("c", Row{"a": {RTT: 0.009, Samples: 1, Updated: t0}})
	v.prune(t0.Add(90*time.Second), time.Minute)
	if _, ok := v.m["b"]["a"]; ok {
		t.Errorf("b→a older than a minute kept")
	}
	if _, ok := v.m["b"]["c"]; !ok {
		t.Errorf("b→c within a minute dropped")
	}
	if _, ok := v.m["c"]; ok {
		t.Errorf("c's empty row kept")
	}
	if _, ok := v.m["a"]["b"]; !ok {
		t.Errorf("the node's own row was pruned")
	}
}

func TestView_ownEntry(t *testing.T) {
	f := freshness{staleAfter: 3 * time.Second, coordStaleAfter: time.Minute, estimate: true}
	near := PeerCoord{Coord: Coord{Vec: Vector{0.01, 0, 0, 0, 0, 0, 0, 0}, Height: 0.001, Error: 0.2}, Updated: t0}
	v := newView("a", 0, VivaldiConfig{})
	v.setMembers([]string{"b", "c", "d", "e"})
	v.coord = PeerCoord{Coord: VivaldiConfig{}.NewCoord(), Updated: t0}
	for _, p := range []string{"b", "c", "d"} {
		v.learn(p, near)
	}
	v.observe("b", ms(30), t0, nil, nil) // measured, then old
	v.observe("c", ms(30), t0, nil, nil) // measured, then failed
	v.fail("c", sec(t0, 9))
	v.fail("d", sec(t0, 9)) // never measured, failed
	v.observe("e", ms(40), sec(t0, 9), nil, nil)
	now := sec(t0, 10)
	est, _ := v.estimate("b", now, f)
	tests := []struct {
		peer string
		want Entry
	}{
		{"b", est}, // measurement older than staleAfter: the estimate
		{"c", Entry{RTT: 0.03, Samples: 1, Failures: 1, Stale: true, Updated: sec(t0, 9)}},
		{"d", Entry{RTT: est.RTT, Estimated: true, Failures: 1, Stale: true, Updated: t0}},
		{"e", Entry{RTT: 0.04, Samples: 1, Updated: sec(t0, 9)}},
	}
	for _, tt := range tests {
		got, ok := v.ownEntry(tt.peer, now, f)
		if diff := cmp.Diff(tt.want, got); !ok || diff != "" {
			t.Errorf("ownEntry(%s) (-want,+got):\n%s", tt.peer, diff)
		}
	}
	if !est.Estimated || est.Stale || est.RTT <= 0 {
		t.Errorf("estimate for b = %+v", est)
	}
}

func sec(t time.Time, n int) time.Time { return t.Add(time.Duration(n) * time.Second) }

// TestView_heardAndPool checks what a node does with a peer's measurement
// of their path, as carried by the peer's probe: kept in the peer's row if
// plausible and not older than what is there, and pooled with the node's
// own measurement in coordinate mode only.
func TestView_heardAndPool(t *testing.T) {
	coordMode := freshness{staleAfter: time.Minute, coordStaleAfter: time.Minute, estimate: true}
	mesh := freshness{staleAfter: time.Minute}
	v := newView("a", 0, VivaldiConfig{})
	v.setMembers([]string{"b", "c", "d", "e"})
	for i := range 4 {
		v.observe("b", ms(20), sec(t0, i), nil, nil) // 4 samples of 20 ms
	}
	v.heard("b", 0.022, 0, 12, sec(t0, 4)) // b: 12 samples of 22 ms
	v.heard("c", 0.010, 0, 2, sec(t0, 4))  // never measured by a
	v.heard("c", 0.500, 0, 9, sec(t0, 3))  // older: ignored
	v.heard("a", 0.010, 0, 2, sec(t0, 4))  // itself: ignored
	v.heard("x", 0.010, 0, 2, sec(t0, 4))  // not a member: ignored
	v.heard("d", -1, 0, 2, sec(t0, 4))     // implausible: ignored
	v.heard("d", 0.010, 0, 0, sec(t0, 4))
	v.heard("e", 20, 0, 3, sec(t0, 4))
	now := sec(t0, 5)
	tests := []struct {
		peer string
		f    freshness
		want Entry
	}{
		// (4·20 + 12·22) / 16 = 21.5 ms
		{"b", coordMode, Entry{RTT: 0.0215, Samples: 16, Updated: sec(t0, 4)}},
		{"b", mesh, Entry{RTT: 0.020, Samples: 4, Updated: sec(t0, 3)}},
		{"c", coordMode, Entry{RTT: 0.010, Samples: 2, Updated: sec(t0, 4)}},
	}
	for _, tt := range tests {
		got, ok := v.ownEntry(tt.peer, now, tt.f)
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(x, y float64) bool { return math.Abs(x-y) < 1e-12 })); !ok || diff != "" {
			t.Errorf("ownEntry(%s, estimate=%v) (-want,+got):\n%s", tt.peer, tt.f.estimate, diff)
		}
	}
	for _, p := range []string{"a", "x", "d", "e"} {
		if _, ok := v.m[p]["a"]; ok {
			t.Errorf("heard from %s kept: %+v", p, v.m[p]["a"])
		}
	}
	// A claimed count is bounded.
	v.heard("c", 0.010, 0, math.MaxInt, sec(t0, 5))
	if got := v.m["c"]["a"].Samples; got != maxHeardSamples {
		t.Errorf("heard MaxInt samples: kept %d, want %d", got, maxHeardSamples)
	}
	// A peer's weight is capped: 1,000 samples count as 15.
	v.heard("b", 0.022, 0, 1000, sec(t0, 5))
	if got, _ := v.ownEntry("b", now, coordMode); math.Abs(got.RTT-(4*0.020+15*0.022)/19) > 1e-12 {
		t.Errorf("pooled with a 1,000-sample peer: %v s, want %v", got.RTT, (4*0.020+15*0.022)/19)
	}
	// Two ends that disagree by more than a change would: the newer
	// alone, whichever end it is.
	// (The end with more samples has enough for its jitter to count.)
	v.heard("b", 0.040, 0, 8, sec(t0, 5))
	if got, _ := v.ownEntry("b", now, coordMode); got.RTT != 0.040 || got.Samples != 8 {
		t.Errorf("a newer 40 ms from b against an own 20 ms: %+v, want b's alone", got)
	}
	v.m["b"]["a"] = Entry{RTT: 0.040, Samples: 8, Updated: sec(t0, 2)}
	if got, _ := v.ownEntry("b", now, coordMode); got.RTT != 0.020 || got.Samples != 4 {
		t.Errorf("an older 40 ms from b against an own 20 ms: %+v, want the own alone", got)
	}
	// With too few samples on both ends for a jitter to mean anything,
	// they are pooled whatever they say.
	v.m["b"]["a"] = Entry{RTT: 0.040, Samples: 3, Updated: sec(t0, 5)}
	if got, _ := v.ownEntry("b", now, coordMode); math.Abs(got.RTT-(4*0.020+3*0.040)/7) > 1e-12 {
		t.Errorf("4 samples of 20 ms and 3 of 40: %+v, want them pooled", got)
	}
	// Once the own measurement has failed, the peer's is not used.
	v.fail("b", sec(t0, 6))
	if got, _ := v.ownEntry("b", sec(t0, 6), coordMode); got.Failures != 1 || got.RTT != 0.020 {
		t.Errorf("after a failed probe: %+v, want the own last value with the failure", got)
	}
}

// TestView_reportInCoordinateMode checks that a /ping answer in
// coordinate mode carries only the asker's path, and in full-mesh mode the
// whole measured row.
func TestView_reportInCoordinateMode(t *testing.T) {
	v := newView("a", 0, VivaldiConfig{})
	v.setMembers([]string{"b", "c", "d"})
	v.observe("b", ms(20), t0, nil, nil)
	v.observe("c", ms(30), t0, nil, nil)
	v.observe("d", ms(40), sec(t0, -120), nil, nil) // older than staleAfter
	f := freshness{staleAfter: time.Minute, coordStaleAfter: time.Minute, estimate: true, gossip: 4}
	if got := v.report(t0, f, "b"); len(got) != 1 || got["b"].RTT != 0.020 {
		t.Errorf("report to b = %+v, want only a→b", got)
	}
	if got := v.report(t0, f, "d"); len(got) != 0 {
		t.Errorf("report to d = %+v, want nothing (too old)", got)
	}
	if got := v.report(t0, freshness{staleAfter: time.Minute}, "b"); len(got) != 3 || !got["d"].Stale {
		t.Errorf("full-mesh report = %+v, want all three, a→d stale", got)
	}
}

func TestShifted(t *testing.T) {
	warm := Estimate{RTT: ms(10), Jitter: ms(2), Samples: 8}
	tests := []struct {
		name string
		est  Estimate
		a, b time.Duration
		want bool
	}{
		{"both far above", warm, ms(50), ms(49), true},
		{"both far below", Estimate{RTT: ms(80), Jitter: ms(4), Samples: 8}, ms(40), ms(41), true},
		{"one above, one below", warm, ms(50), ms(1), false},
		{"only the last far", warm, ms(11), ms(50), false},
		// 3 standard errors of the difference: 3 · 2 ms · √(1/2 + 1/8) = 4.74 ms
		{"within 3 standard errors", warm, ms(14.7), ms(14.7), false},
		{"beyond 3 standard errors", warm, ms(14.8), ms(14.8), true},
		{"the mean beyond, one sample near", warm, ms(11), ms(30), false},
		{"within 10 % of the mean (no jitter)", Estimate{RTT: ms(100), Samples: 8}, ms(109), ms(109), false},
		{"beyond 10 % of the mean (no jitter)", Estimate{RTT: ms(100), Samples: 8}, ms(111), ms(111), true},
		{"within 2 ms (no jitter)", Estimate{RTT: ms(1), Samples: 8}, ms(2.9), ms(2.9), false},
		{"beyond 2 ms (no jitter)", Estimate{RTT: ms(1), Samples: 8}, ms(3.1), ms(3.1), true},
		{"too few samples", Estimate{RTT: ms(10), Jitter: ms(2), Samples: 3}, ms(50), ms(50), false},
	}
	for _, tt := range tests {
		if got := shifted(tt.est, tt.a, tt.b); got != tt.want {
			t.Errorf("%s: shifted(%+v, %v, %v) = %v, want %v", tt.name, tt.est, tt.a, tt.b, got, tt.want)
		}
	}
}

// TestView_observeFollowsAChange checks that a path that changed is
// followed from its second sample, not at 1/8 per sample.
func TestView_observeFollowsAChange(t *testing.T) {
	v := newView("a", 0, VivaldiConfig{})
	v.setMembers([]string{"b"})
	for i := range 10 {
		v.observe("b", ms(10+float64(i%3)-1), sec(t0, i), nil, nil) // 9, 10, 11 ms
	}
	took, _ := v.observe("b", ms(50), sec(t0, 10), nil, nil)
	if took {
		t.Error("the first sample after the jump was taken, want it left out as a spike")
	}
	v.observe("b", ms(51), sec(t0, 11), nil, nil)
	if e := v.m["a"]["b"]; math.Abs(e.RTT-0.0505) > 1e-9 || e.Samples != 2 {
		t.Errorf("after two samples at the new level: %+v, want 50.5 ms from 2 samples", e)
	}
	// A lone spike does not restart anything.
	v2 := newView("a", 0, VivaldiConfig{})
	v2.setMembers([]string{"b"})
	for i := range 10 {
		v2.observe("b", ms(10), sec(t0, i), nil, nil)
	}
	v2.observe("b", ms(50), sec(t0, 10), nil, nil)
	v2.observe("b", ms(10), sec(t0, 11), nil, nil)
	if e := v2.m["a"]["b"]; e.Samples != 11 || math.Abs(e.RTT-0.010) > 1e-9 {
		t.Errorf("after a lone spike: %+v, want 10 ms from 11 samples", e)
	}
}

// TestView_recheck checks that a sample off its path's level makes the
// peer due for a recheck, once, and that a sample at its level does not.
func TestView_recheck(t *testing.T) {
	v := newView("a", 0, VivaldiConfig{})
	v.setMembers([]string{"b", "c", "d"})
	for _, p := range []string{"b", "c", "d"} {
		for i := range 8 {
			v.observe(p, ms(10), sec(t0, i), nil, nil)
		}
	}
	if p, ok := v.recheck(); ok {
		t.Fatalf("recheck = %s at rest", p)
	}
	v.observe("d", ms(30), sec(t0, 9), nil, nil) // off: 20 ms over a 10 ms path
	v.observe("c", ms(30), sec(t0, 9), nil, nil)
	v.observe("b", ms(11), sec(t0, 9), nil, nil) // at its level
	for _, want := range []string{"c", "d"} {
		if p, ok := v.recheck(); !ok || p != want {
			t.Errorf("recheck = %q, %v; want %q", p, ok, want)
		}
	}
	if p, ok := v.recheck(); ok {
		t.Errorf("recheck = %s after both were handed out", p)
	}
	// The next sample settles it either way.
	v.observe("c", ms(30), sec(t0, 10), nil, nil)
	v.observe("c", ms(10.5), sec(t0, 11), nil, nil)
	if p, ok := v.recheck(); ok {
		t.Errorf("recheck = %s after a sample at the new level", p)
	}
}

func TestOffLevel(t *testing.T) {
	est := Estimate{RTT: ms(10), Jitter: ms(2), Samples: 8} // half the tolerance: 2.37 ms
	for _, tt := range []struct {
		x    time.Duration
		want bool
	}{{ms(12.3), false}, {ms(12.4), true}, {ms(7.7), false}, {ms(7.6), true}} {
		if got := offLevel(est, tt.x); got != tt.want {
			t.Errorf("offLevel(10 ± 2 ms, %v) = %v, want %v", tt.x, got, tt.want)
		}
	}
	if offLevel(Estimate{RTT: ms(10), Samples: shiftSamples - 1}, ms(50)) {
		t.Error("off level with too few samples")
	}
}
