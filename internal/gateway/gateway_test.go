package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
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
	url     string
	demands atomic.Int32
	reg     *prometheus.Registry
}

// engine names a forwarding engine: the gateway as an http.Handler, or
// on fasthttp (FastServer and FastHandler).
type engine string

const (
	engineNetHTTP engine = "nethttp"
	engineFast    engine = "fasthttp"
)

// forEngines runs f for each engine, as a subtest.
func forEngines(t *testing.T, f func(t *testing.T, e engine)) {
	for _, e := range []engine{engineNetHTTP, engineFast} {
		t.Run(string(e), func(t *testing.T) { f(t, e) })
	}
}

// serveGateway serves gw's in-cluster listener on a loopback address with
// engine e; it returns the URL.
func serveGateway(t *testing.T, e engine, gw *Gateway) string {
	t.Helper()
	if e == engineFast {
		_, addr := startFastServer(t, gw.FastHandler(), ServerOptions{})
		return "http://" + addr
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv.URL
}

// newFixture is a fixture on the net/http engine.
func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	return newEngineFixture(t, engineNetHTTP, mutate)
}

// newEngineFixture is a gateway serving on engine e, with one revision
// routed and no replica.
func newEngineFixture(t *testing.T, e engine, mutate func(*Config)) *fixture {
	fx := &fixture{reg: prometheus.NewRegistry()}
	cfg := Config{
		Node: "node3", Nodes: []string{"node1", "node2", "node3"}, Policy: "kantai",
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
	fx.url = serveGateway(t, e, gw)
	gw.SetRevision(RevisionConfig{Namespace: "default", Name: rev1, Service: "hello"})
	if err := gw.SetRoutes(ServiceRoutes("hello", "default", "example.com", []ServiceTarget{{Revision: "default/" + rev1, Percent: 100}})); err != nil {
		t.Fatal(err)
	}
	return fx
}

const rev1 = "hello-00001"

// get sends a GET through the gateway. It may run on goroutines the test
// started, so it reports failures as a status of 0 with the error as body.
func (fx *fixture) get(host string) (*http.Response, string) {
	req, _ := http.NewRequest("GET", fx.url+"/path?q=1", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &http.Response{StatusCode: 0, Header: http.Header{}}, "GET via gateway: " + err.Error()
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (fx *fixture) stats(t *testing.T) RevisionStats {
	t.Helper()
	for _, rs := range fx.gw.Stats().Revisions {
		if rs.Revision == "default/"+rev1 {
			return rs
		}
	}
	t.Fatalf("no stats for %s", rev1)
	return RevisionStats{}
}

func TestGateway_routing(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		b := newBackend(t, "hello-node3-abcde")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{b.info("node3")})
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
			resp, body := fx.get(tt.host)
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
	})
}

func TestGateway_stripsHopHeadersAndStreamsBody(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		b := newBackend(t, "r1")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{b.info("node3")})
		payload := strings.Repeat("x", 1<<20)
		req, _ := http.NewRequest("POST", fx.url+"/up", strings.NewReader(payload))
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
	})
}

func TestGateway_buffersUntilFirstReplica(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		done := make(chan string)
		go func() {
			resp, body := fx.get("hello.default")
			done <- fmt.Sprint(resp.StatusCode, " ", body)
		}()
		waitFor(t, func() bool { return fx.demands.Load() > 0 })
		select {
		case got := <-done:
			t.Fatalf("request finished before any replica existed: %s", got)
		case <-time.After(100 * time.Millisecond):
		}
		b := newBackend(t, "late")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{b.info("node1")})
		if got := <-done; !strings.HasPrefix(got, "200 late") {
			t.Errorf("buffered request got %q, want 200 from the new replica", got)
		}
		if st := fx.stats(t); st.Requests != 1 || st.Area <= 0 {
			t.Errorf("stats = %+v, want one request with a positive area", st)
		}
	})
}

func TestGateway_activationTimeout(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, func(c *Config) { c.ActivationTimeout = 150 * time.Millisecond })
		resp, body := fx.get("hello.default")
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "no replica became available") {
			t.Errorf("got %d %q, want 504 naming the cause", resp.StatusCode, body)
		}
		if got := testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("hello", "default/"+rev1, "node3", "none", "504")); got != 1 {
			t.Errorf("504 counter = %v, want 1", got)
		}
	})
}

func TestGateway_queueFull(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, func(c *Config) { c.QueueDepth = 2 })
		var wg sync.WaitGroup
		codes := make(chan int, 2)
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, _ := fx.get("hello.default")
				codes <- resp.StatusCode
			}()
		}
		waitFor(t, func() bool { return fx.stats(t).Waiting == 2 })
		resp, body := fx.get("hello.default")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("third request: %d Retry-After=%q %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		b := newBackend(t, "r")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{b.info("node3")})
		wg.Wait()
		close(codes)
		for c := range codes {
			if c != 200 {
				t.Errorf("queued request got %d, want 200", c)
			}
		}
	})
}

func TestGateway_containerConcurrency(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: rev1, Service: "hello", ContainerConcurrency: 1})
		b := newBackend(t, "only")
		b.hold = make(chan struct{})
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{b.info("node3")})
		const n = 5
		var wg sync.WaitGroup
		var ok atomic.Int32
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if resp, _ := fx.get("hello.default"); resp.StatusCode == 200 {
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
	})
}

