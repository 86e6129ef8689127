package latency

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Defaults for Config.
const (
	DefaultInterval = time.Second
	// A measured entry is considered stale after this many intervals
	// without news (full-mesh mode; coordinate mode scales it with the
	// time a neighbour waits for its turn).
	staleIntervals = 3
	// An estimated entry is stale once the older of its two coordinates
	// has not moved for this many intervals, or longer in large fleets
	// (see coordStaleAfter).
	coordStaleIntervals = 60
	// gossipSize is how many known coordinates a /ping answer carries
	// besides the peer's own in a large fleet: about 3 KB of JSON. A
	// small fleet's answers carry fewer (see gossipFor).
	gossipSize = 16
	// gossipRefresh is the number of intervals within which the
	// rotation of a small fleet's answers passes every coordinate to
	// every node at least once, in principle.
	gossipRefresh = 8
	// minGossip is the fewest coordinates an answer carries.
	minGossip = 4
)

// Config sets up an Agent.
type Config struct {
	// Node is the name of the node the agent runs on.
	Node string
	// Addr is the address to listen on, the node's IP and a port.
	Addr string
	// Listener, if set, is used instead of listening on Addr.
	Listener net.Listener
	// Peers maps the other nodes' names to their agents' addresses. They
	// can change later with SetPeers, AddPeer and ForgetPeer.
	Peers map[string]string
	// Dial opens connections to peers; it is the node's emulated-link
	// dialer in the fleet. Nil means a plain net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Interval is the probing round: in full-mesh mode every peer is
	// probed once per interval; default DefaultInterval.
	Interval time.Duration
	// Jitter spreads a probe's moment randomly within this much of its
	// phase in the round; default a tenth of Interval, at most half.
	Jitter time.Duration
	// Timeout bounds one probe; default the larger of Interval and three
	// seconds. A probe on a new connection takes three round trips (the
	// handshake and two exchanges), which on a 300 ms link under load
	// can exceed one second.
	Timeout time.Duration
	// StaleAfter marks measured entries not updated for that long as
	// stale; default three intervals in full-mesh mode. In coordinate
	// mode a measurement is preferred to an estimate until it is stale,
	// by default as long as estimates from coordinates are not (sixty
	// intervals, more beyond 300 nodes; see coordStaleAfter).
	StaleAfter time.Duration
	// Alpha is the estimator's gain; default DefaultAlpha.
	Alpha float64
	// MeshLimit is the largest fleet (this node included) probed as a
	// full mesh; beyond it the agent probes ProbesPerRound neighbours per
	// interval and estimates the rest of its row from network
	// coordinates. 0 means DefaultMeshLimit; a negative value means full
	// mesh at any size.
	MeshLimit int
	// ProbesPerRound is the number of peers probed per interval in
	// coordinate mode; default DefaultProbesPerRound.
	ProbesPerRound int
	// Neighbors is the size of the neighbour set in coordinate mode;
	// default DefaultNeighbors.
	Neighbors int
	// SweepLimit is the largest number of peers that coordinate mode
	// still probes all in turn (a sweep: each peer once every
	// peers/ProbesPerRound intervals, so that every path is measured and
	// estimates only fill the first sweep's gaps); beyond it the agent
	// probes its drifting neighbour set. 0 means 40·ProbesPerRound (120
	// peers by default), a negative value means never.
	SweepLimit int
	// Vivaldi holds the coordinate algorithm's constants; the zero value
	// is the defaults.
	Vivaldi VivaldiConfig
	// Seed seeds the agent's random source (probe jitter, neighbour
	// choice); 0 means a seed derived from the node name.
	Seed uint64
	// Clock gives the time for timestamps, staleness and the probing
	// schedule; default the real clock. Round trips are always measured
	// with the monotonic clock, on the connection.
	Clock clock.Clock
	// OnProbe, if set, is called after each probe's outcome has been
	// recorded, from the probing goroutine; it must not block for long.
	OnProbe func(Probe)
}

