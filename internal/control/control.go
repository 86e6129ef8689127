// Package control is the control step of one revision, shared by every
// home of kantai: the local fleet calls it each tick with what its
// gateways saw, the Kubernetes PodAutoscaler reconciler with what it polled
// from the gateway DaemonSet. A step takes the time, demand per origin
// node, service times per node, the nodes and the replicas, and returns
// the replicas wanted per node (the counts a NodeReplicaSet holds), whom
// each serves, the processing estimates to push to the gateways, and why.
//
// The step is decision logic only: no I/O, no clock, no goroutines. It
// keeps the history a decision needs (the autoscaler's windows, the
// processing estimates) inside the Revision value; a home that restarts
// makes a new Revision with Resumed set, which then scales nothing down
// for one stable window, since it cannot know what the windows held.
package control

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/placement"
)

// Node is a node the revision may run on.
type Node struct {
	Name string
	// Capacity is the most replicas the node may run, of all revisions; 0
	// when the revision may not run there (affinity, taints, node down).
	Capacity int
	// Used counts the replicas of all revisions on the node, this one's
	// included.
	Used int
	// Speed is the node's processing-time multiplier (2: twice as slow);
	// 0 means unknown, taken as 1.
	Speed float64
}

// Replica is a replica of the revision that is ready or starting (those
// being stopped are left out), as the placement policies see it.
type Replica = placement.Replica

// Demand is the mean concurrency of the requests that entered at Origin,
// over the period ending at the step's time.
type Demand struct {
	Origin      string
	Concurrency float64
}

// Service is what the gateways saw of the revision's service time at one
// node since the previous step.
type Service struct {
	Node      string
	Responses float64
	Mean      time.Duration
}

// Input is one step's view of the world.
type Input struct {
	Now      time.Time
	Demand   []Demand
	Service  []Service
	Nodes    []Node
	Replicas []Replica
	// RTT is the measured round-trip time between two nodes.
	RTT func(from, to string) (time.Duration, bool)
	// Unreachable says no route sends traffic to the revision: it keeps no
	// replica, whatever its min-scale (as Knative's reachability).
	Unreachable bool
	// Fixed, when not nil, pins the replicas per node and turns the
	// autoscaler off (benchmarks compare policies on equal replica sets);
	// a pin on a node without capacity (down, ruled out) is not held.
	Fixed map[string]int
}

// Output is one step's decision.
type Output struct {
	// Desired is the replicas wanted per node.
	Desired map[string]int
	// Origins splits Desired by the origin each replica serves:
	// node → origin → count.
	Origins map[string]map[string]int
	// Processing is the revision's estimated processing time on every
	// node of the input, to push to every gateway: measured where the
	// revision ran lately, else inferred from the measured nodes and node
	// speed (see Inferred), 0 when nothing is known.
	Processing map[string]time.Duration
	// Inferred marks the nodes whose Processing is inferred.
	Inferred map[string]bool
	Decision autoscale.Decision
	// Unplaced counts wanted replicas no node had room for.
	Unplaced int
	Reason   string
}

// Total is the number of replicas wanted.
func (o Output) Total() int {
	n := 0
	for _, c := range o.Desired {
		n += c
	}
	return n
}

// Config makes a Revision.
type Config struct {
	Spec      autoscale.Spec
	Placement placement.Policy
	// Created is when the revision was created.
	Created time.Time
	// Resumed says the revision ran before this controller started (a
	// restart, a new leader); Started is when this controller started.
	Resumed bool
	Started time.Time
}

// Revision carries one revision's control state from step to step. It is
// not safe for concurrent use.
type Revision struct {
	scaler     *autoscale.Autoscaler
	place      placement.Policy
	processing map[string]estimate
	holdUntil  time.Time
	last       Output
	move       *move
	lastMove   time.Time
}

type estimate struct {
	mean  time.Duration
	count float64   // samples behind it, decayed with age
	at    time.Time // last sample
}

// Ageing of processing estimates: the weight of old samples halves every
// EstimateHalfLife, and an estimate without samples for EstimateExpiry is
// dropped, so one bad period cannot price a node out for ever; the node is
// then priced by inference until it is measured again.
const (
	EstimateHalfLife = 30 * time.Second
	EstimateExpiry   = 2 * time.Minute
)

