package fleet

import (
	"fmt"
	"strings"
	"time"

	"kantai.dev/kantai/internal/control"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/manifest"
)

// service is a Knative Service on the fleet: its revisions and traffic.
type service struct {
	key     string
	spec    *manifest.Function // as last applied
	created time.Time
	// revisions in creation order; the last is the latest created.
	revisions []*revisionRT
	next      int
	// fixed, when set, pins the latest revision's replicas per node and
	// turns autoscaling off.
	fixed map[string]int
}

// revisionRT is one revision: an immutable template, its control state and
// its replica processes.
type revisionRT struct {
	svc      *service
	name     string // hello-00001
	key      string // default/hello-00001
	spec     *manifest.Function
	ctl      *control.Revision
	created  time.Time
	replicas map[string]*replicaProc
	// ready is set once a replica was ready (or at once when the revision
	// may start at zero): Knative's Ready, which latestRevision routes need.
	ready bool
	// routed says a route sends it traffic; routedAt is when that last
	// became true.
	routed bool
	out    control.Output
}

func (s *service) latest() *revisionRT { return s.revisions[len(s.revisions)-1] }

// latestReady is the newest ready revision, or the newest of all while
// none is ready, so that requests for a new Service wait for its first
// replica.
func (s *service) latestReady() *revisionRT {
	for i := len(s.revisions) - 1; i >= 0; i-- {
		if s.revisions[i].ready {
			return s.revisions[i]
		}
	}
	return s.latest()
}

func (s *service) revision(name string) *revisionRT {
	for _, r := range s.revisions {
		if r.name == name {
			return r
		}
	}
	return nil
}

// targets resolves the traffic block: latestRevision entries follow the
// latest ready revision.
func (s *service) targets() []gateway.ServiceTarget {
	traffic := s.spec.Traffic
	if len(traffic) == 0 {
		traffic = []manifest.Traffic{{LatestRevision: true, Percent: 100}}
	}
	out := make([]gateway.ServiceTarget, 0, len(traffic))
	for _, t := range traffic {
		rev := s.latestReady()
		if !t.LatestRevision {
			rev = s.revision(t.RevisionName)
		}
		out = append(out, gateway.ServiceTarget{Revision: rev.key, Percent: t.Percent, Tag: t.Tag})
	}
	return out
}

func (s *service) followsLatest() bool {
	if len(s.spec.Traffic) == 0 {
		return true
	}
	for _, t := range s.spec.Traffic {
		if t.LatestRevision {
			return true
		}
	}
	return false
}

// Apply creates or updates a function (a Knative Service). A changed
// template makes a new revision, which takes the traffic that follows the
// latest revision once it is ready; the old one then drains.
func (f *Fleet) Apply(fn *manifest.Function) error { return f.ApplyFixed(fn, nil) }

// ApplyFixed is Apply with the latest revision's replicas pinned per node
// (no autoscaling) when fixed is not nil.
func (f *Fleet) ApplyFixed(fn *manifest.Function, fixed map[string]int) error {
	if err := f.checkFixed(fixed); err != nil {
		return fmt.Errorf("%s: %w", fn.Key(), err)
	}
	for _, n := range fn.Nodes {
		if _, ok := f.byName[n]; !ok {
			return fmt.Errorf("%s: node affinity names node %q, which the testbed does not have (nodes: %s)",
				fn.Key(), n, strings.Join(f.nodeNames(), ", "))
		}
	}
	now := time.Now()
	f.mu.Lock()
	svc, ok := f.svcs[fn.Key()]
	if !ok {
		svc = &service{key: fn.Key(), created: now}
	}
	var rev *revisionRT
	if len(svc.revisions) == 0 || !svc.latest().spec.SameTemplate(fn) {
		name := fn.RevisionName
		if name == "" {
			name = fmt.Sprintf("%s-%05d", fn.Name, svc.next+1)
		}
		if svc.revision(name) != nil {
			f.mu.Unlock()
			return fmt.Errorf("%s: spec.template.metadata.name: revision %q exists with another template", fn.Key(), name)
		}
		rev = &revisionRT{svc: svc, name: name, key: fn.Namespace + "/" + name, spec: fn, created: now,
			replicas: map[string]*replicaProc{}, ready: fn.Scaling.InitialScale == 0,
			ctl: control.New(control.Config{Spec: fn.Scaling, Placement: f.place, Created: now})}
	}
	for i, t := range fn.Traffic {
		if !t.LatestRevision && svc.revision(t.RevisionName) == nil && (rev == nil || rev.name != t.RevisionName) {
			f.mu.Unlock()
			return fmt.Errorf("%s: spec.traffic[%d].revisionName: no revision %q", fn.Key(), i, t.RevisionName)
		}
	}
	if rev != nil {
		svc.revisions = append(svc.revisions, rev)
		svc.next++
	}
	svc.spec = fn
	if fixed != nil {
		svc.fixed = fixed
	}
	f.svcs[fn.Key()] = svc
	f.mu.Unlock()
	if rev != nil {
		for _, n := range f.nodes {
			n.gw.SetRevision(revisionConfig(rev))
		}
		f.log.Info("revision created", "function", fn.Key(), "revision", rev.name, "target", fn.Scaling.Target, "window", fn.Scaling.Window)
	}
	for _, w := range fn.Warnings {
		f.log.Warn("applied with a warning", "function", fn.Key(), "warning", w)
	}
	f.publishRoutes()
	f.Kick()
	return nil
}

