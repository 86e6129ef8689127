package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkServer_idleConnMemory measures what an idle keep-alive client
// connection costs a gateway: N connections each send one request through
// the gateway to a replica, then stay open and silent; the figures are
// the growth of the heap, of goroutine stacks and of the process's
// resident memory, per connection. The client's ends live in the same
// process: their share (a net.TCPConn and its descriptor, about 0.3 KiB
// of heap) is included. b.N is ignored: one measurement per run. The
// resident figure is only meaningful for one engine per process: memory an
// earlier sub-benchmark freed is resident already when the next reuses it.
//
//	go test -run '^$' -bench idleConnMemory/fasthttp -benchtime 1x ./internal/gateway
func BenchmarkServer_idleConnMemory(b *testing.B) {
	for _, e := range []engine{engineNetHTTP, engineFast} {
		b.Run(string(e), func(b *testing.B) { benchIdleConnMemory(b, e) })
	}
}

func benchIdleConnMemory(b *testing.B, e engine) {
	const conns = 2000
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	bln, err := net.Listen("tcp", "127.78.201.4:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = backend.Serve(bln) }()
	defer backend.Close()
	gw, err := New(Config{Node: "n1", Nodes: []string{"n1"}, Policy: "kantai",
		Transport: NewTransport(nil), Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		b.Fatal(err)
	}
	gw.SetRevision(RevisionConfig{Namespace: "default", Name: "idle-00001", Service: "idle"})
	gw.SetReplicas("default/idle-00001", []ReplicaInfo{{Name: "r1", Node: "n1", Address: bln.Addr().String()}})
	if err := gw.SetRoutes(ServiceRoutes("idle", "default", "", []ServiceTarget{{Revision: "default/idle-00001", Percent: 100}})); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.78.201.4:0")
	if err != nil {
		b.Fatal(err)
	}
	var srv ListenerServer = NewServer(gw, ServerOptions{MaxConns: 2 * conns})
	if e == engineFast {
		srv = NewFastServer(gw.FastHandler(), ServerOptions{MaxConns: 2 * conns})
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	for i := 0; i < b.N; i++ {
		before := memNow()
		clients := make([]net.Conn, 0, conns)
		buf := make([]byte, 4096)
		req := []byte("GET / HTTP/1.1\r\nHost: idle.default\r\n\r\n")
		for range conns {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			br := bufio.NewReaderSize(c, 64)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("%v %v", resp, err)
			}
			_, _ = io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
		}
		waitServer(b, srv, func(s ServerStats) bool { return s.Open == conns && s.Active == 0 })
		after := memNow()
		b.ReportMetric(float64(after.heap-before.heap)/conns, "heap-B/conn")
		b.ReportMetric(float64(after.stack-before.stack)/conns, "stack-B/conn")
		b.ReportMetric(float64(after.rss-before.rss)/conns, "rss-B/conn")
		for _, c := range clients {
			c.Close()
		}
		waitServer(b, srv, func(s ServerStats) bool { return s.Open == 0 })
	}
}

type memFigures struct{ heap, stack, rss int64 }

// memNow reads the heap and stacks in use after a collection, and the
// resident set from /proc (0 where there is none).
func memNow() memFigures {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f := memFigures{heap: int64(ms.HeapInuse), stack: int64(ms.StackInuse)}
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				f.rss = kb << 10
			}
		}
	}
	return f
}

func waitServer(b *testing.B, s engineServer, cond func(ServerStats) bool) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond(s.Stats()) {
		if time.Now().After(deadline) {
			b.Fatalf("server stats %+v after 60s", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}
