// Package gateway is kantai's per-node gateway: ingress, request buffer and
// load balancer in one process step. A request enters at the gateway of the
// node where it originates; the gateway finds the function by Host, waits
// for a replica with room if there is none (scale from zero, concurrency
// limits), lets the configured policy choose a replica, and forwards.
//
// Outcomes are documented statuses, never silent drops: 404 for an unknown
// host, 503 with Retry-After when the wait queue is full, 504 when no
// replica became available within the activation timeout, 502 when the
// replica failed to answer.
//
// The request path holds a function's lock only to pick a replica and to
// account for its return; never across I/O.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kantai.dev/kantai/internal/balance"
)

// Response headers telling the client who served it.
const (
	HeaderReplica = "X-Kantai-Replica"
	HeaderNode    = "X-Kantai-Node"
)

// Config configures one node's gateway.
type Config struct {
	// Node is this gateway's node; Nodes lists every node of the fleet.
	Node  string
	Nodes []string
	// Domain is the external domain (name.namespace.<domain>).
	Domain string
	// Policy names the load-balancing policy (see package balance).
	Policy string
	// QueueDepth bounds the requests waiting per function.
	QueueDepth int
	// ActivationTimeout bounds a request's wait for a replica with room.
	ActivationTimeout time.Duration
	// Transport forwards to replicas; it dials through the node's links.
	Transport http.RoundTripper
	// RTT returns the measured round-trip time to another node.
	RTT func(node string) (time.Duration, bool)
	// OnDemand is told at once when a request waits for a function that has
	// no ready replica here; it must not block.
	OnDemand func(function string)
	Metrics  *Metrics
	Log      *slog.Logger
	Seed     uint64
}

// FunctionConfig is what the gateway needs to know about a function.
type FunctionConfig struct {
	Namespace, Name string
	// ContainerConcurrency is the hard in-flight limit per replica (0: none).
	ContainerConcurrency int
	// Parallelism hints how many requests a replica processes at once.
	Parallelism int
}

// Key is "namespace/name".
func (f FunctionConfig) Key() string { return f.Namespace + "/" + f.Name }

// ReplicaInfo is a ready replica.
type ReplicaInfo struct {
	Name    string
	Node    string
	Address string // host:port
}

// Gateway serves one node.
type Gateway struct {
	cfg    Config
	origin int
	index  map[string]int

	routes atomic.Pointer[map[string]*function]
	mu     sync.Mutex // serialises configuration changes
	fns    map[string]*function

	bufs sync.Pool
}

var (
	errQueueFull = errors.New("queue full")
	errTimeout   = errors.New("no replica became available")
)

