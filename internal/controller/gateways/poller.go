package gateways

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"kantai.dev/kantai/internal/demand"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/nodeapi"
)

// Defaults of a Poller.
const (
	// DefaultService is the headless Service whose EndpointSlices list
	// the gateways, one per node.
	DefaultService = "kantai-gateway-peers"
	// DefaultPortName is the name of the node API's port in those
	// EndpointSlices; without it, nodeapi.DefaultPort.
	DefaultPortName = "nodeapi"
	// DefaultInterval is how often the gateways are read.
	DefaultInterval = time.Second
	// DefaultTimeout bounds one call to one gateway.
	DefaultTimeout = 500 * time.Millisecond
)

// Gateway is what the Poller knows of one node's gateway.
type Gateway struct {
	Node string
	// Addr is the node API's host:port.
	Addr string
	// Ready is the endpoint's readiness.
	Ready bool
	// Known says State was read at least once; State is the last read.
	Known bool
	State nodeapi.State
	// Stale says the last read failed: State is the last known.
	Stale bool
}

// Poller reads the gateways; see the package documentation. Set the
// exported fields before Start; the zero values take the defaults.
type Poller struct {
	// Client reads EndpointSlices (the manager's cached client).
	Client client.Reader
	// Namespace and Service name the headless Service of the gateways;
	// PortName the node API's port.
	Namespace, Service, PortName string
	// API calls the node API (it carries the bearer token).
	API *nodeapi.Client
	// Clock ticks the polls; the real clock when nil.
	Clock clock.WithTicker
	// Interval between polls and Timeout of each call.
	Interval, Timeout time.Duration

	mu        sync.Mutex
	collector *demand.Collector
	gws       map[string]*Gateway
	matrix    latency.Matrix
	readFail  map[string]bool // node → failing reads (logged once per streak)
	listFail  bool
	viewKey   string
	// pending holds the estimates to push, per revision; pushed what
	// each node took last, with the epoch it had then.
	pending  map[string]map[string]time.Duration
	pushed   map[string]map[string]pushedEstimates
	pushFail map[string]bool
	kick     chan struct{}

	revEvents, viewEvents chan event.GenericEvent
	// afterRound, when set, is called after each poll or push round
	// (tests).
	afterRound func(kind string)
}

type pushedEstimates struct {
	epoch   uint64
	perNode map[string]time.Duration
}

var _ manager.LeaderElectionRunnable = (*Poller)(nil)

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the
// leader polls, steps and pushes.
func (p *Poller) NeedLeaderElection() bool { return true }

func (p *Poller) init() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.collector != nil {
		return
	}
	p.collector = demand.New()
	// A new leader does not count a gateway's history as one window.
	p.collector.FirstReadingIsBase = true
	p.gws = map[string]*Gateway{}
	p.readFail = map[string]bool{}
	p.pending = map[string]map[string]time.Duration{}
	p.pushed = map[string]map[string]pushedEstimates{}
	p.pushFail = map[string]bool{}
	p.kick = make(chan struct{}, 1)
}

// RevisionEvents returns the channel of events naming revisions
// ("namespace/name", as their PodAutoscalers) to reconcile at once: those
// with waiting requests or demand, after every poll. Call it before Start,
// and only when something consumes it.
func (p *Poller) RevisionEvents() <-chan event.GenericEvent {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revEvents == nil {
		p.revEvents = make(chan event.GenericEvent, 1024)
	}
	return p.revEvents
}

// ViewEvents returns the channel of events sent when the ready gateways
// or what they report of Ingresses changed. Call it before Start, and
// only when something consumes it.
func (p *Poller) ViewEvents() <-chan event.GenericEvent {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.viewEvents == nil {
		p.viewEvents = make(chan event.GenericEvent, 16)
	}
	return p.viewEvents
}

// Start polls every Interval until ctx ends; it implements
// manager.Runnable.
func (p *Poller) Start(ctx context.Context) error {
	p.init()
	c := p.Clock
	if c == nil {
		c = clock.RealClock{}
	}
	t := c.NewTicker(durationOr(p.Interval, DefaultInterval))
	defer t.Stop()
	p.Poll(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			p.Poll(ctx)
		case <-p.kick:
			p.push(ctx)
		}
	}
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// target is a gateway as the EndpointSlices list it.
type target struct {
	addr  string
	ready bool
}

