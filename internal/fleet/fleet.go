// Package fleet runs an emulated edge–cloud fleet on one machine: every
// node of the testbed gets a loopback address, a gateway and a latency
// agent; links between nodes are emulated in user space; function replicas
// are OS processes bound to their node's address. A control loop reads the
// gateways' cumulative stats, runs each revision's control step, starts and
// drains processes, and keeps every gateway's route table, ready replicas
// and processing estimates current.
//
// The fleet is a thin adapter: the decisions are made by package control
// (with autoscale and placement) and, per request, by the gateway and
// balance packages, the same code the Kubernetes home runs.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"kantai.dev/kantai/internal/demand"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/linkemu"
	"kantai.dev/kantai/internal/placement"
	"kantai.dev/kantai/internal/testbed"
)

// Options configures a fleet.
type Options struct {
	Testbed *testbed.Testbed
	// FunctionCommand runs the built-in function; the fleet appends "hello".
	// Default: this executable with "fn".
	FunctionCommand []string
	// GatewayPort and AgentPort are the ports on every node's address.
	GatewayPort int
	AgentPort   int
	// ControlInterval is the control loop's period (default 1s);
	// LatencyInterval the agents' probe period (default 1s).
	ControlInterval time.Duration
	LatencyInterval time.Duration
	Log             *slog.Logger
	// Registry receives every metric of the fleet; default a new one.
	Registry *prometheus.Registry
	Seed     uint64
	// GatewayEngine is the gateways' forwarding engine, gateway.EngineFast
	// or gateway.EngineNetHTTP; default the testbed's gateway.engine, else
	// the environment's KANTAI_GATEWAY_ENGINE, else gateway.DefaultEngine.
	GatewayEngine string
}

// Fleet is a running emulated fleet.
type Fleet struct {
	opts    Options
	tb      *testbed.Testbed
	log     *slog.Logger
	net     *linkemu.Network
	nodes   []*node
	byName  map[string]*node
	place   placement.Policy
	reg     *prometheus.Registry
	metrics *gateway.Metrics
	procs   *procGroups

	live live // links and nodes changed while running (links.go)

	mu     sync.Mutex
	svcs   map[string]*service
	routes []gateway.Route // as last published
	rng    *rand.Rand
	kick   chan struct{}
	// demand turns the gateways' readings into windows; the control loop
	// alone uses it.
	demand *demand.Collector

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// loopDone closes when the control loop has returned; starting counts
	// replicas between their start and their readiness.
	loopDone chan struct{}
	starting sync.WaitGroup
}

type node struct {
	spec      testbed.Node
	gw        *gateway.Gateway
	gwLn      net.Listener
	gwSrv     gateway.ListenerServer
	agent     *latency.Agent
	transport *http.Transport
}

// Start brings the fleet up: listeners on every node's address, agents
// probing, the control loop running. It returns once everything listens.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.Testbed == nil {
		opts.Testbed = testbed.Default()
	}
	if opts.GatewayPort == 0 {
		opts.GatewayPort = 8080
	}
	if opts.AgentPort == 0 {
		opts.AgentPort = 9696
	}
	if opts.ControlInterval <= 0 {
		opts.ControlInterval = time.Second
	}
	if opts.LatencyInterval <= 0 {
		opts.LatencyInterval = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.GatewayEngine == "" {
		opts.GatewayEngine = opts.Testbed.Gateway.Engine
	}
	if opts.GatewayEngine == "" {
		opts.GatewayEngine = os.Getenv(gateway.EnvEngine)
	}
	if err := gateway.CheckEngine(opts.GatewayEngine); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if len(opts.FunctionCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("locating the kantai executable for function replicas: %w", err)
		}
		opts.FunctionCommand = []string{exe, "fn"}
	}
	if opts.Seed == 0 {
		opts.Seed = uint64(time.Now().UnixNano())
	}
	tb := opts.Testbed
	place, err := placement.New(tb.Policies.Placement)
	if err != nil {
		return nil, fmt.Errorf("testbed policies.placement: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Fleet{
		opts: opts, tb: tb, log: opts.Log, net: linkemu.NewNetwork(), byName: map[string]*node{},
		place: place, reg: opts.Registry, metrics: gateway.NewMetrics(opts.Registry),
		svcs: map[string]*service{}, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed>>7|1)),
		kick: make(chan struct{}, 1), demand: demand.New(), ctx: ctx, cancel: cancel, loopDone: make(chan struct{}),
		procs: newProcGroups(opts.Log),
	}
	f.net.Seed(opts.Seed)
	for _, n := range tb.Nodes {
		f.net.AddNode(n.Name, n.Address)
	}
	for i, a := range tb.Nodes {
		for _, b := range tb.Nodes[i+1:] {
			l, _ := tb.LinkBetween(a.Name, b.Name)
			f.net.SetLink(a.Name, b.Name, linkemu.Link{RTT: l.Latency.D(), Jitter: l.Jitter.D(), BytesPerSec: l.Bandwidth.BytesPerSecond()})
		}
	}
	if err := f.startNodes(); err != nil {
		close(f.loopDone) // it never ran
		f.Close()
		return nil, err
	}
	f.wg.Add(1)
	go func() { defer f.wg.Done(); defer close(f.loopDone); f.controlLoop() }()
	return f, nil
}