// Removing a replica under load loses nothing: new requests go elsewhere,
// those in flight finish, and the replica is stopped once drained.
func TestGateway_gracefulStopUnderLoad(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, func(c *Config) { c.Policy = "round-robin" })
		a, b := newBackend(t, "a"), newBackend(t, "b")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{a.info("node3"), b.info("node3")})
		ctx, cancel := context.WithCancel(context.Background())
		var total, failed atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					resp, _ := fx.get("hello.default")
					total.Add(1)
					if resp.StatusCode != 200 {
						failed.Add(1)
					}
				}
			}()
		}
		waitFor(t, func() bool { return a.served.Load() > 10 && b.served.Load() > 10 })
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{a.info("node3")})
		waitFor(t, func() bool { return fx.gw.InFlight("default/"+rev1, "b") == 0 })
		b.srv.Close() // the process ends only once drained
		servedB, servedA := b.served.Load(), a.served.Load()
		waitFor(t, func() bool { return a.served.Load() > servedA+10 })
		cancel()
		wg.Wait()
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed while a replica was stopped", failed.Load(), total.Load())
		}
		if servedB == 0 || a.served.Load() == 0 {
			t.Errorf("served a=%d b=%d, want both before the stop", a.served.Load(), servedB)
		}
	})
}

func TestGateway_removeRevisionAnswersWaiters(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		got := make(chan int)
		go func() { resp, _ := fx.get("hello.default"); got <- resp.StatusCode }()
		waitFor(t, func() bool { return fx.stats(t).Waiting == 1 })
		if err := fx.gw.SetRoutes(nil); err != nil {
			t.Fatal(err)
		}
		fx.gw.RemoveRevision("default/" + rev1)
		if c := <-got; c != http.StatusNotFound {
			t.Errorf("waiting request got %d after delete, want 404", c)
		}
		if n := testutil.CollectAndCount(fx.reg, "kantai_gateway_queue_depth"); n != 0 {
			t.Errorf("%d queue-depth series left after the revision was removed, want 0", n)
		}
	})
}

// A rollout: requests waiting for the old revision when it goes are sent
// to the revision the route names now.
func TestGateway_waitersFollowTheRoute(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		got := make(chan string)
		go func() { resp, body := fx.get("hello.default"); got <- fmt.Sprint(resp.StatusCode, " ", body) }()
		waitFor(t, func() bool { return fx.stats(t).Waiting == 1 })
		fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: "hello-00002", Service: "hello"})
		b := newBackend(t, "new")
		fx.gw.SetReplicas("default/hello-00002", []ReplicaInfo{b.info("node3")})
		if err := fx.gw.SetRoutes(ServiceRoutes("hello", "default", "", []ServiceTarget{{Revision: "default/hello-00002", Percent: 100}})); err != nil {
			t.Fatal(err)
		}
		fx.gw.RemoveRevision("default/" + rev1)
		if r := <-got; !strings.HasPrefix(r, "200 new") {
			t.Errorf("waiting request got %q, want 200 from the new revision", r)
		}
	})
}

// Percent splits are exact over every 100 requests, tags reach their
// revision alone with the tag header, and a route to a revision the
// gateway does not know yet answers 503.
func TestGateway_splitsAndTags(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		seenTag := make(chan string, 1)
		oldB := newBackend(t, "old")
		newB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tag := r.Header.Get(TagHeader); tag != "" {
				select {
				case seenTag <- tag:
				default:
				}
			}
			fmt.Fprint(w, "new")
		}))
		t.Cleanup(newB.Close)
		fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: "hello-00002", Service: "hello"})
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{oldB.info("node3")})
		fx.gw.SetReplicas("default/hello-00002", []ReplicaInfo{{Name: "new", Node: "node3", Address: strings.TrimPrefix(newB.URL, "http://")}})
		err := fx.gw.SetRoutes(ServiceRoutes("hello", "default", "example.com", []ServiceTarget{
			{Revision: "default/" + rev1, Percent: 90},
			{Revision: "default/hello-00002", Percent: 10, Tag: "canary"},
			{Revision: "default/hello-00003", Percent: 0, Tag: "next"},
		}))
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for i := 0; i < 300; i++ {
			_, body := fx.get("hello.default.example.com")
			counts[strings.Fields(body)[0]]++
		}
		if counts["old"] != 270 || counts["new"] != 30 {
			t.Errorf("300 requests split %v, want old=270 new=30", counts)
		}
		for i := 0; i < 5; i++ {
			if _, body := fx.get("canary-hello.default.svc.cluster.local"); body != "new" {
				t.Fatalf("tag host answered %q, want the tagged revision", body)
			}
		}
		if tag := <-seenTag; tag != "canary" {
			t.Errorf("%s = %q, want canary", TagHeader, tag)
		}
		if resp, body := fx.get("next-hello.default"); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("unknown revision: %d %q, want 503 with Retry-After", resp.StatusCode, body)
		}
		if err := fx.gw.SetRoutes([]Route{{Hosts: []string{"a"}, Targets: []Target{{Revision: "x", Percent: 60}}}}); err == nil {
			t.Error("a route whose percents add up to 60 was accepted")
		}
	})
}

// timeoutSeconds and responseStartTimeoutSeconds end a slow request with
// a 504 that says which, counted in the metrics.
func TestGateway_revisionTimeouts(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(func() { close(release); slow.Close() })
		fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: rev1, Service: "hello", Timeout: 200 * time.Millisecond})
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{{Name: "slow", Node: "node3", Address: strings.TrimPrefix(slow.URL, "http://")}})
		resp, body := fx.get("hello.default")
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "timeout") {
			t.Errorf("got %d %q, want 504 naming the timeout", resp.StatusCode, body)
		}
		fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: rev1, Service: "hello", Timeout: time.Hour, ResponseStartTimeout: 200 * time.Millisecond})
		resp, body = fx.get("hello.default")
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "response start timeout") {
			t.Errorf("got %d %q, want 504 naming the response start timeout", resp.StatusCode, body)
		}
		if got := testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("hello", "default/"+rev1, "node3", "node3", "504")); got != 2 {
			t.Errorf("504 counter = %v, want 2", got)
		}
	})
}