// New returns the control state of a revision.
func New(cfg Config) *Revision {
	r := &Revision{scaler: autoscale.New(cfg.Spec, cfg.Created), place: cfg.Placement, processing: map[string]estimate{}}
	if r.place == nil {
		r.place = placement.Nearest{}
	}
	if cfg.Resumed {
		r.holdUntil = cfg.Started.Add(r.scaler.Spec().Window)
	}
	return r
}

// Spec is the autoscaling spec in use.
func (r *Revision) Spec() autoscale.Spec { return r.scaler.Spec() }

// Last is the previous step's output.
func (r *Revision) Last() Output { return r.last }

// Record counts demand at origin between steps: a gateway's immediate
// signal that a request waits with no replica to take it.
func (r *Revision) Record(origin string, now time.Time, concurrency float64) {
	r.scaler.Record(origin, now, concurrency)
}

// Step decides the replicas per node at in.Now.
func (r *Revision) Step(in Input) Output {
	r.learn(in.Now, in.Service)
	for _, d := range in.Demand {
		r.scaler.Record(d.Origin, in.Now, d.Concurrency)
	}
	out := Output{Desired: map[string]int{}, Origins: map[string]map[string]int{}}
	out.Processing, out.Inferred = r.processingFor(in.Nodes)
	switch {
	case in.Unreachable:
		out.Reason = "unreachable"
	case in.Fixed != nil:
		// Pins hold on the nodes that may run the revision now.
		for _, node := range in.Nodes {
			if n := in.Fixed[node.Name]; n > 0 && node.Capacity > 0 {
				out.Desired[node.Name] = n
				out.Origins[node.Name] = map[string]int{node.Name: n}
			}
		}
		out.Reason = "fixed"
	default:
		r.autoscale(in, &out)
	}
	r.last = out
	return out
}

func (r *Revision) autoscale(in Input, out *Output) {
	ready, starting := 0, false
	for _, rep := range in.Replicas {
		if rep.Ready {
			ready++
		} else {
			starting = true
		}
	}
	d := r.scaler.Decide(in.Now, ready)
	out.Decision = d
	names := make([]string, len(in.Nodes))
	pin := placement.Input{Want: d.PerOrigin, Replicas: slices.Clone(in.Replicas)}
	for i, n := range in.Nodes {
		names[i] = n.Name
		pin.Nodes = append(pin.Nodes, placement.Node{Name: n.Name, Capacity: n.Capacity, Used: n.Used})
	}
	slices.SortFunc(pin.Replicas, func(a, b placement.Replica) int { return strings.Compare(a.Name, b.Name) })
	pin.Cost = placement.MeanCost(r.cost(in), names)
	plan := r.place.Plan(pin)
	out.Unplaced = plan.Unplaced
	reasons := []string{d.Reason}

	remove := map[string]bool{}
	for _, name := range plan.Remove {
		remove[name] = true
	}
	if why := r.moves(in, pin, &plan, remove); why != "" {
		reasons = append(reasons, why)
	}
	if len(remove) > 0 && (starting || len(plan.Add) > 0) {
		// Make before break: replicas being replaced keep serving until
		// their successors are ready, unless enough others are.
		left := 0
		for _, rep := range in.Replicas {
			if rep.Ready && !remove[rep.Name] {
				left++
			}
		}
		if left < d.Total {
			clear(remove)
			reasons = append(reasons, "make before break")
		}
	}
	if in.Now.Before(r.holdUntil) {
		// A fresh autoscaler knows no demand yet: keep what runs, adding
		// only what it asks for beyond that.
		held := len(remove) > 0
		clear(remove)
		if d.Total <= len(in.Replicas) {
			held = held || len(plan.Add) > 0
			plan.Add = nil
		}
		if held {
			reasons = append(reasons, "no scale-down for a window after a restart")
		}
	}
	add := func(node, origin string) {
		out.Desired[node]++
		m := out.Origins[node]
		if m == nil {
			m = map[string]int{}
			out.Origins[node] = m
		}
		m[origin]++
	}
	for _, rep := range in.Replicas {
		if !remove[rep.Name] {
			add(rep.Node, rep.Origin)
		}
	}
	for _, a := range plan.Add {
		add(a.Node, a.Origin)
	}
	if plan.Unplaced > 0 {
		reasons = append(reasons, fmt.Sprintf("%d unplaced: no node has room", plan.Unplaced))
	}
	out.Reason = strings.Join(reasons, ", ")
}

