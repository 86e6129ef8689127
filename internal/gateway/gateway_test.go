package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// backend is a replica stand-in that counts concurrency and can be held.
type backend struct {
	srv     *httptest.Server
	name    string
	cur     atomic.Int32
	peak    atomic.Int32
	served  atomic.Int32
	hold    chan struct{} // when non-nil, requests wait for a receive
	started chan struct{}
}

func newBackend(t *testing.T, name string) *backend {
	b := &backend{name: name, started: make(chan struct{}, 100)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := b.cur.Add(1)
		defer b.cur.Add(-1)
		for {
			p := b.peak.Load()
			if n <= p || b.peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case b.started <- struct{}{}:
		default:
		}
		if b.hold != nil {
			<-b.hold
		}
		b.served.Add(1)
		w.Header().Set("X-Seen-Upgrade", r.Header.Get("Upgrade"))
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", b.name, r.URL.RequestURI(), body)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) info(node string) ReplicaInfo {
	return ReplicaInfo{Name: b.name, Node: node, Address: strings.TrimPrefix(b.srv.URL, "http://")}
}

type fixture struct {
	gw      *Gateway
	srv     *httptest.Server
	demands atomic.Int32
	reg     *prometheus.Registry
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	fx := &fixture{reg: prometheus.NewRegistry()}
	cfg := Config{
		Node: "node3", Nodes: []string{"node1", "node2", "node3"}, Domain: "example.com", Policy: "kantai",
		QueueDepth: 10, ActivationTimeout: 5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
		RTT:       func(string) (time.Duration, bool) { return 0, false },
		OnDemand:  func(string) { fx.demands.Add(1) },
		Metrics:   NewMetrics(fx.reg),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fx.gw = gw
	fx.srv = httptest.NewServer(gw)
	t.Cleanup(fx.srv.Close)
	gw.SetFunction(FunctionConfig{Namespace: "default", Name: "hello"})
	return fx
}

func (fx *fixture) get(t *testing.T, host string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", fx.srv.URL+"/path?q=1", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET via gateway: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func TestGateway_routing(t *testing.T) {
	fx := newFixture(t, nil)
	b := newBackend(t, "hello-node3-abcde")
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{b.info("node3")})
	tests := []struct {
		host string
		code int
	}{
		{"hello.default.svc.cluster.local", 200},
		{"hello.default.svc", 200},
		{"hello.default", 200},
		{"hello.default.example.com", 200},
		{"Hello.Default.example.com:8080", 200},
		{"hello.default.svc.cluster.local.", 200},
		{"other.default.svc.cluster.local", 404},
		{"hello.prod.svc.cluster.local", 404},
		{"hello", 404},
	}
	for _, tt := range tests {
		resp, body := fx.get(t, tt.host)
		if resp.StatusCode != tt.code {
			t.Errorf("Host %q: status %d, want %d (%s)", tt.host, resp.StatusCode, tt.code, body)
			continue
		}
		if tt.code != 200 {
			if !strings.Contains(body, "no function serves host") {
				t.Errorf("Host %q: 404 body %q does not say why", tt.host, body)
			}
			continue
		}
		if got, want := body, "hello-node3-abcde /path?q=1 "; got != want {
			t.Errorf("Host %q: body %q, want %q", tt.host, got, want)
		}
		if resp.Header.Get(HeaderReplica) != "hello-node3-abcde" || resp.Header.Get(HeaderNode) != "node3" {
			t.Errorf("Host %q: served-by headers %v", tt.host, resp.Header)
		}
	}
}

func TestGateway_stripsHopHeadersAndStreamsBody(t *testing.T) {
	fx := newFixture(t, nil)
	b := newBackend(t, "r1")
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{b.info("node3")})
	payload := strings.Repeat("x", 1<<20)
	req, _ := http.NewRequest("POST", fx.srv.URL+"/up", strings.NewReader(payload))
	req.Host = "hello.default"
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := len(body), len("r1 /up ")+len(payload); got != want {
		t.Errorf("echoed %d bytes, want %d", got, want)
	}
	if resp.Header.Get("X-Seen-Upgrade") != "" {
		t.Errorf("Upgrade header reached the replica")
	}
}

func TestGateway_buffersUntilFirstReplica(t *testing.T) {
	fx := newFixture(t, nil)
	done := make(chan string)
	go func() {
		resp, body := fx.get(t, "hello.default")
		done <- fmt.Sprint(resp.StatusCode, " ", body)
	}()
	deadline := time.Now().Add(2 * time.Second)
	for fx.demands.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if fx.demands.Load() == 0 {
		t.Fatal("gateway did not report demand for a function with no replica")
	}
	select {
	case got := <-done:
		t.Fatalf("request finished before any replica existed: %s", got)
	case <-time.After(100 * time.Millisecond):
	}
	b := newBackend(t, "late")
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{b.info("node1")})
	if got := <-done; !strings.HasPrefix(got, "200 late") {
		t.Errorf("buffered request got %q, want 200 from the new replica", got)
	}
	reps := fx.gw.Report()
	if len(reps) != 1 || reps[0].Requests != 1 || reps[0].Concurrency <= 0 {
		t.Errorf("report = %+v, want one request with positive concurrency", reps)
	}
}