// The node set changes at run time: replicas on a node that left get no
// more requests, and the node's series go.
func TestGateway_setNodes(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		a, b := newBackend(t, "a"), newBackend(t, "b")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{a.info("node1"), b.info("node3")})
		if err := fx.gw.SetNodes([]string{"node2", "node3", "node4"}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			if _, body := fx.get("hello.default"); !strings.HasPrefix(body, "b ") {
				t.Fatalf("request %d answered by %q, want b (node1 left)", i, body)
			}
		}
		if err := fx.gw.SetNodes([]string{"node1"}); err == nil {
			t.Error("a node set without the gateway's own node was accepted")
		}
	})
}

func TestStatsSince(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	rs := func(since float64, req uint64, area float64, dest ...DestStats) RevisionStats {
		return RevisionStats{Revision: "ns/r", Since: at(since), Requests: req, Area: area, Dest: dest}
	}
	tests := []struct {
		name       string
		prev, cur  Stats
		conc, secs float64
		req        uint64
		service    time.Duration
	}{
		{name: "first reading counts from since",
			cur:  Stats{Epoch: 1, At: at(4), Revisions: []RevisionStats{rs(0, 8, 8, DestStats{Node: "n", Responses: 8, Service: 0.08})}},
			conc: 2, secs: 4, req: 8, service: 10 * time.Millisecond},
		{name: "difference of two readings",
			prev: Stats{Epoch: 1, At: at(4), Revisions: []RevisionStats{rs(0, 8, 8, DestStats{Node: "n", Responses: 8, Service: 0.08})}},
			cur:  Stats{Epoch: 1, At: at(6), Revisions: []RevisionStats{rs(0, 10, 9, DestStats{Node: "n", Responses: 10, Service: 0.14})}},
			conc: 0.5, secs: 2, req: 2, service: 30 * time.Millisecond},
		{name: "restart: new epoch counts from its since",
			prev: Stats{Epoch: 1, At: at(4), Revisions: []RevisionStats{rs(0, 80, 80)}},
			cur:  Stats{Epoch: 2, At: at(6), Revisions: []RevisionStats{rs(5, 1, 1)}},
			conc: 1, secs: 1, req: 1},
		{name: "revision re-added after the last reading",
			prev: Stats{Epoch: 1, At: at(4), Revisions: []RevisionStats{rs(0, 80, 80)}},
			cur:  Stats{Epoch: 1, At: at(6), Revisions: []RevisionStats{rs(5, 3, 0.5)}},
			conc: 0.5, secs: 1, req: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := tt.cur.Since(tt.prev)
			if len(ws) != 1 {
				t.Fatalf("got %d windows, want 1", len(ws))
			}
			w := ws[0]
			if w.Concurrency != tt.conc || w.Seconds != tt.secs || w.Requests != tt.req {
				t.Errorf("window = %+v, want concurrency %v over %vs, %d requests", w, tt.conc, tt.secs, tt.req)
			}
			if tt.service > 0 && (len(w.Dest) != 1 || (w.Dest[0].MeanService-tt.service).Abs() > time.Microsecond) {
				t.Errorf("dest = %+v, want mean service %v", w.Dest, tt.service)
			}
		})
	}
}

// waitFor polls cond until it holds; the bound is generous, since it only
// stops a test that would otherwise hang.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(2 * time.Millisecond)
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
	// The usual Connection tokens are dropped without canonicalising.
	src = http.Header{"Connection": {"Keep-Alive, upgrade, close"}, "Content-Type": {"text/plain"}}
	if n := testing.AllocsPerRun(100, func() { clear(dst); copyHeader(dst, src) }); n != 0 {
		t.Errorf("copyHeader allocated %.0f times for the usual Connection tokens, want 0", n)
	}
}

// A replica that refuses connections (it has just died) costs the client
// nothing: the request goes to another replica.
func TestGateway_retriesRefusedConnection(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, func(c *Config) { c.Policy = "round-robin" })
		dead := newBackend(t, "dead")
		deadInfo := dead.info("node3")
		dead.srv.Close()
		live := newBackend(t, "live")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{deadInfo, live.info("node3")})
		for i := 0; i < 6; i++ {
			resp, body := fx.get("hello.default")
			if resp.StatusCode != 200 || !strings.HasPrefix(body, "live") {
				t.Fatalf("request %d: %d %q, want 200 from the live replica", i, resp.StatusCode, body)
			}
		}
		// With only the dead replica, the client gets a 502 saying so.
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{deadInfo})
		resp, body := fx.get("hello.default")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "did not answer") {
			t.Errorf("only a dead replica: %d %q, want 502", resp.StatusCode, body)
		}
	})
}

// The service time charged to a node excludes connection setup: a dial
// that takes 400 ms (a new connection over a long link) is not service.
func TestGateway_serviceTimeExcludesConnectionSetup(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		const dialDelay = 400 * time.Millisecond
		fx := newEngineFixture(t, e, func(c *Config) {
			d := &net.Dialer{}
			c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				time.Sleep(dialDelay) // stands in for the emulated link's setup
				return d.DialContext(ctx, network, addr)
			}
			c.Transport = &http.Transport{DialContext: c.Dial}
		})
		b := newBackend(t, "r")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{b.info("node3")})
		if resp, body := fx.get("hello.default"); resp.StatusCode != 200 {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
		st := fx.stats(t)
		if len(st.Dest) != 1 || st.Dest[0].Responses != 1 {
			t.Fatalf("dest stats %+v, want one response", st.Dest)
		}
		service := time.Duration(st.Dest[0].Service * float64(time.Second))
		t.Logf("service time %v with a %v dial", service, dialDelay)
		if service >= dialDelay/2 {
			t.Errorf("service time %v includes the %v connection setup", service, dialDelay)
		}
	})
}

