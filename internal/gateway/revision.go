package gateway

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"kantai.dev/kantai/internal/balance"
)

// RevisionConfig is what the gateway needs to know about a revision.
type RevisionConfig struct {
	// Namespace and Name name the revision ("hello-00002").
	Namespace, Name string
	// Service is the Service the revision belongs to; metrics carry it.
	Service string
	// ContainerConcurrency is the hard in-flight limit per replica (0: none).
	ContainerConcurrency int
	// Parallelism hints how many requests a replica processes at once.
	Parallelism int
	// Timeout bounds a forwarded request from its send to its last byte
	// (timeoutSeconds); 0 means DefaultTimeout.
	Timeout time.Duration
	// ResponseStartTimeout bounds the wait for the response headers
	// (responseStartTimeoutSeconds); 0 means Timeout.
	ResponseStartTimeout time.Duration
}

// DefaultTimeout is Knative's default revision timeout.
const DefaultTimeout = 300 * time.Second

// Key is "namespace/name".
func (c RevisionConfig) Key() string { return c.Namespace + "/" + c.Name }

// ReplicaInfo is a ready replica.
type ReplicaInfo struct {
	Name    string
	Node    string
	Address string // host:port
}

var (
	errQueueFull = errors.New("queue full")
	errTimeout   = errors.New("no replica became available")
	errRemoved   = errors.New("revision removed")
)

// revision is one revision's replicas, wait queue and accounting at this
// gateway.
type revision struct {
	g       *Gateway
	key     string
	service string

	mu       sync.Mutex
	cc       int
	timeout  time.Duration
	start    time.Duration // response start timeout
	removed  bool
	policy   balance.Policy
	view     balance.View
	nodes    []string   // node names, indexing view.Nodes and dest
	reps     []*replica // parallel to view.Replicas
	gone     []*replica // removed replicas still draining
	waiters  []*waiter
	queued   prometheus.Gauge
	buffered prometheus.Gauge

	// Cumulative demand: the time integral of requests inside the gateway
	// (waiting or in flight) since counting began.
	counting   time.Time
	active     int
	area       float64
	lastChange time.Time
	requests   uint64

	dest []destStats
}

type destStats struct {
	node       string
	count      uint64  // responses with a service sample
	sumService float64 // seconds
	ewma       float64 // nanoseconds
	lastSample time.Time
	lastProbe  time.Time
	// The destination's series, resolved once it first holds a replica
	// (nil before; see metricsLocked): a fleet of n nodes would otherwise
	// keep n series of each per revision at every gateway, n² in all,
	// nearly all of them for nodes no request is sent to.
	ok       prometheus.Counter
	latency  prometheus.Observer
	inflight prometheus.Gauge
	// estimate holds kantai_gateway_estimate_seconds by estimateKinds.
	estimate [len(estimateKinds)]prometheus.Gauge
}

// metricsLocked resolves the series of destination j, once; rev.mu held.
func (rev *revision) metricsLocked(j int) {
	d := &rev.dest[j]
	if d.ok != nil {
		return
	}
	m, origin := rev.g.cfg.Metrics, rev.g.cfg.Node
	d.ok = m.requests.WithLabelValues(rev.service, rev.key, origin, d.node, "200")
	d.latency = m.latency.WithLabelValues(rev.service, rev.key, origin, d.node)
	d.inflight = m.inflight.WithLabelValues(rev.service, rev.key, origin, d.node)
	for k, kind := range estimateKinds {
		d.estimate[k] = m.estimate.WithLabelValues(rev.service, rev.key, origin, d.node, kind)
	}
}

type replica struct {
	info       ReplicaInfo
	node       int
	idx        int // in revision.reps, or -1 once removed
	inflight   int
	url        url.URL
	header     []string
	nodeHeader []string
	// The same as bytes, for the fasthttp engine's answers.
	headerBytes, nodeHeaderBytes []byte
	fast                         atomic.Pointer[fasthttp.HostClient] // the fasthttp engine's client, made on first use
}

