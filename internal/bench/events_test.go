package bench

import (
	"testing"
	"time"

	"kantai.dev/kantai/internal/bench/load"
	"kantai.dev/kantai/internal/bench/scenario"
)

func TestPhases(t *testing.T) {
	s := time.Second
	rec := func(start, took time.Duration, status int, node string) load.Record {
		return load.Record{Origin: "node1", Start: start, Duration: took, Status: status, Node: node}
	}
	records := []load.Record{
		rec(1*s, 10*time.Millisecond, 200, "node3"),
		rec(2*s, 10*time.Millisecond, 200, "node2"),
		rec(5*s, 10*time.Millisecond, 200, "node3"), // after the link change
		rec(10*s, 30*time.Millisecond, 502, ""),     // after node3 went down
		rec(10500*time.Millisecond, 500*time.Millisecond, 200, "node3"),
		rec(12*s, 10*time.Millisecond, 200, "node2"),
		rec(14900*time.Millisecond, 200*time.Millisecond, 200, "node2"),
	}
	settled := make(chan time.Duration, 1)
	settled <- 1500 * time.Millisecond
	applied := []appliedEvent{
		{ev: scenario.Event{Link: &scenario.LinkEvent{A: "node1", B: "node3"}}, at: 4 * s, settled: settled},
		{ev: scenario.Event{Node: &scenario.NodeEvent{Name: "node3", Down: true}}, at: 10 * s},
	}
	got := phases(records, 15*s, applied)
	if len(got) != 3 {
		t.Fatalf("%d phases, want 3", len(got))
	}
	want := []struct {
		from, to       string
		count, errors  int
		settled, until string
	}{
		{"0s", "4s", 2, 0, "", ""},
		{"4s", "10s", 1, 0, "1.5s", ""},
		{"10s", "15s", 4, 1, "", "1s"},
	}
	for i, w := range want {
		p := got[i]
		if p.From != w.from || p.To != w.to || p.Summary.Count != w.count || p.Summary.Errors != w.errors ||
			p.LatencySettled != w.settled || p.FailuresUntil != w.until {
			t.Errorf("phase %d = %+v (count %d, errors %d), want %+v", i, p, p.Summary.Count, p.Summary.Errors, w)
		}
	}
	if got[1].Event == "" || got[0].Event != "" {
		t.Errorf("events: %q, %q; want the first phase without one", got[0].Event, got[1].Event)
	}
}