// New builds a gateway; it serves nothing until functions are set.
func New(cfg Config) (*Gateway, error) {
	g := &Gateway{cfg: cfg, index: map[string]int{}, fns: map[string]*function{}, origin: -1}
	for i, n := range cfg.Nodes {
		g.index[n] = i
		if n == cfg.Node {
			g.origin = i
		}
	}
	if g.origin < 0 {
		return nil, fmt.Errorf("gateway node %q is not among the fleet's nodes", cfg.Node)
	}
	if !balance.Known(cfg.Policy) {
		_, err := balance.New(cfg.Policy, nil)
		return nil, err
	}
	if cfg.Transport == nil {
		return nil, fmt.Errorf("gateway %s: no transport", cfg.Node)
	}
	if cfg.Log == nil {
		g.cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		g.cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if cfg.QueueDepth <= 0 {
		g.cfg.QueueDepth = 1000
	}
	if cfg.ActivationTimeout <= 0 {
		g.cfg.ActivationTimeout = 30 * time.Second
	}
	if cfg.OnDemand == nil {
		g.cfg.OnDemand = func(string) {}
	}
	g.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	empty := map[string]*function{}
	g.routes.Store(&empty)
	return g, nil
}

// Node is the gateway's node name.
func (g *Gateway) Node() string { return g.cfg.Node }

// SetFunction adds or updates a function.
func (g *Gateway) SetFunction(fc FunctionConfig) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.fns[fc.Key()]; ok {
		f.mu.Lock()
		f.cc = fc.ContainerConcurrency
		f.view.Parallelism = max(fc.Parallelism, fc.ContainerConcurrency)
		for i := range f.view.Replicas {
			f.view.Replicas[i].Capacity = f.cc
		}
		f.dispatchLocked()
		f.mu.Unlock()
		return
	}
	seed := g.cfg.Seed ^ uint64(len(g.fns)+1)*0x9e3779b97f4a7c15
	policy, err := balance.New(g.cfg.Policy, rand.New(rand.NewPCG(seed, seed>>1|1)))
	if err != nil { // checked in New
		panic(err)
	}
	f := &function{g: g, key: fc.Key(), cc: fc.ContainerConcurrency, policy: policy, lastChange: time.Now()}
	f.view.Origin = g.origin
	f.view.Nodes = make([]balance.Node, len(g.cfg.Nodes))
	f.view.Parallelism = max(fc.Parallelism, fc.ContainerConcurrency)
	f.dest = make([]destStats, len(g.cfg.Nodes))
	origin := g.cfg.Node
	for i, n := range g.cfg.Nodes {
		f.dest[i].ok = g.cfg.Metrics.requests.WithLabelValues(f.key, origin, n, "200")
		f.dest[i].latency = g.cfg.Metrics.latency.WithLabelValues(f.key, origin, n)
		f.dest[i].inflight = g.cfg.Metrics.inflight.WithLabelValues(f.key, origin, n)
	}
	f.queued = g.cfg.Metrics.queued.WithLabelValues(f.key, origin)
	f.buffered = g.cfg.Metrics.buffered.WithLabelValues(f.key, origin)
	g.fns[f.key] = f
	g.publishRoutesLocked()
}

// RemoveFunction stops routing a function; waiting requests get 404.
func (g *Gateway) RemoveFunction(key string) {
	g.mu.Lock()
	f, ok := g.fns[key]
	delete(g.fns, key)
	g.publishRoutesLocked()
	g.mu.Unlock()
	if ok {
		f.mu.Lock()
		f.removed = true
		for _, w := range f.waiters {
			w.ch <- nil
		}
		f.waiters = f.waiters[:0]
		f.mu.Unlock()
		g.cfg.Metrics.forget(key, g.cfg.Node)
	}
}

func (g *Gateway) publishRoutesLocked() {
	routes := make(map[string]*function, 4*len(g.fns))
	for _, f := range g.fns {
		ns, name := splitKey(f.key)
		for _, h := range hostKeys(name, ns, g.cfg.Domain) {
			routes[h] = f
		}
	}
	g.routes.Store(&routes)
}

func splitKey(key string) (ns, name string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}

func (g *Gateway) function(key string) *function {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fns[key]
}

// SetReplicas replaces a function's ready replicas. Replicas left out stop
// receiving new requests; those in flight finish (see InFlight).
func (g *Gateway) SetReplicas(key string, replicas []ReplicaInfo) {
	f := g.function(key)
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := make(map[string]*replica, len(f.reps))
	for _, r := range f.reps {
		old[r.info.Name] = r
		r.idx = -1
	}
	for _, r := range f.gone {
		old[r.info.Name] = r
	}
	f.gone = nil // rebuilt below from what is left in old
	f.reps = f.reps[:0]
	f.view.Replicas = f.view.Replicas[:0]
	for _, info := range replicas {
		node, ok := g.index[info.Node]
		if !ok {
			g.cfg.Log.Warn("replica on unknown node ignored", "replica", info.Name, "node", info.Node)
			continue
		}
		r := old[info.Name]
		if r == nil {
			r = &replica{info: info, node: node,
				url:    url.URL{Scheme: "http", Host: info.Address},
				header: []string{info.Name}, nodeHeader: []string{info.Node}}
		}
		r.idx = len(f.reps)
		f.reps = append(f.reps, r)
		f.view.Replicas = append(f.view.Replicas, balance.Replica{Node: node, InFlight: r.inflight, Capacity: f.cc})
		delete(old, info.Name)
	}
	for _, r := range old {
		if r.inflight > 0 {
			f.gone = append(f.gone, r)
		}
	}
	f.dispatchLocked()
}

