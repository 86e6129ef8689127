// Package fleetenv runs benchmark scenarios on the local emulated fleet: it
// is the bench.Env that `kantai bench` uses.
package fleetenv

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/bench"
	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/fleet"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/manifest"
	"kantai.dev/kantai/internal/testbed"
)

// Env starts a fresh fleet for every run.
type Env struct {
	// FunctionCommand runs the built-in function (default: this executable).
	FunctionCommand []string
	GatewayPort     int
	AgentPort       int
	Log             *slog.Logger
	// ReadyTimeout bounds the wait for latency measurements and replicas;
	// default 30 s plus half a second per node.
	ReadyTimeout time.Duration
}

// Agents of a fleet probed as a full mesh probe faster than the default
// during benchmarks, so that runs start from settled estimates (jitter is
// up to 20 ms there) without a long wait. A larger fleet keeps the default
// interval: its agents probe a few peers per interval whatever the size,
// so a faster round would multiply the whole fleet's probing (1,200
// probes/s at 100 nodes) and a benchmark at idle would measure that
// instead of the fleet users run.
const (
	probeInterval = 250 * time.Millisecond
	minSamples    = 8
)

// probeIntervalFor is the agents' probe period in a fleet of n nodes; 0
// is the fleet's default.
func probeIntervalFor(n int) time.Duration {
	if n <= latency.DefaultMeshLimit {
		return probeInterval
	}
	return 0
}

// Start implements bench.Env.
func (e *Env) Start(ctx context.Context, sc *scenario.Scenario, policy scenario.Policy) (bench.Instance, error) {
	tb := cloneTestbed(sc.Testbed)
	tb.Policies.LoadBalancer = policy.Name
	if !sc.Autoscaled() {
		tb.Policies.Placement = "" // not used with fixed replicas; keep the default
	}
	fns := make([]*manifest.Function, len(sc.Functions))
	for i := range sc.Functions {
		fn, err := functionFor(sc, i)
		if err != nil {
			return nil, err
		}
		fns[i] = fn
	}
	timeout := e.ReadyTimeout
	if timeout == 0 {
		// Larger fleets take longer until every pair is known (a few
		// probes per node per second, spread in time).
		timeout = 30*time.Second + time.Duration(len(tb.Nodes))*500*time.Millisecond
	}
	f, err := fleet.Start(ctx, fleet.Options{Testbed: tb, FunctionCommand: e.FunctionCommand,
		GatewayPort: e.GatewayPort, AgentPort: e.AgentPort, Log: e.Log, LatencyInterval: probeIntervalFor(len(tb.Nodes))})
	if err != nil {
		return nil, err
	}
	inst := &instance{f: f, hosts: map[string]string{}, gw: sc.GatewayFor(policy), clients: map[clientKey]*http.Client{}}
	for _, fn := range fns {
		inst.hosts[fn.Name] = fn.Name + "." + fn.Namespace + "." + tb.Domain
	}
	inst.hosts[""] = inst.hosts[fns[0].Name]
	// Asking for readiness merges every agent's matrix: 100 views of 100
	// rows at 100 nodes, gigabytes of garbage a minute at 20 asks a second.
	poll := 50 * time.Millisecond
	if len(tb.Nodes) > latency.DefaultMeshLimit {
		poll = time.Second
	}
	if err := waitFor(ctx, timeout, poll, "latency measurements", func() bool { return f.LatencyReady(minSamples) }); err != nil {
		inst.Close()
		return nil, err
	}
	want := map[string]int{}
	for i, fn := range fns {
		r := sc.Functions[i].Replicas
		if err := f.ApplyFixed(fn, r.Fixed); err != nil {
			inst.Close()
			return nil, err
		}
		for _, c := range r.Fixed {
			want[fn.Namespace+"/"+fn.Name] += c
		}
		if r.Autoscale != nil {
			want[fn.Namespace+"/"+fn.Name] = r.Autoscale.MinScale
		}
	}
	err = waitFor(ctx, timeout, 50*time.Millisecond, fmt.Sprintf("ready replicas %v", want), func() bool {
		ready := map[string]int{}
		for _, st := range f.Functions() {
			for _, c := range st.Ready {
				ready[st.Namespace+"/"+st.Name] += c
			}
		}
		for k, n := range want {
			if ready[k] < n {
				return false
			}
		}
		return true
	})
	if err != nil {
		inst.Close()
		return nil, err
	}
	return inst, nil
}

