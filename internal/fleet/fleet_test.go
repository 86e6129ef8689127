package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kantai.dev/kantai/internal/function"
	"kantai.dev/kantai/internal/manifest"
	"kantai.dev/kantai/internal/testbed"
)

// TestMain lets the test binary double as the function process: the fleet
// starts replicas as "<test binary> hello" with KANTAI_REPLICA set.
func TestMain(m *testing.M) {
	function.ServeIfReplica()
	os.Exit(m.Run())
}

// smallTestbed is the seed's testbed with its own addresses and ports, so
// tests do not collide with a fleet a developer runs.
func smallTestbed(t testing.TB, base int) *testbed.Testbed {
	t.Helper()
	tb := testbed.Default()
	for i := range tb.Nodes {
		tb.Nodes[i].Address = fmt.Sprintf("127.78.%d.%d", base, i+1)
	}
	return tb
}

func startFleet(t testing.TB, tb *testbed.Testbed) *Fleet {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Start(context.Background(), Options{Testbed: tb, FunctionCommand: []string{exe},
		GatewayPort: 18080, AgentPort: 19696, ControlInterval: 200 * time.Millisecond, LatencyInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func request(t *testing.T, f *Fleet, from, host string) (int, string, http.Header) {
	t.Helper()
	addr, _ := f.GatewayAddr(from)
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("request from %s: %v", from, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func TestFleet_scaleFromZeroServesLocally(t *testing.T) {
	f := startFleet(t, smallTestbed(t, 1))
	// Eight samples of a 50 ± 10 ms link put the estimate within about
	// ±4 ms (one standard error); the check below allows ±15 ms.
	eventually(t, "every link measured 8 times", func() bool { return f.LatencySamples() >= 8 })
	fns, err := manifest.LoadFile("../../examples/hello.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fn := fns[0]
	fn.Scaling.InitialScale = 0
	if err := f.Apply(fn); err != nil {
		t.Fatal(err)
	}
	code, body, h := request(t, f, "node3", "hello.default.svc.cluster.local")
	if code != 200 || !strings.HasPrefix(body, "Konnichiwa from hello-node3-") || !strings.HasSuffix(body, " in node3\n") {
		t.Fatalf("got %d %q, want Konnichiwa from a node3 replica", code, body)
	}
	if h.Get("X-Kantai-Node") != "node3" {
		t.Errorf("served-by node header = %q", h.Get("X-Kantai-Node"))
	}
	st := f.Functions()
	if len(st) != 1 || st[0].Replicas != "0-0-1/0-0-1" {
		t.Errorf("functions = %+v, want replicas 0-0-1/0-0-1", st)
	}
	// The emulated link never answers faster than configured, so the mean
	// of eight 50 ± 10 ms samples is above 35 ms; on a loaded machine the
	// CPU queue adds to it, so the upper bound only catches nonsense. How
	// close the agents get is measured in the latency benchmarks.
	m := f.Latency()
	t.Logf("measured node1→node3 = %v", func() time.Duration { d, _ := m.Get("node1", "node3"); return d }())
	if d, ok := m.Get("node1", "node3"); !ok || d < 35*time.Millisecond || d > time.Second {
		t.Errorf("measured node1→node3 = %v, want at least 35ms (50 ± 10 ms link) and not absurd", d)
	}
}

// Scaling down under load loses nothing: the replica leaving is drained
// (gateways stop choosing it, requests in flight finish) before its process
// gets SIGTERM.
func TestFleet_scaleDownUnderLoadLosesNothing(t *testing.T) {
	tb := smallTestbed(t, 2)
	f := startFleet(t, tb)
	fn := &manifest.Function{Name: "busy", Namespace: "default", Image: "example/busy", Port: 8080, Workers: 4,
		Processing: manifest.Processing{Kind: "fixed", Mean: 20 * time.Millisecond}}
	if err := f.ApplyFixed(fn, map[string]int{"node1": 3}); err != nil {
		t.Fatal(err)
	}
	waitReady := func(want int) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d replicas ready on node1", want), func() bool {
			st := f.Functions()
			return len(st) == 1 && st[0].Ready["node1"] == want && len(f.Replicas()) == want
		})
	}
	waitReady(3)
	addr, _ := f.GatewayAddr("node1")
	load := postLoad(addr, "busy.default", 8)
	eventually(t, "50 requests answered", func() bool { return load.total.Load() >= 50 })
	if err := f.SetFixed("default/busy", map[string]int{"node1": 1}); err != nil {
		t.Fatal(err)
	}
	waitReady(1)
	after := load.total.Load()
	eventually(t, "50 more requests answered", func() bool { return load.total.Load() >= after+50 })
	load.stop()
	t.Logf("total %d failed %d", load.total.Load(), load.failed.Load())
	if load.failed.Load() != 0 {
		t.Errorf("%d of %d requests failed while scaling 3→1 under load: %s", load.failed.Load(), load.total.Load(), load.firstErr())
	}
}

// loadGen sends POSTs with bodies in a loop from n clients: neither
// net/http nor the gateway may replay them, so only draining keeps them
// from failing.
type loadGen struct {
	total, failed atomic.Int32
	errMu         sync.Mutex
	err           string
	done          chan struct{}
	wg            sync.WaitGroup
}

func postLoad(addr, host string, n int) *loadGen {
	g := &loadGen{done: make(chan struct{})}
	for i := 0; i < n; i++ {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			for {
				select {
				case <-g.done:
					return
				default:
				}
				req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader("work"))
				req.Host = host
				resp, err := http.DefaultClient.Do(req)
				g.total.Add(1)
				if err != nil {
					g.fail(err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					g.fail(fmt.Sprintf("%d %s", resp.StatusCode, body))
				}
			}
		}()
	}
	return g
}

func (g *loadGen) fail(msg string) {
	g.failed.Add(1)
	g.errMu.Lock()
	if g.err == "" {
		g.err = msg
	}
	g.errMu.Unlock()
}

func (g *loadGen) firstErr() string {
	g.errMu.Lock()
	defer g.errMu.Unlock()
	return g.err
}

func (g *loadGen) stop() { close(g.done); g.wg.Wait() }

// eventually polls cond until it holds; the bound only stops a test that
// would otherwise hang on a broken fleet.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 60s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
