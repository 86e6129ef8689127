// Package gateway is kantai's per-node gateway: ingress, request buffer and
// load balancer in one process step. A request enters at the gateway of the
// node where it originates; the gateway finds the route by Host, picks a
// revision by the route's percents, waits for a replica with room if there
// is none (scale from zero, concurrency limits), lets the configured policy
// choose a replica, and forwards.
//
// The gateway is fed, not wired: a route table (hosts → revisions with
// percents), each revision's settings and ready replicas, the node set,
// and processing estimates come from its home (the local fleet or the
// Kubernetes controllers); it hands back cumulative Stats.
//
// Outcomes are documented statuses, never silent drops: 404 for an unknown
// host, 503 with Retry-After when the wait queue is full, 504 when no
// replica became available within the activation timeout or the revision's
// timeout passed, 502 when the replica failed to answer.
//
// The request path holds a revision's lock only to pick a replica and to
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
	"net/http/httptrace"
	"net/url"
	"slices"
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
	// Node is this gateway's node; Nodes lists every node of the fleet at
	// start (SetNodes changes it).
	Node  string
	Nodes []string
	// Policy names the load-balancing policy (see package balance).
	Policy string
	// QueueDepth bounds the requests waiting per revision.
	QueueDepth int
	// ActivationTimeout bounds a request's wait for a replica with room.
	ActivationTimeout time.Duration
	// Transport forwards to replicas with the net/http engine; it dials
	// through the node's links. Default NewTransport(Dial).
	Transport http.RoundTripper
	// Dial connects to a replica for the fasthttp engine (FastHandler);
	// default TCP with a 30 s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RTT returns the measured round-trip time to another node.
	RTT func(node string) (time.Duration, bool)
	// OnDemand is told at once when a request waits for a revision that has
	// no ready replica here; it must not block.
	OnDemand func(revision string)
	// Now is the clock of the gateway's accounting; default monoNow, the
	// monotonic clock.
	Now     func() time.Time
	Metrics *Metrics
	Log     *slog.Logger
	Seed    uint64
}

// Gateway serves one node.
type Gateway struct {
	cfg   Config
	epoch uint64

	routes atomic.Pointer[table]

	mu        sync.Mutex // serialises configuration changes
	nodes     []string
	origin    int
	revs      map[string]*revision
	routeSpec []Route
	seq       uint64

	bufs sync.Pool
}

// New builds a gateway; it serves nothing until routes are set.
func New(cfg Config) (*Gateway, error) {
	g := &Gateway{cfg: cfg, revs: map[string]*revision{}}
	if !balance.Known(cfg.Policy) {
		_, err := balance.New(cfg.Policy, nil)
		return nil, err
	}
	if cfg.Dial == nil {
		g.cfg.Dial = defaultDial()
	}
	if cfg.Transport == nil {
		g.cfg.Transport = NewTransport(cfg.Dial)
	}
	if err := g.SetNodes(cfg.Nodes); err != nil {
		return nil, err
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
	if cfg.Now == nil {
		g.cfg.Now = monoNow
	}
	g.epoch = rand.Uint64() | 1
	g.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	g.routes.Store(buildTable(nil, nil))
	return g, nil
}

// Node is the gateway's node name.
func (g *Gateway) Node() string { return g.cfg.Node }

// Epoch identifies this gateway's life: Stats counters restart with it.
func (g *Gateway) Epoch() uint64 { return g.epoch }

func (g *Gateway) now() time.Time { return g.cfg.Now() }

// clockBase anchors monoNow.
var clockBase = time.Now()

// monoNow is time.Now from the monotonic clock alone. time.Now reads the
// wall clock too, a second call into the vDSO, and a forwarded request
// reads the clock several times: about 40 ns a read against 30. The wall
// time it carries is the process's start plus the monotonic time since,
// so it does not follow steps of the system clock; what the gateway takes
// from it are durations, deadlines and the order of events, which a step
// would only have disturbed.
func monoNow() time.Time { return clockBase.Add(time.Since(clockBase)) }

// SetNodes changes the set of nodes replicas may be on. Replicas on nodes
// that leave stop receiving requests; what the gateway knew of the nodes
// that stay is kept.
func (g *Gateway) SetNodes(nodes []string) error {
	origin := slices.Index(nodes, g.cfg.Node)
	if origin < 0 {
		return fmt.Errorf("gateway node %q is not among the fleet's nodes %v", g.cfg.Node, nodes)
	}
	nodes = slices.Clone(nodes)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nodes, g.origin = nodes, origin
	for _, rev := range g.revs {
		rev.mu.Lock()
		rev.setNodesLocked(nodes, origin)
		rev.dispatchLocked()
		rev.mu.Unlock()
	}
	return nil
}

// SetRevision adds or updates a revision. It receives requests once a
// route names it.
func (g *Gateway) SetRevision(c RevisionConfig) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if rev, ok := g.revs[c.Key()]; ok {
		rev.mu.Lock()
		rev.configureLocked(c)
		rev.dispatchLocked()
		rev.mu.Unlock()
		return
	}
	g.seq++
	seed := g.cfg.Seed ^ g.seq*0x9e3779b97f4a7c15
	policy, err := balance.New(g.cfg.Policy, rand.New(rand.NewPCG(seed, seed>>1|1)))
	if err != nil { // checked in New
		panic(err)
	}
	now := g.now()
	rev := &revision{g: g, key: c.Key(), service: c.Service, policy: policy, counting: now, lastChange: now}
	rev.queued = g.cfg.Metrics.queued.WithLabelValues(rev.service, rev.key, g.cfg.Node)
	rev.buffered = g.cfg.Metrics.buffered.WithLabelValues(rev.service, rev.key, g.cfg.Node)
	rev.configureLocked(c)
	rev.setNodesLocked(g.nodes, g.origin)
	g.revs[rev.key] = rev
	g.publishRoutesLocked()
}