// InFlight returns the requests this gateway has outstanding at a replica,
// so that a replica is stopped only once drained.
func (g *Gateway) InFlight(key, replicaName string) int {
	f := g.function(key)
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.all() {
		if r.info.Name == replicaName {
			n += r.inflight
		}
	}
	return n
}

// SetProcessing sets the function's fleet-wide processing time per node.
func (g *Gateway) SetProcessing(key string, perNode map[string]time.Duration) {
	f := g.function(key)
	if f == nil {
		return
	}
	f.mu.Lock()
	for n, d := range perNode {
		if j, ok := g.index[n]; ok {
			f.view.Nodes[j].Processing = d
		}
	}
	f.mu.Unlock()
}

// Report is one function's demand and service seen by this gateway since
// the previous report.
type Report struct {
	Function string
	// Concurrency is the time-averaged number of requests inside the
	// gateway (waiting or in flight) — the autoscaler's input.
	Concurrency float64
	Requests    uint64
	// Waiting is the number of requests waiting right now.
	Waiting int
	Dest    []DestReport
}

// DestReport is what this gateway saw of one destination node.
type DestReport struct {
	Node     string
	Requests uint64
	// MeanService is the mean of response time minus measured RTT.
	MeanService time.Duration
	InFlight    int
}

// Report returns every function's figures since the last call and
// refreshes the latency view; the fleet calls it about once a second.
func (g *Gateway) Report() []Report {
	now := time.Now()
	rtts := make([]time.Duration, len(g.cfg.Nodes))
	for j, n := range g.cfg.Nodes {
		if j != g.origin && g.cfg.RTT != nil {
			if d, ok := g.cfg.RTT(n); ok {
				rtts[j] = d
			}
		}
	}
	g.mu.Lock()
	fns := make([]*function, 0, len(g.fns))
	for _, f := range g.fns {
		fns = append(fns, f)
	}
	g.mu.Unlock()
	out := make([]Report, 0, len(fns))
	for _, f := range fns {
		f.mu.Lock()
		f.integrateLocked(now)
		rep := Report{Function: f.key, Requests: f.requests, Waiting: len(f.waiters)}
		if el := now.Sub(f.periodStart).Seconds(); el > 0 {
			rep.Concurrency = f.area / el
		}
		f.area, f.requests, f.periodStart = 0, 0, now
		inflight := make([]int, len(g.cfg.Nodes))
		for _, r := range f.all() {
			inflight[r.node] += r.inflight
		}
		for j := range f.dest {
			d := &f.dest[j]
			f.view.Nodes[j].RTT = rtts[j]
			if now.Sub(d.lastSample) > staleService {
				f.view.Nodes[j].Service = 0
			}
			if d.count > 0 || inflight[j] > 0 {
				dr := DestReport{Node: g.cfg.Nodes[j], Requests: d.count, InFlight: inflight[j]}
				if d.count > 0 {
					dr.MeanService = time.Duration(d.sumService / float64(d.count))
				}
				rep.Dest = append(rep.Dest, dr)
			}
			d.count, d.sumService = 0, 0
			d.inflight.Set(float64(inflight[j]))
		}
		f.queued.Set(float64(len(f.waiters)))
		if len(f.reps) == 0 {
			f.buffered.Set(float64(len(f.waiters)))
		} else {
			f.buffered.Set(0)
		}
		f.mu.Unlock()
		out = append(out, rep)
	}
	return out
}

// staleService is how long a fresh service estimate stays in use without
// new samples; after that the policy falls back to the fleet-wide figure, so
// a node once congested is tried again.
const staleService = 2 * time.Second

