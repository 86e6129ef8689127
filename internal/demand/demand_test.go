package demand

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kantai.dev/kantai/internal/control"
	"kantai.dev/kantai/internal/gateway"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// rs is a revision's cumulative counters: area in request-seconds, and
// responses with their summed service seconds at one destination.
func rs(rev string, since, area float64, waiting int, dest ...gateway.DestStats) gateway.RevisionStats {
	return gateway.RevisionStats{Revision: rev, Since: at(since), Area: area, Waiting: waiting, Dest: dest}
}

func stats(node string, epoch uint64, atSec float64, revs ...gateway.RevisionStats) gateway.Stats {
	return gateway.Stats{Node: node, Epoch: epoch, At: at(atSec), Revisions: revs}
}

// step is one action on the collector: a reading, a take, or forgetting
// a node.
type step struct {
	observe *gateway.Stats
	forget  string
	take    string
	want    Windows
}

func obs(st gateway.Stats) step { return step{observe: &st} }

func TestCollector_Take(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		base  bool
		steps []step
	}{
		{name: "first reading counts from the revision's start", steps: []step{
			obs(stats("a", 1, 2, rs("ns/r", 0, 4, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 2}}}},
		}},
		{name: "first reading is a baseline for a late reader", base: true, steps: []step{
			obs(stats("a", 1, 100, rs("ns/r", 0, 400, 0))),
			{take: "ns/r", want: Windows{}},
			obs(stats("a", 1, 101, rs("ns/r", 0, 403, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 3}}}},
		}},
		{name: "a revision new in a later reading counts from its start, even for a late reader", base: true, steps: []step{
			obs(stats("a", 1, 100)),
			obs(stats("a", 1, 102, rs("ns/r", 101, 2, 1))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 2}}, Waiting: 1}},
		}},
		{name: "a second take without a new reading gets nothing", steps: []step{
			obs(stats("a", 1, 1, rs("ns/r", 0, 1, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 1}}}},
			{take: "ns/r", want: Windows{}},
		}},
		{name: "readings no step took fold into the next window", steps: []step{
			obs(stats("a", 1, 1, rs("ns/r", 0, 0, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 0}}}},
			obs(stats("a", 1, 2, rs("ns/r", 0, 1, 0))),
			obs(stats("a", 1, 3, rs("ns/r", 0, 1, 0))),
			obs(stats("a", 1, 5, rs("ns/r", 0, 4, 0, gateway.DestStats{Node: "b", Responses: 4, Service: 0.04}))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 1}},
				Service: []control.Service{{Node: "b", Responses: 4, Mean: 10 * ms}}}},
		}},
		{name: "a late answer older than the reading held is ignored", steps: []step{
			obs(stats("a", 1, 1, rs("ns/r", 0, 0, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 0}}}},
			obs(stats("a", 1, 3, rs("ns/r", 0, 4, 0))),
			obs(stats("a", 1, 2, rs("ns/r", 0, 1, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 2}}}},
		}},
		{name: "epoch change: the restarted gateway counts from zero", steps: []step{
			obs(stats("a", 1, 10, rs("ns/r", 0, 50, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 5}}}},
			// Restarted at 11; its counters are smaller than before.
			obs(stats("a", 2, 12, rs("ns/r", 11, 3, 2, gateway.DestStats{Node: "a", Responses: 1, Service: 0.002}))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 3}}, Waiting: 2,
				Service: []control.Service{{Node: "a", Responses: 1, Mean: 2 * ms}}}},
		}},
		{name: "two nodes, each its own origin and baseline", steps: []step{
			obs(stats("a", 1, 1, rs("ns/r", 0, 1, 0))),
			obs(stats("b", 7, 1, rs("ns/r", 0, 0, 1))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 1}, {Origin: "b", Concurrency: 0}}, Waiting: 1}},
			obs(stats("b", 7, 3, rs("ns/r", 0, 4, 0, gateway.DestStats{Node: "a", Responses: 2, Service: 0.1}))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "b", Concurrency: 2}},
				Service: []control.Service{{Node: "a", Responses: 2, Mean: 50 * ms}}}},
		}},
		{name: "revisions take independently", steps: []step{
			obs(stats("a", 1, 1, rs("ns/p", 0, 1, 0), rs("ns/q", 0, 2, 0))),
			{take: "ns/p", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 1}}}},
			obs(stats("a", 1, 2, rs("ns/p", 0, 2, 0), rs("ns/q", 0, 4, 0))),
			{take: "ns/q", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 2}}}},
			{take: "ns/p", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 1}}}},
		}},
		{name: "a revision that disappears and comes back counts from its new start", steps: []step{
			obs(stats("a", 1, 1, rs("ns/r", 0, 10, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 10}}}},
			obs(stats("a", 1, 2)),
			{take: "ns/r", want: Windows{}},
			obs(stats("a", 1, 4, rs("ns/r", 3, 1, 0))),
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "a", Concurrency: 1}}}},
		}},
		{name: "a forgotten node contributes nothing", steps: []step{
			obs(stats("a", 1, 1, rs("ns/r", 0, 1, 3))),
			obs(stats("b", 1, 1, rs("ns/r", 0, 2, 0))),
			{forget: "a"},
			{take: "ns/r", want: Windows{Demand: []control.Demand{{Origin: "b", Concurrency: 2}}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New()
			c.FirstReadingIsBase = tt.base
			for i, s := range tt.steps {
				switch {
				case s.observe != nil:
					c.Observe(s.observe.Node, *s.observe)
				case s.forget != "":
					c.Forget(s.forget)
				default:
					peek := c.Peek(s.take)
					got := c.Take(s.take)
					if diff := cmp.Diff(s.want, got, cmp.Comparer(approx)); diff != "" {
						t.Errorf("step %d: Take(%s) (-want,+got):\n%s", i, s.take, diff)
					}
					if diff := cmp.Diff(got, peek, cmp.Comparer(approx)); diff != "" {
						t.Errorf("step %d: Peek differs from Take (-take,+peek):\n%s", i, diff)
					}
				}
			}
		})
	}
}

