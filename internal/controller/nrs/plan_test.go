package nrs

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	k8stypes "k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// pod builds a PodInfo without a slot; age is in seconds before t0+1h
// (bigger = older).
func pod(name, node string, age int, ready bool) PodInfo {
	return PodInfo{Name: name, UID: k8stypes.UID("uid-" + name), Node: node, Slot: -1,
		Created: t0.Add(time.Hour - time.Duration(age)*time.Second), Ready: ready}
}

// inSlot returns p holding slot.
func inSlot(p PodInfo, slot int) PodInfo {
	p.Slot = slot
	return p
}

func terminatingPod(p PodInfo) PodInfo {
	p.Terminating = true
	return p
}

func finishedPod(p PodInfo) PodInfo {
	p.Finished = true
	return p
}

// created formats the creates of d as "node/slot".
func created(d Decision) []string {
	var out []string
	for _, c := range d.Creates {
		out = append(out, fmt.Sprintf("%s/%d", c.Node, c.Slot))
	}
	return out
}

func exists(nodes ...string) func(string) bool {
	set := map[string]bool{}
	for _, n := range nodes {
		set[n] = true
	}
	return func(n string) bool { return set[n] }
}

func deleted(d Decision) []string {
	out := []string{}
	for _, del := range d.Deletes {
		out = append(out, fmt.Sprintf("%s:%s", del.Pod.Name, del.Reason))
	}
	return out
}