// RemoveRevision forgets a revision and its metrics. Requests waiting for
// it are routed again: to another revision if the route table has one for
// their host by now, else they get 404.
func (g *Gateway) RemoveRevision(key string) {
	g.mu.Lock()
	rev, ok := g.revs[key]
	delete(g.revs, key)
	g.publishRoutesLocked()
	g.mu.Unlock()
	if !ok {
		return
	}
	rev.mu.Lock()
	rev.removed = true
	for _, w := range rev.waiters {
		w.ch <- nil
	}
	rev.waiters = rev.waiters[:0]
	rev.mu.Unlock()
	g.cfg.Metrics.forgetRevision(key, g.cfg.Node)
}

// SetRoutes replaces the route table. A target may name a revision the
// gateway does not know yet: its requests get 503 until SetRevision.
func (g *Gateway) SetRoutes(routes []Route) error {
	if err := checkRoutes(routes); err != nil {
		return fmt.Errorf("gateway %s: %w", g.cfg.Node, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.routeSpec = routes
	g.publishRoutesLocked()
	return nil
}

func (g *Gateway) publishRoutesLocked() {
	g.routes.Store(buildTable(g.routeSpec, g.revs))
}

func (g *Gateway) revision(key string) *revision {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.revs[key]
}

func (g *Gateway) revisionsSorted() []*revision {
	g.mu.Lock()
	out := make([]*revision, 0, len(g.revs))
	for _, rev := range g.revs {
		out = append(out, rev)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b *revision) int { return strings.Compare(a.key, b.key) })
	return out
}

// SetReplicas replaces a revision's ready replicas. Replicas left out stop
// receiving new requests; those in flight finish (see InFlight).
func (g *Gateway) SetReplicas(key string, replicas []ReplicaInfo) {
	rev := g.revision(key)
	if rev == nil {
		return
	}
	rev.mu.Lock()
	defer rev.mu.Unlock()
	index := make(map[string]int, len(rev.nodes))
	for i, n := range rev.nodes {
		index[n] = i
	}
	old := make(map[string]*replica, len(rev.reps))
	for _, r := range rev.reps {
		old[r.info.Name] = r
		r.idx = -1
	}
	for _, r := range rev.gone {
		old[r.info.Name] = r
	}
	rev.gone = nil // rebuilt below from what is left in old
	rev.reps = rev.reps[:0]
	rev.view.Replicas = rev.view.Replicas[:0]
	for _, info := range replicas {
		node, ok := index[info.Node]
		if !ok {
			g.cfg.Log.Warn("replica on unknown node ignored", "replica", info.Name, "node", info.Node)
			continue
		}
		r := old[info.Name]
		if r == nil {
			r = &replica{info: info,
				url:    url.URL{Scheme: "http", Host: info.Address},
				header: []string{info.Name}, nodeHeader: []string{info.Node},
				headerBytes: []byte(info.Name), nodeHeaderBytes: []byte(info.Node)}
		}
		r.node = node
		r.idx = len(rev.reps)
		rev.reps = append(rev.reps, r)
		rev.metricsLocked(node)
		rev.view.Replicas = append(rev.view.Replicas, balance.Replica{Node: node, InFlight: r.inflight, Capacity: rev.cc})
		delete(old, info.Name)
	}
	for _, r := range old {
		if r.inflight > 0 {
			rev.gone = append(rev.gone, r)
		}
	}
	rev.dispatchLocked()
}

// InFlight returns the requests this gateway has outstanding at a replica,
// so that a replica is stopped only once drained.
func (g *Gateway) InFlight(key, replicaName string) int {
	rev := g.revision(key)
	if rev == nil {
		return 0
	}
	rev.mu.Lock()
	defer rev.mu.Unlock()
	n := 0
	for _, r := range rev.all() {
		if r.info.Name == replicaName {
			n += r.inflight
		}
	}
	return n
}

// SetProcessing sets the revision's processing time per node, as its
// control step estimates it from every gateway's samples.
func (g *Gateway) SetProcessing(key string, perNode map[string]time.Duration) {
	rev := g.revision(key)
	if rev == nil {
		return
	}
	rev.mu.Lock()
	for j, n := range rev.nodes {
		if d, ok := perNode[n]; ok {
			rev.view.Nodes[j].Processing = d
		}
	}
	rev.mu.Unlock()
}

// ServeHTTP routes, buffers, balances and forwards one request: the
// in-cluster listener, which serves every route (see External).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(g, httpExchange{w: w, r: r}, false)
}