// Moves: a ready replica goes to another node (make before break) when
// that node would serve its origin at least MoveGain faster, by
// MoveMargin or more; at most one move per MoveInterval, so estimates
// settle between moves and replicas do not flap.
const (
	MoveGain     = 0.10
	MoveMargin   = 2 * time.Millisecond
	MoveInterval = 30 * time.Second
)

// move is a replica being moved: a successor for origin on node to.
type move struct {
	from, to, origin string // from is the replica's name
	started          time.Time
}

// moves carries on the move in progress, or starts one when the plan
// changes nothing else. While the successor starts, the placement policy's
// wish to drop it (unready, so first to go) is overruled; once it is
// ready, the policy drops the old replica as the most expensive.
func (r *Revision) moves(in Input, pin placement.Input, plan *placement.Plan, remove map[string]bool) string {
	if m := r.move; m != nil {
		oldLeft := false
		for _, rep := range in.Replicas {
			if rep.Name == m.from {
				oldLeft = true
			}
			if rep.Node == m.to && rep.Origin == m.origin && !rep.Ready && remove[rep.Name] {
				delete(remove, rep.Name)
			}
		}
		if oldLeft && in.Now.Sub(m.started) < MoveInterval {
			return fmt.Sprintf("moving %s to %s", m.from, m.to)
		}
		r.move = nil
	}
	if len(plan.Add) > 0 || len(remove) > 0 || in.Now.Sub(r.lastMove) < MoveInterval || in.Now.Before(r.holdUntil) {
		return ""
	}
	free := map[string]int{}
	for _, n := range pin.Nodes {
		free[n.Name] = n.Capacity - n.Used
	}
	for _, rep := range pin.Replicas {
		if !rep.Ready {
			continue
		}
		here := pin.Cost(rep.Origin, rep.Node)
		best, bestCost := "", here
		for _, n := range pin.Nodes {
			if c := pin.Cost(rep.Origin, n.Name); n.Name != rep.Node && free[n.Name] > 0 && c < bestCost {
				best, bestCost = n.Name, c
			}
		}
		if best != "" && float64(bestCost) <= float64(here)*(1-MoveGain) && here-bestCost >= MoveMargin {
			r.move = &move{from: rep.Name, to: best, origin: rep.Origin, started: in.Now}
			r.lastMove = in.Now
			plan.Add = append(plan.Add, placement.Add{Node: best, Origin: rep.Origin})
			return fmt.Sprintf("moving %s to %s (%v instead of %v)", rep.Name, best, bestCost.Round(time.Microsecond), here.Round(time.Microsecond))
		}
	}
	return ""
}

// learn folds the gateways' service samples into the per-node estimates:
// the old estimate weighs as a few steps of samples, so it follows change
// but not noise, and less as it ages.
func (r *Revision) learn(now time.Time, samples []Service) {
	for node, e := range r.processing {
		if age := now.Sub(e.at); age > EstimateExpiry {
			delete(r.processing, node)
		}
	}
	sum := map[string][2]float64{}
	for _, s := range samples {
		if s.Responses <= 0 {
			continue
		}
		v := sum[s.Node]
		v[0] += float64(s.Mean) * s.Responses
		v[1] += s.Responses
		sum[s.Node] = v
	}
	for node, v := range sum {
		mean := v[0] / v[1]
		old := r.processing[node]
		weight := old.count
		if age := now.Sub(old.at); age > 0 && !old.at.IsZero() {
			weight *= math.Exp2(-age.Seconds() / EstimateHalfLife.Seconds())
		}
		w := min(weight, 3*v[1])
		r.processing[node] = estimate{mean: time.Duration((float64(old.mean)*w + mean*v[1]) / (w + v[1])), count: w + v[1], at: now}
	}
}