// serviceAlpha weights new samples in the fresh service estimate: about the
// last ten responses matter.
const serviceAlpha = 0.2

type function struct {
	g   *Gateway
	key string

	mu       sync.Mutex
	cc       int
	removed  bool
	policy   balance.Policy
	view     balance.View
	reps     []*replica // parallel to view.Replicas
	gone     []*replica // removed replicas still draining
	waiters  []*waiter
	queued   prometheus.Gauge
	buffered prometheus.Gauge

	// demand: time integral of requests inside the gateway
	active      int
	area        float64
	lastChange  time.Time
	periodStart time.Time
	requests    uint64

	dest []destStats
}

type destStats struct {
	count      uint64
	sumService float64
	ewma       float64
	lastSample time.Time
	ok         prometheus.Counter
	latency    prometheus.Observer
	inflight   prometheus.Gauge
}

type replica struct {
	info       ReplicaInfo
	node       int
	idx        int // in function.reps, or -1 once removed
	inflight   int
	url        url.URL
	header     []string
	nodeHeader []string
}

type waiter struct{ ch chan *replica }

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan *replica, 1)} }}

// all returns current and removed-but-busy replicas; f.mu held.
func (f *function) all() []*replica {
	if len(f.gone) == 0 {
		return f.reps
	}
	return append(append([]*replica(nil), f.reps...), f.gone...)
}

func (f *function) integrateLocked(now time.Time) {
	if f.periodStart.IsZero() {
		f.periodStart = f.lastChange
	}
	f.area += float64(f.active) * now.Sub(f.lastChange).Seconds()
	f.lastChange = now
}

// pickLocked asks the policy for a replica and takes a slot on it.
func (f *function) pickLocked() *replica {
	k := f.policy.Pick(&f.view)
	if k < 0 {
		return nil
	}
	r := f.reps[k]
	r.inflight++
	f.view.Replicas[k].InFlight++
	return r
}

// dispatchLocked hands free capacity to waiting requests, oldest first.
func (f *function) dispatchLocked() {
	for len(f.waiters) > 0 {
		r := f.pickLocked()
		if r == nil {
			return
		}
		w := f.waiters[0]
		copy(f.waiters, f.waiters[1:])
		f.waiters[len(f.waiters)-1] = nil
		f.waiters = f.waiters[:len(f.waiters)-1]
		w.ch <- r
	}
}

// acquire returns a replica with a slot taken for this request.
func (f *function) acquire(ctx context.Context, now time.Time) (*replica, error) {
	f.mu.Lock()
	if f.removed {
		f.mu.Unlock()
		return nil, errRemoved
	}
	f.integrateLocked(now)
	f.active++
	f.requests++
	if len(f.waiters) == 0 {
		if r := f.pickLocked(); r != nil {
			f.mu.Unlock()
			return r, nil
		}
	}
	if len(f.waiters) >= f.g.cfg.QueueDepth {
		f.integrateLocked(now)
		f.active--
		f.mu.Unlock()
		return nil, errQueueFull
	}
	w := waiterPool.Get().(*waiter)
	f.waiters = append(f.waiters, w)
	cold := len(f.reps) == 0
	f.mu.Unlock()
	if cold {
		f.g.cfg.OnDemand(f.key)
	}
	t := time.NewTimer(f.g.cfg.ActivationTimeout)
	defer t.Stop()
	var err error
	select {
	case r := <-w.ch:
		waiterPool.Put(w)
		if r == nil {
			f.leave(time.Now())
			return nil, errRemoved
		}
		return r, nil
	case <-t.C:
		err = errTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	f.mu.Lock()
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			f.integrateLocked(time.Now())
			f.active--
			f.mu.Unlock()
			waiterPool.Put(w)
			return nil, err
		}
	}
	f.mu.Unlock()
	// A replica was handed over as we gave up: give it back.
	if r := <-w.ch; r != nil {
		f.release(r, time.Now(), -1)
	} else {
		f.leave(time.Now())
	}
	waiterPool.Put(w)
	return nil, err
}

