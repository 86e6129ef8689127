package nodegw

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"

	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/nodeapi"
)

// Defaults of Config.
const (
	DefaultExternalAddr      = ":8080"
	DefaultInternalAddr      = ":8081"
	DefaultAgentAddr         = ":9696"
	DefaultMetricsAddr       = ":9698"
	DefaultNamespace         = "kantai-system"
	DefaultPeersService      = "kantai-gateway-peers"
	DefaultPolicy            = "kantai"
	DefaultDrainTimeout      = 30 * time.Second
	DefaultRefreshInterval   = time.Second
	DefaultActivationTimeout = 30 * time.Second
)

// Config configures one node's daemon.
type Config struct {
	// Node is the node the daemon runs on (NODE_NAME from the downward
	// API); PodIP its pod's address, used in logs and to tell its own
	// entry among the peers.
	Node, PodIP string
	// Listen addresses (host:port; port 0 picks a free one): the gateway's
	// external and cluster-local listeners, the latency agent, the node
	// API and the metrics and probes. Empty takes the defaults (the node
	// API: nodeapi.DefaultPort).
	External, Internal, Agent, NodeAPI, Metrics string
	// Token guards the node API; required.
	Token string
	// Policy names the load-balancing policy (package balance); default
	// DefaultPolicy.
	Policy string
	// Namespace is kantai's own, where the gateways' headless Service
	// PeersService lives.
	Namespace, PeersService string
	// Rest reaches the API server; the daemon only reads.
	Rest *rest.Config
	// QueueDepth bounds the requests waiting per revision (0: the
	// gateway's default); ActivationTimeout bounds a request's wait for a
	// replica (default DefaultActivationTimeout).
	QueueDepth        int
	ActivationTimeout time.Duration
	// ShutdownDelay is how long the gateway listeners keep serving, while
	// /readyz says not ready, between the stop signal and the drain: the
	// time the endpoints' removal takes to reach load balancers and
	// kube-proxy, which would otherwise send new connections to a closed
	// port. Default 0.
	ShutdownDelay time.Duration
	// DrainTimeout bounds the drain of the gateway listeners at shutdown.
	DrainTimeout time.Duration
	// LatencyInterval is the agent's probing round (0: its default);
	// RefreshInterval how often the gateway takes new RTTs and refreshes
	// its gauges.
	LatencyInterval, RefreshInterval time.Duration
	// Dial opens connections to replicas and peers; nil means a plain
	// net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Engine is the gateway's forwarding engine, gateway.EngineFast or
	// gateway.EngineNetHTTP; "" is gateway.DefaultEngine.
	Engine string
	// MaxHeaderBytes bounds a request's line and headers (431 beyond); on
	// the fasthttp engine it is also the read buffer each client
	// connection holds. 0 means gateway.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	Log            *slog.Logger
}

func (c *Config) defaults() error {
	if c.Node == "" {
		return errors.New("node name is empty (set NODE_NAME from the downward API, or --node)")
	}
	if c.Token == "" {
		return errors.New("node API token is empty: the node API refuses to run without one")
	}
	if c.Rest == nil {
		return errors.New("no API server configuration")
	}
	if err := gateway.CheckEngine(c.Engine); err != nil {
		return err
	}
	if c.MaxHeaderBytes < 0 || (c.MaxHeaderBytes > 0 && c.MaxHeaderBytes < gateway.MinMaxHeaderBytes) {
		return fmt.Errorf("max header bytes %d: want 0 (the default) or at least %d", c.MaxHeaderBytes, gateway.MinMaxHeaderBytes)
	}
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&c.External, DefaultExternalAddr)
	def(&c.Internal, DefaultInternalAddr)
	def(&c.Agent, DefaultAgentAddr)
	def(&c.NodeAPI, fmt.Sprintf(":%d", nodeapi.DefaultPort))
	def(&c.Metrics, DefaultMetricsAddr)
	def(&c.Policy, DefaultPolicy)
	def(&c.Namespace, DefaultNamespace)
	def(&c.PeersService, DefaultPeersService)
	if c.ActivationTimeout <= 0 {
		c.ActivationTimeout = DefaultActivationTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Daemon is one node's gateway, latency agent and node API, fed from the
// cluster.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	gw    *gateway.Gateway
	agent *latency.Agent
	reg   *prometheus.Registry
	watch *watcher

	lns map[string]net.Listener // by listener name

	mu    sync.Mutex // guards apply and orders it with SetProcessing
	apply *applier

	synced    atomic.Bool   // the first route table is in
	firstSync chan struct{} // closed when synced
	draining  atomic.Bool
}

// Listener names, for Addr.
const (
	ListenerExternal = "external"
	ListenerInternal = "internal"
	ListenerAgent    = "agent"
	ListenerNodeAPI  = "node-api"
	ListenerMetrics  = "metrics"
)