// A node that was slow and became fast wins its traffic back: once this
// gateway's estimate of it is stale, one probe measures it again.
func TestGateway_slowNodeThatRecoversIsProbed(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		var clock atomic.Int64
		clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		fx := newEngineFixture(t, e, func(c *Config) { c.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
		var farDelay atomic.Int64
		farDelay.Store(int64(200 * time.Millisecond))
		far := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Duration(farDelay.Load())) // the replica's processing
			fmt.Fprint(w, "far")
		}))
		near := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(50 * time.Millisecond)
			fmt.Fprint(w, "near")
		}))
		t.Cleanup(far.Close)
		t.Cleanup(near.Close)
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{
			{Name: "far", Node: "node1", Address: strings.TrimPrefix(far.URL, "http://")},
			{Name: "near", Node: "node3", Address: strings.TrimPrefix(near.URL, "http://")},
		})
		// The fleet-wide estimates the control step pushes: node1 was slow.
		fx.gw.SetProcessing("default/"+rev1, map[string]time.Duration{"node1": 200 * time.Millisecond, "node3": 50 * time.Millisecond})
		served := func(n int) map[string]int {
			m := map[string]int{}
			for i := 0; i < n; i++ {
				_, body := fx.get("hello.default")
				m[body]++
			}
			return m
		}
		if got := served(5); got["near"] != 5 {
			t.Fatalf("node1 slow: served %v, want all near", got)
		}
		farDelay.Store(0) // node1 became fast; nobody has measured it
		clock.Add(int64(10 * time.Second))
		fx.gw.Refresh()
		got := served(10)
		t.Logf("after node1 became fast: served %v", got)
		if got["far"] < 8 {
			t.Errorf("served %v, want node1 to win its traffic back after one probe", got)
		}
	})
}

// Estimates show what the policy decides from, by host, with the route's
// shares, and the same figures reach the metrics at each refresh.
func TestGateway_estimates(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, func(c *Config) {
			c.RTT = func(n string) (time.Duration, bool) { return 40 * time.Millisecond, n != "node3" }
		})
		a, b := newBackend(t, "a"), newBackend(t, "b")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{a.info("node1"), b.info("node3")})
		fx.gw.SetProcessing("default/"+rev1, map[string]time.Duration{"node1": 5 * time.Millisecond, "node3": 10 * time.Millisecond})
		fx.gw.Refresh()
		est, ok := fx.gw.Estimates("Hello.Default:80")
		if !ok || len(est) != 1 || est[0].Percent != 100 {
			t.Fatalf("estimates = %+v %v, want one revision at 100%%", est, ok)
		}
		byNode := map[string]NodeEstimate{}
		for _, n := range est[0].Nodes {
			byNode[n.Node] = n
		}
		if n := byNode["node1"]; n.RTT != 40*time.Millisecond || n.Expected != 45*time.Millisecond || n.Replicas != 1 {
			t.Errorf("node1 = %+v, want RTT 40ms, expected 45ms, one replica", n)
		}
		if n := byNode["node3"]; n.Expected != 10*time.Millisecond {
			t.Errorf("node3 = %+v, want expected 10ms (local, no RTT)", n)
		}
		if n := byNode["node2"]; n.Expected != 0 || n.Replicas != 0 {
			t.Errorf("node2 = %+v, want no replica and no expectation", n)
		}
		if _, ok := fx.gw.Estimates("nothing.default"); ok {
			t.Error("estimates for a host no route serves")
		}
		g := fx.gw.cfg.Metrics.estimate.WithLabelValues("hello", "default/"+rev1, "node3", "node1", "expected")
		if got := testutil.ToFloat64(g); got != 0.045 {
			t.Errorf("expected-time gauge = %v, want 0.045", got)
		}
	})
}

// A replica that closes a kept-alive connection between two requests (its
// idle timeout, a restart) costs the client nothing: a request without a
// body is sent again on a new connection.
func TestGateway_retriesOnConnectionClosedByReplica(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		closed := make(chan struct{}, 4)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				// One answer per connection, then a close without
				// "Connection: close": the gateway keeps it for reuse.
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				c.Close()
				closed <- struct{}{}
			}
		}()
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{{Name: "r", Node: "node3", Address: ln.Addr().String()}})
		for i := 0; i < 3; i++ {
			resp, body := fx.get("hello.default")
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("request %d: %d %q, want 200 ok", i, resp.StatusCode, body)
			}
			<-closed
		}
	})
}

// The revision's timeout also bounds the body: a replica that sends its
// headers and then stalls has its answer cut at the timeout, counted as
// a 504, and its slot given back.
func TestGateway_revisionTimeoutCutsTheBody(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		stallAfter(t, fx, func(w http.ResponseWriter) { io.WriteString(w, "start;") })
		resp, body := fx.get("hello.default")
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "start;") {
			t.Errorf("got %d %q, want 200 and the start of the body", resp.StatusCode, body)
		}
		waitFor(t, func() bool { return fx.gw.InFlight("default/"+rev1, "stall") == 0 })
		if got := testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("hello", "default/"+rev1, "node3", "node3", "504")); got != 1 {
			t.Errorf("504 counter = %v, want 1", got)
		}
	})
}