// Probe is the outcome of one probe.
type Probe struct {
	// Peer is the node probed.
	Peer string
	// RTT is the round trip measured on the connection, the peer's
	// handling time subtracted; 0 on failure.
	RTT time.Duration
	// Handling is the time the peer reported it spent on the request.
	Handling time.Duration
	// Spike is true if RTT was left out of the smoothed RTT as a lone
	// spike (see kantai_latency_probe_spikes_total).
	Spike bool
	// At is the agent clock's time when the outcome was recorded.
	At time.Time
	// Err is why the probe failed, or nil.
	Err error
}

// Agent measures the round-trip time from its node to its peers, learns
// the rest of the matrix from the peers' answers (and, in a large fleet,
// estimates it from network coordinates), and serves it over HTTP and as
// Prometheus metrics. Its methods are safe for concurrent use, also while
// it runs.
type Agent struct {
	cfg    Config
	clk    clock.Clock
	client *http.Client
	tr     *http.Transport

	mu       sync.Mutex
	peers    map[string]peerAddr
	gen      uint64
	plan     *planner
	view     *view
	rng      *rand.Rand
	failures map[string]uint64 // failed probes per peer, while it is a peer
	probes   uint64            // probes sent, ever
	spikes   uint64            // samples left out as spikes, ever
	inFlight map[string]bool
	changed  chan struct{} // peers changed: the schedule must be read again

	running sync.Mutex // held while Run runs

	rttDesc, jitterDesc, staleDesc, estDesc, failDesc, probesDesc, spikesDesc *prometheus.Desc
}

type peerAddr struct {
	addr string
	gen  uint64 // tells a probe to a forgotten and re-added peer from a new one
}

