package latency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultInterval = time.Second
	// A peer is considered stale after this many intervals without news.
	staleIntervals = 3
)

// Config sets up an Agent.
type Config struct {
	// Node is the name of the node the agent runs on.
	Node string
	// Addr is the address to listen on, the node's IP and a port.
	Addr string
	// Listener, if set, is used instead of listening on Addr.
	Listener net.Listener
	// Peers maps the other nodes' names to their agents' addresses.
	Peers map[string]string
	// Dial opens connections to peers; it is the node's emulated-link
	// dialer in the fleet. Nil means a plain net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Interval between probes of each peer; default DefaultInterval.
	Interval time.Duration
	// Timeout bounds one probe; default the larger of Interval and one second.
	Timeout time.Duration
	// StaleAfter marks entries not updated for that long as stale; default
	// three intervals.
	StaleAfter time.Duration
	// Alpha is the estimator's gain; default DefaultAlpha.
	Alpha float64
	// Now is the clock for timestamps and staleness; default time.Now.
	// Round trips are always measured with the monotonic clock.
	Now func() time.Time
}

// Agent measures the round-trip time from its node to every peer, learns
// the rest of the matrix from the peers' answers, and serves it over HTTP
// and as Prometheus metrics.
type Agent struct {
	cfg    Config
	peers  []string // sorted
	client *http.Client
	tr     *http.Transport

	mu       sync.Mutex
	view     *view
	failures map[string]uint64 // failed probes per peer, ever

	running sync.Mutex // held while Run runs

	rttDesc, jitterDesc, staleDesc, failDesc *prometheus.Desc
}

// New checks cfg, fills defaults and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	if cfg.Node == "" {
		return nil, errors.New("latency agent: node name is empty")
	}
	if cfg.Addr == "" && cfg.Listener == nil {
		return nil, fmt.Errorf("latency agent %s: no listen address", cfg.Node)
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 || cfg.StaleAfter < 0 {
		return nil, fmt.Errorf("latency agent %s: interval, timeout and staleAfter must not be negative", cfg.Node)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = max(cfg.Interval, time.Second)
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = staleIntervals * cfg.Interval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	peers := make(map[string]string, len(cfg.Peers))
	var names []string
	for name, addr := range cfg.Peers {
		if name == cfg.Node {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("latency agent %s: peers[%q]: %w", cfg.Node, name, err)
		}
		peers[name] = addr
		names = append(names, name)
	}
	sort.Strings(names)
	cfg.Peers = peers
	tr := &http.Transport{
		DialContext:         cfg.Dial,
		Proxy:               nil,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	// Each agent reports its own row; from is a constant label so that the
	// agents of a fleet can share one registry.
	from := prometheus.Labels{"from": cfg.Node}
	to := []string{"to"}
	return &Agent{
		cfg:      cfg,
		peers:    names,
		tr:       tr,
		client:   &http.Client{Transport: tr},
		view:     newView(cfg.Node, cfg.Alpha),
		failures: map[string]uint64{},
		rttDesc: prometheus.NewDesc("kantai_node_latency_seconds",
			"Smoothed round-trip time between two nodes, as measured by the source node's agent.", to, from),
		jitterDesc: prometheus.NewDesc("kantai_node_latency_jitter_seconds",
			"Smoothed standard deviation of the round-trip time between two nodes.", to, from),
		staleDesc: prometheus.NewDesc("kantai_node_latency_stale",
			"1 if the last probe failed or the value is old, else 0.", to, from),
		failDesc: prometheus.NewDesc("kantai_latency_probe_failures_total",
			"Failed latency probes from one node to another.", to, from),
	}, nil
}

// pingResponse is the answer to GET /ping: the node's own row.
type pingResponse struct {
	Node string `json:"node"`
	Row  Row    `json:"row"`
}

// Handler serves GET /ping (this node's row) and GET /matrix (the whole
// matrix as this agent sees it).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		now := a.cfg.Now()
		a.mu.Lock()
		row := a.view.row(now, a.cfg.StaleAfter)
		a.mu.Unlock()
		writeJSON(w, pingResponse{Node: a.cfg.Node, Row: row})
	})
	mux.HandleFunc("GET /matrix", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Matrix())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Matrix returns a copy of the agent's view of the whole matrix.
func (a *Agent) Matrix() Matrix {
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.view.snapshot(now, a.cfg.StaleAfter)
}