func TestPlan(t *testing.T) {
	finished := pod("f", "a", 5, false)
	finished.Finished = true
	terminating := pod("t", "a", 5, true)
	terminating.Terminating = true

	tests := []struct {
		name        string
		desired     map[string]int32
		nodes       func(string) bool
		pods        []PodInfo
		nameTaken   func(node string, slot int) bool
		wantCreates []string
		wantDeletes []string
		wantReady   string
		wantMissing []string
	}{{
		name:        "empty",
		wantCreates: nil, wantDeletes: []string{}, wantReady: "",
	}, {
		name:        "scale up from nothing, nodes in name order",
		desired:     map[string]int32{"b": 2, "a": 1, "c": 0},
		nodes:       exists("a", "b", "c"),
		wantCreates: []string{"a/0", "b/0", "b/1"}, wantDeletes: []string{}, wantReady: "0-0-0/1-2-0",
	}, {
		name:        "exact counts: nothing to do",
		desired:     map[string]int32{"a": 1, "b": 2},
		nodes:       exists("a", "b"),
		pods:        []PodInfo{pod("a1", "a", 1, true), pod("b1", "b", 1, true), pod("b2", "b", 2, false)},
		wantCreates: nil, wantDeletes: []string{}, wantReady: "1-1/1-2",
	}, {
		name:    "scale down removes unready first, then newest",
		desired: map[string]int32{"a": 2},
		nodes:   exists("a"),
		pods: []PodInfo{
			pod("old-ready", "a", 100, true), pod("new-ready", "a", 1, true),
			pod("mid-ready", "a", 50, true), pod("old-unready", "a", 90, false),
			pod("new-unready", "a", 2, false),
		},
		wantDeletes: []string{"new-unready:Surplus", "old-unready:Surplus", "new-ready:Surplus"},
		wantReady:   "2/2",
	}, {
		name:        "same creation time: deterministic by name",
		desired:     map[string]int32{"a": 1},
		nodes:       exists("a"),
		pods:        []PodInfo{pod("p1", "a", 1, true), pod("p2", "a", 1, true)},
		wantDeletes: []string{"p2:Surplus"}, wantReady: "1/1",
	}, {
		name:        "terminating pods are going away, not present",
		desired:     map[string]int32{"a": 1},
		nodes:       exists("a"),
		pods:        []PodInfo{terminating},
		wantCreates: []string{"a/0"}, wantDeletes: []string{}, wantReady: "0/1",
	}, {
		name:        "finished pod is deleted and replaced",
		desired:     map[string]int32{"a": 2},
		nodes:       exists("a"),
		pods:        []PodInfo{finished, pod("ok", "a", 1, true)},
		wantCreates: []string{"a/0"}, wantDeletes: []string{"f:Finished"}, wantReady: "1/2",
	}, {
		name:        "missing node: not counted, nothing created or deleted there",
		desired:     map[string]int32{"a": 1, "gone": 3},
		nodes:       exists("a"),
		pods:        []PodInfo{pod("g1", "gone", 1, true), pod("a1", "a", 1, true)},
		wantCreates: nil, wantDeletes: []string{}, wantReady: "1-0/1-3", wantMissing: []string{"gone"},
	}, {
		name:        "nil node lookup treats every node as missing",
		desired:     map[string]int32{"a": 1},
		wantCreates: nil, wantDeletes: []string{}, wantReady: "0/1", wantMissing: []string{"a"},
	}, {
		name:        "node removed from spec: all its pods go",
		desired:     map[string]int32{"a": 1},
		nodes:       exists("a", "b"),
		pods:        []PodInfo{pod("a1", "a", 1, true), pod("b1", "b", 1, true), pod("b2", "b", 3, false), pod("x", "", 1, true)},
		wantDeletes: []string{"x:NodeNotWanted", "b2:NodeNotWanted", "b1:NodeNotWanted"},
		wantReady:   "1/1",
	}, {
		name:        "node set to zero",
		desired:     map[string]int32{"a": 0},
		nodes:       exists("a"),
		pods:        []PodInfo{pod("a1", "a", 1, true)},
		wantDeletes: []string{"a1:Surplus"}, wantReady: "0/0",
	}, {
		name:        "negative count acts as zero",
		desired:     map[string]int32{"a": -3},
		nodes:       exists("a"),
		pods:        []PodInfo{pod("a1", "a", 1, true)},
		wantDeletes: []string{"a1:Surplus"}, wantReady: "0/0",
	}, {
		name:        "lowest free slots fill the gaps",
		desired:     map[string]int32{"a": 4},
		nodes:       exists("a"),
		pods:        []PodInfo{inSlot(pod("a0", "a", 1, true), 0), inSlot(pod("a2", "a", 1, true), 2)},
		wantCreates: []string{"a/1", "a/3"}, wantDeletes: []string{}, wantReady: "2/4",
	}, {
		name:    "terminating pod holds its slot: the replacement takes the next one",
		desired: map[string]int32{"a": 2},
		nodes:   exists("a"),
		pods: []PodInfo{inSlot(terminatingPod(pod("a0", "a", 1, true)), 0),
			inSlot(pod("a1", "a", 1, true), 1)},
		wantCreates: []string{"a/2"}, wantDeletes: []string{}, wantReady: "1/2",
	}, {
		name:    "finished pod holds its slot until deleted",
		desired: map[string]int32{"a": 2},
		nodes:   exists("a"),
		pods: []PodInfo{inSlot(finishedPod(pod("a0", "a", 1, false)), 0),
			inSlot(pod("a1", "a", 1, true), 1)},
		wantCreates: []string{"a/2"}, wantDeletes: []string{"a0:Finished"}, wantReady: "1/2",
	}, {
		name:        "slots are per node",
		desired:     map[string]int32{"a": 1, "b": 1},
		nodes:       exists("a", "b"),
		pods:        []PodInfo{inSlot(pod("a0", "a", 1, true), 0)},
		wantCreates: []string{"b/0"}, wantDeletes: []string{}, wantReady: "1-0/1-1",
	}, {
		name:        "slots of nodes no longer wanted do not matter",
		desired:     map[string]int32{"a": 1},
		nodes:       exists("a", "b"),
		pods:        []PodInfo{inSlot(pod("b0", "b", 1, true), 0)},
		wantCreates: []string{"a/0"}, wantDeletes: []string{"b0:NodeNotWanted"}, wantReady: "0/1",
	}, {
		name:        "names taken by other pods are skipped",
		desired:     map[string]int32{"a": 2},
		nodes:       exists("a"),
		nameTaken:   func(node string, slot int) bool { return node == "a" && (slot == 0 || slot == 2) },
		wantCreates: []string{"a/1", "a/3"}, wantDeletes: []string{}, wantReady: "0/2",
	}, {
		name:        "pods without a slot count but hold no slot",
		desired:     map[string]int32{"a": 2},
		nodes:       exists("a"),
		pods:        []PodInfo{pod("legacy", "a", 1, true)},
		wantCreates: []string{"a/0"}, wantDeletes: []string{}, wantReady: "1/2",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Plan(tc.desired, tc.nodes, tc.pods, tc.nameTaken)
			if diff := cmp.Diff(tc.wantCreates, created(d)); diff != "" {
				t.Errorf("creates (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDeletes, deleted(d)); diff != "" {
				t.Errorf("deletes (-want,+got):\n%s", diff)
			}
			if got := d.ReadyString(); got != tc.wantReady {
				t.Errorf("ReadyString() = %q, want %q", got, tc.wantReady)
			}
			if diff := cmp.Diff(tc.wantMissing, d.Missing()); diff != "" {
				t.Errorf("missing (-want,+got):\n%s", diff)
			}
		})
	}
}