// New checks cfg, fills defaults and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Node == "" {
		return nil, errors.New("latency agent: node name is empty")
	}
	if cfg.Addr == "" && cfg.Listener == nil {
		return nil, fmt.Errorf("latency agent %s: no listen address", cfg.Node)
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 || cfg.StaleAfter < 0 || cfg.Jitter < 0 {
		return nil, fmt.Errorf("latency agent %s: interval, jitter, timeout and staleAfter must not be negative", cfg.Node)
	}
	if cfg.ProbesPerRound < 0 || cfg.Neighbors < 0 {
		return nil, fmt.Errorf("latency agent %s: probesPerRound and neighbors must not be negative", cfg.Node)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = cfg.Interval / 10
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = max(cfg.Interval, 3*time.Second)
	}
	if cfg.MeshLimit == 0 {
		cfg.MeshLimit = DefaultMeshLimit
	}
	if cfg.ProbesPerRound == 0 {
		cfg.ProbesPerRound = DefaultProbesPerRound
	}
	if cfg.Neighbors == 0 {
		cfg.Neighbors = DefaultNeighbors
	}
	cfg.Neighbors = max(cfg.Neighbors, cfg.ProbesPerRound)
	if cfg.SweepLimit == 0 {
		cfg.SweepLimit = sweepRounds * cfg.ProbesPerRound
	}
	cfg.Vivaldi = cfg.Vivaldi.withDefaults()
	if cfg.Seed == 0 {
		h := fnv.New64a()
		h.Write([]byte(cfg.Node))
		cfg.Seed = h.Sum64()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	for name, addr := range cfg.Peers {
		if err := checkPeer(name, addr); err != nil {
			return nil, fmt.Errorf("latency agent %s: %w", cfg.Node, err)
		}
	}
	tr := &http.Transport{
		DialContext:         stampingDialer(cfg.Dial),
		Proxy:               nil,
		MaxIdleConnsPerHost: 1,
		// A peer's turn comes back within an interval (full mesh) or a
		// few (a neighbour in coordinate mode): keep its connection
		// that long, so probes never pay for a handshake, but not much
		// longer, so that a node does not hold connections (buffers,
		// goroutines) to every peer that was once its neighbour.
		IdleConnTimeout:    max(10*time.Second, 10*cfg.Interval),
		DisableCompression: true,
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed>>7|1))
	a := &Agent{
		cfg:      cfg,
		clk:      cfg.Clock,
		tr:       tr,
		client:   &http.Client{Transport: tr},
		peers:    map[string]peerAddr{},
		rng:      rng,
		plan:     newPlanner(cfg.Node, cfg.Interval, cfg.Jitter, cfg.MeshLimit, cfg.ProbesPerRound, cfg.Neighbors, cfg.SweepLimit, rng),
		view:     newView(cfg.Node, cfg.Alpha, cfg.Vivaldi),
		failures: map[string]uint64{},
		inFlight: map[string]bool{},
		changed:  make(chan struct{}, 1),
	}
	// Each agent reports its own row; from is a constant label so that the
	// agents of a fleet can share one registry.
	from := prometheus.Labels{"from": cfg.Node}
	to := []string{"to"}
	// Called by the planner under a.mu.
	a.plan.recheck = a.view.recheck
	a.plan.near = func(peer string) (time.Duration, bool) {
		if pc, ok := a.view.coords[peer]; ok {
			return a.view.coord.Distance(pc.Coord)
		}
		return 0, false
	}
	a.rttDesc = prometheus.NewDesc("kantai_node_latency_seconds",
		"Smoothed round-trip time between two nodes, as measured (or, if kantai_node_latency_estimated is 1, estimated from network coordinates) by the source node's agent.", to, from)
	a.jitterDesc = prometheus.NewDesc("kantai_node_latency_jitter_seconds",
		"Smoothed standard deviation of the measured round-trip time between two nodes.", to, from)
	a.staleDesc = prometheus.NewDesc("kantai_node_latency_stale",
		"1 if the last probe failed or the value is old, else 0.", to, from)
	a.estDesc = prometheus.NewDesc("kantai_node_latency_estimated",
		"1 if kantai_node_latency_seconds is estimated from network coordinates rather than measured, else 0.", to, from)
	a.failDesc = prometheus.NewDesc("kantai_latency_probe_failures_total",
		"Failed latency probes from one node to another.", to, from)
	a.probesDesc = prometheus.NewDesc("kantai_latency_probes_total",
		"Latency probes sent by a node's agent.", nil, from)
	a.spikesDesc = prometheus.NewDesc("kantai_latency_probe_spikes_total",
		"Successful probes whose round trip was left out of the smoothed RTT as a lone spike (over 1.5 times the median of the last three, plus 1 ms).", nil, from)
	if err := a.SetPeers(cfg.Peers); err != nil {
		return nil, err // New checked the addresses already; this is a bug
	}
	return a, nil
}

func checkPeer(name, addr string) error {
	if name == "" {
		return errors.New("peer with an empty name")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("peers[%q]: %w", name, err)
	}
	return nil
}

// SetPeers makes peers (name → agent address) the agent's set of peers.
// Peers that are not in it any more are forgotten: their rows, columns,
// coordinates and metrics go. A peer whose address changed is forgotten
// and added again. An entry naming the agent's own node is ignored, so a
// DaemonSet's whole list can be passed. Entries whose address is not
// host:port are left out and reported in the error; the others are
// applied.
func (a *Agent) SetPeers(peers map[string]string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	next := map[string]peerAddr{}
	for _, name := range slices.Sorted(maps.Keys(peers)) {
		addr := peers[name]
		if name == a.cfg.Node {
			continue
		}
		if err := checkPeer(name, addr); err != nil {
			errs = append(errs, err)
			continue
		}
		if old, ok := a.peers[name]; ok && old.addr == addr {
			next[name] = old
			continue
		}
		a.gen++
		next[name] = peerAddr{addr: addr, gen: a.gen}
	}
	a.applyPeersLocked(next)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("latency agent %s: %w", a.cfg.Node, err)
	}
	return nil
}

