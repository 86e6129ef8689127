package fleet

import (
	"fmt"
	"kantai.dev/kantai/internal/gateway"
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

// FunctionStatus describes one function (a Knative Service) for `kantai
// get functions`; its replica counts cover all its revisions.
type FunctionStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	URL       string `json:"url"`
	// LatestCreated and LatestReady name revisions, as Knative's status.
	LatestCreated string `json:"latestCreatedRevision"`
	LatestReady   string `json:"latestReadyRevision"`
	// Traffic is the resolved split, e.g. "hello-00001=90,hello-00002=10".
	Traffic string `json:"traffic"`
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

// RevisionStatus describes one revision for `kantai get revisions`.
type RevisionStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Function  string `json:"function"`
	// Generation is the revision's number in its function: 1, 2, …
	Generation int            `json:"generation"`
	Ready      bool           `json:"ready"`
	Percent    int            `json:"percent"`
	Tags       []string       `json:"tags,omitempty"`
	Replicas   string         `json:"replicas"`
	Desired    map[string]int `json:"desired"`
	Reason     string         `json:"reason"`
	Created    time.Time      `json:"created"`
}

// ReplicaStatus describes one replica for `kantai get replicas`.
type ReplicaStatus struct {
	Name     string    `json:"name"`
	Function string    `json:"function"`
	Revision string    `json:"revision"`
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
	for _, svc := range f.svcs {
		for _, rev := range svc.revisions {
			for _, r := range rev.replicas {
				used[r.node]++
			}
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
	out := make([]FunctionStatus, 0, len(f.svcs))
	for _, key := range sortedKeys(f.svcs) {
		svc := f.svcs[key]
		latest := svc.latestReady()
		spec := latest.ctl.Spec()
		st := FunctionStatus{Name: svc.spec.Name, Namespace: svc.spec.Namespace,
			URL:           fmt.Sprintf("http://%s.%s.%s", svc.spec.Name, svc.spec.Namespace, f.tb.Domain),
			LatestCreated: svc.latest().name, LatestReady: latest.name,
			Ready: map[string]int{}, Desired: map[string]int{}, Created: svc.created,
			Target: spec.Target, Window: spec.Window.String(), Mode: "autoscaled",
			Panic: latest.out.Decision.Panic, Unplaced: latest.out.Unplaced}
		if svc.fixed != nil {
			st.Mode = "fixed"
		}
		var split []string
		for _, t := range svc.targets() {
			if t.Percent > 0 {
				split = append(split, fmt.Sprintf("%s=%d", strings.TrimPrefix(t.Revision, svc.spec.Namespace+"/"), t.Percent))
			}
		}
		st.Traffic = strings.Join(split, ",")
		for _, rev := range svc.revisions {
			st.Concurrency += rev.out.Decision.StableConcurrency
			ready, desired := replicaCounts(rev)
			for n, c := range ready {
				st.Ready[n] += c
			}
			for n, c := range desired {
				st.Desired[n] += c
			}
		}
		st.Replicas = ReadyString(f.nodeNames(), st.Ready, st.Desired)
		out = append(out, st)
	}
	return out
}

// replicaCounts counts a revision's ready and desired (ready or starting)
// replicas per node; f.mu held.
func replicaCounts(rev *revisionRT) (ready, desired map[string]int) {
	ready, desired = map[string]int{}, map[string]int{}
	for _, r := range rev.replicas {
		switch r.getState() {
		case StateReady:
			ready[r.node]++
			desired[r.node]++
		case StateStarting:
			desired[r.node]++
		}
	}
	return ready, desired
}

// Revisions returns every revision's status, by function then generation.
func (f *Fleet) Revisions() []RevisionStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []RevisionStatus
	for _, key := range sortedKeys(f.svcs) {
		svc := f.svcs[key]
		targets := svc.targets()
		for i, rev := range svc.revisions {
			st := RevisionStatus{Name: rev.name, Namespace: svc.spec.Namespace, Function: svc.spec.Name, Generation: i + 1,
				Ready: rev.ready, Desired: rev.out.Desired, Reason: rev.out.Reason, Created: rev.created}
			for _, t := range targets {
				if t.Revision == rev.key {
					st.Percent += t.Percent
					if t.Tag != "" {
						st.Tags = append(st.Tags, t.Tag)
					}
				}
			}
			ready, desired := replicaCounts(rev)
			st.Replicas = ReadyString(f.nodeNames(), ready, desired)
			out = append(out, st)
		}
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

// Replicas returns every replica's status, by function, revision, name.
func (f *Fleet) Replicas() []ReplicaStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ReplicaStatus
	for _, key := range sortedKeys(f.svcs) {
		for _, rev := range f.svcs[key].revisions {
			for _, name := range sortedKeys(rev.replicas) {
				r := rev.replicas[name]
				st := ReplicaStatus{Name: r.name, Function: key, Revision: rev.name, Node: r.node, Origin: r.origin,
					State: r.getState(), Created: r.created}
				r.mu.Lock()
				st.Address = r.addr
				if r.cmd != nil && r.cmd.Process != nil {
					st.PID = r.cmd.Process.Pid
				}
				r.mu.Unlock()
				out = append(out, st)
			}
		}
	}
	return out
}

// LatencyKnown reports whether every directed pair has been measured.
func (f *Fleet) LatencyKnown() bool { return f.LatencySamples() > 0 }

// LatencyReady reports whether every pair of nodes has an RTT to route
// by: measured at least minSamples times in a full mesh; in a fleet whose
// agents use coordinates (beyond the full-mesh size, where each pair is
// probed now and then), known at all, measured or estimated.
func (f *Fleet) LatencyReady(minSamples int) bool {
	m := f.Latency()
	coords := len(f.nodes) > 0 && f.nodes[0].agent.CoordinateMode()
	for _, a := range f.nodes {
		for _, b := range f.nodes {
			if a == b {
				continue
			}
			e, ok := m[a.spec.Name][b.spec.Name]
			if !ok || !e.Known() || (!coords && e.Samples < minSamples) {
				return false
			}
		}
	}
	return true
}

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

// Estimates returns, per node's gateway (one node, or all when node is
// ""), the figures its policy decides from for the revisions host routes
// to (all revisions when host is "").
func (f *Fleet) Estimates(node, host string) (map[string][]gateway.Estimate, error) {
	out := map[string][]gateway.Estimate{}
	for _, n := range f.nodes {
		if node != "" && n.spec.Name != node {
			continue
		}
		e, ok := n.gw.Estimates(host)
		if !ok {
			return nil, fmt.Errorf("no function serves host %q", host)
		}
		out[n.spec.Name] = e
	}
	if node != "" && len(out) == 0 {
		return nil, fmt.Errorf("no node %q (nodes: %s)", node, strings.Join(f.nodeNames(), ", "))
	}
	return out, nil
}