type waiter struct{ ch chan *replica }

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan *replica, 1)} }}

// configureLocked applies c; rev.mu held.
func (rev *revision) configureLocked(c RevisionConfig) {
	rev.cc = c.ContainerConcurrency
	rev.timeout = c.Timeout
	if rev.timeout <= 0 {
		rev.timeout = DefaultTimeout
	}
	rev.start = c.ResponseStartTimeout
	if rev.start <= 0 || rev.start > rev.timeout {
		rev.start = rev.timeout
	}
	rev.view.Parallelism = max(c.Parallelism, c.ContainerConcurrency)
	for i := range rev.view.Replicas {
		rev.view.Replicas[i].Capacity = rev.cc
	}
}

// setNodesLocked re-indexes the revision's per-node state on nodes,
// keeping what it knew of nodes that stay; rev.mu held.
func (rev *revision) setNodesLocked(nodes []string, origin int) {
	g := rev.g
	oldNodes, oldView := rev.view.Nodes, make(map[string]balance.Node, len(rev.nodes))
	oldDest := make(map[string]destStats, len(rev.nodes))
	for i, n := range rev.nodes {
		oldView[n] = oldNodes[i]
		oldDest[n] = rev.dest[i]
	}
	rev.nodes = nodes
	rev.view.Origin = origin
	rev.view.Nodes = make([]balance.Node, len(nodes))
	rev.dest = make([]destStats, len(nodes))
	index := make(map[string]int, len(nodes))
	for i, n := range nodes {
		index[n] = i
		rev.view.Nodes[i] = oldView[n]
		d, ok := oldDest[n]
		if !ok {
			d = destStats{node: n}
		}
		rev.dest[i] = d
	}
	for n := range oldDest {
		if _, ok := index[n]; !ok {
			g.cfg.Metrics.forgetDestination(rev.key, g.cfg.Node, n)
		}
	}
	// Replicas on nodes that left are dropped; the rest are re-indexed.
	keep := rev.reps[:0]
	rev.view.Replicas = rev.view.Replicas[:0]
	for _, r := range rev.reps {
		j, ok := index[r.info.Node]
		if !ok {
			r.idx = -1
			if r.inflight > 0 {
				rev.gone = append(rev.gone, r)
			}
			continue
		}
		r.node, r.idx = j, len(keep)
		keep = append(keep, r)
		rev.view.Replicas = append(rev.view.Replicas, balance.Replica{Node: j, InFlight: r.inflight, Capacity: rev.cc})
	}
	rev.reps = keep
	for _, r := range rev.gone {
		if j, ok := index[r.info.Node]; ok {
			r.node = j
		} else {
			r.node = -1
		}
	}
}

// all returns current and removed-but-busy replicas; rev.mu held.
func (rev *revision) all() []*replica {
	if len(rev.gone) == 0 {
		return rev.reps
	}
	return append(append([]*replica(nil), rev.reps...), rev.gone...)
}

func (rev *revision) integrateLocked(now time.Time) {
	if now.After(rev.lastChange) {
		rev.area += float64(rev.active) * now.Sub(rev.lastChange).Seconds()
		rev.lastChange = now
	}
}

// pickLocked asks the policy for a replica and takes a slot on it.
func (rev *revision) pickLocked() *replica {
	k := rev.policy.Pick(&rev.view)
	if k < 0 {
		return nil
	}
	r := rev.reps[k]
	r.inflight++
	rev.view.Replicas[k].InFlight++
	if n := &rev.view.Nodes[r.node]; n.Probe {
		n.Probe = false
		rev.dest[r.node].lastProbe = rev.g.now()
	}
	return r
}

// dispatchLocked hands free capacity to waiting requests, oldest first.
func (rev *revision) dispatchLocked() {
	for len(rev.waiters) > 0 {
		r := rev.pickLocked()
		if r == nil {
			return
		}
		w := rev.waiters[0]
		copy(rev.waiters, rev.waiters[1:])
		rev.waiters[len(rev.waiters)-1] = nil
		rev.waiters = rev.waiters[:len(rev.waiters)-1]
		w.ch <- r
	}
}

