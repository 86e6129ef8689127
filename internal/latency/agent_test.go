package latency

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"kantai.dev/kantai/internal/linkemu"
)

// TestMain fails the package if goroutines are left behind once every test
// has finished and stopped what it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The agents' tests run on a fake clock: the schedule only moves when a
// test steps the clock, and a test waits for the probes it expects to
// land (Config.OnProbe), never for an amount of time. Round trips are
// still real, through emulated links on loopback.

// t0 is the fake clock's start, on a round boundary.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// waitLimit bounds every wait for an event, so that a broken agent fails
// the test instead of hanging it. It is not a timing assertion.
const waitLimit = 30 * time.Second

type event struct {
	from string
	Probe
}

// recorder collects the probes of every agent of a test.
type recorder struct {
	mu     sync.Mutex
	events []event
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) hook(from string) func(Probe) {
	return func(p Probe) {
		r.mu.Lock()
		r.events = append(r.events, event{from, p})
		r.mu.Unlock()
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}
}

func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// since returns the events after mark.
func (r *recorder) since(mark int) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events[mark:]...)
}

// waitUntil waits until done holds for the events after mark, and returns
// them. It must be called from the test's goroutine.
func (r *recorder) waitUntil(t *testing.T, mark int, done func([]event) bool) []event {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		if evs := r.since(mark); done(evs) {
			return evs
		}
		select {
		case <-r.notify:
		case <-limit.C:
			t.Fatalf("waited %v for probes; got %v", waitLimit, r.since(mark))
		}
	}
}

type testAgent struct {
	*Agent
	addr string
	stop context.CancelFunc
	done chan error
}

// fixture is a few agents on their own loopback addresses, dialling
// through one emulated network, sharing one fake clock.
type fixture struct {
	t      *testing.T
	clock  *clocktesting.FakeClock
	rec    *recorder
	net    *linkemu.Network
	agents map[string]*testAgent
}

// startFleet runs one agent per node; tweak, if not nil, adjusts each
// agent's config.
func startFleet(t *testing.T, n *linkemu.Network, ips map[string]string, tweak func(*Config)) *fixture {
	t.Helper()
	fx := &fixture{t: t, clock: clocktesting.NewFakeClock(t0), rec: newRecorder(), net: n, agents: map[string]*testAgent{}}
	lns, addrs := map[string]net.Listener{}, map[string]string{}
	for node, ip := range ips {
		n.AddNode(node, ip)
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		lns[node], addrs[node] = ln, ln.Addr().String()
	}
	for node := range ips {
		cfg := Config{
			Node:     node,
			Listener: lns[node],
			Peers:    addrs,
			Dial:     n.Dialer(node),
			Interval: time.Second,
			Timeout:  10 * time.Second, // generous: a probe that should succeed must not time out on a busy machine
			Clock:    fx.clock,
			OnProbe:  fx.rec.hook(node),
		}
		if tweak != nil {
			tweak(&cfg)
		}
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ta := &testAgent{Agent: a, addr: addrs[node], stop: cancel, done: make(chan error, 1)}
		go func() { ta.done <- a.Run(ctx) }()
		fx.agents[node] = ta
	}
	t.Cleanup(func() {
		for node := range fx.agents {
			fx.stop(node)
		}
	})
	return fx
}

// stop stops one agent and waits for Run to return.
func (fx *fixture) stop(node string) {
	a := fx.agents[node]
	if a == nil {
		return
	}
	delete(fx.agents, node)
	a.stop()
	select {
	case err := <-a.done:
		if err != nil {
			fx.t.Errorf("agent %s: Run: %v", node, err)
		}
	case <-time.After(waitLimit):
		fx.t.Errorf("agent %s: Run did not return after its context ended", node)
	}
}

// round moves the clock one interval on and waits until every running
// agent has probed each of its peers once (mesh mode). It returns the
// outcomes by [from, to].
func (fx *fixture) round() map[[2]string]event {
	fx.t.Helper()
	want := map[[2]string]bool{}
	for node, a := range fx.agents {
		for _, p := range a.Peers() {
			want[[2]string{node, p}] = true
		}
	}
	mark := fx.rec.mark()
	fx.clock.Step(time.Second)
	got := map[[2]string]event{}
	fx.rec.waitUntil(fx.t, mark, func(evs []event) bool {
		for _, e := range evs {
			got[[2]string{e.from, e.Peer}] = e
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				return false
			}
		}
		return true
	})
	for k, e := range got {
		if !want[k] {
			fx.t.Errorf("unexpected probe %s→%s in the round", k[0], k[1])
		}
		_ = e
	}
	return got
}