// stallAfter has fx's revision, with a timeout of 300 ms (200 ms to the
// response's start), served by a replica that writes with write, flushes
// and then stalls until the test ends or its client goes.
func stallAfter(t *testing.T, fx *fixture, write func(w http.ResponseWriter)) {
	t.Helper()
	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(w)
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); stall.Close() })
	fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: rev1, Service: "hello",
		Timeout: 300 * time.Millisecond, ResponseStartTimeout: 200 * time.Millisecond})
	fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{{Name: "stall", Node: "node3", Address: strings.TrimPrefix(stall.URL, "http://")}})
}

// A replica whose connection never completes (a blackholed address) costs
// a request no more than the revision's response start timeout: the dial
// is bounded by it, and the client gets 504 naming it (the time is spent:
// no other replica is tried).
func TestGateway_dialBoundedByTimeout(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		var dials atomic.Int32
		fx := newEngineFixture(t, e, func(c *Config) {
			c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				<-ctx.Done()
				return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
			}
			c.Transport = &http.Transport{DialContext: c.Dial}
		})
		fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: rev1, Service: "hello",
			Timeout: time.Hour, ResponseStartTimeout: 100 * time.Millisecond})
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{{Name: "hole", Node: "node3", Address: "192.0.2.1:80"}})
		resp, body := fx.get("hello.default")
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "response start timeout") {
			t.Errorf("got %d %q, want 504 naming the response start timeout", resp.StatusCode, body)
		}
		if n := dials.Load(); n != 1 {
			t.Errorf("%d dials, want 1", n)
		}
	})
}

// A replica that switches protocols unasked gets its client a 502 saying
// so, and its connection is not used again.
func TestGateway_unaskedSwitchIs502(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		sw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		}))
		t.Cleanup(sw.Close)
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{{Name: "sw", Node: "node3", Address: strings.TrimPrefix(sw.URL, "http://")}})
		resp, body := fx.get("hello.default")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "switched to protocol") {
			t.Errorf("got %d %q, want 502 saying the replica switched protocols", resp.StatusCode, body)
		}
		waitFor(t, func() bool { return fx.gw.InFlight("default/"+rev1, "sw") == 0 })
	})
}

// A client that goes away while its request waits for a replica leaves
// the queue at once (counted as 499), rather than holding a place and,
// later, a replica's slot for nobody.
func TestGateway_clientGoneWhileWaiting(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		c, err := net.Dial("tcp", strings.TrimPrefix(fx.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: hello.default\r\n\r\n")
		waitFor(t, func() bool { return fx.stats(t).Waiting == 1 })
		c.Close()
		// The waiter leaves the queue before its answer is counted.
		gone := fx.gw.cfg.Metrics.requests.WithLabelValues("hello", "default/"+rev1, "node3", "none", "499")
		waitFor(t, func() bool { return fx.stats(t).Waiting == 0 && testutil.ToFloat64(gone) > 0 })
		if got := testutil.ToFloat64(gone); got != 1 {
			t.Errorf("499 counter = %v, want 1", got)
		}
		// The gateway still serves: a replica comes, a request is answered.
		b := newBackend(t, "r")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{b.info("node3")})
		if resp, body := fx.get("hello.default"); resp.StatusCode != 200 {
			t.Errorf("after: %d %q", resp.StatusCode, body)
		}
	})
}

// A client that goes away while its forwarded request waits for the
// replica's answer cancels it: the replica sees its request's connection
// close, the request is counted 499 and the replica's slot is free again.
func TestGateway_clientGoneWhileForwarded(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		// The gateway served again, handler wrapped: its return is when
		// the request's accounting is through.
		returned := make(chan struct{}, 1)
		url := ""
		if e == engineFast {
			h := fx.gw.FastHandler()
			_, addr := startFastServer(t, func(ctx *fasthttp.RequestCtx) { h(ctx); returned <- struct{}{} }, ServerOptions{})
			url = "http://" + addr
		} else {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fx.gw.ServeHTTP(w, r)
				returned <- struct{}{}
			}))
			t.Cleanup(srv.Close)
			url = srv.URL
		}
		started, cancelled := make(chan struct{}), make(chan struct{})
		release := make(chan struct{})
		defer close(release)
		fx.serveReplica(t, "held", func(w http.ResponseWriter, r *http.Request) {
			close(started)
			select {
			case <-r.Context().Done():
				close(cancelled)
			case <-release:
			}
		})

		c := dialFront(t, strings.TrimPrefix(url, "http://"))
		io.WriteString(c, "GET /held HTTP/1.1\r\nHost: hello.default\r\n\r\n")
		within(t, started, "the replica to get the request")
		c.Close()
		within(t, cancelled, "the replica to see its request cancelled")
		within(t, returned, "the gateway's handler to return")
		if got := testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("hello", "default/"+rev1, "node3", "node3", "499")); got != 1 {
			t.Errorf("499 counter = %v, want 1", got)
		}
		if n := fx.gw.InFlight("default/"+rev1, "held"); n != 0 {
			t.Errorf("replica in flight = %d, want 0", n)
		}
	})
}

// within waits for ch, failing t after a bound generous enough for a
// busy machine.
func within(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no sign within 10s of %s", what)
	}
}

// A client that has sent its next request (pipelined) while the first
// waits for a slow answer is not gone: both are answered, in order.
func TestGateway_pipelinedWhileForwarded(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		started := make(chan struct{})
		fx.serveReplica(t, "r", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				close(started)
				// Long enough for the client's connection to be watched
				// (watchAfter) with the next request in it.
				select {
				case <-r.Context().Done():
				case <-time.After(4 * watchAfter):
				}
			}
			io.WriteString(w, r.URL.Path)
		})
		c := dialFront(t, strings.TrimPrefix(fx.url, "http://"))
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: hello.default\r\n\r\n")
		// Sent once the first is forwarded: unread in the socket, where
		// the watch peeks.
		within(t, started, "the replica to get the first request")
		io.WriteString(c, "GET /next HTTP/1.1\r\nHost: hello.default\r\n\r\n")
		br := bufio.NewReader(c)
		for _, want := range []string{"/slow", "/next"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer to %s: %v", want, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != want {
				t.Errorf("answer to %s: %d %q", want, resp.StatusCode, body)
			}
		}
	})
}

