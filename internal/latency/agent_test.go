package latency

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"kantai.dev/kantai/internal/linkemu"
)

// TestMain fails the package if goroutines are left behind once every test
// has finished and stopped what it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testAgent struct {
	*Agent
	addr string
	stop context.CancelFunc
	done chan error
}

// startFleet runs one agent per node on its own loopback address, dialling
// through the emulated network.
func startFleet(t *testing.T, n *linkemu.Network, ips map[string]string, interval time.Duration) map[string]*testAgent {
	t.Helper()
	lns, addrs := map[string]net.Listener{}, map[string]string{}
	for node, ip := range ips {
		n.AddNode(node, ip)
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		lns[node], addrs[node] = ln, ln.Addr().String()
	}
	agents := map[string]*testAgent{}
	for node := range ips {
		a, err := New(Config{
			Node:     node,
			Listener: lns[node],
			Peers:    addrs,
			Dial:     n.Dialer(node),
			Interval: interval,
			Timeout:  500 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ta := &testAgent{Agent: a, addr: addrs[node], stop: cancel, done: make(chan error, 1)}
		go func() { ta.done <- a.Run(ctx) }()
		agents[node] = ta
	}
	t.Cleanup(func() {
		for node, a := range agents {
			a.stop()
			select {
			case err := <-a.done:
				if err != nil {
					t.Errorf("agent %s: Run: %v", node, err)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("agent %s: Run did not return after its context ended", node)
			}
			a.done <- nil // later cleanups may wait again
		}
	})
	return agents
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
	agents := startFleet(t, n, map[string]string{"a": "127.77.204.1", "b": "127.77.204.2", "c": "127.77.204.3"}, 100*time.Millisecond)
	time.Sleep(1500 * time.Millisecond)

	within := func(got, want time.Duration) bool {
		// ±25%, and up to 3 ms more for HTTP handling on a busy test machine.
		return got >= want*75/100 && got <= want*125/100+3*time.Millisecond
	}
	for _, viewer := range []string{"a", "b", "c"} {
		m := agents[viewer].Matrix()
		for p, want := range links {
			for _, dir := range [][2]string{p, {p[1], p[0]}} {
				got, ok := m.Get(dir[0], dir[1])
				e := m[dir[0]][dir[1]]
				t.Logf("%s sees %s→%s: %v (jitter %.2f ms, %d samples)", viewer, dir[0], dir[1], got, e.Jitter*1e3, e.Samples)
				if !ok || !within(got, want) || e.Stale {
					t.Errorf("%s sees %s→%s = %v, %v (stale %v), want %v ± 25%%", viewer, dir[0], dir[1], got, ok, e.Stale, want)
				}
			}
		}
	}
	if got, ok := agents["b"].RTT("c"); !ok || !within(got, 2*time.Millisecond) {
		t.Errorf("b.RTT(c) = %v, %v", got, ok)
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
	})

	t.Run("metrics", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		for _, node := range []string{"a", "b", "c"} {
			if err := reg.Register(agents[node]); err != nil {
				t.Fatal(err)
			}
		}
		// All agents in one registry: the rows must not collide.
		if got := testutil.CollectAndCount(reg, "kantai_node_latency_seconds"); got != 6 {
			t.Errorf("kantai_node_latency_seconds has %d series, want 6", got)
		}
		if got := testutil.CollectAndCount(reg, "kantai_node_latency_jitter_seconds"); got != 6 {
			t.Errorf("kantai_node_latency_jitter_seconds has %d series, want 6", got)
		}
		if problems, err := testutil.CollectAndLint(agents["a"]); err != nil || len(problems) > 0 {
			t.Errorf("lint: %v %v", problems, err)
		}
		v := metricValue(t, reg, "kantai_node_latency_seconds", "a", "b")
		if !within(time.Duration(v*float64(time.Second)), 20*time.Millisecond) {
			t.Errorf(`kantai_node_latency_seconds{from="a",to="b"} = %v`, v)
		}
		if err := testutil.CollectAndCompare(agents["a"], strings.NewReader(`
# HELP kantai_latency_probe_failures_total Failed latency probes from one node to another.
# TYPE kantai_latency_probe_failures_total counter
kantai_latency_probe_failures_total{from="a",to="b"} 0
kantai_latency_probe_failures_total{from="a",to="c"} 0
`), "kantai_latency_probe_failures_total"); err != nil {
			t.Error(err)
		}
	})

	t.Run("stopped peer", func(t *testing.T) {
		before, _ := agents["a"].RTT("c")
		agents["c"].stop()
		if err := <-agents["c"].done; err != nil {
			t.Errorf("c: Run: %v", err)
		}
		agents["c"].done <- nil
		stopped := time.Now()
		time.Sleep(500 * time.Millisecond)
		m := agents["a"].Matrix()
		if e := m["a"]["c"]; !e.Stale || e.Failures == 0 || e.Samples == 0 {
			t.Errorf("a→c after c stopped = %+v, want stale with failures and the old value", e)
		}
		if got, ok := agents["a"].RTT("c"); !ok || got != before {
			t.Errorf("a.RTT(c) = %v, %v; want the last value %v", got, ok, before)
		}
		// Probes to b went on meanwhile.
		if e := m["a"]["b"]; e.Stale || e.Updated.Before(stopped.Add(300*time.Millisecond)) {
			t.Errorf("a→b = %+v, want fresh", e)
		}
		if !m["c"]["a"].Stale {
			t.Errorf("c's row is not stale after c stopped: %+v", m["c"])
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(agents["a"])
		if v := metricValue(t, reg, "kantai_latency_probe_failures_total", "a", "c"); v < 1 {
			t.Errorf("failures a→c = %v, want ≥ 1", v)
		}
		if v := metricValue(t, reg, "kantai_node_latency_stale", "a", "c"); v != 1 {
			t.Errorf("stale a→c = %v, want 1", v)
		}
	})
}

// TestAgent_hungPeer checks that a peer that accepts connections but never
// answers costs only failed probes, not the other peers' measurements.
func TestAgent_hungPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.77.205.9:0")
	if err != nil {
		t.Fatal(err)
	}
	hung := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })}
	go hung.Serve(ln)
	defer hung.Close()

	n := linkemu.NewNetwork()
	n.AddNode("hung", "127.77.205.9")
	n.SetLink("a", "b", linkemu.Link{RTT: 10 * time.Millisecond})
	n.SetLink("a", "hung", linkemu.Link{RTT: 10 * time.Millisecond})
	lnA, _ := net.Listen("tcp", "127.77.205.1:0")
	lnB, _ := net.Listen("tcp", "127.77.205.2:0")
	n.AddNode("a", "127.77.205.1")
	n.AddNode("b", "127.77.205.2")
	peers := map[string]string{"b": lnB.Addr().String(), "hung": ln.Addr().String()}
	mk := func(node string, l net.Listener) *Agent {
		a, err := New(Config{Node: node, Listener: l, Peers: peers, Dial: n.Dialer(node), Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a, b := mk("a", lnA), mk("b", lnB)
	ctx, cancel := context.WithCancel(context.Background())
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- a.Run(ctx) }()
	go func() { doneB <- b.Run(ctx) }()
	time.Sleep(700 * time.Millisecond)
	m := a.Matrix()
	cancel()
	start := time.Now()
	if err := <-doneA; err != nil {
		t.Error(err)
	}
	<-doneB
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v to return", d)
	}
	if e := m["a"]["b"]; e.Stale || e.Samples < 8 {
		t.Errorf("a→b = %+v, want fresh with about 14 samples", e)
	}
	if e := m["a"]["hung"]; !e.Stale || e.Failures < 2 || e.Samples != 0 {
		t.Errorf("a→hung = %+v, want stale with failures", e)
	}
	if _, ok := a.RTT("hung"); ok {
		t.Errorf("RTT to a peer never measured")
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