func TestAgent(t *testing.T) {
	n := linkemu.NewNetwork()
	links := map[[2]string]time.Duration{
		{"a", "b"}: 20 * time.Millisecond,
		{"a", "c"}: 20 * time.Millisecond,
		{"b", "c"}: 2 * time.Millisecond,
	}
	for p, rtt := range links {
		n.SetLink(p[0], p[1], linkemu.Link{RTT: rtt})
	}
	fx := startFleet(t, n, map[string]string{"a": "127.77.204.1", "b": "127.77.204.2", "c": "127.77.204.3"}, nil)
	agents := fx.agents
	const rounds = 10
	for range rounds {
		for k, e := range fx.round() {
			if e.Err != nil {
				t.Fatalf("probe %s→%s: %v", k[0], k[1], e.Err)
			}
		}
	}

	// The emulated links delay every byte by the configured RTT, so a
	// measurement can only be above it; how far above depends on the
	// machine's load, so the upper bound only catches gross errors (a
	// handshake or a whole scheduling queue counted as RTT).
	within := func(got, want time.Duration) bool {
		return got >= want*9/10 && got <= want+100*time.Millisecond
	}
	for _, viewer := range []string{"a", "b", "c"} {
		m := agents[viewer].Matrix()
		for p, want := range links {
			for _, dir := range [][2]string{p, {p[1], p[0]}} {
				got, ok := m.Get(dir[0], dir[1])
				e := m[dir[0]][dir[1]]
				t.Logf("%s sees %s→%s: %v (jitter %.2f ms, %d samples)", viewer, dir[0], dir[1], got, e.Jitter*1e3, e.Samples)
				// A row learnt from its node lags by at most one round.
				// (Sample counts are not compared: a path whose samples
				// jump, as a loaded machine's do, starts its estimate over.)
				own := agents[dir[0]].Matrix()[dir[0]][dir[1]]
				if !ok || !within(got, want) || e.Stale || e.Estimated || e.Samples == 0 || own.Updated.Sub(e.Updated) > time.Second {
					t.Errorf("%s sees %s→%s = %+v, want %v measured, at most a round behind %s's own %+v", viewer, dir[0], dir[1], e, want, dir[0], own)
				}
			}
		}
		if ab, bc := m["a"]["b"].RTT, m["b"]["c"].RTT; ab <= bc {
			t.Errorf("%s sees a→b %v ≤ b→c %v; the 20 ms link must measure longer than the 2 ms one", viewer, ab, bc)
		}
	}
	if got, ok := agents["b"].RTT("c"); !ok || !within(got, 2*time.Millisecond) {
		t.Errorf("b.RTT(c) = %v, %v", got, ok)
	}
	if agents["a"].CoordinateMode() {
		t.Errorf("three nodes probed in coordinate mode")
	}
	// Every probe also moved the node's coordinate.
	if c := agents["a"].Coordinate(); c.Updated.IsZero() || c.Error >= (VivaldiConfig{}).withDefaults().ErrorMax {
		t.Errorf("a's coordinate = %+v, want updated with a smaller error", c)
	}

	t.Run("HTTP", func(t *testing.T) {
		resp, err := http.Get("http://" + agents["a"].addr + "/matrix")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m Matrix
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		if _, ok := m.Get("c", "b"); !ok || len(m) != 3 {
			t.Errorf("GET /matrix = %+v, want all three rows", m)
		}
		resp2, err := http.Post("http://"+agents["a"].addr+"/ping", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /ping: %s", resp2.Status)
		}
		resp3, err := http.Get("http://" + agents["a"].addr + "/ping")
		if err != nil {
			t.Fatal(err)
		}
		defer resp3.Body.Close()
		var pr pingResponse
		if err := json.NewDecoder(resp3.Body).Decode(&pr); err != nil {
			t.Fatal(err)
		}
		if pr.Node != "a" || len(pr.Row) != 2 || pr.Coord == nil || len(pr.Coords) != 2 {
			t.Errorf("GET /ping = %+v, want a's row, its coordinate and b's and c's", pr)
		}
		if h := resp3.Header.Get("Server-Timing"); !strings.HasPrefix(h, "ping;dur=") {
			t.Errorf("GET /ping Server-Timing = %q", h)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		for _, node := range []string{"a", "b", "c"} {
			if err := reg.Register(agents[node]); err != nil {
				t.Fatal(err)
			}
		}
		// All agents in one registry: the rows must not collide.
		for name, want := range map[string]int{
			"kantai_node_latency_seconds":        6,
			"kantai_node_latency_jitter_seconds": 6,
			"kantai_node_latency_estimated":      6,
			"kantai_latency_probes_total":        3,
			"kantai_latency_probe_spikes_total":  3,
		} {
			if got := testutil.CollectAndCount(reg, name); got != want {
				t.Errorf("%s has %d series, want %d", name, got, want)
			}
		}
		if problems, err := testutil.CollectAndLint(agents["a"]); err != nil || len(problems) > 0 {
			t.Errorf("lint: %v %v", problems, err)
		}
		v := metricValue(t, reg, "kantai_node_latency_seconds", "a", "b")
		if !within(time.Duration(v*float64(time.Second)), 20*time.Millisecond) {
			t.Errorf(`kantai_node_latency_seconds{from="a",to="b"} = %v`, v)
		}
		if err := testutil.CollectAndCompare(agents["a"], strings.NewReader(fmt.Sprintf(`
# HELP kantai_latency_probe_failures_total Failed latency probes from one node to another.
# TYPE kantai_latency_probe_failures_total counter
kantai_latency_probe_failures_total{from="a",to="b"} 0
kantai_latency_probe_failures_total{from="a",to="c"} 0
# HELP kantai_latency_probes_total Latency probes sent by a node's agent.
# TYPE kantai_latency_probes_total counter
kantai_latency_probes_total{from="a"} %d
`, 2*rounds)), "kantai_latency_probe_failures_total", "kantai_latency_probes_total"); err != nil {
			t.Error(err)
		}
	})

	t.Run("stopped peer", func(t *testing.T) {
		before, _ := agents["a"].RTT("c")
		last := agents["a"].Matrix()["a"]["c"]
		fx.stop("c")
		// One round: a's and b's probes to c fail, the others succeed.
		evs := fx.round()
		for k, e := range evs {
			if failed := k[1] == "c"; (e.Err != nil) != failed {
				t.Errorf("probe %s→%s: err %v, want failed %v", k[0], k[1], e.Err, failed)
			}
		}
		m := agents["a"].Matrix()
		if e := m["a"]["c"]; !e.Stale || e.Failures != 1 || e.Samples != last.Samples || e.RTT != last.RTT {
			t.Errorf("a→c after c stopped = %+v, want stale with one failure and the old value", e)
		}
		if got, ok := agents["a"].RTT("c"); !ok || got != before {
			t.Errorf("a.RTT(c) = %v, %v; want the last value %v", got, ok, before)
		}
		// Probes to b went on meanwhile.
		if e := m["a"]["b"]; e.Stale || !e.Updated.Equal(evs[[2]string{"a", "b"}].At) || e.Samples == 0 {
			t.Errorf("a→b = %+v, want fresh from the last round", e)
		}
		if m["c"]["a"].Stale {
			t.Errorf("c's row is stale after one round: %+v", m["c"])
		}
		// c's row goes stale once it is older than StaleAfter (three rounds).
		for range 3 {
			fx.round()
		}
		m = agents["a"].Matrix()
		if !m["c"]["a"].Stale || !m["c"]["b"].Stale {
			t.Errorf("c's row is not stale three rounds after c stopped: %+v", m["c"])
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(agents["a"])
		if v := metricValue(t, reg, "kantai_latency_probe_failures_total", "a", "c"); v != 4 {
			t.Errorf("failures a→c = %v, want 4", v)
		}
		if v := metricValue(t, reg, "kantai_node_latency_stale", "a", "c"); v != 1 {
			t.Errorf("stale a→c = %v, want 1", v)
		}
	})
}

// TestAgent_peersChange checks that peers can be forgotten and added while
// the agents run, and that a forgotten peer leaves the matrix, the
// metrics and the probing schedule.
func TestAgent_peersChange(t *testing.T) {
	n := linkemu.NewNetwork()
	for _, p := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}} {
		n.SetLink(p[0], p[1], linkemu.Link{RTT: 2 * time.Millisecond})
	}
	fx := startFleet(t, n, map[string]string{"a": "127.77.204.11", "b": "127.77.204.12", "c": "127.77.204.13"}, nil)
	a := fx.agents["a"]
	fx.round()
	fx.round()
	cAddr := fx.agents["c"].addr

	// Everyone forgets c, as a DaemonSet's agents would when the node goes.
	fx.stop("c")
	a.ForgetPeer("c")
	fx.agents["b"].ForgetPeer("c")
	a.ForgetPeer("nobody") // no-op
	if got := a.Peers(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("Peers after ForgetPeer(c) = %v", got)
	}
	for k := range fx.round() {
		if k[1] == "c" {
			t.Errorf("probe %s→c after c was forgotten", k[0])
		}
	}
	m := a.Matrix()
	if _, ok := m["c"]; ok {
		t.Errorf("c's row is still in a's matrix: %+v", m["c"])
	}
	for from, row := range m {
		if _, ok := row["c"]; ok {
			t.Errorf("%s→c is still in a's matrix", from)
		}
	}
	if _, ok := a.RTT("c"); ok {
		t.Errorf("a.RTT(c) known after c was forgotten")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Agent)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			if label(s, "to") == "c" {
				t.Errorf("%s still has a series to c", mf.GetName())
			}
		}
	}

	// c comes back, on the same address; a and b learn it again.
	lnC, err := net.Listen("tcp", cAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Node: "c", Listener: lnC, Peers: map[string]string{"a": a.addr, "b": fx.agents["b"].addr},
		Dial: n.Dialer("c"), Timeout: 10 * time.Second, Clock: fx.clock, OnProbe: fx.rec.hook("c")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc := &testAgent{Agent: c, addr: cAddr, stop: cancel, done: make(chan error, 1)}
	go func() { tc.done <- c.Run(ctx) }()
	fx.agents["c"] = tc
	if err := a.AddPeer("c", cAddr); err != nil {
		t.Fatal(err)
	}
	if err := fx.agents["b"].SetPeers(map[string]string{"a": a.addr, "c": cAddr, "b": "itself:1", "d": "no port"}); err == nil || !strings.Contains(err.Error(), `peers["d"]`) {
		t.Errorf("SetPeers with a bad address for d: %v", err)
	}
	if got := fx.agents["b"].Peers(); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("b's peers = %v, want [a c]", got)
	}
	if err := a.AddPeer("a", cAddr); err == nil {
		t.Errorf("AddPeer of the node itself succeeded")
	}
	if err := a.AddPeer("d", "no port"); err == nil {
		t.Errorf("AddPeer with a bad address succeeded")
	}
	// Two rounds: in the first, c's row is still empty when a asks.
	for range 2 {
		for k, e := range fx.round() {
			if e.Err != nil {
				t.Errorf("probe %s→%s: %v", k[0], k[1], e.Err)
			}
		}
	}
	m = a.Matrix()
	if e := m["a"]["c"]; e.Samples != 2 || e.Stale {
		t.Errorf("a→c after c came back = %+v, want two fresh samples (the old ones forgotten)", e)
	}
	if _, ok := m.Get("c", "b"); !ok {
		t.Errorf("a does not know c→b after c came back: %+v", m["c"])
	}
	// b moves to another address: what a knew about b goes.
	if err := a.AddPeer("b", "127.77.204.19:1"); err != nil {
		t.Fatal(err)
	}
	m = a.Matrix()
	if _, ok := m["b"]; ok || m["a"]["b"].Known() || m["c"]["b"].Known() {
		t.Errorf("a's matrix after b moved = %+v, want nothing about b", m)
	}
	if got := a.Peers(); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("a's peers after b moved = %v", got)
	}
}