// A client that leaves once its request, body and all, is with the replica
// has the forwarded request cancelled, whether its body was small (read
// whole before forwarding), large or chunked (streamed through): 499, the
// replica's slot free.
func TestGateway_clientGoneAfterBody(t *testing.T) {
	big := strings.Repeat("b", 64<<10)
	for _, tc := range []struct{ name, head, body string }{
		{"small", "Content-Length: 5\r\n", "small"},
		{"large", "Content-Length: " + strconv.Itoa(len(big)) + "\r\n", big},
		{"chunked", "Transfer-Encoding: chunked\r\n", "5\r\nchunk\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e engine) {
				fx := newEngineFixture(t, e, nil)
				read, cancelled := make(chan struct{}), make(chan struct{})
				release := make(chan struct{})
				defer close(release)
				fx.serveReplica(t, "held", func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					close(read)
					select {
					case <-r.Context().Done():
						close(cancelled)
					case <-release:
					}
				})
				c := dialFront(t, strings.TrimPrefix(fx.url, "http://"))
				io.WriteString(c, "POST /held HTTP/1.1\r\nHost: hello.default\r\n"+tc.head+"\r\n"+tc.body)
				within(t, read, "the replica to read the request's body")
				c.Close()
				within(t, cancelled, "the replica to see its request cancelled")
				waitFor(t, func() bool { return fx.gw.InFlight("default/"+rev1, "held") == 0 })
				waitFor(t, func() bool {
					return testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("hello", "default/"+rev1, "node3", "node3", "499")) == 1
				})
			})
		})
	}
}

// A request to switch protocols that waited for a replica (scale from
// zero) is switched, and its connection then carries the new protocol
// past the header timeout it was read under.
func TestGateway_upgradeAfterWait(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		waiting := make(chan struct{}, 1)
		fx := newEngineFixture(t, e, func(c *Config) {
			c.OnDemand = func(string) {
				select {
				case waiting <- struct{}{}:
				default:
				}
			}
		})
		replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(c, brw)
		}))
		t.Cleanup(replica.Close)
		c := dialFront(t, strings.TrimPrefix(fx.url, "http://"))
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: hello.default\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		// Waiting, the request is watched for its client's leaving; the
		// watch has to be gone from the connection once it is switched.
		within(t, waiting, "the request to wait for a replica")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{{Name: "echo", Node: "node3", Address: strings.TrimPrefix(replica.URL, "http://")}})
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		for _, msg := range []string{"ping", "pong pong"} {
			io.WriteString(c, msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
				t.Fatalf("echo %q, %v; want %q", got, err, msg)
			}
		}
	})
}

// A replica that answers before it has read a large request body (a
// refusal, say) has its answer relayed, not a 502 for the body it never
// took.
func TestGateway_earlyAnswer(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		fx.serveReplica(t, "r", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		})
		c := dialFront(t, strings.TrimPrefix(fx.url, "http://"))
		const size = 64 << 20
		go func() {
			// Until the gateway stops reading; the error is expected.
			_, _ = io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: hello.default\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
			chunk := make([]byte, 64<<10)
			for n := 0; n < size; n += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(body) != "too large\n" {
			t.Errorf("answer %d %q, want the replica's 413", resp.StatusCode, body)
		}
		if !resp.Close {
			t.Error("the answer keeps the connection, whose request body was not read to its end")
		}
	})
}

// A client whose request body stops part way, by leaving or by stalling,
// does not hold the replica: one that leaves is counted 499, one that
// stalls gets 504 once the revision's response-start timeout has passed;
// either way the replica sees its request end and its slot is freed.
func TestGateway_bodyCutShort(t *testing.T) {
	for _, tc := range []struct {
		name       string
		leave      bool
		size, sent int // declared, sent before the cut
	}{
		{"leaves", true, 1 << 20, 100 << 10},
		{"stalls", false, 1 << 20, 100 << 10},
		// Past what the server reads ahead, within its body bound.
		{"stalls-12KiB", false, 12 << 10, 9000},
	} {
		leave := tc.leave
		t.Run(tc.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e engine) {
				fx := newEngineFixture(t, e, nil)
				fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: rev1, Service: "hello",
					Timeout: time.Minute, ResponseStartTimeout: 300 * time.Millisecond})
				reading, ended := make(chan struct{}), make(chan struct{})
				fx.serveReplica(t, "r", func(w http.ResponseWriter, r *http.Request) {
					close(reading)
					_, _ = io.Copy(io.Discard, r.Body)
					<-r.Context().Done()
					close(ended)
				})
				c := dialFront(t, strings.TrimPrefix(fx.url, "http://"))
				io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: hello.default\r\nContent-Length: "+strconv.Itoa(tc.size)+"\r\n\r\n"+strings.Repeat("x", tc.sent))
				within(t, reading, "the replica to start reading the body")
				code := "499"
				if leave {
					c.Close()
				} else {
					code = "504"
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						t.Fatal(err)
					}
					if resp.StatusCode != http.StatusGatewayTimeout {
						t.Errorf("status %d, want 504", resp.StatusCode)
					}
				}
				within(t, ended, "the replica to see its request end")
				waitFor(t, func() bool { return fx.gw.InFlight("default/"+rev1, "r") == 0 })
				waitFor(t, func() bool {
					return testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("hello", "default/"+rev1, "node3", "node3", code)) == 1
				})
			})
		})
	}
}