func approx(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }

// TestCollector_TakeAll: every revision of the latest readings, and
// baselines of revisions no gateway reports are pruned.
func TestCollector_TakeAll(t *testing.T) {
	c := New()
	c.Observe("a", stats("a", 1, 1, rs("ns/p", 0, 1, 0), rs("ns/q", 0, 3, 0)))
	got := c.TakeAll()
	want := map[string]Windows{
		"ns/p": {Demand: []control.Demand{{Origin: "a", Concurrency: 1}}},
		"ns/q": {Demand: []control.Demand{{Origin: "a", Concurrency: 3}}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(approx)); diff != "" {
		t.Errorf("TakeAll (-want,+got):\n%s", diff)
	}
	c.Observe("a", stats("a", 1, 2, rs("ns/q", 0, 4, 0)))
	c.TakeAll()
	if _, ok := c.base["ns/p"]; ok {
		t.Errorf("baseline of ns/p kept after no gateway reports it")
	}
	if got := c.Revisions(); !cmp.Equal(got, []string{"ns/q"}) {
		t.Errorf("Revisions = %v, want [ns/q]", got)
	}
}

func TestWindows_Active(t *testing.T) {
	for _, tt := range []struct {
		w    Windows
		want bool
	}{
		{Windows{}, false},
		{Windows{Demand: []control.Demand{{Origin: "a"}}}, false},
		{Windows{Waiting: 1}, true},
		{Windows{Demand: []control.Demand{{Origin: "a"}, {Origin: "b", Concurrency: 0.1}}}, true},
	} {
		if got := tt.w.Active(); got != tt.want {
			t.Errorf("%+v.Active() = %v, want %v", tt.w, got, tt.want)
		}
	}
}

// TestCollector_Recent: what the latest reading added, whatever was taken;
// a waiting request counts at once.
func TestCollector_Recent(t *testing.T) {
	c := New()
	c.FirstReadingIsBase = true
	c.Observe("a", stats("a", 1, 10, rs("ns/r", 0, 50, 0)))
	if w := c.Recent("ns/r"); w.Active() || len(w.Demand) != 0 {
		t.Errorf("first reading of a late reader: Recent %+v, want nothing", w)
	}
	c.Observe("a", stats("a", 1, 11, rs("ns/r", 0, 51, 0)))
	c.Take("ns/r")
	if w := c.Recent("ns/r"); len(w.Demand) != 1 || w.Demand[0].Concurrency != 1 {
		t.Errorf("Recent after a take %+v, want concurrency 1 over the last second", w)
	}
	c.Observe("a", stats("a", 1, 12, rs("ns/r", 0, 51, 0)))
	if w := c.Recent("ns/r"); w.Active() {
		t.Errorf("Recent %+v active: nothing happened in the last second", w)
	}
	c.Observe("a", stats("a", 1, 13, rs("ns/r", 0, 51, 2)))
	if w := c.Recent("ns/r"); !w.Active() || w.Waiting != 2 {
		t.Errorf("Recent %+v, want 2 waiting", w)
	}
	// A revision new at a known node counts from its start.
	c.Observe("a", stats("a", 1, 14, rs("ns/r", 0, 51, 0), rs("ns/q", 13.5, 0.5, 0)))
	if w := c.Recent("ns/q"); len(w.Demand) != 1 || !approx(w.Demand[0].Concurrency, 1) {
		t.Errorf("Recent of a new revision %+v, want concurrency 1 since its start", w)
	}
}