// TestAgent_forgetInFlight checks that a probe that lands after its peer
// was forgotten is discarded.
func TestAgent_forgetInFlight(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	ln, err := net.Listen("tcp", "127.77.205.19:0")
	if err != nil {
		t.Fatal(err)
	}
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte(`{"node":"slow","row":{}}`))
	})}
	go slow.Serve(ln)
	defer slow.Close()
	n := linkemu.NewNetwork()
	n.AddNode("slow", "127.77.205.19")
	fx := startFleet(t, n, map[string]string{"a": "127.77.205.11"}, func(c *Config) {
		c.Peers = map[string]string{"slow": ln.Addr().String()}
	})
	a := fx.agents["a"]
	mark := fx.rec.mark()
	fx.clock.Step(time.Second)
	<-arrived
	a.ForgetPeer("slow")
	close(release)
	// Step on until a's probe has come back: the in-flight flag is cleared
	// only then. A second probe to slow would be a bug; with slow
	// forgotten there is nothing to probe, so the recorder stays empty.
	fx.stop("a")
	if evs := fx.rec.since(mark); len(evs) != 0 {
		t.Errorf("events after slow was forgotten: %v", evs)
	}
	if m := a.Matrix(); len(m) != 1 || len(m["a"]) != 0 {
		t.Errorf("matrix after forgetting slow = %+v, want a's empty row", m)
	}
}