// functionFor builds scenario function i's manifest; errors name its field.
func functionFor(sc *scenario.Scenario, i int) (*manifest.Function, error) {
	sf := sc.Functions[i]
	fn := &manifest.Function{Name: sf.Name, Namespace: sf.Namespace, Image: sf.Image, Port: 8080,
		ContainerConcurrency: sf.ContainerConcurrency, Workers: sf.Workers}
	p := sf.Processing
	switch p.Distribution {
	case scenario.DistConstant, "":
		fn.Processing = manifest.Processing{Kind: "fixed", Mean: p.Mean.D()}
	case scenario.DistUniform:
		fn.Processing = manifest.Processing{Kind: "uniform", Min: p.Min.D(), Max: p.Max.D()}
	case scenario.DistExponential:
		fn.Processing = manifest.Processing{Kind: "exp", Mean: p.Mean.D()}
	default:
		return nil, fmt.Errorf("%s: %s.processing.distribution %q is not supported by the built-in function (constant, uniform, exponential)",
			sc.File, sc.FunctionField(i), p.Distribution)
	}
	if fn.Processing.MeanTime() == 0 && fn.Processing.Kind != "" {
		fn.Processing = manifest.Processing{}
	}
	ann := map[string]string{}
	if as := sf.Replicas.Autoscale; as != nil {
		ann[autoscale.AnnotationMinScale] = strconv.Itoa(as.MinScale)
		ann[autoscale.AnnotationMaxScale] = strconv.Itoa(as.MaxScale)
		if as.Target > 0 {
			ann[autoscale.AnnotationTarget] = strconv.FormatFloat(as.Target, 'g', -1, 64)
		}
		if as.Window > 0 {
			ann[autoscale.AnnotationWindow] = as.Window.D().String()
		}
		ann[autoscale.AnnotationInitialScale] = strconv.Itoa(max(as.MinScale, 1))
	}
	spec, _, err := autoscale.FromAnnotations(ann, fn.ContainerConcurrency, manifest.LocalSettings())
	if err != nil {
		return nil, fmt.Errorf("%s: %s.autoscale: %w", sc.File, sc.ReplicasField(i), err)
	}
	fn.Annotations, fn.Scaling = ann, spec
	return fn, nil
}

func cloneTestbed(in *testbed.Testbed) *testbed.Testbed {
	out := *in
	out.Nodes = append([]testbed.Node(nil), in.Nodes...)
	out.Links = append([]testbed.Link(nil), in.Links...)
	return &out
}

func waitFor(ctx context.Context, limit, poll time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("fleet not ready: waited %v for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
	return nil
}

type clientKey struct {
	origin    string
	keepAlive bool
}

type instance struct {
	f *fleet.Fleet
	// hosts maps a function's name to its host; "" to the first function's.
	hosts map[string]string
	gw    scenario.Gateway

	mu      sync.Mutex
	clients map[clientKey]*http.Client
}

// Client dials from the origin node, so a user reaching another node's
// gateway crosses the emulated link.
func (i *instance) Client(origin string, keepAlive bool) *http.Client {
	i.mu.Lock()
	defer i.mu.Unlock()
	k := clientKey{origin, keepAlive}
	if c, ok := i.clients[k]; ok {
		return c
	}
	tr := &http.Transport{DialContext: i.f.Dialer(origin), MaxIdleConnsPerHost: 4096, DisableKeepAlives: !keepAlive,
		DisableCompression: true, IdleConnTimeout: 90 * time.Second}
	c := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	i.clients[k] = c
	return c
}

func (i *instance) URL(origin string) string {
	addr, _ := i.f.GatewayAddr(i.gw.EntryNode(origin))
	return "http://" + addr
}

func (i *instance) Host(function string) string { return i.hosts[function] }

func (i *instance) Close() error {
	i.mu.Lock()
	for _, c := range i.clients {
		c.Transport.(*http.Transport).CloseIdleConnections()
	}
	i.mu.Unlock()
	return i.f.Close()
}