// acquire returns a replica with a slot taken for this request, waiting
// for one up to the activation timeout.
func (rev *revision) acquire(ctx context.Context, now time.Time) (*replica, error) {
	rev.mu.Lock()
	if rev.removed {
		rev.mu.Unlock()
		return nil, errRemoved
	}
	rev.integrateLocked(now)
	rev.active++
	rev.requests++
	if len(rev.waiters) == 0 {
		if r := rev.pickLocked(); r != nil {
			rev.mu.Unlock()
			return r, nil
		}
	}
	if len(rev.waiters) >= rev.g.cfg.QueueDepth {
		rev.active--
		rev.mu.Unlock()
		return nil, errQueueFull
	}
	w := waiterPool.Get().(*waiter)
	rev.waiters = append(rev.waiters, w)
	cold := len(rev.reps) == 0
	rev.mu.Unlock()
	if cold {
		rev.g.cfg.OnDemand(rev.key)
	}
	t := time.NewTimer(rev.g.cfg.ActivationTimeout)
	defer t.Stop()
	var err error
	select {
	case r := <-w.ch:
		waiterPool.Put(w)
		if r == nil {
			rev.leave(rev.g.now(), true)
			return nil, errRemoved
		}
		return r, nil
	case <-t.C:
		err = errTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	rev.mu.Lock()
	for i, x := range rev.waiters {
		if x == w {
			rev.waiters = append(rev.waiters[:i], rev.waiters[i+1:]...)
			rev.integrateLocked(rev.g.now())
			rev.active--
			rev.mu.Unlock()
			waiterPool.Put(w)
			return nil, err
		}
	}
	rev.mu.Unlock()
	// A replica was handed over as we gave up: give it back.
	if r := <-w.ch; r != nil {
		rev.release(r, rev.g.now(), -1)
	} else {
		rev.leave(rev.g.now(), false)
	}
	waiterPool.Put(w)
	return nil, err
}

// leave accounts for a request that leaves without a replica; uncount
// takes it out of the request count too (it will be counted where it is
// re-dispatched).
func (rev *revision) leave(now time.Time, uncount bool) {
	rev.mu.Lock()
	rev.integrateLocked(now)
	rev.active--
	if uncount {
		rev.requests--
	}
	rev.mu.Unlock()
}

// release returns a replica's slot; service < 0 means no sample.
func (rev *revision) release(r *replica, now time.Time, service time.Duration) {
	rev.mu.Lock()
	rev.integrateLocked(now)
	rev.active--
	r.inflight--
	if r.idx >= 0 {
		rev.view.Replicas[r.idx].InFlight--
	} else if r.inflight == 0 {
		rev.forgetLocked(r)
	}
	if service >= 0 && r.node >= 0 {
		d := &rev.dest[r.node]
		d.count++
		d.sumService += service.Seconds()
		if d.lastSample.IsZero() || now.Sub(d.lastSample) > staleService {
			d.ewma = float64(service)
		} else {
			d.ewma += serviceAlpha * (float64(service) - d.ewma)
		}
		d.lastSample = now
		rev.view.Nodes[r.node].Service = time.Duration(d.ewma)
	}
	rev.dispatchLocked()
	rev.mu.Unlock()
}

func (rev *revision) forgetLocked(r *replica) {
	for i, x := range rev.gone {
		if x == r {
			rev.gone = append(rev.gone[:i], rev.gone[i+1:]...)
			return
		}
	}
}

// staleService is how long a fresh service estimate stays in use without
// new samples; after that the policy falls back to the fleet-wide figure, so
// a node once congested is tried again.
const staleService = 2 * time.Second

// probeInterval is the least time between two probes of one node for one
// revision at one gateway: the bound on requests spent on learning.
const probeInterval = 5 * time.Second

// serviceAlpha weights new samples in the fresh service estimate: about the
// last ten responses matter.
const serviceAlpha = 0.2