// TestAgent_hungPeer checks that a peer that accepts connections but never
// answers costs only failed probes, not the other peers' measurements, and
// that Run returns while a probe hangs.
func TestAgent_hungPeer(t *testing.T) {
	arrived := make(chan struct{}, 16)
	ln, err := net.Listen("tcp", "127.77.205.9:0")
	if err != nil {
		t.Fatal(err)
	}
	hung := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	})}
	go hung.Serve(ln)
	defer hung.Close()

	n := linkemu.NewNetwork()
	n.AddNode("hung", "127.77.205.9")
	n.SetLink("a", "b", linkemu.Link{RTT: 10 * time.Millisecond})
	n.SetLink("a", "hung", linkemu.Link{RTT: 10 * time.Millisecond})
	fx := startFleet(t, n, map[string]string{"a": "127.77.205.1", "b": "127.77.205.2"}, func(c *Config) {
		c.Peers["hung"] = ln.Addr().String()
		if c.Node == "a" {
			// The hung probe's failure is what each round waits for;
			// a→b must not time out even on a busy machine.
			c.Timeout = time.Second
		}
	})
	fx.agents["b"].ForgetPeer("hung")
	for range 2 {
		evs := fx.round()
		if e := evs[[2]string{"a", "hung"}]; e.Err == nil {
			t.Errorf("probe a→hung succeeded")
		}
		if e := evs[[2]string{"a", "b"}]; e.Err != nil {
			t.Errorf("probe a→b: %v", e.Err)
		}
	}
	m := fx.agents["a"].Matrix()
	if e := m["a"]["b"]; e.Stale || e.Samples != 2 {
		t.Errorf("a→b = %+v, want fresh with 2 samples", e)
	}
	if e := m["a"]["hung"]; !e.Stale || e.Failures != 2 || e.Samples != 0 {
		t.Errorf("a→hung = %+v, want stale with 2 failures", e)
	}
	if _, ok := fx.agents["a"].RTT("hung"); ok {
		t.Errorf("RTT to a peer never measured")
	}
	// Stop a while its probe to hung hangs: Run returns (stop fails the
	// test if it does not) and counts no failure for the cancelled probe.
	a := fx.agents["a"]
	fx.clock.Step(time.Second)
	for range 3 { // two earlier requests, then this round's
		<-arrived
	}
	fx.stop("a")
	if e := a.Matrix()["a"]["hung"]; e.Failures != 2 {
		t.Errorf("a→hung after stopping = %+v, want still 2 failures", e)
	}
}