// processingFor returns the processing time per node, measured or
// inferred (see cost), and which are inferred.
func (r *Revision) processingFor(nodes []Node) (map[string]time.Duration, map[string]bool) {
	speed := make(map[string]float64, len(nodes))
	for _, n := range nodes {
		s := n.Speed
		if !(s > 0) {
			s = 1
		}
		speed[n.Name] = s
	}
	perUnit, n := 0.0, 0
	for node, e := range r.processing {
		if s, ok := speed[node]; ok {
			perUnit += float64(e.mean) / s
			n++
		}
	}
	proc := make(map[string]time.Duration, len(nodes))
	inferred := map[string]bool{}
	for name, s := range speed {
		switch e, ok := r.processing[name]; {
		case ok:
			proc[name] = e.mean
		case n > 0:
			proc[name] = time.Duration(perUnit / float64(n) * s)
			inferred[name] = true
		default:
			proc[name] = 0
		}
	}
	return proc, inferred
}

// UnknownRTT stands in for a latency not measured yet: such a node is
// treated as far away until the agents know better.
const UnknownRTT = time.Second

// DefaultProcessing is assumed where the revision has not been measured
// anywhere yet; the same everywhere but for node speed, so latency decides.
const DefaultProcessing = time.Millisecond

// cost is the placement cost: measured RTT from the origin plus the
// processing time on the node. A node where the revision has not run is
// assumed to take the measured nodes' mean time per unit of speed, times
// its own speed, so a slow node looks slow before anything ran there; with
// nothing measured, DefaultProcessing per unit of speed.
func (r *Revision) cost(in Input) placement.Cost {
	proc, _ := r.processingFor(in.Nodes)
	for _, n := range in.Nodes {
		if proc[n.Name] == 0 {
			s := n.Speed
			if !(s > 0) {
				s = 1
			}
			proc[n.Name] = time.Duration(float64(DefaultProcessing) * s)
		}
	}
	return func(origin, node string) time.Duration {
		var rtt time.Duration
		if origin != node {
			rtt = UnknownRTT
			if in.RTT != nil {
				if d, ok := in.RTT(origin, node); ok {
					rtt = d
				}
			}
		}
		return rtt + proc[node]
	}
}

// Change is what a home that runs individual replicas does to converge on
// an Output.
type Change struct {
	// Start lists new replicas: node and the origin each serves.
	Start []placement.Add
	// Stop names replicas to drain and stop.
	Stop []string
}

// Diff turns an Output into replica starts and stops for a home that
// manages replicas one by one (a NodeReplicaSet controller works on the
// counts instead). On a node with too many, it stops replicas of the
// origins that have more than wanted there, unready first, then newest.
func Diff(out Output, replicas []Replica) Change {
	var ch Change
	byNode := map[string][]Replica{}
	for _, rep := range replicas {
		byNode[rep.Node] = append(byNode[rep.Node], rep)
	}
	nodes := slices.Sorted(maps.Keys(byNode))
	for node := range out.Desired {
		if _, ok := byNode[node]; !ok {
			nodes = append(nodes, node)
		}
	}
	slices.Sort(nodes)
	for _, node := range slices.Compact(nodes) {
		have := byNode[node]
		haveBy := map[string]int{}
		for _, rep := range have {
			haveBy[rep.Origin]++
		}
		want := out.Origins[node]
		// Starts: every origin short of its count here.
		for _, o := range slices.Sorted(maps.Keys(want)) {
			for i := haveBy[o]; i < want[o]; i++ {
				ch.Start = append(ch.Start, placement.Add{Node: node, Origin: o})
			}
		}
		// Stops: every origin over its count here.
		slices.SortFunc(have, func(a, b Replica) int {
			if a.Ready != b.Ready {
				if !a.Ready {
					return -1
				}
				return 1
			}
			if c := b.Created.Compare(a.Created); c != 0 {
				return c
			}
			return strings.Compare(a.Name, b.Name)
		})
		over := map[string]int{}
		for o, n := range haveBy {
			over[o] = n - want[o]
		}
		for _, rep := range have {
			if over[rep.Origin] > 0 {
				ch.Stop = append(ch.Stop, rep.Name)
				over[rep.Origin]--
			}
		}
	}
	return ch
}