// A client that leaves while the response body streams has the replica's
// request cancelled (its connection closed), and the slot freed: at once,
// or after its connection's header timeout has passed (the watch does not
// end with the deadline the request was read under).
func TestGateway_clientGoneWhileBodyStreams(t *testing.T) {
	const headerTimeout = 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		wait time.Duration // reading the first part, before leaving
	}{
		{"at once", 0},
		{"after the header timeout", 2*headerTimeout + watchAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e engine) {
				fx := newEngineFixture(t, e, nil)
				name := EngineNetHTTP
				if e == engineFast {
					name = EngineFast
				}
				srv, err := NewListenerServer(name, fx.gw, false, ServerOptions{ReadHeaderTimeout: headerTimeout})
				if err != nil {
					t.Fatal(err)
				}
				addr := serveOn(t, "127.78.201.2:0", srv)
				cancelled := make(chan struct{})
				release := make(chan struct{})
				defer close(release)
				fx.serveReplica(t, "held", func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, "first part;")
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						close(cancelled)
					case <-release:
					}
				})
				c := dialFront(t, addr)
				io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: hello.default\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				part := make([]byte, len("first part;"))
				if _, err := io.ReadFull(resp.Body, part); err != nil || resp.StatusCode != 200 {
					t.Fatalf("%d, first part %q, %v", resp.StatusCode, part, err)
				}
				time.Sleep(tc.wait)
				c.Close()
				within(t, cancelled, "the replica to see its request cancelled")
				waitFor(t, func() bool { return fx.gw.InFlight("default/"+rev1, "held") == 0 })
			})
		})
	}
}

// dialFront opens a connection to a gateway's listener at addr, closed
// with the test, with a deadline that stops a test that would hang.
func dialFront(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// serveReplica serves h as the revision's only replica, named name, on
// the fixture's node.
func (fx *fixture) serveReplica(t *testing.T, name string, h http.HandlerFunc) {
	t.Helper()
	replica := httptest.NewServer(h)
	t.Cleanup(replica.Close)
	fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{{Name: name, Node: "node3", Address: strings.TrimPrefix(replica.URL, "http://")}})
}

// pieceConn records the largest read it was offered and the largest
// write it was given.
type pieceConn struct {
	net.Conn
	maxRead, maxWrite *atomic.Int64
}

func raise(max *atomic.Int64, n int) {
	for v := max.Load(); int64(n) > v && !max.CompareAndSwap(v, int64(n)); v = max.Load() {
	}
}

func (c pieceConn) Read(p []byte) (int, error) {
	raise(c.maxRead, len(p))
	return c.Conn.Read(p)
}

func (c pieceConn) Write(p []byte) (int, error) {
	raise(c.maxWrite, len(p))
	return c.Conn.Write(p)
}

// On the fasthttp engine a large body crosses in large pieces both ways:
// fasthttp alone copies a streamed body through a connection's 4 KiB
// write buffer, a read and a write for every 4 KiB.
func TestGateway_largeBodiesInLargePieces(t *testing.T) {
	var maxRead, maxWrite atomic.Int64
	fx := newEngineFixture(t, engineFast, func(c *Config) {
		c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := defaultDial()(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return pieceConn{Conn: conn, maxRead: &maxRead, maxWrite: &maxWrite}, nil
		}
	})
	const size = 1 << 20
	fx.serveReplica(t, "r", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			t.Errorf("replica reading the body: %v", err)
		}
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			_, _ = w.Write(make([]byte, size))
			return
		}
		fmt.Fprint(w, n)
	})
	do := func(method string, body io.Reader) string {
		t.Helper()
		req, _ := http.NewRequest(method, fx.url+"/", body)
		req.Host = "hello.default"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d, %d bytes, %v", method, resp.StatusCode, len(got), err)
		}
		return string(got)
	}

	if got := do(http.MethodPost, strings.NewReader(strings.Repeat("u", size))); got != strconv.Itoa(size) {
		t.Fatalf("the replica got %s bytes of the upload, want %d", got, size)
	}
	// How the client's bytes come in is up to the kernel, but on loopback
	// one read takes a whole segment (up to 64 KiB), and each goes on as
	// it came.
	if w := maxWrite.Load(); w <= 4<<10 {
		t.Errorf("largest write of the upload to the replica: %d bytes, want more than 4 KiB", w)
	}

	if got := do(http.MethodGet, nil); len(got) != size {
		t.Fatalf("downloaded %d bytes, want %d", len(got), size)
	}
	if r := maxRead.Load(); r != bodyCopyBuffer {
		t.Errorf("largest read of the answer from the replica: %d bytes, want %d", r, bodyCopyBuffer)
	}
}

// countSpliced counts the bytes splice moves until the test ends.
func countSpliced(t *testing.T) *atomic.Int64 {
	var n atomic.Int64
	testHookSpliced = func(m int64) { n.Add(m) }
	t.Cleanup(func() { testHookSpliced = nil })
	return &n
}