// exchange is one forwarding engine's side of a request: what the shared
// decisions read of it and how their answers reach the client. Engines
// pass it by value to the generic serve, so calls through it are direct
// and nothing escapes to the heap on its account.
type exchange interface {
	requestView
	// rawHost is the Host the request came with, unnormalised.
	rawHost() string
	// requestURI is the request's target as received, for a redirect.
	requestURI() string
	// path is the request's path, for an error message.
	path() string
	// bodyless reports a request declared without a body, which may be
	// offered to another replica when its first could not be reached.
	bodyless() bool
	// context ends when the client is gone, as far as the engine knows.
	context() context.Context
	// reply answers with a plain-text error; retryAfter adds
	// "Retry-After: 1".
	reply(code int, msg string, retryAfter bool)
	// redirect answers with a redirect to location.
	redirect(location string, code int)
	// forward sends the request to rep and relays the answer; it returns
	// true, having written nothing, when retryable and rep could not be
	// reached, so that another replica may be chosen.
	forward(g *Gateway, rev *revision, t *target, rep *replica, start time.Time, retryable bool) bool
}

// serve is the request path both engines share: route, wait for a
// replica, forward, and offer the request again when nothing was sent
// for it yet: when the revision it waited for was removed (a rollout: the
// route now names another), and, without a body, when the chosen replica
// refused the connection (it is stopping or has died), so the client need
// not see a replica's end.
func serve[X exchange](g *Gateway, x X, external bool) {
	start := g.now()
	host := routeHost(x.rawHost())
	for attempt := 1; ; attempt++ {
		t, why, detail := find(g.routes.Load(), host, x, external)
		if t == nil {
			unrouted(g, x, why, host, detail)
			return
		}
		rev := t.rev
		if rev == nil {
			g.cfg.Metrics.requests.WithLabelValues("", t.revision, g.cfg.Node, "none", "503").Inc()
			x.reply(http.StatusServiceUnavailable, "kantai: revision "+t.revision+" is not known at this gateway yet", true)
			return
		}
		rep, err := rev.acquire(x.context(), start)
		if err != nil {
			if errors.Is(err, errRemoved) && attempt < maxAttempts {
				continue
			}
			if code, msg, retryAfter := g.failure(rev, err); code != 499 {
				x.reply(code, msg, retryAfter)
			}
			return
		}
		retryable := attempt < maxAttempts && x.bodyless()
		if !x.forward(g, rev, t, rep, start, retryable) {
			return
		}
	}
}

// maxAttempts bounds the times one request is offered to a revision.
const maxAttempts = 3