// AddPeer adds a peer, or changes its address (which forgets what was
// known about it).
func (a *Agent) AddPeer(name, addr string) error {
	if err := checkPeer(name, addr); err != nil {
		return fmt.Errorf("latency agent %s: %w", a.cfg.Node, err)
	}
	if name == a.cfg.Node {
		return fmt.Errorf("latency agent %s: a node is not its own peer", a.cfg.Node)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.peers[name]; ok && old.addr == addr {
		return nil
	}
	next := maps.Clone(a.peers)
	a.gen++ // a new generation: applyPeersLocked forgets the old one
	next[name] = peerAddr{addr: addr, gen: a.gen}
	a.applyPeersLocked(next)
	return nil
}

// ForgetPeer removes a peer: its row, its column, its coordinate and its
// metrics go; a probe to it still in flight is discarded when it lands.
func (a *Agent) ForgetPeer(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.peers[name]; !ok {
		return
	}
	next := maps.Clone(a.peers)
	delete(next, name)
	a.applyPeersLocked(next)
}

// Peers returns the current peers' names, sorted.
func (a *Agent) Peers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.peers))
}

func (a *Agent) applyPeersLocked(next map[string]peerAddr) {
	for name, old := range a.peers {
		if p, ok := next[name]; !ok || p.gen != old.gen {
			delete(a.failures, name)
			a.view.forget(name)
		}
	}
	a.peers = next
	names := slices.Sorted(maps.Keys(next))
	a.view.setMembers(names)
	a.plan.setPeers(names, a.clk.Now())
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// CoordinateMode reports whether the agent probes a few neighbours and
// estimates the rest (true), or probes every peer (false).
func (a *Agent) CoordinateMode() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.plan.mesh
}

// Coordinate returns the node's current network coordinate.
func (a *Agent) Coordinate() PeerCoord {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.view.coord
	c.Vec = slices.Clone(c.Vec)
	return c
}

func (a *Agent) freshnessLocked() freshness {
	return freshnessFor(a.cfg, len(a.peers), a.plan.mesh)
}

// freshnessFor is the freshness of an agent configured with cfg (defaults
// filled in) that has peers peers and probes them as a full mesh or not.
func freshnessFor(cfg Config, peers int, mesh bool) freshness {
	f := freshness{staleAfter: cfg.StaleAfter, estimate: !mesh, coordStaleAfter: coordStaleAfter(cfg.Interval, peers, cfg.ProbesPerRound), gossip: gossipFor(peers, cfg.ProbesPerRound)}
	if f.staleAfter == 0 {
		f.staleAfter = staleIntervals * cfg.Interval
		if f.estimate {
			// A measurement is kept as long as a coordinate, which
			// is longer than a sweep of a small fleet takes.
			f.staleAfter = f.coordStaleAfter
		}
	}
	return f
}

// coordStaleAfter is how old a coordinate may be before estimates from it
// are marked stale. A node receives perRound answers per interval, each
// with g coordinates (see gossipFor), so in a fleet of n nodes no scheme
// can refresh a given coordinate more often than every n/(g·perRound)
// intervals; the rotation used reaches a median age of about four times
// that (the simulated fleets of BenchmarkSimulatedFleet measure it). The
// limit is ten times that bound, and at least sixty intervals: 60–80 s up
// to 380 nodes, 3.5 minutes at 1,000 nodes, 17.5 minutes at 5,000.
func coordStaleAfter(interval time.Duration, peers, perRound int) time.Duration {
	g := gossipFor(peers, perRound) * max(perRound, 1)
	refresh := (peers + g - 1) / g
	return time.Duration(max(coordStaleIntervals, 10*refresh)) * interval
}

// gossipFor is how many coordinates a /ping answer carries besides the
// node's own, in a fleet of peers peers probed perRound at a time: enough
// for every node to hear of every coordinate within gossipRefresh
// intervals, between minGossip and gossipSize. Every coordinate costs
// about 170 bytes, and on a slow link the answer's size adds to the round
// trip the asker times (a 3 KB answer, 1.2 ms at 20 Mbit/s); a fleet of
// 100 nodes needs five per answer, not sixteen.
func gossipFor(peers, perRound int) int {
	per := max(perRound, 1) * gossipRefresh
	return min(gossipSize, max(minGossip, (peers+per-1)/per))
}

