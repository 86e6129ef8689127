// Package nodeapi is the wire contract between the gateway on each node
// and the controller's leader on Kubernetes: the leader reads a node's
// State (cumulative gateway counters, its latency row, the Ingress
// generations its route table holds) and pushes back the processing
// estimates of the control step.
//
// The API is a control surface: both sides share a bearer token, and a
// request without it gets 401 and nothing else.
package nodeapi

import (
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/latency"
)

// Paths and default port of the node API.
const (
	PathState      = "/v1/state"
	PathProcessing = "/v1/processing"
	DefaultPort    = 9697
)

// State is what a node reports. Counters are cumulative (see
// gateway.Stats): a reader keeps the last State it saw per node and lets
// gateway.Stats.Since work out the window, so missed polls, gateway
// restarts (Stats.Epoch changes) and leader changes lose nothing.
type State struct {
	Node  string        `json:"node"`
	Stats gateway.Stats `json:"stats"`
	// RTT is this node's row of the latency matrix: peer node → entry.
	RTT latency.Row `json:"rtt,omitempty"`
	// Ingresses maps "namespace/name" of every Ingress the node's route
	// table holds to the metadata.generation it holds. An Ingress that
	// could not be served (see Problems) is absent.
	Ingresses map[string]int64 `json:"ingresses,omitempty"`
	// Problems maps "namespace/name" of an Ingress the node refused to a
	// reason (a host conflict, TLS it does not terminate, ...).
	Problems map[string]Problem `json:"problems,omitempty"`
}

// Problem says why an Ingress is not served; Reason is CamelCase for a
// condition, Message is for people.
type Problem struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// Generation is the metadata.generation of the Ingress refused, so a
	// refusal of an older generation is not taken for the current one.
	Generation int64 `json:"generation,omitempty"`
}

// Processing is a push of one revision's processing estimates: the
// expected service time per node, which the gateway's policy adds to the
// RTT when it chooses a replica.
type Processing struct {
	Revision string `json:"revision"` // "namespace/name"
	// PerNode maps node → mean service time in seconds.
	PerNode map[string]float64 `json:"perNode"`
}