// isDialError reports a failure to connect: the request never left.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// failure is the answer to a request that got no replica of rev, counted;
// 499 (the client went away) is not to be written.
func (g *Gateway) failure(rev *revision, err error) (code int, msg string, retryAfter bool) {
	code = http.StatusServiceUnavailable
	msg = "kantai: " + rev.key + ": "
	switch {
	case errors.Is(err, errQueueFull):
		retryAfter = true
		msg += "too many requests waiting; retry later"
	case errors.Is(err, errTimeout):
		code = http.StatusGatewayTimeout
		msg += "no replica became available within " + g.cfg.ActivationTimeout.String()
	case errors.Is(err, errRemoved):
		code = http.StatusNotFound
		msg += "revision was deleted"
	default: // the client went away; nobody reads the answer
		code = 499
		msg += err.Error()
	}
	g.cfg.Metrics.requests.WithLabelValues(rev.service, rev.key, g.cfg.Node, "none", strconv.Itoa(code)).Inc()
	return code, msg, retryAfter
}

// httpExchange is the net/http engine's side of a request.
type httpExchange struct {
	w http.ResponseWriter
	r *http.Request
}

func (x httpExchange) rawHost() string          { return x.r.Host }
func (x httpExchange) requestURI() string       { return x.r.URL.RequestURI() }
func (x httpExchange) path() string             { return x.r.URL.Path }
func (x httpExchange) bodyless() bool           { return x.r.ContentLength == 0 }
func (x httpExchange) context() context.Context { return x.r.Context() }
func (x httpExchange) hasPathPrefix(prefix string) bool {
	return strings.HasPrefix(x.r.URL.Path, prefix)
}
func (x httpExchange) hasHeader(name, value string) bool {
	return slices.Contains(x.r.Header[name], value)
}
func (x httpExchange) overTLS() bool {
	if x.r.TLS != nil {
		return true
	}
	v := x.r.Header["X-Forwarded-Proto"]
	return len(v) > 0 && strings.EqualFold(v[len(v)-1], "https")
}

func (x httpExchange) reply(code int, msg string, retryAfter bool) {
	if retryAfter {
		x.w.Header().Set("Retry-After", "1")
	}
	http.Error(x.w, msg, code)
}

func (x httpExchange) redirect(location string, code int) { http.Redirect(x.w, x.r, location, code) }

