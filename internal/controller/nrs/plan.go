package nrs

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// PodInfo is what planning needs to know about one pod of a NodeReplicaSet.
type PodInfo struct {
	Name string
	UID  types.UID
	// Node is the node the pod was created for (its node label).
	Node string
	// Slot is the pod's slot on Node (its slot label), -1 if it has none.
	// Every pod seen, terminating and finished ones included, holds its
	// slot: its name is taken until it is gone from the API.
	Slot    int
	Created time.Time
	Ready   bool
	// Terminating pods (deletionTimestamp set) are going away: they are
	// neither counted nor deleted again.
	Terminating bool
	// Finished pods (phase Failed or Succeeded, evicted pods included) are
	// not counted; they are deleted and replaced.
	Finished bool
}

// DeleteReason says why a pod is to be deleted.
type DeleteReason string

// Reasons for deleting a pod.
const (
	DeleteSurplus   DeleteReason = "Surplus"
	DeleteFinished  DeleteReason = "Finished"
	DeleteNotWanted DeleteReason = "NodeNotWanted"
)

// Delete is one pod to delete.
type Delete struct {
	Pod    PodInfo
	Reason DeleteReason
}

// NodeCount is the observed state of one node named in spec.replicas.
type NodeCount struct {
	Node    string
	Desired int32
	Current int32
	Ready   int32
	// Missing is true when the node does not exist in the cluster. Its pods
	// are then not counted and nothing is created there.
	Missing bool
}

// Create is one pod to create: the lowest free slot of a node.
type Create struct {
	Node string
	Slot int
}

// Decision is what [Plan] returns.
type Decision struct {
	// Creates lists the pods to create, nodes in name order, then slots
	// in increasing order.
	Creates []Create
	// Deletes lists the pods to delete: finished pods first, then surplus
	// pods in the order they should go.
	Deletes []Delete
	// Nodes has one entry per node of spec.replicas, in name order.
	Nodes []NodeCount
}

// Missing returns the names of the nodes that do not exist, in name order.
func (d Decision) Missing() []string {
	var out []string
	for _, n := range d.Nodes {
		if n.Missing {
			out = append(out, n.Node)
		}
	}
	return out
}

// Totals returns the sums of Current and Ready over all nodes.
func (d Decision) Totals() (current, ready int32) {
	for _, n := range d.Nodes {
		current += n.Current
		ready += n.Ready
	}
	return current, ready
}

// NodeNames is the comma-separated node list shown by kubectl.
func (d Decision) NodeNames() string {
	names := make([]string, len(d.Nodes))
	for i, n := range d.Nodes {
		names[i] = n.Node
	}
	return strings.Join(names, ",")
}

// ReadyString is "<ready per node>/<desired per node>", e.g. "1-2-3/1-2-3".
func (d Decision) ReadyString() string {
	if len(d.Nodes) == 0 {
		return ""
	}
	ready := make([]string, len(d.Nodes))
	desired := make([]string, len(d.Nodes))
	for i, n := range d.Nodes {
		ready[i] = fmt.Sprint(n.Ready)
		desired[i] = fmt.Sprint(n.Desired)
	}
	return strings.Join(ready, "-") + "/" + strings.Join(desired, "-")
}

// Plan decides which pods to create and delete so that each node gets the
// count of desired. nodeExists reports whether a node exists in the
// cluster. nameTaken, if not nil, reports whether the name of a slot is held
// by a pod that the slot labels of pods do not show (a pod not controlled
// by the set, or one of its pods whose label was changed). Plan is pure and
// accepts any input: negative counts act as 0.
//
// Rules:
//   - terminating pods are not counted (they are going away) and not
//     deleted again;
//   - finished pods are deleted and not counted, so they get replaced;
//   - on an existing node, missing pods are created and surplus pods are
//     deleted, unready before ready, then newest first;
//   - a new pod takes the lowest free slot of its node: a slot is taken
//     while any pod seen holds it, terminating and finished ones included
//     (their names are still in use), so a replacement for a terminating
//     pod takes the next slot instead of waiting for it to go;
//   - on a node that does not exist, pods are not counted and nothing is
//     created or deleted;
//   - pods on nodes no longer wanted (absent from desired) are deleted.
func Plan(desired map[string]int32, nodeExists func(node string) bool, pods []PodInfo, nameTaken func(node string, slot int) bool) Decision {
	var d Decision
	active := map[string][]PodInfo{}
	held := map[string]map[int]bool{}
	for _, p := range pods {
		if p.Slot >= 0 {
			if held[p.Node] == nil {
				held[p.Node] = map[int]bool{}
			}
			held[p.Node][p.Slot] = true
		}
		switch {
		case p.Terminating:
		case p.Finished:
			d.Deletes = append(d.Deletes, Delete{Pod: p, Reason: DeleteFinished})
		default:
			active[p.Node] = append(active[p.Node], p)
		}
	}
	sort.Slice(d.Deletes, func(i, j int) bool { return d.Deletes[i].Pod.Name < d.Deletes[j].Pod.Name })

	for _, node := range sortedKeys(desired) {
		want := max(desired[node], 0)
		nc := NodeCount{Node: node, Desired: want}
		if nodeExists == nil || !nodeExists(node) {
			nc.Missing = true
			d.Nodes = append(d.Nodes, nc)
			continue
		}
		onNode := active[node]
		sortForDeletion(onNode)
		surplus := len(onNode) - int(want)
		for i, p := range onNode {
			if i < surplus {
				d.Deletes = append(d.Deletes, Delete{Pod: p, Reason: DeleteSurplus})
				continue
			}
			nc.Current++
			if p.Ready {
				nc.Ready++
			}
		}
		taken := func(slot int) bool {
			return held[node][slot] || nameTaken != nil && nameTaken(node, slot)
		}
		for _, slot := range FreeSlots(int(want)-len(onNode), taken) {
			d.Creates = append(d.Creates, Create{Node: node, Slot: slot})
		}
		d.Nodes = append(d.Nodes, nc)
	}

	for _, node := range sortedKeys(active) {
		if _, wanted := desired[node]; wanted {
			continue
		}
		onNode := active[node]
		sortForDeletion(onNode)
		for _, p := range onNode {
			d.Deletes = append(d.Deletes, Delete{Pod: p, Reason: DeleteNotWanted})
		}
	}
	return d
}

// FreeSlots returns the n lowest slots in [0, MaxSlots) for which taken
// is false, in increasing order (fewer if there are not that many).
func FreeSlots(n int, taken func(slot int) bool) []int {
	var out []int
	for slot := 0; len(out) < n && slot < MaxSlots; slot++ {
		if !taken(slot) {
			out = append(out, slot)
		}
	}
	return out
}

// sortForDeletion orders pods so that the first ones are the best to delete:
// unready before ready, then newest first, then by name for a stable order.
func sortForDeletion(pods []PodInfo) {
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if a.Ready != b.Ready {
			return !a.Ready
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.After(b.Created)
		}
		return a.Name > b.Name
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