var errRemoved = errors.New("function removed")

// leave accounts for a request that leaves without a replica.
func (f *function) leave(now time.Time) {
	f.mu.Lock()
	f.integrateLocked(now)
	f.active--
	f.mu.Unlock()
}

// release returns a replica's slot; service < 0 means no sample.
func (f *function) release(r *replica, now time.Time, service time.Duration) {
	f.mu.Lock()
	f.integrateLocked(now)
	f.active--
	r.inflight--
	if r.idx >= 0 {
		f.view.Replicas[r.idx].InFlight--
	} else if r.inflight == 0 {
		f.forgetLocked(r)
	}
	if service >= 0 {
		d := &f.dest[r.node]
		d.count++
		d.sumService += float64(service)
		if d.lastSample.IsZero() || now.Sub(d.lastSample) > staleService {
			d.ewma = float64(service)
		} else {
			d.ewma += serviceAlpha * (float64(service) - d.ewma)
		}
		d.lastSample = now
		f.view.Nodes[r.node].Service = time.Duration(d.ewma)
	}
	f.dispatchLocked()
	f.mu.Unlock()
}

func (f *function) forgetLocked(r *replica) {
	for i, x := range f.gone {
		if x == r {
			f.gone = append(f.gone[:i], f.gone[i+1:]...)
			return
		}
	}
}

// ServeHTTP routes, buffers, balances and forwards one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	f := (*g.routes.Load())[routeHost(r.Host)]
	if f == nil {
		g.cfg.Metrics.requests.WithLabelValues("", g.cfg.Node, "none", "404").Inc()
		http.Error(w, "kantai: no function serves host "+strconv.Quote(r.Host), http.StatusNotFound)
		return
	}
	// A request without a body is retried on another replica when the
	// chosen one refuses the connection (it is stopping or has died): then
	// nothing was sent, and the client need not see a replica's end.
	for attempt := 1; ; attempt++ {
		rep, err := f.acquire(r.Context(), start)
		if err != nil {
			g.fail(w, f, err)
			return
		}
		retryable := attempt < maxAttempts && r.ContentLength == 0
		if !g.forward(w, r, f, rep, start, retryable) {
			return
		}
	}
}

// maxAttempts bounds the replicas one request is offered to.
const maxAttempts = 3

// isDialError reports a failure to connect: the request never left.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (g *Gateway) fail(w http.ResponseWriter, f *function, err error) {
	code := http.StatusServiceUnavailable
	msg := "kantai: " + f.key + ": "
	switch {
	case errors.Is(err, errQueueFull):
		w.Header().Set("Retry-After", "1")
		msg += "too many requests waiting; retry later"
	case errors.Is(err, errTimeout):
		code = http.StatusGatewayTimeout
		msg += "no replica became available within " + g.cfg.ActivationTimeout.String()
	case errors.Is(err, errRemoved):
		code = http.StatusNotFound
		msg += "function was deleted"
	default: // the client went away; nobody reads the answer
		code = 499
		msg += err.Error()
	}
	g.cfg.Metrics.requests.WithLabelValues(f.key, g.cfg.Node, "none", strconv.Itoa(code)).Inc()
	if code == 499 {
		return
	}
	http.Error(w, msg, code)
}

// isHopHeader reports the connection-level headers that are never
// forwarded (RFC 9110 §7.6.1), by their canonical names. A switch on the
// length costs a comparison or two per header, where deleting each name
// from the copy cost a map lookup per name per request.
func isHopHeader(k string) bool {
	switch len(k) {
	case 2:
		return k == "Te"
	case 7:
		return k == "Trailer" || k == "Upgrade"
	case 10:
		return k == "Connection" || k == "Keep-Alive"
	case 16:
		return k == "Proxy-Connection"
	case 17:
		return k == "Transfer-Encoding"
	case 18:
		return k == "Proxy-Authenticate"
	case 19:
		return k == "Proxy-Authorization"
	}
	return false
}

