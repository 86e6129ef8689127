package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// startServer serves h on a loopback port with o; it returns the server
// and its address.
func startServer(t *testing.T, h http.Handler, o ServerOptions) (*Server, string) {
	t.Helper()
	s := NewServer(h, o)
	return s, serveOn(t, "127.78.201.1:0", s)
}

// serveOn serves s on a listener at addr until the test ends, and returns
// the listener's address.
func serveOn(t *testing.T, addr string, s interface {
	Serve(net.Listener) error
	Close() error
}) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// engineServer is what the server tests use of Server and FastServer.
type engineServer interface {
	Stats() ServerStats
	Shutdown(ctx context.Context) error
}

// startEngineServer serves h with engine e (on fasthttp through
// fasthttpadaptor: the server's behaviour is under test, not the
// handler's); it returns the server, its connection table and address.
func startEngineServer(t *testing.T, e engine, h http.Handler, o ServerOptions) (engineServer, *connTable, string) {
	t.Helper()
	if e == engineFast {
		s, addr := startFastServer(t, fasthttpadaptor.NewFastHTTPHandler(h), o)
		return s, &s.connTable, addr
	}
	s, addr := startServer(t, h, o)
	return s, &s.connTable, addr
}

// rawRequest sends one request on c and reads the answer.
func rawRequest(t *testing.T, c net.Conn, br *bufio.Reader, method string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, method+" / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nwork"); err != nil {
		t.Fatalf("writing a request: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v (the connection was cut)", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// waitStats waits, on the server's own state changes, until cond holds.
func waitStats(t *testing.T, s engineServer, what string, cond func(ServerStats) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond(s.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v after 20s", what, s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

func TestServer_atTheBoundTheLongestIdleConnectionMakesRoom(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		s, _, addr := startEngineServer(t, e, ok, ServerOptions{MaxConns: 8})
		var idle []net.Conn
		for i := 0; i < 8; i++ {
			c, _ := dial(t, addr)
			idle = append(idle, c)
		}
		waitStats(t, s, "8 connections open", func(st ServerStats) bool { return st.Open == 8 })
		c, br := dial(t, addr)
		if resp := rawRequest(t, c, br, "POST"); resp.StatusCode != 200 {
			t.Fatalf("new request at the bound: %d, want 200", resp.StatusCode)
		}
		st := s.Stats()
		if st.Evicted != 1 || st.Open > 8 {
			t.Errorf("stats %+v, want 1 evicted and at most 8 open", st)
		}
		// The first idle connection is the one that went.
		idle[0].SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := idle[0].Read(make([]byte, 1)); err == nil {
			t.Error("the longest idle connection is still open")
		}
	})
}

func TestServer_atTheBoundWithEveryConnectionBusyRefuses503(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		release := make(chan struct{})
		entered := make(chan struct{}, 2)
		busy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-release
		})
		s, _, addr := startEngineServer(t, e, busy, ServerOptions{MaxConns: 2})
		for i := 0; i < 2; i++ {
			c, _ := dial(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			<-entered
		}
		_, br := dial(t, addr) // sends nothing: the answer comes at accept
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("a connection over the bound got no answer: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || !resp.Close || !strings.Contains(string(body), "limit of 2 connections") {
			t.Errorf("over the bound: %d %v %q, want 503, Connection: close and the reason", resp.StatusCode, resp.Header, body)
		}
		close(release)
		if st := s.Stats(); st.Refused != 1 {
			t.Errorf("refused = %d, want 1", st.Refused)
		}
	})
}

func TestServer_headerLimit(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		_, _, addr := startEngineServer(t, e, ok, ServerOptions{})
		c, br := dial(t, addr)
		big := strings.Repeat("a", DefaultMaxHeaderBytes+4096)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("oversized header: %v %v, want 431", resp, err)
		}
	})
}

// CONNECT is refused whatever the host: the gateway is no forward proxy.
func TestServer_connectRefused(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		_, _, addr := startEngineServer(t, e, ok, ServerOptions{})
		c, br := dial(t, addr)
		io.WriteString(c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
			t.Errorf("CONNECT: %d Allow=%q, want 405 with Allow", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
}

// Shutdown loses nothing: the request in flight is answered normally, a
// request on an idle keep-alive connection gets 503 + Connection: close,
// and new connections are refused by the kernel (nothing sent).
func TestServer_shutdownLosesNothing(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		release := make(chan struct{})
		entered := make(chan struct{}, 1)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				entered <- struct{}{}
				<-release
			}
			io.WriteString(w, "ok")
		})
		s, table, addr := startEngineServer(t, e, h, ServerOptions{DrainGrace: time.Minute})
		// An idle keep-alive connection.
		idle, idleBr := dial(t, addr)
		if resp := rawRequest(t, idle, idleBr, "POST"); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		// A request in flight.
		slow, slowBr := dial(t, addr)
		io.WriteString(slow, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nwork")
		<-entered
		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(context.Background()) }()
		for !table.draining.Load() {
			time.Sleep(time.Millisecond)
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Error("a new connection was accepted while shutting down")
		}
		resp := rawRequest(t, idle, idleBr, "POST")
		if resp.StatusCode != 503 || !resp.Close || resp.Header.Get("Retry-After") != "1" {
			t.Errorf("late request on a keep-alive connection: %d close=%v Retry-After=%q, want 503 with Connection: close and Retry-After: 1",
				resp.StatusCode, resp.Close, resp.Header.Get("Retry-After"))
		}
		close(release)
		resp, err := http.ReadResponse(slowBr, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request in flight: %v %v, want 200", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		// The slow request's connection is now idle; its next request is
		// answered too, and then nothing is open: Shutdown returns without
		// waiting out the minute of grace.
		if resp := rawRequest(t, slow, slowBr, "POST"); resp.StatusCode != 503 {
			t.Errorf("late request: %d, want 503", resp.StatusCode)
		}
		select {
		case err := <-shut:
			if err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Shutdown still waiting 30s after every connection closed")
		}
	})
}

// BenchmarkServer_keepAlive compares net/http's server alone with Server
// (connection tracking, bound, drain check) on keep-alive requests.
func BenchmarkServer_keepAlive(b *testing.B) {
	for _, name := range []string{"net/http", "gateway.Server", "gateway.FastServer"} {
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.78.201.2:0")
			if err != nil {
				b.Fatal(err)
			}
			var closeFn func() error
			if name == "net/http" {
				srv := &http.Server{Handler: ok}
				go srv.Serve(ln)
				closeFn = srv.Close
			} else if name == "gateway.Server" {
				srv := NewServer(ok, ServerOptions{})
				go srv.Serve(ln)
				closeFn = srv.Close
			} else {
				srv := NewFastServer(func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }, ServerOptions{})
				go srv.Serve(ln)
				closeFn = srv.Close
			}
			defer closeFn()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			url := "http://" + ln.Addr().String() + "/"
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