// New checks cfg, builds the gateway and the agent and opens every
// listener, so that a port in use fails here; Run serves.
func New(cfg Config) (_ *Daemon, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Log.With("node", cfg.Node), reg: prometheus.NewRegistry(), lns: map[string]net.Listener{},
		firstSync: make(chan struct{})}
	defer func() {
		if err != nil {
			d.closeListeners()
		}
	}()
	for _, l := range []struct{ name, addr string }{
		{ListenerExternal, cfg.External}, {ListenerInternal, cfg.Internal}, {ListenerAgent, cfg.Agent},
		{ListenerNodeAPI, cfg.NodeAPI}, {ListenerMetrics, cfg.Metrics},
	} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return nil, fmt.Errorf("%s listener: %w", l.name, err)
		}
		d.lns[l.name] = ln
	}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.agent, err = latency.New(latency.Config{Node: cfg.Node, Listener: d.lns[ListenerAgent], Dial: cfg.Dial, Interval: cfg.LatencyInterval})
	if err != nil {
		return nil, err
	}
	d.reg.MustRegister(d.agent)
	// The same forwarding transport as the emulated fleet's gateways.
	transport := gateway.NewTransport(cfg.Dial)
	d.gw, err = gateway.New(gateway.Config{
		Node: cfg.Node, Nodes: []string{cfg.Node}, Policy: cfg.Policy,
		QueueDepth: cfg.QueueDepth, ActivationTimeout: cfg.ActivationTimeout,
		Transport: transport, Dial: cfg.Dial, RTT: d.agent.RTT, Metrics: gateway.NewMetrics(d.reg), Log: d.log,
		// Nodes draw different random choices.
		Seed: seedOf(cfg.Node),
		// A request for a revision with no replica waits in the gateway;
		// the controller's leader sees it in Stats (Waiting) when it
		// polls the node API, and scales the revision. Nothing to do
		// per request here.
		OnDemand: nil,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	d.apply = newApplier(d.gw)
	d.watch, err = newWatcher(cfg.Rest, cfg.Namespace, cfg.PeersService)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func seedOf(node string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	return h.Sum64()
}

// Addr is the address a listener (ListenerExternal, ...) listens on.
func (d *Daemon) Addr(name string) string {
	if ln, ok := d.lns[name]; ok {
		return ln.Addr().String()
	}
	return ""
}

// Registry holds the daemon's metrics.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

func (d *Daemon) closeListeners() {
	for _, ln := range d.lns {
		_ = ln.Close()
	}
}

// Run serves until ctx ends, then drains the gateway listeners (requests
// in flight finish; see gateway.Server.Shutdown) before it stops the
// rest. It returns an error if something fails to start or serve.
func (d *Daemon) Run(ctx context.Context) error {
	// Everything but the gateway listeners outlives ctx until they drained.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var wg sync.WaitGroup
	fatal := make(chan error, 8)
	goServe := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fatal <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", d.readyz)
	plain := map[string]*http.Server{
		ListenerMetrics: plainServer(mux),
		ListenerNodeAPI: plainServer(nodeapi.Handler(d, d.cfg.Token)),
	}
	for name, srv := range plain {
		goServe(name, func() error { return srv.Serve(d.lns[name]) })
	}
	goServe("latency agent", func() error { return d.agent.Run(bg) })
	wg.Add(1)
	go func() { defer wg.Done(); d.gw.Run(bg, d.cfg.RefreshInterval) }()

	d.log.Info("Starting", "podIP", d.cfg.PodIP, "external", d.Addr(ListenerExternal), "internal", d.Addr(ListenerInternal),
		"agent", d.Addr(ListenerAgent), "nodeAPI", d.Addr(ListenerNodeAPI), "metrics", d.Addr(ListenerMetrics))
	gws := map[string]gateway.ListenerServer{}
	err := d.watch.start(bg, ctx)
	switch {
	case err == nil:
		wg.Add(1)
		go func() { defer wg.Done(); d.loop(bg) }()
		// The gateway listeners were opened by New: connections wait in
		// the backlog until the first route table is in.
		select {
		case <-d.firstSync:
			// One gateway, two views: the external listener serves only
			// ExternalIP rules (and redirects them when asked); the
			// internal one serves every rule.
			for _, name := range []string{ListenerExternal, ListenerInternal} {
				srv, err := gateway.NewListenerServer(d.cfg.Engine, d.gw, name == ListenerExternal, gateway.ServerOptions{MaxHeaderBytes: d.cfg.MaxHeaderBytes})
				if err != nil { // checked in New
					panic(err)
				}
				gws[name] = srv
				goServe(name+" gateway", func() error { return srv.Serve(d.lns[name]) })
			}
			select {
			case <-ctx.Done():
			case err = <-fatal:
			}
		case <-ctx.Done():
		case err = <-fatal:
		}
	case ctx.Err() != nil:
		err = nil // stopped while the caches synced
	}
	d.draining.Store(true)
	if len(gws) > 0 && d.cfg.ShutdownDelay > 0 {
		d.log.Info("Not ready; serving until the shutdown delay ends", "delay", d.cfg.ShutdownDelay.String())
		t := time.NewTimer(d.cfg.ShutdownDelay)
		select {
		case <-t.C:
		case <-fatal:
			t.Stop()
		}
	}
	d.log.Info("Draining the gateway listeners", "timeout", d.cfg.DrainTimeout.String())
	drainCtx, cancel := context.WithTimeout(context.Background(), d.cfg.DrainTimeout)
	var dwg sync.WaitGroup
	for name, srv := range gws {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			if err := srv.Shutdown(drainCtx); err != nil {
				d.log.Warn("Gateway listener did not drain in time", "listener", name, "err", err)
			}
		}()
	}
	dwg.Wait()
	cancel()
	for _, name := range []string{ListenerExternal, ListenerInternal} {
		if gws[name] == nil {
			_ = d.lns[name].Close()
		}
	}
	stop()
	for _, srv := range plain {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if srv.Shutdown(sctx) != nil {
			_ = srv.Close()
		}
		cancel()
	}
	wg.Wait()
	d.log.Info("Stopped")
	return err
}

func plainServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: 64 << 10}
}

