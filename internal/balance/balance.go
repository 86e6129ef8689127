// Package balance holds the load-balancing policies a gateway uses to choose
// a replica for each request, behind one small interface, chosen by name.
//
// A policy sees a View: the ready replicas of one function with this
// gateway's in-flight count at each, and, per node, the measured round-trip
// time from the gateway's node and estimates of the function's processing
// time there. Pick runs on the gateway's request path under the function's
// lock: it must not block, allocate, or do I/O. Randomness is injected.
//
// Adding a policy: write one file with a type implementing Policy that
// registers itself from init with Register.
package balance

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Replica is what a policy sees of one ready replica.
type Replica struct {
	// Node indexes View.Nodes.
	Node int
	// InFlight counts requests this gateway sent there and has not yet seen
	// answered.
	InFlight int
	// Capacity is the hard in-flight limit (containerConcurrency); 0 means
	// none.
	Capacity int
}

// Full reports whether the replica may take no more requests now.
func (r *Replica) Full() bool { return r.Capacity > 0 && r.InFlight >= r.Capacity }

// Node is what a policy knows about one node, seen from the gateway's node.
type Node struct {
	// RTT is the measured round-trip time from the gateway's node; 0 for the
	// gateway's own node.
	RTT time.Duration
	// Processing is the function's average processing time on the node, as
	// reported across the fleet; 0 when unknown.
	Processing time.Duration
	// Service is this gateway's fresh estimate of the time a request spends
	// at the node (queueing included), from its own recent responses; 0 when
	// it has none recent.
	Service time.Duration
	// Probe asks for one request to the node: this gateway's estimate of
	// it has gone stale, and only a sample can tell whether it changed.
	// The gateway sets it at most once per probe interval; policies that
	// price nodes by measurement should honour it.
	Probe bool
}

// View is one function's replicas and nodes, seen from one gateway.
type View struct {
	// Origin is the index of the gateway's node in Nodes.
	Origin   int
	Nodes    []Node
	Replicas []Replica
	// Parallelism is how many requests one replica processes at once, when
	// known (containerConcurrency or the function's worker count); 0 if not.
	Parallelism int
}

// Policy chooses a replica for each request.
type Policy interface {
	// Pick returns the index in v.Replicas of the replica for the next
	// request, or -1 when none may take it now (all full, or none ready);
	// the request then waits for capacity.
	Pick(v *View) int
}

// Factory makes a policy for one function at one gateway; rng is private to
// that instance.
type Factory func(rng *rand.Rand) Policy

// registry holds the policies by name; each policy's file adds itself
// from init, before any caller can read it.
var registry = map[string]Factory{}

// Register makes a policy available under name. It panics when name is
// empty or taken or factory is nil: those are programming errors.
func Register(name string, factory Factory) {
	if name == "" || factory == nil {
		panic("balance: Register needs a name and a factory")
	}
	if _, taken := registry[name]; taken {
		panic(fmt.Sprintf("balance: policy %q registered twice", name))
	}
	registry[name] = factory
}

// New returns the named policy.
func New(name string, rng *rand.Rand) (Policy, error) {
	f, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown load-balancing policy %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return f(rng), nil
}

// Known reports whether a policy of that name exists.
func Known(name string) bool { _, ok := registry[name]; return ok }

// Names lists the registered policies.
func Names() []string {
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// minCost keeps weights finite when a cost would be zero (a local replica
// whose processing time is not known yet).
const minCost = 100 * time.Microsecond