// On the fasthttp engine a large answer of known length goes from the
// replica's socket to the client's by splice, exactly: the body arrives
// whole, the replica's connection carries the next request, and one that
// ends early is not passed off as whole.
func TestGateway_largeAnswerSpliced(t *testing.T) {
	spliced := countSpliced(t)
	fx := newEngineFixture(t, engineFast, nil)
	pattern := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i % 251)
		}
		return b
	}
	var mu sync.Mutex
	var seen []string
	fx.serveReplica(t, "r", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.RemoteAddr)
		mu.Unlock()
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		if r.URL.Query().Get("cut") != "" {
			// Half, then the connection goes.
			_, _ = w.Write(pattern(n / 2))
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		_, _ = w.Write(pattern(n))
	})
	get := func(q string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("GET", fx.url+"/?"+q, nil)
		req.Host = "hello.default"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}

	const size = 1<<20 + 123
	resp, body, err := get("n=" + strconv.Itoa(size))
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, pattern(size)) {
		t.Fatalf("large answer: %v, %d bytes, equal %v", err, len(body), bytes.Equal(body, pattern(size)))
	}
	if n := spliced.Load(); n <= 0 || n > size {
		t.Fatalf("%d bytes spliced of %d", n, size)
	}
	if resp, body, err := get("n=2"); err != nil || resp.StatusCode != http.StatusOK || len(body) != 2 {
		t.Fatalf("next answer: %v %v %q", resp, err, body)
	}
	mu.Lock()
	if len(seen) != 2 || seen[0] != seen[1] {
		t.Errorf("replica saw %q: want the next request on the same connection", seen)
	}
	mu.Unlock()

	spliced.Store(0)
	if _, body, err := get("cut=1&n=" + strconv.Itoa(size)); err == nil {
		t.Errorf("an answer cut at %d of %d bytes reached the client whole (%d bytes)", size/2, size, len(body))
	}
	if spliced.Load() >= size {
		t.Errorf("%d bytes spliced of a body cut at %d", spliced.Load(), size/2)
	}
	if resp, _, err := get("n=2"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after a cut answer: %v %v", resp, err)
	}

	// Pipelined: a small answer, which the connection holds for the
	// next read (holdAnswer), then a spliced one that no read precedes.
	spliced.Store(0)
	c := dialFront(t, strings.TrimPrefix(fx.url, "http://"))
	io.WriteString(c, "GET /?n=2 HTTP/1.1\r\nHost: hello.default\r\n\r\n"+
		"GET /?n="+strconv.Itoa(size)+" HTTP/1.1\r\nHost: hello.default\r\n\r\n")
	br := bufio.NewReader(c)
	for i, n := range []int{2, size} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("pipelined answer %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(body, pattern(n)) {
			t.Fatalf("pipelined answer %d: %v, %d bytes of %d, equal %v", i, err, len(body), n, bytes.Equal(body, pattern(n)))
		}
	}
	if spliced.Load() <= 0 {
		t.Errorf("the pipelined large answer was not spliced")
	}
}

// The revision's timeout bounds a spliced body as it bounds a copied one
// (TestGateway_revisionTimeoutCutsTheBody): the answer is cut, counted
// as a 504, and the slot given back.
func TestGateway_revisionTimeoutCutsASplicedBody(t *testing.T) {
	spliced := countSpliced(t)
	fx := newEngineFixture(t, engineFast, nil)
	const size = 1 << 20
	stallAfter(t, fx, func(w http.ResponseWriter) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(make([]byte, size/2))
	})
	req, _ := http.NewRequest("GET", fx.url+"/", nil)
	req.Host = "hello.default"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(body) >= size {
		t.Errorf("read %d bytes of %d, %v: want the body cut", len(body), size, err)
	}
	waitFor(t, func() bool { return fx.gw.InFlight("default/"+rev1, "stall") == 0 })
	if got := testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("hello", "default/"+rev1, "node3", "node3", "504")); got != 1 {
		t.Errorf("504 counter = %v, want 1", got)
	}
	if spliced.Load() == 0 {
		t.Error("nothing was spliced")
	}
}

// On the fasthttp engine the replica connection used last is the next one
// taken, as net/http's transport does: requests one after another stay on
// one connection, the others age out, rather than taking turns on every
// connection ever opened. (The net/http engine's transport puts a
// connection back after its body's end is reported, so a test there
// would race.)
func TestGateway_lastUsedReplicaConnectionFirst(t *testing.T) {
	fx := newEngineFixture(t, engineFast, nil)
	var mu sync.Mutex
	var seen []string // the replica's view of each request's connection
	both := make(chan struct{})
	var arrived atomic.Int32
	fx.serveReplica(t, "r", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.RemoteAddr)
		mu.Unlock()
		if r.URL.Query().Get("q") == "pair" {
			// Two at once, so that the gateway keeps two connections.
			if arrived.Add(1) == 2 {
				close(both)
			}
			<-both
		}
	})
	get := func(q string) {
		req, _ := http.NewRequest("GET", fx.url+"/?q="+q, nil)
		req.Host = "hello.default"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d", resp.StatusCode)
		}
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); get("pair") }()
	}
	wg.Wait()
	for range 4 {
		get("one")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 6 || seen[0] == seen[1] {
		t.Fatalf("replica saw %q: want two requests on two connections, then four", seen)
	}
	for _, c := range seen[3:] {
		if c != seen[2] {
			t.Fatalf("requests one after another came on %q, want one connection", seen[2:])
		}
	}
}

// monoNow must order with time.Now, as deadlines and service times mix the
// two, and carry a monotonic reading, which those comparisons use.
func TestMonoNow_ordersWithTimeNow(t *testing.T) {
	for range 1000 {
		a := monoNow()
		b := time.Now()
		c := monoNow()
		if b.Before(a) || c.Before(b) {
			t.Fatalf("out of order: monoNow %v, time.Now %v, monoNow %v", a, b, c)
		}
		if !strings.Contains(a.String(), " m=") {
			t.Fatalf("monoNow %v has no monotonic reading", a)
		}
	}
	if d := time.Until(monoNow().Add(time.Hour)); d <= 59*time.Minute || d > time.Hour {
		t.Fatalf("a deadline an hour from monoNow is %v away", d)
	}
}