// copyHeader copies src into dst without the hop-by-hop headers, nor those
// that src's Connection header names. Values are shared, not copied.
func copyHeader(dst, src http.Header) {
	for k, v := range src {
		if !isHopHeader(k) {
			dst[k] = v
		}
	}
	for _, v := range src["Connection"] {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if name = trimSpace(name); name != "" {
				delete(dst, http.CanonicalHeaderKey(name))
			}
		}
	}
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// forward sends the request to rep and copies the answer back. It returns
// true, having written nothing, when retryable and the replica could not be
// reached, so the caller may choose another.
func (g *Gateway) forward(w http.ResponseWriter, in *http.Request, f *function, rep *replica, start time.Time, retryable bool) bool {
	// The outbound request is not pooled: http.Transport may still read it
	// (headers included) from its write loop after returning the response,
	// and nothing tells us reliably when that is over.
	out := new(http.Request)
	*out = *in // shallow: keeps the context and body
	u := rep.url
	u.Path, u.RawPath, u.RawQuery = in.URL.Path, in.URL.RawPath, in.URL.RawQuery
	out.URL = &u
	out.RequestURI = ""
	out.Close = false
	out.Header = make(http.Header, len(in.Header)+1)
	copyHeader(out.Header, in.Header)
	if host, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			host = prior[len(prior)-1] + ", " + host
		}
		out.Header["X-Forwarded-For"] = []string{host}
	}
	if in.ContentLength == 0 {
		out.Body = nil // lets the transport reuse connections freely
	}
	sent := time.Now()
	resp, err := g.cfg.Transport.RoundTrip(out)
	now := time.Now()
	if err != nil {
		f.release(rep, now, -1)
		g.cfg.Log.Debug("forwarding failed", "function", f.key, "replica", rep.info.Name, "err", err)
		if retryable && isDialError(err) && in.Context().Err() == nil {
			return true
		}
		code := http.StatusBadGateway
		if in.Context().Err() != nil {
			code = 499
		}
		g.cfg.Metrics.requests.WithLabelValues(f.key, g.cfg.Node, rep.info.Node, strconv.Itoa(code)).Inc()
		if code == 499 {
			return false
		}
		http.Error(w, "kantai: replica "+rep.info.Name+" did not answer: "+err.Error(), code)
		return false
	}
	service := now.Sub(sent)
	if rep.node != g.origin {
		if rtt, ok := g.cfg.RTT(rep.info.Node); ok {
			service = max(service-rtt, 0)
		}
	}
	h := w.Header()
	copyHeader(h, resp.Header)
	h[HeaderReplica] = rep.header
	h[HeaderNode] = rep.nodeHeader
	w.WriteHeader(resp.StatusCode)
	d := &f.dest[rep.node]
	d.latency.Observe(now.Sub(start).Seconds())
	if resp.StatusCode == http.StatusOK {
		d.ok.Inc()
	} else {
		g.cfg.Metrics.requests.WithLabelValues(f.key, g.cfg.Node, rep.info.Node, strconv.Itoa(resp.StatusCode)).Inc()
	}
	// The slot is released once the body is through, so in-flight counts
	// cover streaming responses too.
	bp := g.bufs.Get().(*[]byte)
	copyBody(w, resp.Body, *bp, resp.ContentLength < 0)
	g.bufs.Put(bp)
	resp.Body.Close()
	f.release(rep, time.Now(), service)
	return false
}

// copyBody copies a response body through buf. With flush (a response of
// unknown length) each chunk is flushed, so streamed answers reach the
// client as they are produced. It writes with Write, not through the
// server's ReadFrom, whose detour allocates and copies through a buffer of
// its own before writing the same way.
func copyBody(w http.ResponseWriter, body io.Reader, buf []byte, flush bool) {
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc != nil {
				_ = rc.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}