// readyz is ready once the first route table is in, and until the drain
// begins.
func (d *Daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case d.draining.Load():
		http.Error(w, "draining", http.StatusServiceUnavailable)
	case !d.synced.Load():
		http.Error(w, "waiting for the first route table", http.StatusServiceUnavailable)
	default:
		_, _ = w.Write([]byte("ok\n"))
	}
}

// loop applies the cluster's state each time the watches report a
// change; changes that come while it applies are taken together.
func (d *Daemon) loop(ctx context.Context) {
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.watch.changed:
		}
		snap, peers, err := d.watch.read(ctx, d.cfg.Node)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("Reading the caches", "err", err)
			}
			continue
		}
		desired := Plan(snap)
		d.mu.Lock()
		err = d.apply.apply(desired)
		d.mu.Unlock()
		switch {
		case err != nil && err.Error() != lastErr:
			d.log.Error("Route table not applied; serving the previous one", "err", err)
			lastErr = err.Error()
		case err == nil && lastErr != "":
			d.log.Info("Route table applied again")
			lastErr = ""
		}
		delete(peers, d.selfPeer(peers))
		if err := d.agent.SetPeers(peers); err != nil {
			d.log.Warn("Some latency peers left out", "err", err)
		}
		if !d.synced.Swap(true) {
			d.log.Info("First route table applied", "routes", len(desired.Routes), "revisions", len(desired.Revisions),
				"nodes", len(desired.Nodes), "peers", len(peers))
			close(d.firstSync)
		}
	}
}

// selfPeer is the name of a peer entry at this pod's own address under
// another node's name (the agent skips its own name, not its address),
// if any: a node must not probe itself.
func (d *Daemon) selfPeer(peers map[string]string) string {
	if d.cfg.PodIP == "" {
		return ""
	}
	for name, addr := range peers {
		if host, _, _ := net.SplitHostPort(addr); host == d.cfg.PodIP && name != d.cfg.Node {
			return name
		}
	}
	return ""
}

// State is the node's report to the controller (nodeapi.Node).
func (d *Daemon) State() nodeapi.State {
	d.mu.Lock()
	gens, problems := maps.Clone(d.apply.held), maps.Clone(d.apply.problems)
	d.mu.Unlock()
	return nodeapi.State{Node: d.cfg.Node, Stats: d.gw.Stats(), RTT: d.agent.Matrix()[d.cfg.Node],
		Ingresses: gens, Problems: problems}
}

// maxProcessing bounds an estimate: anything longer is a mistake.
const maxProcessing = time.Hour

// SetProcessing takes a revision's processing estimates (nodeapi.Node).
func (d *Daemon) SetProcessing(p nodeapi.Processing) error {
	per := make(map[string]time.Duration, len(p.PerNode))
	for node, s := range p.PerNode {
		if math.IsNaN(s) || s < 0 || s > maxProcessing.Seconds() {
			return fmt.Errorf("processing of %s: perNode[%q] = %v: want seconds in [0, %v]", p.Revision, node, s, maxProcessing.Seconds())
		}
		per[node] = time.Duration(s * float64(time.Second))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.apply.known(p.Revision) {
		return fmt.Errorf("processing: %w %q at node %s", nodeapi.ErrUnknownRevision, p.Revision, d.cfg.Node)
	}
	d.gw.SetProcessing(p.Revision, per)
	return nil
}