// pingResponse is the answer to GET /ping: the node's own measured row,
// its coordinate and a few coordinates it knows.
type pingResponse struct {
	Node   string               `json:"node"`
	Row    Row                  `json:"row"`
	Coord  *PeerCoord           `json:"coord,omitempty"`
	Coords map[string]PeerCoord `json:"coords,omitempty"`
}

// Handler serves GET /ping (this node's row, coordinate and some known
// coordinates; the Server-Timing header says how long the answer took
// since the request was read) and GET /matrix (the whole matrix as this
// agent sees it).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if c := servedConnOf(r); c != nil {
			if t := c.lastRead(); !t.IsZero() && t.Before(start) {
				start = t
			}
		}
		now := a.clk.Now()
		q := r.URL.Query()
		from := q.Get("from")
		rtt, rttErr := strconv.ParseFloat(q.Get("rtt"), 64)
		n, nErr := strconv.Atoi(q.Get("n"))
		jitter, _ := strconv.ParseFloat(q.Get("j"), 64) // optional
		a.mu.Lock()
		if rttErr == nil && nErr == nil && !a.plan.mesh {
			a.view.heard(from, rtt, jitter, n, now) // checks the values
		}
		resp := a.view.ping(now, a.freshnessLocked(), from)
		var buf bytes.Buffer
		err := json.NewEncoder(&buf).Encode(resp) // under the lock: resp shares coordinates with the view
		a.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(handlingHeader, formatHandling(time.Since(start)))
		w.Write(buf.Bytes())
	})
	mux.HandleFunc("GET /matrix", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.Matrix())
	})
	return mux
}

// Matrix returns a copy of the agent's view of the matrix: its own row for
// every peer (in coordinate mode with estimates where nothing fresh was
// measured) and the rows its peers reported.
func (a *Agent) Matrix() Matrix {
	now := a.clk.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.view.snapshot(now, a.freshnessLocked())
}

// RTT returns the round-trip time to peer: this node's own measurement
// (in coordinate mode, an estimate when no fresh measurement exists), or,
// before there is one, the one the peer reported in the other direction
// (links are symmetric). The value may be stale; Matrix tells.
func (a *Agent) RTT(peer string) (time.Duration, bool) {
	now := a.clk.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.view.rtt(peer, now, a.freshnessLocked())
}

// Run serves the agent's handler and probes its peers on schedule until
// ctx is done, then stops probing, closes its listener and connections and
// returns nil. It returns an error if it cannot listen or serve. An agent
// runs once at a time.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.TryLock() {
		return fmt.Errorf("latency agent %s: already running", a.cfg.Node)
	}
	defer a.running.Unlock()
	ln := a.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", a.cfg.Addr); err != nil {
			return fmt.Errorf("latency agent %s: %w", a.cfg.Node, err)
		}
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       max(2*time.Minute, 20*a.cfg.Interval),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, servedConnKey{}, c)
		},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(stampingListener{ln}) }()

	var wg sync.WaitGroup
	var runErr error
loop:
	for {
		a.mu.Lock()
		next, ok := a.plan.next()
		a.mu.Unlock()
		var (
			timer  clock.Timer
			timerC <-chan time.Time
		)
		if ok {
			if d := next.Sub(a.clk.Now()); d > 0 {
				timer = a.clk.NewTimer(d)
				timerC = timer.C()
			}
			// Read the clock again once the timer is set: if time moved
			// past next meanwhile, the timer may have been set from the
			// new time and would fire a round late.
			if !a.clk.Now().Before(next) {
				stopTimer(timer)
				a.probeDue(ctx, &wg)
				continue
			}
		}
		select {
		case <-ctx.Done():
			stopTimer(timer)
			break loop
		case <-timerC:
			a.probeDue(ctx, &wg)
		case <-a.changed:
			stopTimer(timer)
		case err := <-served:
			stopTimer(timer)
			runErr = fmt.Errorf("latency agent %s: serving: %w", a.cfg.Node, err)
			break loop
		}
	}
	wg.Wait() // probes end with ctx, or time out
	shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
	}
	a.tr.CloseIdleConnections()
	return runErr
}