func revisionConfig(rev *revisionRT) gateway.RevisionConfig {
	s := rev.spec
	return gateway.RevisionConfig{Namespace: s.Namespace, Name: rev.name, Service: s.Name,
		ContainerConcurrency: s.ContainerConcurrency, Parallelism: s.Workers,
		Timeout: s.Timeout, ResponseStartTimeout: s.ResponseStartTimeout}
}

// SetFixed pins a function's latest revision's replicas per node, turning
// its autoscaler off; nil turns autoscaling back on.
func (f *Fleet) SetFixed(key string, perNode map[string]int) error {
	if err := f.checkFixed(perNode); err != nil {
		return err
	}
	f.mu.Lock()
	svc, ok := f.svcs[key]
	if ok {
		svc.fixed = perNode
	}
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("no function %q", key)
	}
	f.Kick()
	return nil
}

func (f *Fleet) checkFixed(perNode map[string]int) error {
	for n, c := range perNode {
		if _, ok := f.byName[n]; !ok {
			return fmt.Errorf("fixed replicas: unknown node %q", n)
		}
		if c < 0 {
			return fmt.Errorf("fixed replicas: node %s: negative count %d", n, c)
		}
	}
	return nil
}

// Delete removes a function and drains its replicas.
func (f *Fleet) Delete(key string) error {
	f.mu.Lock()
	svc, ok := f.svcs[key]
	delete(f.svcs, key)
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("no function %q", key)
	}
	f.publishRoutes()
	for _, rev := range svc.revisions {
		for _, n := range f.nodes {
			n.gw.RemoveRevision(rev.key)
		}
		for _, r := range rev.replicas {
			go r.stop(10 * time.Second)
		}
	}
	f.log.Info("function deleted", "function", key)
	return nil
}

// Kick asks the control loop to run now.
func (f *Fleet) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// coldStart is the gateway's immediate signal that a request waits for a
// revision with no ready replica at origin: count it as demand there now,
// rather than at the next reading of the gateways.
func (f *Fleet) coldStart(revKey, origin string) {
	f.mu.Lock()
	if rev := f.revisionByKey(revKey); rev != nil {
		rev.ctl.Record(origin, time.Now(), 1)
	}
	f.mu.Unlock()
	f.Kick()
}

// revisionByKey finds a revision; f.mu held.
func (f *Fleet) revisionByKey(key string) *revisionRT {
	for _, svc := range f.svcs {
		for _, rev := range svc.revisions {
			if rev.key == key {
				return rev
			}
		}
	}
	return nil
}

// publishRoutes gives every gateway the route table of all Services, and
// marks which revisions are routed.
func (f *Fleet) publishRoutes() {
	f.mu.Lock()
	var routes []gateway.Route
	for _, key := range sortedKeys(f.svcs) {
		svc := f.svcs[key]
		targets := svc.targets()
		routed := map[string]bool{}
		for _, t := range targets {
			routed[t.Revision] = true
		}
		// The latest created revision is reachable while traffic follows
		// the latest: it must come up to be ready to take it.
		latest := svc.followsLatest()
		for _, rev := range svc.revisions {
			rev.routed = routed[rev.key] || latest && rev == svc.latest()
		}
		routes = append(routes, gateway.ServiceRoutes(svc.spec.Name, svc.spec.Namespace, f.tb.Domain, targets)...)
	}
	changed := !sameRoutes(routes, f.routes)
	f.routes = routes
	f.mu.Unlock()
	if !changed {
		return
	}
	for _, n := range f.nodes {
		if err := n.gw.SetRoutes(routes); err != nil {
			f.log.Error("route table refused", "node", n.spec.Name, "err", err)
		}
	}
}

func sameRoutes(a, b []gateway.Route) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i].Targets) != len(b[i].Targets) || len(a[i].Hosts) != len(b[i].Hosts) || a[i].Hosts[0] != b[i].Hosts[0] {
			return false
		}
		for j, t := range a[i].Targets {
			if u := b[i].Targets[j]; t.Revision != u.Revision || t.Percent != u.Percent {
				return false
			}
		}
	}
	return true
}

func (f *Fleet) controlLoop() {
	t := time.NewTicker(f.opts.ControlInterval)
	defer t.Stop()
	for {
		var in observations
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			in = f.collect()
		case <-f.kick:
		}
		f.reconcile(in)
	}
}

// observations are the gateways' windows since the last reading, per
// revision key.
type observations struct {
	demand  map[string][]control.Demand
	service map[string][]control.Service
}

// collect reads every gateway's cumulative stats and turns the change
// since the previous reading into control-step input.
func (f *Fleet) collect() observations {
	obs := observations{demand: map[string][]control.Demand{}, service: map[string][]control.Service{}}
	for _, n := range f.nodes {
		f.demand.Observe(n.spec.Name, n.gw.Stats())
	}
	for rev, w := range f.demand.TakeAll() {
		if len(w.Demand) > 0 {
			obs.demand[rev] = w.Demand
		}
		if len(w.Service) > 0 {
			obs.service[rev] = w.Service
		}
	}
	return obs
}