// Poll reads every gateway once and sends the events due.
func (p *Poller) Poll(ctx context.Context) {
	p.init()
	log := ctrl.LoggerFrom(ctx).WithName("gateways")
	targets, err := p.targets(ctx)
	p.mu.Lock()
	if err != nil {
		if !p.listFail {
			log.Error(err, "Listing the gateways failed; keeping the last known")
		}
		p.listFail = true
		p.mu.Unlock()
		p.done("poll")
		return
	}
	p.listFail = false
	p.mu.Unlock()

	type result struct {
		node string
		st   nodeapi.State
		err  error
	}
	results := make(chan result, len(targets))
	timeout := durationOr(p.Timeout, DefaultTimeout)
	for node, t := range targets {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			st, err := p.API.State(cctx, t.addr)
			if err == nil && st.Node != "" && st.Node != node {
				err = fmt.Errorf("node API %s: reports node %q, its endpoint is on %q", t.addr, st.Node, node)
			}
			results <- result{node, st, err}
		}()
	}
	got := make([]result, 0, len(targets))
	for range targets {
		got = append(got, <-results)
	}

	p.mu.Lock()
	for node := range p.gws {
		if _, ok := targets[node]; !ok {
			delete(p.gws, node)
			delete(p.readFail, node)
			delete(p.pushed, node)
			delete(p.pushFail, node)
			p.collector.Forget(node)
		}
	}
	for node, t := range targets {
		g := p.gws[node]
		if g == nil {
			g = &Gateway{Node: node}
			p.gws[node] = g
		}
		g.Addr, g.Ready = t.addr, t.ready
	}
	for _, r := range got {
		g := p.gws[r.node]
		if r.err != nil {
			g.Stale = true
			if !p.readFail[r.node] {
				log.Info("Reading a gateway failed; keeping its last known state", "node", r.node, "error", r.err.Error())
			}
			p.readFail[r.node] = true
			continue
		}
		if p.readFail[r.node] {
			log.Info("Reading a gateway works again", "node", r.node)
			delete(p.readFail, r.node)
		}
		if g.Known && g.State.Stats.Epoch != r.st.Stats.Epoch {
			delete(p.pushed, r.node) // a restarted gateway has no estimates
		}
		g.Known, g.Stale, g.State = true, false, r.st
		p.collector.Observe(r.node, r.st.Stats)
	}
	p.collector.Prune()
	m := latency.Matrix{}
	for node, g := range p.gws {
		if g.Known && len(g.State.RTT) > 0 {
			m[node] = g.State.RTT
		}
	}
	p.matrix = m
	var active []string
	for _, rev := range p.collector.Revisions() {
		if p.collector.Recent(rev).Active() {
			active = append(active, rev)
		}
	}
	key := p.viewKeyLocked()
	viewChanged := key != p.viewKey
	p.viewKey = key
	revEvents, viewEvents := p.revEvents, p.viewEvents
	p.mu.Unlock()

	if revEvents != nil {
		for _, rev := range active {
			ns, name, ok := strings.Cut(rev, "/")
			if !ok {
				continue
			}
			if !send(ctx, revEvents, ns, name) {
				break
			}
		}
	}
	if viewChanged && viewEvents != nil {
		send(ctx, viewEvents, p.Namespace, p.service())
	}
	p.done("poll")
}