func stopTimer(t clock.Timer) {
	if t != nil {
		t.Stop()
	}
}

// probeDue starts a probe to every peer due now whose previous probe has
// landed.
func (a *Agent) probeDue(ctx context.Context, wg *sync.WaitGroup) {
	now := a.clk.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, peer := range a.plan.take(now) {
		p, ok := a.peers[peer]
		if !ok || a.inFlight[peer] {
			continue // the previous probe has not landed or timed out yet
		}
		a.inFlight[peer] = true
		a.probes++
		var mine Entry // what this node measured of the path, for the peer to pool
		if !a.plan.mesh {
			if e := a.view.m[a.cfg.Node][peer]; e.Samples > 0 {
				mine = e
			}
		}
		// In a sweep every peer's turn comes round once per sweep: a
		// connection kept for it would serve one probe per sweep while
		// the node held one per peer (buffers, goroutines, file
		// descriptors, and on an emulated link its pumps), O(n) per node
		// and O(n²) in the fleet. Close it after the probe instead.
		closeConn := a.plan.sweepPeriod() > 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.probe(ctx, peer, p, mine, closeConn)
		}()
	}
}

// probe asks peer for its row once and records the round trip, or the
// failure. In coordinate mode the request carries mine, this node's
// measurement of the path, if it has one.
func (a *Agent) probe(parent context.Context, peer string, p peerAddr, mine Entry, closeConn bool) {
	ctx, cancel := context.WithTimeout(parent, a.cfg.Timeout)
	defer cancel()
	u := "http://" + p.addr + "/ping?from=" + url.QueryEscape(a.cfg.Node)
	if mine.Samples > 0 {
		u += "&rtt=" + strconv.FormatFloat(mine.RTT, 'g', 6, 64) + "&j=" + strconv.FormatFloat(mine.Jitter, 'g', 3, 64) + "&n=" + strconv.Itoa(mine.Samples)
	}
	rtt, handling, pr, err := a.ask(ctx, peer, u, closeConn)
	now := a.clk.Now()
	a.mu.Lock()
	delete(a.inFlight, peer)
	if cur, ok := a.peers[peer]; !ok || cur.gen != p.gen {
		a.mu.Unlock()
		return // forgotten meanwhile
	}
	spike := false
	if err == nil {
		var took bool
		if took, err = a.view.answer(peer, rtt, now, pr, a.freshnessLocked(), a.cfg.Interval, a.rng); err == nil {
			spike = !took
			if spike {
				a.spikes++
			}
		}
	}
	stopping := err != nil && parent.Err() != nil
	if err != nil && !stopping {
		a.view.fail(peer, now)
		a.failures[peer]++
	}
	a.mu.Unlock()
	if stopping {
		return
	}
	if a.cfg.OnProbe != nil {
		if err != nil {
			rtt = 0
		}
		a.cfg.OnProbe(Probe{Peer: peer, RTT: rtt, Handling: handling, Spike: spike, At: now, Err: err})
	}
}

// ask sends GET /ping and returns the round trip taken on the connection
// minus the peer's handling time, the handling time and the answer. On a
// connection that was just opened, it asks a second time on the same
// connection and times that exchange: the first one also carries the
// peer accepting the connection and starting a goroutine for it, which on
// a busy machine takes longer than a short link.
//
// closeConn closes the connection after the measured exchange (the first
// exchange on a new connection keeps it for the second).
func (a *Agent) ask(ctx context.Context, peer, u string, closeConn bool) (rtt, handling time.Duration, pr pingResponse, err error) {
	rtt, handling, reused, pr, err := a.askOnce(ctx, peer, u, false)
	if err == nil && !reused {
		rtt, handling, _, pr, err = a.askOnce(ctx, peer, u, closeConn)
	}
	return rtt, handling, pr, err
}