func (f *Fleet) startNodes() error {
	names := f.tb.NodeNames()
	for _, spec := range f.tb.Nodes {
		n := &node{spec: spec}
		f.nodes = append(f.nodes, n)
		f.byName[spec.Name] = n
		dial := f.net.Dialer(spec.Name)
		n.transport = gateway.NewTransport(dial)
		peers := map[string]string{}
		for _, o := range f.tb.Nodes {
			if o.Name != spec.Name {
				peers[o.Name] = net.JoinHostPort(o.Address, strconv.Itoa(f.opts.AgentPort))
			}
		}
		agent, err := latency.New(latency.Config{
			Node: spec.Name, Addr: net.JoinHostPort(spec.Address, strconv.Itoa(f.opts.AgentPort)),
			Peers: peers, Dial: dial, Interval: f.opts.LatencyInterval,
		})
		if err != nil {
			return fmt.Errorf("node %s: latency agent: %w", spec.Name, err)
		}
		n.agent = agent
		f.reg.MustRegister(agent)
		nodeName := spec.Name
		gw, err := gateway.New(gateway.Config{
			Node: spec.Name, Nodes: names, Policy: f.tb.Policies.LoadBalancer,
			QueueDepth: f.tb.Gateway.QueueDepth, ActivationTimeout: f.tb.Gateway.ActivationTimeout.D(),
			Transport: n.transport, Dial: dial, RTT: agent.RTT, Metrics: f.metrics,
			Log: f.log.With("node", spec.Name), Seed: f.opts.Seed + uint64(len(f.nodes)),
			OnDemand: func(rev string) { f.coldStart(rev, nodeName) },
		})
		if err != nil {
			return fmt.Errorf("testbed policies.loadBalancer: %w", err)
		}
		n.gw = gw
		addr := net.JoinHostPort(spec.Address, strconv.Itoa(f.opts.GatewayPort))
		ln, err := listenGate("tcp", addr) // can be shut and reopened: SetNodeDown
		if err != nil {
			return fmt.Errorf("node %s: gateway: %w", spec.Name, err)
		}
		n.gwLn = ln
		if n.gwSrv, err = gateway.NewListenerServer(f.opts.GatewayEngine, gw, false, gateway.ServerOptions{}); err != nil {
			return fmt.Errorf("node %s: gateway: %w", spec.Name, err)
		}
		f.wg.Add(3)
		go func() { defer f.wg.Done(); gw.Run(f.ctx, f.opts.ControlInterval) }()
		go func() {
			defer f.wg.Done()
			if err := n.gwSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				f.log.Error("gateway stopped", "node", nodeName, "err", err)
			}
		}()
		go func() {
			defer f.wg.Done()
			if err := agent.Run(f.ctx); err != nil && f.ctx.Err() == nil {
				f.log.Error("latency agent stopped", "node", nodeName, "err", err)
			}
		}()
	}
	return nil
}

// Testbed returns the fleet's description.
func (f *Fleet) Testbed() *testbed.Testbed { return f.tb }

// Registry is where the fleet's metrics live.
func (f *Fleet) Registry() *prometheus.Registry { return f.reg }

// GatewayAddr is a node's gateway address (host:port).
func (f *Fleet) GatewayAddr(nodeName string) (string, bool) {
	n, ok := f.byName[nodeName]
	if !ok {
		return "", false
	}
	return n.gwLn.Addr().String(), true
}

// Dialer dials from a node, through its emulated links: for clients that
// stand at a node and call another node's gateway.
func (f *Fleet) Dialer(nodeName string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return f.net.Dialer(nodeName)
}

// Latency returns the matrix as measured by the agents (each agent knows
// every row through its probes; rows are merged, newest first).
func (f *Fleet) Latency() latency.Matrix {
	views := make([]latency.Matrix, 0, len(f.nodes))
	for _, n := range f.nodes {
		views = append(views, n.agent.Matrix())
	}
	return latency.Merge(views...)
}

// Close stops everything without losing a request: the gateways stop
// accepting and drain (requests in flight finish, late ones on open
// connections get 503 + Connection: close) while replicas still serve;
// then the control loop and agents stop, and the replicas drain and stop;
// last, any process group a replica left behind is killed.
func (f *Fleet) Close() error {
	var wg sync.WaitGroup
	for _, n := range f.nodes {
		if n.gwSrv != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), f.gatewayDrainTimeout())
				defer cancel()
				if err := n.gwSrv.Shutdown(ctx); err != nil {
					f.log.Warn("gateway did not drain in time", "node", n.spec.Name, "err", err)
				}
			}()
		}
	}
	wg.Wait()
	// No replica starts once the control loop has stopped, and those
	// starting stop themselves; then every replica left is drained.
	f.cancel()
	<-f.loopDone
	f.starting.Wait()
	f.mu.Lock()
	var all []*replicaProc
	for _, svc := range f.svcs {
		for _, rev := range svc.revisions {
			for _, r := range rev.replicas {
				all = append(all, r)
			}
		}
	}
	f.mu.Unlock()
	for _, r := range all {
		wg.Add(1)
		go func() { defer wg.Done(); r.stop(5 * time.Second) }()
	}
	wg.Wait()
	for _, n := range f.nodes {
		if n.transport != nil {
			n.transport.CloseIdleConnections()
		}
	}
	f.wg.Wait()
	f.procs.close()
	return nil
}

// gatewayDrainTimeout bounds a gateway's drain: a request buffered for a
// replica may wait up to the activation timeout.
func (f *Fleet) gatewayDrainTimeout() time.Duration {
	return f.tb.Gateway.ActivationTimeout.D() + 5*time.Second
}

// Done is closed when the fleet stops.
func (f *Fleet) Done() <-chan struct{} { return f.ctx.Done() }

func (f *Fleet) nodeNames() []string { return f.tb.NodeNames() }

// sortedKeys returns a map's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