// TestPlanConverges applies each decision to a simulated pod set and checks
// that a second plan is empty and counts are exact, for many inputs.
func TestPlanConverges(t *testing.T) {
	for seed := range 200 {
		desired := map[string]int32{}
		var pods []PodInfo
		for n := range 4 {
			node := fmt.Sprintf("n%d", n)
			desired[node] = int32((seed*7 + n*3) % 6)
			for i := range (seed + n) % 7 {
				p := pod(fmt.Sprintf("%s-%d", node, i), node, i, (seed+i)%2 == 0)
				p.Finished = (seed+i)%5 == 0
				p.Terminating = (seed+i)%11 == 0
				if (seed+i)%3 != 0 {
					p.Slot = i * 2
				}
				pods = append(pods, p)
			}
		}
		d := Plan(desired, exists("n0", "n1", "n2", "n3"), pods, nil)
		gone := map[string]bool{}
		for _, del := range d.Deletes {
			gone[del.Pod.Name] = true
		}
		var after []PodInfo
		for _, p := range pods {
			if !gone[p.Name] {
				after = append(after, p)
			}
		}
		for i, c := range d.Creates {
			after = append(after, inSlot(pod(fmt.Sprintf("new-%d", i), c.Node, 0, false), c.Slot))
		}
		// A slot never holds two pods.
		held := map[Create]string{}
		for _, p := range after {
			if p.Slot < 0 {
				continue
			}
			k := Create{Node: p.Node, Slot: p.Slot}
			if other, ok := held[k]; ok {
				t.Fatalf("seed %d: pods %s and %s both in slot %v", seed, other, p.Name, k)
			}
			held[k] = p.Name
		}
		d2 := Plan(desired, exists("n0", "n1", "n2", "n3"), after, nil)
		if len(d2.Creates) != 0 || len(d2.Deletes) != 0 {
			t.Fatalf("seed %d: second plan not empty: %v %v", seed, d2.Creates, deleted(d2))
		}
		for _, n := range d2.Nodes {
			if n.Current != n.Desired {
				t.Fatalf("seed %d: node %s current %d desired %d", seed, n.Node, n.Current, n.Desired)
			}
		}
	}
}

func TestFreeSlots(t *testing.T) {
	takenSet := func(slots ...int) func(int) bool {
		m := map[int]bool{}
		for _, s := range slots {
			m[s] = true
		}
		return func(s int) bool { return m[s] }
	}
	tests := []struct {
		name  string
		n     int
		taken func(int) bool
		want  []int
	}{
		{name: "none wanted", n: 0, taken: takenSet(), want: nil},
		{name: "negative wanted", n: -2, taken: takenSet(), want: nil},
		{name: "empty node", n: 3, taken: takenSet(), want: []int{0, 1, 2}},
		{name: "gaps first", n: 3, taken: takenSet(0, 2, 3), want: []int{1, 4, 5}},
		{name: "lowest held (terminating) is skipped", n: 1, taken: takenSet(0), want: []int{1}},
		{name: "all taken", n: 2, taken: func(int) bool { return true }, want: nil},
		{name: "near the end", n: 3, taken: func(s int) bool { return s < MaxSlots-2 }, want: []int{MaxSlots - 2, MaxSlots - 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FreeSlots(tc.n, tc.taken)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FreeSlots(%d) (-want,+got):\n%s", tc.n, diff)
			}
		})
	}
}