func (x httpExchange) forward(g *Gateway, rev *revision, t *target, rep *replica, start time.Time, retryable bool) bool {
	return g.forward(x.w, x.r, rev, t, rep, start, retryable)
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
			switch name = trimSpace(name); {
			case name == "" || strings.EqualFold(name, "close"):
			case strings.EqualFold(name, "keep-alive") || strings.EqualFold(name, "upgrade"):
				// Hop-by-hop already, and not copied: no need to
				// canonicalise (which allocates) to delete them.
			default:
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

// Causes of a forwarded request's end set by the gateway's timer.
var (
	errResponseStart = errors.New("no response headers within the revision's response start timeout")
	errRevTimeout    = errors.New("no complete response within the revision's timeout")
)

// forward sends the request to rep and copies the answer back. It returns
// true, having written nothing, when retryable and the replica could not be
// reached, so the caller may choose another.
func (g *Gateway) forward(w http.ResponseWriter, in *http.Request, rev *revision, t *target, rep *replica, start time.Time, retryable bool) bool {
	// A timer bounds the wait for the headers, then (when that bound is
	// shorter) the rest of the revision's timeout; the cause tells a
	// timeout from a client gone.
	ctx, cancel := context.WithCancelCause(in.Context())
	defer cancel(nil)
	p := rev.plan(rep)
	fl := flightPool.Get().(*flight)
	first, cause := p.firstBound()
	var body *http.ResponseController
	if in.ContentLength != 0 {
		body = http.NewResponseController(w)
	}
	fl.arm(cancel, cause, first, body)
	defer fl.done()

	// The outbound request is not pooled: http.Transport may still read it
	// (headers included) from its write loop after returning the response,
	// and nothing tells us reliably when that is over.
	out := in.WithContext(httptrace.WithClientTrace(ctx, &fl.trace))
	x := &outParts{url: rep.url} // one allocation for the URL and X-Forwarded values
	u := &x.url
	u.Path, u.RawPath, u.RawQuery = in.URL.Path, in.URL.RawPath, in.URL.RawQuery
	out.URL = u
	out.RequestURI = ""
	out.Close = false
	if t.host != "" {
		out.Host = t.host
	}
	out.Header = make(http.Header, len(in.Header)+3+len(t.headers))
	copyHeader(out.Header, in.Header)
	for k, v := range t.headers {
		out.Header[k] = v
	}
	// The client's claims of proto and host are replaced; its
	// X-Forwarded-For is extended.
	fwd := x.fwd[:]
	fwd[1] = in.Host
	out.Header["X-Forwarded-Host"] = fwd[1:2:2]
	if in.TLS != nil {
		out.Header["X-Forwarded-Proto"] = protoHTTPS
	} else {
		out.Header["X-Forwarded-Proto"] = protoHTTP
	}
	if host, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			host = prior[len(prior)-1] + ", " + host
		}
		fwd[0] = host
		out.Header["X-Forwarded-For"] = fwd[0:1:1]
	}
	upgrade := upgradeType(in.Header)
	if upgrade != "" {
		out.Header["Connection"] = connectionUpgrade
		out.Header["Upgrade"] = in.Header["Upgrade"]
	}
	if in.ContentLength == 0 {
		out.Body = nil // lets the transport reuse connections freely
	}
	// Service time starts once the request is written, so a new
	// connection's setup (an RTT, and the handshake) is not charged to the
	// replica; it ends with the response headers.
	sent := time.Now()
	resp, err := g.cfg.Transport.RoundTrip(out)
	done := time.Now()
	if w := fl.wrote.Load(); w != 0 {
		sent = time.Unix(0, w)
	}
	now := g.now()
	if err != nil {
		if retryable && isDialError(err) && in.Context().Err() == nil {
			g.unreached(rev, rep, now, err)
			return true
		}
		var timedOut error
		if c := context.Cause(ctx); c == errResponseStart || c == errRevTimeout {
			timedOut = c
		}
		// A body read the timer ended cancels the client's context too;
		// that client is not gone.
		gone := in.Context().Err() != nil && !(timedOut != nil && fl.bodyCut.Load())
		if code, msg := g.unanswered(rev, rep, &p, now, err, timedOut, gone); code != 499 {
			http.Error(w, msg, code)
		}
		return false
	}
	if p.startTimeout < p.timeout {
		// Headers are in: the rest of the timeout covers the body.
		fl.rearm(errRevTimeout, p.timeout-done.Sub(fl.armed))
	}
	service := p.service(sent, done)
	h := w.Header()
	copyHeader(h, resp.Header)
	h[HeaderReplica] = rep.header
	h[HeaderNode] = rep.nodeHeader
	if resp.StatusCode == http.StatusSwitchingProtocols {
		g.switched(rev, rep)
		fl.disarm() // the connection is the client's and the replica's now
		switchProtocols(w, resp, upgrade)
		rev.release(rep, g.now(), service)
		return false
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	g.answered(rev, rep, &p, resp.StatusCode, start, now)
	// The slot is released once the body is through, so in-flight counts
	// cover streaming responses too.
	bp := g.bufs.Get().(*[]byte)
	copyBody(w, resp.Body, *bp, resp.ContentLength < 0)
	g.bufs.Put(bp)
	resp.Body.Close()
	if len(resp.Trailer) > 0 {
		copyTrailer(h, resp.Trailer, announced)
	}
	if context.Cause(ctx) == errRevTimeout {
		g.cutShort(rev, rep)
	}
	rev.release(rep, g.now(), service)
	return false
}

// plan is what forwarding one request needs of its revision and its
// replica's node, read under the revision's lock once.
type plan struct {
	timeout, startTimeout time.Duration
	local                 bool
	dest                  destStats
	rtt                   time.Duration // the view's snapshot, refreshed by Refresh
}

func (rev *revision) plan(rep *replica) plan {
	rev.mu.Lock()
	defer rev.mu.Unlock()
	p := plan{timeout: rev.timeout, startTimeout: rev.start, local: rep.node == rev.view.Origin}
	if rep.node >= 0 {
		p.dest = rev.dest[rep.node]
		p.rtt = rev.view.Nodes[rep.node].RTT
	}
	return p
}

// firstBound is the first deadline a forwarded request meets, counted from
// before it is sent, and what passing it means: the response start timeout
// when it is the shorter, else the revision's timeout.
func (p *plan) firstBound() (time.Duration, error) {
	if p.startTimeout >= p.timeout {
		return p.timeout, errRevTimeout
	}
	return p.startTimeout, errResponseStart
}

// service is the replica's service time for a request written at sent and
// answered (headers in) at done: a remote replica's round trip is not its
// own.
func (p *plan) service(sent, done time.Time) time.Duration {
	d := done.Sub(sent)
	if !p.local && p.rtt > 0 {
		d = max(d-p.rtt, 0)
	}
	return d
}

// unreached gives back the slot of a replica the request never reached
// (the connection failed), so the caller can offer the request again.
func (g *Gateway) unreached(rev *revision, rep *replica, now time.Time, err error) {
	rev.release(rep, now, -1)
	g.cfg.Log.Debug("forwarding failed", "revision", rev.key, "replica", rep.info.Name, "err", err)
}

// unanswered gives back the slot of a replica that did not answer and
// returns the status for the client, counted: 504 naming the bound passed
// when timedOut is errResponseStart or errRevTimeout, 499 (not to be
// written) when the client is gone, else 502.
func (g *Gateway) unanswered(rev *revision, rep *replica, p *plan, now time.Time, err, timedOut error, clientGone bool) (int, string) {
	g.unreached(rev, rep, now, err)
	code := http.StatusBadGateway
	var msg string
	switch {
	case clientGone:
		code = 499
	case timedOut != nil:
		code, msg = http.StatusGatewayTimeout, "kantai: "+rev.key+": "+timedOut.Error()+" ("+p.startTimeout.String()+")"
	default:
		msg = "kantai: replica " + rep.info.Name + " did not answer: " + err.Error()
	}
	g.cfg.Metrics.requests.WithLabelValues(rev.service, rev.key, g.cfg.Node, rep.info.Node, strconv.Itoa(code)).Inc()
	return code, msg
}

// answered accounts for response headers from rep with status.
func (g *Gateway) answered(rev *revision, rep *replica, p *plan, status int, start, now time.Time) {
	if p.dest.latency != nil {
		p.dest.latency.Observe(now.Sub(start).Seconds())
	}
	if status == http.StatusOK && p.dest.ok != nil {
		p.dest.ok.Inc()
	} else {
		g.cfg.Metrics.requests.WithLabelValues(rev.service, rev.key, g.cfg.Node, rep.info.Node, strconv.Itoa(status)).Inc()
	}
}

// cutShort counts a response whose body the revision's timeout cut.
func (g *Gateway) cutShort(rev *revision, rep *replica) {
	g.cfg.Metrics.requests.WithLabelValues(rev.service, rev.key, g.cfg.Node, rep.info.Node, "504").Inc()
}

// switched counts a response that switched protocols.
func (g *Gateway) switched(rev *revision, rep *replica) {
	g.cfg.Metrics.requests.WithLabelValues(rev.service, rev.key, g.cfg.Node, rep.info.Node, "101").Inc()
}

// outParts are the parts of an outbound request the gateway allocates,
// together.
type outParts struct {
	url url.URL
	fwd [2]string // X-Forwarded-For, X-Forwarded-Host
}

// Header values the gateway sets, shared by every request (the transport
// only reads them).
var (
	protoHTTP         = []string{"http"}
	protoHTTPS        = []string{"https"}
	connectionUpgrade = []string{"Upgrade"}
)

// upgradeType returns the protocol a request asks to switch to, when its
// Connection header lists "upgrade" (RFC 9110 §7.8); else "".
func upgradeType(h http.Header) string {
	up := h["Upgrade"]
	if len(up) == 0 || up[0] == "" {
		return ""
	}
	for _, v := range h["Connection"] {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(trimSpace(name), "upgrade") {
				return up[0]
			}
		}
	}
	return ""
}