func (a *Agent) askOnce(ctx context.Context, peer, u string, closeConn bool) (rtt, handling time.Duration, reused bool, pr pingResponse, err error) {
	var (
		tmu         sync.Mutex
		conn        *probeConn
		wrote, got1 time.Time
	)
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			c, _ := info.Conn.(*probeConn)
			if c != nil {
				c.arm()
			}
			tmu.Lock()
			conn, reused = c, info.Reused
			tmu.Unlock()
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			tmu.Lock()
			wrote = time.Now()
			tmu.Unlock()
		},
		GotFirstResponseByte: func() {
			tmu.Lock()
			got1 = time.Now()
			tmu.Unlock()
		},
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, false, pr, err
	}
	req.Close = closeConn
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, 0, false, pr, err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, 1<<20)
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, body)
		return 0, 0, false, pr, fmt.Errorf("%s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(body).Decode(&pr); err != nil {
		return 0, 0, false, pr, fmt.Errorf("%s: decoding answer: %w", u, err)
	}
	io.Copy(io.Discard, body) // let the connection be reused
	if pr.Node != peer {
		return 0, 0, false, pr, fmt.Errorf("%s answered as node %q", u, pr.Node)
	}
	tmu.Lock()
	start, end := wrote, got1
	if conn != nil {
		if s, r := conn.stamps(); !s.IsZero() && !r.IsZero() {
			start, end = s, r
		}
	}
	reused = reused && conn != nil
	tmu.Unlock()
	if start.IsZero() || end.Before(start) {
		return 0, 0, false, pr, fmt.Errorf("%s: no round trip timed", u)
	}
	rtt = end.Sub(start)
	handling = parseHandling(resp.Header.Get(handlingHeader))
	if handling < rtt {
		rtt -= handling
	}
	return rtt, handling, reused, pr, nil
}

// Describe implements prometheus.Collector.
func (a *Agent) Describe(ch chan<- *prometheus.Desc) {
	ch <- a.rttDesc
	ch <- a.jitterDesc
	ch <- a.staleDesc
	ch <- a.estDesc
	ch <- a.failDesc
	ch <- a.probesDesc
	ch <- a.spikesDesc
}

// Collect implements prometheus.Collector. It reports only the agent's own
// row: in the fleet every node's agent registers with the same registry,
// and the rows together make the matrix without duplicate series.
func (a *Agent) Collect(ch chan<- prometheus.Metric) {
	now := a.clk.Now()
	a.mu.Lock()
	row := a.view.row(now, a.freshnessLocked())
	failures := maps.Clone(a.failures)
	peers := slices.Sorted(maps.Keys(a.peers))
	probes, spikes := a.probes, a.spikes
	a.mu.Unlock()
	for to, e := range row {
		if e.Known() {
			ch <- prometheus.MustNewConstMetric(a.rttDesc, prometheus.GaugeValue, e.RTT, to)
			ch <- prometheus.MustNewConstMetric(a.estDesc, prometheus.GaugeValue, boolValue(e.Estimated), to)
		}
		if e.Samples > 0 && !e.Estimated {
			ch <- prometheus.MustNewConstMetric(a.jitterDesc, prometheus.GaugeValue, e.Jitter, to)
		}
		ch <- prometheus.MustNewConstMetric(a.staleDesc, prometheus.GaugeValue, boolValue(e.Stale), to)
	}
	for _, to := range peers {
		ch <- prometheus.MustNewConstMetric(a.failDesc, prometheus.CounterValue, float64(failures[to]), to)
	}
	ch <- prometheus.MustNewConstMetric(a.probesDesc, prometheus.CounterValue, float64(probes))
	ch <- prometheus.MustNewConstMetric(a.spikesDesc, prometheus.CounterValue, float64(spikes))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
