package fleet

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// NodeStatus describes one node for `kantai get nodes`.
type NodeStatus struct {
	Name     string  `json:"name"`
	Role     string  `json:"role"`
	Address  string  `json:"address"`
	Gateway  string  `json:"gateway"`
	Capacity int     `json:"capacity"`
	Used     int     `json:"used"`
	Speed    float64 `json:"speed"`
}

// FunctionStatus describes one function for `kantai get functions`.
type FunctionStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	URL       string `json:"url"`
	// Replicas is "ready per node / desired per node" in testbed order,
	// e.g. "0-0-1/0-0-1".
	Replicas    string         `json:"replicas"`
	Ready       map[string]int `json:"ready"`
	Desired     map[string]int `json:"desired"`
	Target      float64        `json:"target"`
	Window      string         `json:"window"`
	Mode        string         `json:"mode"` // "autoscaled" or "fixed"
	Panic       bool           `json:"panic"`
	Concurrency float64        `json:"concurrency"`
	Unplaced    int            `json:"unplaced,omitempty"`
	Created     time.Time      `json:"created"`
}

// ReplicaStatus describes one replica for `kantai get replicas`.
type ReplicaStatus struct {
	Name     string    `json:"name"`
	Function string    `json:"function"`
	Node     string    `json:"node"`
	Origin   string    `json:"origin"`
	State    string    `json:"state"`
	Address  string    `json:"address"`
	PID      int       `json:"pid,omitempty"`
	Created  time.Time `json:"created"`
}

// Nodes returns every node's status.
func (f *Fleet) Nodes() []NodeStatus {
	f.mu.Lock()
	used := map[string]int{}
	for _, rt := range f.fns {
		for _, r := range rt.replicas {
			used[r.node]++
		}
	}
	f.mu.Unlock()
	out := make([]NodeStatus, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, NodeStatus{Name: n.spec.Name, Role: n.spec.Role, Address: n.spec.Address,
			Gateway: n.gwLn.Addr().String(), Capacity: n.spec.Capacity, Used: used[n.spec.Name], Speed: n.spec.Speed})
	}
	return out
}

// Functions returns every function's status.
func (f *Fleet) Functions() []FunctionStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FunctionStatus, 0, len(f.fns))
	for _, key := range sortedKeys(f.fns) {
		rt := f.fns[key]
		st := FunctionStatus{Name: rt.spec.Name, Namespace: rt.spec.Namespace,
			URL:   fmt.Sprintf("http://%s.%s.%s", rt.spec.Name, rt.spec.Namespace, f.tb.Domain),
			Ready: map[string]int{}, Desired: map[string]int{}, Created: rt.created,
			Target: rt.scaler.Spec().Target, Window: rt.scaler.Spec().Window.String(),
			Mode: "autoscaled", Panic: rt.decision.Panic, Concurrency: rt.decision.StableConcurrency, Unplaced: rt.unplaced}
		if rt.fixed != nil {
			st.Mode = "fixed"
		}
		for _, r := range rt.replicas {
			switch r.getState() {
			case StateReady:
				st.Ready[r.node]++
				st.Desired[r.node]++
			case StateStarting:
				st.Desired[r.node]++
			}
		}
		st.Replicas = ReadyString(f.nodeNames(), st.Ready, st.Desired)
		out = append(out, st)
	}
	return out
}

// ReadyString renders "ready per node / desired per node", nodes in the
// given order, as the seed's users know it: "0-0-1/0-0-1".
func ReadyString(nodes []string, ready, desired map[string]int) string {
	var a, b []string
	for _, n := range nodes {
		a = append(a, strconv.Itoa(ready[n]))
		b = append(b, strconv.Itoa(desired[n]))
	}
	return strings.Join(a, "-") + "/" + strings.Join(b, "-")
}

// Replicas returns every replica's status, by function then name.
func (f *Fleet) Replicas() []ReplicaStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ReplicaStatus
	for _, key := range sortedKeys(f.fns) {
		rt := f.fns[key]
		for _, name := range sortedKeys(rt.replicas) {
			r := rt.replicas[name]
			st := ReplicaStatus{Name: r.name, Function: key, Node: r.node, Origin: r.origin, State: r.getState(),
				Address: r.addr, Created: r.created}
			r.mu.Lock()
			if r.cmd != nil && r.cmd.Process != nil {
				st.PID = r.cmd.Process.Pid
			}
			r.mu.Unlock()
			out = append(out, st)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Function < out[j].Function })
	return out
}

// LatencyKnown reports whether every directed pair has been measured.
func (f *Fleet) LatencyKnown() bool { return f.LatencySamples() > 0 }

// LatencySamples is the fewest probes behind any directed pair's estimate:
// placement decisions made on one or two jittery samples can be far off.
func (f *Fleet) LatencySamples() int {
	m := f.Latency()
	least := -1
	for _, a := range f.nodes {
		for _, b := range f.nodes {
			if a == b {
				continue
			}
			e, ok := m[a.spec.Name][b.spec.Name]
			if !ok {
				return 0
			}
			if least < 0 || e.Samples < least {
				least = e.Samples
			}
		}
	}
	return max(least, 0)
}