func TestGateway_activationTimeout(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.ActivationTimeout = 150 * time.Millisecond })
	resp, body := fx.get(t, "hello.default")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "no replica became available") {
		t.Errorf("got %d %q, want 504 naming the cause", resp.StatusCode, body)
	}
	if got := testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("default/hello", "node3", "none", "504")); got != 1 {
		t.Errorf("504 counter = %v, want 1", got)
	}
}

func TestGateway_queueFull(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.QueueDepth = 2 })
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := fx.get(t, "hello.default")
			codes <- resp.StatusCode
		}()
	}
	waitFor(t, func() bool { return fx.gw.Report()[0].Waiting == 2 })
	resp, body := fx.get(t, "hello.default")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third request: %d Retry-After=%q %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	b := newBackend(t, "r")
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{b.info("node3")})
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("queued request got %d, want 200", c)
		}
	}
}

func TestGateway_containerConcurrency(t *testing.T) {
	fx := newFixture(t, nil)
	fx.gw.SetFunction(FunctionConfig{Namespace: "default", Name: "hello", ContainerConcurrency: 1})
	b := newBackend(t, "only")
	b.hold = make(chan struct{})
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{b.info("node3")})
	const n = 5
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, _ := fx.get(t, "hello.default"); resp.StatusCode == 200 {
				ok.Add(1)
			}
		}()
	}
	for i := 0; i < n; i++ {
		<-b.started
		time.Sleep(20 * time.Millisecond) // room for a violation to show
		if c := b.cur.Load(); c != 1 {
			t.Errorf("replica has %d requests at once, want 1", c)
		}
		b.hold <- struct{}{}
	}
	wg.Wait()
	if ok.Load() != n || b.peak.Load() != 1 {
		t.Errorf("ok=%d peak=%d, want %d and 1", ok.Load(), b.peak.Load(), n)
	}
}

// Removing a replica under load loses nothing: new requests go elsewhere,
// those in flight finish, and the replica is stopped once drained.
func TestGateway_gracefulStopUnderLoad(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.Policy = "round-robin" })
	a, b := newBackend(t, "a"), newBackend(t, "b")
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{a.info("node3"), b.info("node3")})
	ctx, cancel := context.WithCancel(context.Background())
	var total, failed atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, _ := fx.get(t, "hello.default")
				total.Add(1)
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(150 * time.Millisecond)
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{a.info("node3")})
	waitFor(t, func() bool { return fx.gw.InFlight("default/hello", "b") == 0 })
	b.srv.Close() // the process ends only once drained
	servedB := b.served.Load()
	time.Sleep(150 * time.Millisecond)
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed while a replica was stopped", failed.Load(), total.Load())
	}
	if servedB == 0 || a.served.Load() == 0 {
		t.Errorf("served a=%d b=%d, want both before the stop", a.served.Load(), servedB)
	}
}

func TestGateway_removeFunctionAnswersWaiters(t *testing.T) {
	fx := newFixture(t, nil)
	got := make(chan int)
	go func() { resp, _ := fx.get(t, "hello.default"); got <- resp.StatusCode }()
	waitFor(t, func() bool { return fx.gw.Report()[0].Waiting == 1 })
	fx.gw.RemoveFunction("default/hello")
	if c := <-got; c != http.StatusNotFound {
		t.Errorf("waiting request got %d after delete, want 404", c)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCopyHeader(t *testing.T) {
	src := http.Header{
		"Connection":        {"keep-alive, X-Secret"},
		"X-Secret":          {"hop"},
		"Keep-Alive":        {"timeout=5"},
		"Transfer-Encoding": {"chunked"},
		"Content-Type":      {"text/plain"},
	}
	dst := http.Header{}
	copyHeader(dst, src)
	if len(dst) != 1 || dst.Get("Content-Type") != "text/plain" {
		t.Errorf("copyHeader kept %v, want only Content-Type", dst)
	}
}

// A replica that refuses connections (it has just died) costs the client
// nothing: the request goes to another replica.
func TestGateway_retriesRefusedConnection(t *testing.T) {
	fx := newFixture(t, func(c *Config) { c.Policy = "round-robin" })
	dead := newBackend(t, "dead")
	deadInfo := dead.info("node3")
	dead.srv.Close()
	live := newBackend(t, "live")
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{deadInfo, live.info("node3")})
	for i := 0; i < 6; i++ {
		resp, body := fx.get(t, "hello.default")
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "live") {
			t.Fatalf("request %d: %d %q, want 200 from the live replica", i, resp.StatusCode, body)
		}
	}
	// With only the dead replica, the client gets a 502 saying so.
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{deadInfo})
	resp, body := fx.get(t, "hello.default")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "did not answer") {
		t.Errorf("only a dead replica: %d %q, want 502", resp.StatusCode, body)
	}
}
