package nodegw

import (
	"fmt"
	"maps"
	"reflect"
	"slices"

	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/nodeapi"
)

// target is what the applier drives; *gateway.Gateway is one.
type target interface {
	SetNodes([]string) error
	SetRevision(gateway.RevisionConfig)
	RemoveRevision(key string)
	SetReplicas(key string, replicas []gateway.ReplicaInfo)
	SetRoutes([]gateway.Route) error
}

var _ target = (*gateway.Gateway)(nil)

// ReasonRouteTableRejected is the Problem of an Ingress whose rules the
// gateway refused (the table as a whole: a host in two Ingresses, ...).
const ReasonRouteTableRejected = "RouteTableRejected"

// applier remembers what the gateway holds and hands it only changes.
// Not safe for concurrent use; the daemon calls it from one goroutine.
type applier struct {
	gw     target
	nodes  []string
	revs   map[string]gateway.RevisionConfig
	reps   map[string][]gateway.ReplicaInfo
	routes []gateway.Route
	set    bool // routes were set once

	// held maps each Ingress in the route table the gateway serves to its
	// generation; problems says why the others are not served.
	held     map[string]int64
	problems map[string]nodeapi.Problem
}

func newApplier(gw target) *applier {
	return &applier{gw: gw, revs: map[string]gateway.RevisionConfig{}, reps: map[string][]gateway.ReplicaInfo{},
		held: map[string]int64{}, problems: map[string]nodeapi.Problem{}}
}

// apply brings the gateway to d. The order loses no request: nodes first
// (replicas name them), then new and changed revisions and their
// replicas, then the routes, and last the revisions no route names any
// more, whose waiting requests the gateway then offers to the route
// table, which by now names their successor (a rollout).
//
// If the gateway refuses the routes it keeps the table it had: the
// revisions that table names stay, the Ingresses it holds keep their
// generations, and the others get a Problem; the error says why.
func (a *applier) apply(d Desired) error {
	if !slices.Equal(a.nodes, d.Nodes) {
		if err := a.gw.SetNodes(d.Nodes); err != nil {
			return fmt.Errorf("setting nodes: %w", err)
		}
		a.nodes = slices.Clone(d.Nodes)
	}
	for _, key := range slices.Sorted(maps.Keys(d.Revisions)) {
		c := d.Revisions[key]
		if old, ok := a.revs[key]; !ok || old != c {
			a.gw.SetRevision(c)
			a.revs[key] = c
		}
		if reps := d.Replicas[key]; !slices.Equal(a.reps[key], reps) {
			a.gw.SetReplicas(key, reps)
			if len(reps) == 0 {
				delete(a.reps, key)
			} else {
				a.reps[key] = slices.Clone(reps)
			}
		}
	}
	var routeErr error
	if !a.set || !reflect.DeepEqual(a.routes, d.Routes) {
		if err := a.gw.SetRoutes(d.Routes); err != nil {
			routeErr = fmt.Errorf("setting routes: %w", err)
		} else {
			a.routes, a.set = d.Routes, true
			a.held = maps.Clone(d.Generations)
		}
	}
	a.problems = maps.Clone(d.Problems)
	if a.problems == nil {
		a.problems = map[string]nodeapi.Problem{}
	}
	if routeErr != nil {
		for key, gen := range d.Generations {
			if held, ok := a.held[key]; !ok || held != gen {
				a.problems[key] = nodeapi.Problem{Reason: ReasonRouteTableRejected, Message: routeErr.Error()}
			}
		}
		return routeErr
	}
	for _, key := range slices.Sorted(maps.Keys(a.revs)) {
		if _, ok := d.Revisions[key]; !ok {
			a.gw.RemoveRevision(key)
			delete(a.revs, key)
			delete(a.reps, key)
		}
	}
	return nil
}

// known reports whether the gateway holds revision key.
func (a *applier) known(key string) bool {
	_, ok := a.revs[key]
	return ok
}