// copyTrailer sets a response's trailers once its body is through: those
// announced before the headers went out under their names, the others
// with net/http's TrailerPrefix.
func copyTrailer(h, trailer http.Header, announced int) {
	prefix := ""
	if len(trailer) != announced {
		delete(h, "Trailer")
		prefix = http.TrailerPrefix
	}
	for k, v := range trailer {
		h[prefix+k] = v
	}
}

// switchProtocols completes an upgrade the replica accepted (101): the
// answer goes to the client on its own connection, taken from net/http,
// and bytes are then copied both ways until either side closes.
func switchProtocols(w http.ResponseWriter, resp *http.Response, upgrade string) {
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || upgrade == "" || !strings.EqualFold(resp.Header.Get("Upgrade"), upgrade) {
		resp.Body.Close()
		http.Error(w, "kantai: replica switched to protocol "+strconv.Quote(resp.Header.Get("Upgrade"))+
			", the client asked for "+strconv.Quote(upgrade), http.StatusBadGateway)
		return
	}
	defer back.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "kantai: cannot switch protocols on this connection", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	h := w.Header()
	h["Connection"] = connectionUpgrade
	h["Upgrade"] = resp.Header["Upgrade"]
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	_ = h.Write(brw)
	_, _ = brw.WriteString("\r\n")
	if brw.Flush() != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(back, brw.Reader); done <- struct{}{} }() // bytes read ahead first
	go func() { _, _ = io.Copy(conn, back); done <- struct{}{} }()
	<-done
	// One side is gone: closing both ends the other copy.
	conn.Close()
	back.Close()
	<-done
}