func send(ctx context.Context, ch chan event.GenericEvent, ns, name string) bool {
	ev := event.GenericEvent{Object: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}
	select {
	case ch <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *Poller) done(kind string) {
	if p.afterRound != nil {
		p.afterRound(kind)
	}
}

func (p *Poller) service() string {
	if p.Service != "" {
		return p.Service
	}
	return DefaultService
}

// viewKeyLocked summarises what the Ingress status depends on: the ready
// gateways and the Ingresses and problems they report; p.mu held.
func (p *Poller) viewKeyLocked() string {
	var b strings.Builder
	for _, node := range slices.Sorted(maps.Keys(p.gws)) {
		g := p.gws[node]
		if !g.Ready {
			continue
		}
		fmt.Fprintf(&b, "%s %v|", node, g.Known)
		for _, k := range slices.Sorted(maps.Keys(g.State.Ingresses)) {
			fmt.Fprintf(&b, "%s=%d,", k, g.State.Ingresses[k])
		}
		for _, k := range slices.Sorted(maps.Keys(g.State.Problems)) {
			fmt.Fprintf(&b, "%s!%s:%s,", k, g.State.Problems[k].Reason, g.State.Problems[k].Message)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// targets lists the gateways from the EndpointSlices: node → endpoint,
// a ready endpoint preferred when a node has several.
func (p *Poller) targets(ctx context.Context) (map[string]target, error) {
	var slices discoveryv1.EndpointSliceList
	if err := p.Client.List(ctx, &slices, client.InNamespace(p.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: p.service()}); err != nil {
		return nil, fmt.Errorf("list endpointslices of %s/%s: %w", p.Namespace, p.service(), err)
	}
	portName := p.PortName
	if portName == "" {
		portName = DefaultPortName
	}
	out := map[string]target{}
	for _, s := range slices.Items {
		port := int32(nodeapi.DefaultPort)
		for _, sp := range s.Ports {
			if sp.Name != nil && *sp.Name == portName && sp.Port != nil {
				port = *sp.Port
			}
		}
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || *ep.NodeName == "" || len(ep.Addresses) == 0 {
				continue
			}
			// A nil ready condition means ready (discovery/v1).
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if old, ok := out[*ep.NodeName]; ok && old.ready && !ready {
				continue
			}
			out[*ep.NodeName] = target{addr: joinHostPort(ep.Addresses[0], port), ready: ready}
		}
	}
	return out, nil
}

func joinHostPort(host string, port int32) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// Take returns the revision's demand and service windows since its
// previous Take and marks them consumed: call it once per control step.
func (p *Poller) Take(revision string) demand.Windows {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.collector.Take(revision)
}

// RTT is the round-trip time from one node to another as the origin's
// latency agent last reported it.
func (p *Poller) RTT(from, to string) (time.Duration, bool) {
	p.mu.Lock()
	m := p.matrix
	p.mu.Unlock()
	return m.Get(from, to)
}

// Gateways returns what is known of every gateway, by node name.
func (p *Poller) Gateways() []Gateway {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Gateway, 0, len(p.gws))
	for _, node := range slices.Sorted(maps.Keys(p.gws)) {
		out = append(out, *p.gws[node])
	}
	return out
}

// SetProcessing queues a revision's processing estimates (node → time) to
// push to every gateway; it does not wait for the push.
func (p *Poller) SetProcessing(revision string, perNode map[string]time.Duration) {
	p.init()
	p.mu.Lock()
	p.pending[revision] = maps.Clone(perNode)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// push sends the pending estimates to every gateway with an address,
// skipping what a gateway already holds from this life of it.
func (p *Poller) push(ctx context.Context) {
	log := ctrl.LoggerFrom(ctx).WithName("gateways")
	p.mu.Lock()
	pending := p.pending
	p.pending = map[string]map[string]time.Duration{}
	type job struct {
		node, addr string
		epoch      uint64
		revs       []string
	}
	var jobs []job
	for node, g := range p.gws {
		j := job{node: node, addr: g.Addr, epoch: g.State.Stats.Epoch}
		for rev, per := range pending {
			if old, ok := p.pushed[node][rev]; ok && old.epoch == j.epoch && maps.Equal(old.perNode, per) {
				continue
			}
			j.revs = append(j.revs, rev)
		}
		if len(j.revs) > 0 {
			slices.Sort(j.revs)
			jobs = append(jobs, j)
		}
	}
	p.mu.Unlock()

	type result struct {
		node  string
		epoch uint64
		ok    []string
		err   error
	}
	results := make(chan result, len(jobs))
	timeout := durationOr(p.Timeout, DefaultTimeout)
	for _, j := range jobs {
		go func() {
			r := result{node: j.node, epoch: j.epoch}
			for _, rev := range j.revs {
				body := nodeapi.Processing{Revision: rev, PerNode: make(map[string]float64, len(pending[rev]))}
				for n, d := range pending[rev] {
					body.PerNode[n] = d.Seconds()
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				err := p.API.SetProcessing(cctx, j.addr, body)
				cancel()
				if err != nil {
					r.err = fmt.Errorf("revision %s: %w", rev, err)
					continue
				}
				r.ok = append(r.ok, rev)
			}
			results <- r
		}()
	}
	all := make([]result, 0, len(jobs))
	for range jobs {
		all = append(all, <-results)
	}
	p.mu.Lock()
	for _, r := range all {
		if _, ok := p.gws[r.node]; !ok {
			continue
		}
		if p.pushed[r.node] == nil {
			p.pushed[r.node] = map[string]pushedEstimates{}
		}
		for _, rev := range r.ok {
			p.pushed[r.node][rev] = pushedEstimates{epoch: r.epoch, perNode: pending[rev]}
		}
		switch {
		case r.err != nil && !p.pushFail[r.node]:
			log.Info("Pushing processing estimates to a gateway failed", "node", r.node, "error", r.err.Error())
			p.pushFail[r.node] = true
		case r.err == nil && p.pushFail[r.node]:
			log.Info("Pushing processing estimates to a gateway works again", "node", r.node)
			delete(p.pushFail, r.node)
		}
	}
	p.mu.Unlock()
	p.done("push")
}

// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch,namespace=kantai-system

// CacheByObject restricts the manager's cache of EndpointSlices to those
// of the gateways' Service in namespace. Merge it into
// cache.Options.ByObject.
func CacheByObject(namespace, service string) map[client.Object]cache.ByObject {
	if service == "" {
		service = DefaultService
	}
	return map[client.Object]cache.ByObject{
		&discoveryv1.EndpointSlice{}: {
			Namespaces: map[string]cache.Config{namespace: {}},
			Label:      labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service}),
		},
	}
}