// RTT returns the smoothed round-trip time to peer: this node's own
// measurement, or, before there is one, the one the peer reported in the
// other direction (links are symmetric). The value may be stale; Matrix
// tells.
func (a *Agent) RTT(peer string) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d, ok := a.view.m.Get(a.cfg.Node, peer); ok {
		return d, true
	}
	return a.view.m.Get(peer, a.cfg.Node)
}

// Run serves the agent's handler and probes every peer each interval until
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
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var (
		wg       sync.WaitGroup
		flightMu sync.Mutex
		inFlight = map[string]bool{}
	)
	probeAll := func() {
		for _, peer := range a.peers {
			flightMu.Lock()
			busy := inFlight[peer]
			inFlight[peer] = true
			flightMu.Unlock()
			if busy {
				continue // the previous probe has not timed out yet
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.probe(ctx, peer)
				flightMu.Lock()
				delete(inFlight, peer)
				flightMu.Unlock()
			}()
		}
	}
	tick := time.NewTicker(a.cfg.Interval)
	defer tick.Stop()
	var runErr error
	probeAll()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			probeAll()
		case err := <-served:
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

// probe asks peer for its row once and records the round trip, or the
// failure. The round trip runs from the moment the request has a connection
// to the first byte of the answer, so setting up a new connection (which
// costs its own round trip) never counts.
func (a *Agent) probe(parent context.Context, peer string) {
	ctx, cancel := context.WithTimeout(parent, a.cfg.Timeout)
	defer cancel()
	var (
		tmu         sync.Mutex
		start, done time.Time
	)
	trace := &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			tmu.Lock()
			start = time.Now()
			tmu.Unlock()
		},
		GotFirstResponseByte: func() {
			tmu.Lock()
			done = time.Now()
			tmu.Unlock()
		},
	}
	u := "http://" + a.cfg.Peers[peer] + "/ping?from=" + url.QueryEscape(a.cfg.Node)
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, u, nil)
	if err == nil {
		var pr pingResponse
		if pr, err = a.ask(req); err == nil && pr.Node != peer {
			err = fmt.Errorf("%s answered as node %q", u, pr.Node)
		}
		if err == nil {
			tmu.Lock()
			rtt := done.Sub(start)
			tmu.Unlock()
			now := a.cfg.Now()
			a.mu.Lock()
			err = a.view.observe(peer, rtt, now)
			a.view.merge(peer, pr.Row)
			a.mu.Unlock()
		}
	}
	if err == nil || parent.Err() != nil {
		return // success, or the agent is stopping
	}
	now := a.cfg.Now()
	a.mu.Lock()
	a.view.fail(peer, now)
	a.failures[peer]++
	a.mu.Unlock()
}

func (a *Agent) ask(req *http.Request) (pingResponse, error) {
	var pr pingResponse
	resp, err := a.client.Do(req)
	if err != nil {
		return pr, err
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, 1<<20)
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, body)
		return pr, fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	if err := json.NewDecoder(body).Decode(&pr); err != nil {
		return pr, fmt.Errorf("%s: decoding answer: %w", req.URL, err)
	}
	io.Copy(io.Discard, body) // let the connection be reused
	return pr, nil
}

// Describe implements prometheus.Collector.
func (a *Agent) Describe(ch chan<- *prometheus.Desc) {
	ch <- a.rttDesc
	ch <- a.jitterDesc
	ch <- a.staleDesc
	ch <- a.failDesc
}

// Collect implements prometheus.Collector. It reports only the agent's own
// row: in the fleet every node's agent registers with the same registry,
// and the rows together make the matrix without duplicate series.
func (a *Agent) Collect(ch chan<- prometheus.Metric) {
	now := a.cfg.Now()
	a.mu.Lock()
	row := a.view.row(now, a.cfg.StaleAfter)
	failures := make(map[string]uint64, len(a.failures))
	for k, v := range a.failures {
		failures[k] = v
	}
	a.mu.Unlock()
	for to, e := range row {
		if e.Samples > 0 {
			ch <- prometheus.MustNewConstMetric(a.rttDesc, prometheus.GaugeValue, e.RTT, to)
			ch <- prometheus.MustNewConstMetric(a.jitterDesc, prometheus.GaugeValue, e.Jitter, to)
		}
		stale := 0.0
		if e.Stale {
			stale = 1
		}
		ch <- prometheus.MustNewConstMetric(a.staleDesc, prometheus.GaugeValue, stale, to)
	}
	for _, to := range a.peers {
		ch <- prometheus.MustNewConstMetric(a.failDesc, prometheus.CounterValue, float64(failures[to]), to)
	}
}