// flight is one forwarded request's timer and trace hooks. It is pooled
// with the hooks and the timer bound once, and goes back to the pool only
// when nothing can touch it any more: the transport has reported the
// request written (its writer may otherwise report after RoundTrip
// returned) and the timer was stopped before it fired.
type flight struct {
	trace httptrace.ClientTrace
	wrote atomic.Int64 // unix nanoseconds when the request was written
	timer *time.Timer
	armed time.Time

	mu     sync.Mutex // the timer's goroutine reads cancel, cause and body
	cancel context.CancelCauseFunc
	cause  error
	// body is the client's connection of a request with a body. The
	// transport returns only once its write of the body ends, and that
	// write reads the client without a deadline: a client that stalls
	// part way would hold the request past its timeout. The timer ends
	// the read when it fires.
	body    *http.ResponseController
	bodyCut atomic.Bool // the timer ended the body's read (not the client)
	clean   bool        // the timer has not fired since arm
}

var flightPool = sync.Pool{New: func() any {
	fl := &flight{}
	fl.trace.WroteRequest = fl.wroteRequest
	fl.timer = time.AfterFunc(time.Hour, fl.fire)
	fl.timer.Stop()
	return fl
}}

func (fl *flight) wroteRequest(httptrace.WroteRequestInfo) { fl.wrote.Store(time.Now().UnixNano()) }

func (fl *flight) fire() {
	fl.mu.Lock()
	cancel, cause := fl.cancel, fl.cause
	fl.mu.Unlock()
	if cancel != nil {
		cancel(cause) // first, so that the body's read error finds the cause set
	}
	// Under the lock: once done has cleared body, the connection may
	// be reading its next request, which this deadline must not reach.
	fl.mu.Lock()
	if fl.body != nil {
		fl.bodyCut.Store(true) // before the read can fail
		_ = fl.body.SetReadDeadline(longAgo)
	}
	fl.mu.Unlock()
}

// longAgo is a deadline that has passed: it ends a blocked read at once.
var longAgo = time.Unix(1, 0)

func (fl *flight) arm(cancel context.CancelCauseFunc, cause error, d time.Duration, body *http.ResponseController) {
	fl.wrote.Store(0)
	fl.bodyCut.Store(false)
	fl.mu.Lock()
	fl.cancel, fl.cause, fl.body, fl.clean = cancel, cause, body, true
	fl.mu.Unlock()
	fl.armed = time.Now()
	fl.timer.Reset(d)
}

// rearm gives the timer a new cause and delay, unless it already fired.
func (fl *flight) rearm(cause error, d time.Duration) {
	if !fl.timer.Stop() {
		fl.clean = false
		return
	}
	fl.mu.Lock()
	fl.cause = cause
	fl.mu.Unlock()
	fl.timer.Reset(d)
}

// disarm stops the timer for good: the request outlives its timeout (a
// switched protocol). The flight is then left to the garbage collector.
func (fl *flight) disarm() {
	fl.timer.Stop()
	fl.clean = false
	fl.mu.Lock()
	fl.body = nil
	fl.mu.Unlock()
}

func (fl *flight) done() {
	if !fl.timer.Stop() {
		fl.clean = false
	}
	fl.mu.Lock()
	fl.body = nil
	fl.mu.Unlock()
	if !fl.clean || fl.wrote.Load() == 0 {
		return // the timer's goroutine or the transport's writer may still use it
	}
	fl.mu.Lock()
	fl.cancel, fl.cause = nil, nil
	fl.mu.Unlock()
	flightPool.Put(fl)
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