func TestNew_errors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no node", Config{Addr: "127.0.0.1:0"}, "node name"},
		{"no address", Config{Node: "a"}, "listen address"},
		{"bad peer", Config{Node: "a", Addr: "127.0.0.1:0", Peers: map[string]string{"b": "nowhere"}}, `peers["b"]`},
		{"negative interval", Config{Node: "a", Addr: "127.0.0.1:0", Interval: -1}, "negative"},
		{"negative probes", Config{Node: "a", Addr: "127.0.0.1:0", ProbesPerRound: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func metricValue(t *testing.T, g prometheus.Gatherer, name, from, to string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "from") == from && label(m, "to") == to {
				if m.Gauge != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s{from=%q,to=%q}", name, from, to)
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestAgent_coordinateMode checks a fleet above the mesh limit: each agent
// probes one neighbour per round, learns coordinates from the answers, and
// fills the rest of its row with estimates that are marked as such.
func TestAgent_coordinateMode(t *testing.T) {
	n := linkemu.NewNetwork()
	ips := map[string]string{}
	nodes := []string{"a", "b", "c", "d", "e", "f"}
	for i, node := range nodes {
		ips[node] = fmt.Sprintf("127.77.205.%d", 31+i)
		for j, other := range nodes[:i] {
			n.SetLink(node, other, linkemu.Link{RTT: time.Duration(2+3*(i+j)) * time.Millisecond})
		}
	}
	fx := startFleet(t, n, ips, func(c *Config) {
		c.MeshLimit, c.ProbesPerRound, c.Neighbors = 4, 1, 2
		// The drifting neighbour set, not a sweep, and measurements
		// that give way to estimates after six rounds.
		c.SweepLimit, c.StaleAfter = -1, 6*time.Second
	})
	// One round: every agent probes exactly one peer.
	round := func() map[string]event {
		t.Helper()
		mark := fx.rec.mark()
		fx.clock.Step(time.Second)
		evs := fx.rec.waitUntil(t, mark, func(evs []event) bool { return len(evs) >= len(nodes) })
		byNode := map[string]event{}
		for _, e := range evs {
			if _, dup := byNode[e.from]; dup {
				t.Errorf("%s probed twice in a round", e.from)
			}
			if e.Err != nil {
				t.Errorf("probe %s→%s: %v", e.from, e.Peer, e.Err)
			}
			byNode[e.from] = e
		}
		return byNode
	}
	a := fx.agents["a"]
	if !a.CoordinateMode() {
		t.Fatal("6 nodes with a mesh limit of 4 probed as a mesh")
	}
	// Coordinates spread with the answers and the neighbour set drifts,
	// so step rounds until a's row is complete and holds an estimate
	// (an entry not measured for StaleAfter, six rounds here).
	complete := func() bool {
		row := a.Matrix()["a"]
		est := false
		for _, p := range nodes[1:] {
			if !row[p].Known() {
				return false
			}
			est = est || row[p].Estimated
		}
		return est
	}
	rounds := 0
	for ; rounds < 8 || !complete(); rounds++ {
		if rounds == 50 {
			t.Fatalf("a's row after 50 rounds: %+v", a.Matrix()["a"])
		}
		round()
	}
	row := a.Matrix()["a"]
	var measured, estimated int
	for _, p := range nodes[1:] {
		e := row[p]
		if e.Estimated {
			estimated++
			if e.Samples != 0 || e.RTT <= 0 {
				t.Errorf("estimated a→%s = %+v", p, e)
			}
		} else {
			measured++
		}
	}
	t.Logf("after %d rounds a's row: %d measured, %d estimated: %+v", rounds, measured, estimated, row)
	if measured == 0 || estimated == 0 {
		t.Errorf("a's row has %d measured and %d estimated entries, want both", measured, estimated)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Agent)
	if got := testutil.CollectAndCount(reg, "kantai_node_latency_estimated"); got != 5 {
		t.Errorf("kantai_node_latency_estimated has %d series, want 5", got)
	}
	for _, p := range nodes[1:] {
		if v := metricValue(t, reg, "kantai_node_latency_estimated", "a", p); v != boolValue(row[p].Estimated) {
			t.Errorf("kantai_node_latency_estimated{to=%q} = %v, entry %+v", p, v, row[p])
		}
	}
	if err := testutil.CollectAndCompare(a, strings.NewReader(fmt.Sprintf(`
# HELP kantai_latency_probes_total Latency probes sent by a node's agent.
# TYPE kantai_latency_probes_total counter
kantai_latency_probes_total{from="a"} %d
`, rounds)), "kantai_latency_probes_total"); err != nil {
		t.Error(err)
	}
	// A /ping answer carries only measurements, never estimates.
	resp, err := http.Get("http://" + a.addr + "/ping")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr pingResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
		t.Fatal(err)
	}
	for p, e := range pr.Row {
		if e.Estimated || e.Samples == 0 {
			t.Errorf("/ping row carries a→%s = %+v", p, e)
		}
	}
	if want := gossipFor(5, 1); pr.Coord == nil || pr.Coord.Updated.IsZero() || len(pr.Coords) != want {
		t.Errorf("/ping coordinates: own %+v, %d others; want a moved one and %d", pr.Coord, len(pr.Coords), want)
	}
	// A probe's request carries the prober's measurement of the path,
	// which the answering node pools with its own.
	// (The fake clock does not move: no probe runs meanwhile.) b's value
	// is a's own plus 5 %, close enough to be pooled (see pool).
	a.mu.Lock()
	own := a.view.m["a"]["b"]
	a.mu.Unlock()
	said := 0.010
	if own.Samples > 0 {
		said = own.RTT * 1.05
	}
	resp, err = http.Get(fmt.Sprintf("http://%s/ping?from=b&rtt=%g&j=0.001&n=3", a.addr, said))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	after := a.Matrix()["a"]["b"]
	want := said
	if own.Samples > 0 {
		w := float64(min(own.Samples, poolCap))
		want = (w*own.RTT + 3*said) / (w + 3)
	}
	if after.Estimated || math.Abs(after.RTT-want) > 1e-9 || after.Samples != own.Samples+3 {
		t.Errorf("a→b = %+v after b said %v s over 3 samples, own %+v; want the two pooled: %v s", after, said, own, want)
	}
}

// countingConn reports its Close to the fixture's count of open
// connections, once.
type countingConn struct {
	net.Conn
	once  sync.Once
	count *openCount
}

func (c *countingConn) Close() error {
	c.once.Do(func() { c.count.add(-1) })
	return c.Conn.Close()
}

type openCount struct {
	mu     sync.Mutex
	n      int
	notify chan struct{}
}

func (o *openCount) add(d int) {
	o.mu.Lock()
	o.n += d
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

// waitFor waits until n connections are open.
func (o *openCount) waitFor(t *testing.T, n int) {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		o.mu.Lock()
		got := o.n
		o.mu.Unlock()
		if got == n {
			return
		}
		select {
		case <-o.notify:
		case <-limit.C:
			t.Fatalf("waited %v for %d open probe connections; %d are open", waitLimit, n, got)
		}
	}
}

// A swept fleet (coordinate mode, every peer in turn) holds no connection
// between its probes: a connection per peer would be O(n) per node for one
// probe per sweep. A full mesh keeps one per peer, since every peer's turn
// comes back each interval.
func TestAgent_sweepHoldsNoConnections(t *testing.T) {
	nodes := []string{"a", "b", "c", "d", "e", "f"}
	for _, c := range []struct {
		name      string
		meshLimit int
		wantOpen  int
	}{
		{"mesh", -1, len(nodes) * (len(nodes) - 1)},
		{"sweep", 4, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := linkemu.NewNetwork()
			ips := map[string]string{}
			for i, node := range nodes {
				ips[node] = fmt.Sprintf("127.77.206.%d", 31+i)
			}
			open := &openCount{notify: make(chan struct{}, 1)}
			fx := startFleet(t, n, ips, func(cfg *Config) {
				cfg.MeshLimit, cfg.ProbesPerRound = c.meshLimit, 1
				// Rounds of an hour on the fake clock: the transport's
				// idle timeout (ten rounds, on the real clock) cannot be
				// what closes a connection here.
				cfg.Interval = time.Hour
				dial := cfg.Dial
				cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					conn, err := dial(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					open.add(1)
					return &countingConn{Conn: conn, count: open}, nil
				}
			})
			if got := fx.agents["a"].CoordinateMode(); got != (c.meshLimit > 0) {
				t.Fatalf("CoordinateMode() = %v", got)
			}
			// Enough rounds for every agent to have probed every peer.
			perRound := len(nodes) - 1
			if c.meshLimit > 0 {
				perRound = 1
			}
			for range (len(nodes) - 1) / perRound {
				mark := fx.rec.mark()
				fx.clock.Step(time.Hour)
				fx.rec.waitUntil(t, mark, func(evs []event) bool { return len(evs) >= len(nodes)*perRound })
			}
			open.waitFor(t, c.wantOpen)
			for _, e := range fx.rec.since(0) {
				if e.Err != nil {
					t.Errorf("probe %s→%s: %v", e.from, e.Peer, e.Err)
				}
			}
		})
	}
}
