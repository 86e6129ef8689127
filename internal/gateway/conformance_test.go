package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The HTTP/1.1 conformance suite: one set of behaviours a client and a
// replica rely on, run against the gateway behind its Server and, as a
// reference, against httputil.ReverseProxy behind a plain http.Server with
// the same limits. Clients speak raw HTTP/1.1 over TCP where the framing
// matters. No step waits on a clock of its own: each blocks on the peer's
// bytes or on an event of the backend, with a generous deadline that only
// stops a test that would hang (the slow client's end is the server's
// header timeout, the behaviour under test).

// confHost is the host the suite's requests carry; the gateway routes it.
const confHost = "conf.default"

// confReadHeaderTimeout is the fronts' header timeout: short, so the
// slow-client case ends soon, and still far above a loaded machine's
// scheduling delays between a client's dial and its headers.
const confReadHeaderTimeout = 2 * time.Second

// front is a proxy under test: given a backend's address, it serves on a
// loopback address and returns it.
type front struct {
	name  string
	start func(t *testing.T, backend string) string
}

var fronts = []front{
	{"gateway", startGatewayFront},
	{"fasthttp", startFastGatewayFront},
	{"httputil", startHTTPUtilFront},
	{"external", startExternalFront},
}

// envConformanceFront names a proxy program to run the suite against as
// well (the "external" front; skipped when unset), started like a child
// of kantai bench proxy: the backend's address in
// KANTAI_PROXYBENCH_BACKEND, "proxybench-listening ADDR" printed once
// listening, exit when its standard input closes. hack/fasthttp-eval is
// one.
const envConformanceFront = "KANTAI_CONFORMANCE_FRONT"

func startExternalFront(t *testing.T, backend string) string {
	t.Helper()
	prog := os.Getenv(envConformanceFront)
	if prog == "" {
		t.Skip(envConformanceFront + " not set")
	}
	cmd := exec.Command(prog)
	cmd.Env = append(os.Environ(), "KANTAI_PROXYBENCH_BACKEND="+backend)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", prog, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "proxybench-listening "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return addr
		}
	}
	t.Fatalf("%s exited before listening", prog)
	return ""
}

func confServerOptions() ServerOptions {
	return ServerOptions{ReadHeaderTimeout: confReadHeaderTimeout, MaxHeaderBytes: 16 << 10}
}

func startGatewayFront(t *testing.T, backend string) string {
	t.Helper()
	_, addr := startServer(t, confGateway(t, backend), confServerOptions())
	return addr
}

// startFastGatewayFront is the gateway on the fasthttp engine.
func startFastGatewayFront(t *testing.T, backend string) string {
	t.Helper()
	_, addr := startFastServer(t, confGateway(t, backend).FastHandler(), confServerOptions())
	return addr
}

// confGateway is a gateway routing confHost to backend.
func confGateway(t *testing.T, backend string) *Gateway {
	t.Helper()
	gw, err := New(Config{
		Node: "n1", Nodes: []string{"n1"}, Policy: "kantai",
		Transport: NewTransport(nil),
		Metrics:   NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		t.Fatal(err)
	}
	gw.SetRevision(RevisionConfig{Namespace: "default", Name: "conf-00001", Service: "conf"})
	gw.SetReplicas("default/conf-00001", []ReplicaInfo{{Name: "conf-r1", Node: "n1", Address: backend}})
	if err := gw.SetRoutes(ServiceRoutes("conf", "default", "", []ServiceTarget{{Revision: "default/conf-00001", Percent: 100}})); err != nil {
		t.Fatal(err)
	}
	return gw
}

func startHTTPUtilFront(t *testing.T, backend string) string {
	t.Helper()
	u := &url.URL{Scheme: "http", Host: backend}
	rp := &httputil.ReverseProxy{
		Rewrite:  func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded(); pr.Out.Host = pr.In.Host },
		ErrorLog: confDiscardLog,
	}
	o := confServerOptions()
	ln, err := net.Listen("tcp", "127.78.201.3:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: o.ReadHeaderTimeout, MaxHeaderBytes: o.MaxHeaderBytes, ErrorLog: confDiscardLog}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

var confDiscardLog = log.New(io.Discard, "", 0)

// confBackend is the replica the suite forwards to. Its paths:
//
//	/headers   answers the request's host and headers as JSON
//	/echo      answers the request body, streamed back, with the length of
//	           what it read in X-Read
//	/trailers  reads the body, answers the request trailer X-Req-Trailer in
//	           the response trailer X-Seen-Req-Trailer, plus X-Resp-Trailer
//	/hop       like /headers, with hop-by-hop response headers added
//	/status/N  answers status N with no body (204, 304)
//	/fixed     answers "hello" with Content-Length: 5
//	/big?n=B   writes B bytes of response and reports how it ended on ended
//	/sink      reads the body and answers its length
//	/lockstep  writes one chunk per receive on step, flushing each
//	/reqstep   reads the body chunk by chunk, reporting each on got
//	/ws        switches to "echo" on "Upgrade: echo" and echoes bytes
type confBackend struct {
	srv      *httptest.Server
	addr     string
	requests atomic.Int64
	paths    chan string // every request's path, if anyone listens

	bigWritten atomic.Int64
	ended      chan error // /big's end: nil when complete

	step chan struct{}
	got  chan string
	quit chan struct{} // closed before the server, so no handler waits on
}

func newConfBackend(t *testing.T) *confBackend {
	t.Helper()
	b := &confBackend{paths: make(chan string, 64), ended: make(chan error, 1),
		step: make(chan struct{}), got: make(chan string), quit: make(chan struct{})}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	b.srv.Config.ErrorLog = confDiscardLog
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	t.Cleanup(func() { close(b.quit) })
	b.addr = strings.TrimPrefix(b.srv.URL, "http://")
	return b
}

func (b *confBackend) serve(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	select {
	case b.paths <- r.URL.Path:
	default:
	}
	switch p := r.URL.Path; {
	case p == "/headers" || p == "/hop":
		if p == "/hop" {
			h := w.Header()
			h.Set("Connection", "X-Resp-Hop")
			h.Set("X-Resp-Hop", "1")
			h.Set("Keep-Alive", "timeout=5")
			h.Set("Proxy-Authenticate", "Basic")
			h.Set("X-Resp-Kept", "1")
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "header": r.Header})
	case p == "/echo":
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, r.Body)
		// Flushed: the answer goes out chunked, its length unknown.
		_ = http.NewResponseController(w).Flush()
	case p == "/trailers":
		w.Header().Set("Trailer", "X-Seen-Req-Trailer, X-Resp-Trailer")
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "read %d, trailer %q", n, r.Trailer.Get("X-Req-Trailer"))
		w.Header().Set("X-Seen-Req-Trailer", r.Trailer.Get("X-Req-Trailer"))
		w.Header().Set("X-Resp-Trailer", "done")
	case strings.HasPrefix(p, "/status/"):
		code, _ := strconv.Atoi(strings.TrimPrefix(p, "/status/"))
		w.Header().Set("ETag", `"v1"`)
		w.WriteHeader(code)
	case p == "/fixed":
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "hello")
	case p == "/big":
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 64<<10)
		var err error
		for left := n; left > 0 && err == nil; {
			k := min(left, int64(len(buf)))
			var m int
			m, err = w.Write(buf[:k])
			left -= int64(m)
			b.bigWritten.Add(int64(m))
		}
		select {
		case b.ended <- err:
		default:
		}
	case p == "/sink":
		buf := make([]byte, 64<<10)
		var n int64
		for {
			m, err := r.Body.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		fmt.Fprintf(w, "%d", n)
	case p == "/lockstep":
		rc := http.NewResponseController(w)
		for i := 0; ; i++ {
			select {
			case <-b.step:
			case <-b.quit:
				return
			}
			fmt.Fprintf(w, "chunk%d;", i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
	case p == "/reqstep":
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString(';')
			if line != "" {
				select {
				case b.got <- line:
				case <-b.quit:
					return
				}
			}
			if err != nil {
				break
			}
		}
		_, _ = io.WriteString(w, "done")
	case p == "/ws":
		if !headerHasToken(r.Header, "Connection", "upgrade") || r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "expected an upgrade to echo, got Connection "+strconv.Quote(r.Header.Get("Connection"))+
				" Upgrade "+strconv.Quote(r.Header.Get("Upgrade")), http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_, _ = io.Copy(c, brw)
	default:
		http.NotFound(w, r)
	}
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// confConn is a raw client connection with a deadline that only stops a
// test that would otherwise hang.
type confConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func confDial(t *testing.T, addr string) *confConn {
	t.Helper()
	c := dialFront(t, addr)
	_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // room for the large streams
	return &confConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *confConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("writing %q: %v", s[:min(len(s), 40)], err)
	}
}

// read reads one response to a request of method, body included, after
// any interim (1xx) ones: a proxy may pass on its replica's 100 Continue
// after sending its own.
func (c *confConn) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
		resp, err = http.ReadResponse(c.br, &http.Request{Method: method})
	}
	if err != nil {
		c.t.Fatalf("reading a response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading a response body: %v", err)
	}
	resp.Body.Close()
	return resp, string(body)
}

// closed reports whether the peer closes the connection (EOF or reset)
// before sending anything more.
func (c *confConn) closed() bool {
	c.t.Helper()
	b, err := c.br.ReadByte()
	if err == nil {
		rest, _ := c.br.Peek(c.br.Buffered())
		c.t.Logf("unexpected bytes after the answer: %q", append([]byte{b}, rest...))
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("the connection stayed open for a minute")
	}
	return true
}

func get(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: " + confHost + "\r\n" + strings.Join(extra, "") + "\r\n"
}

// recv and send bound a step that waits for the backend, so that a proxy
// that holds data back fails the case instead of hanging the suite.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(60 * time.Second):
		t.Fatalf("waited a minute for %s", what)
		panic("unreachable")
	}
}

func send[T any](t *testing.T, ch chan<- T, what string) {
	t.Helper()
	var zero T
	select {
	case ch <- zero:
	case <-time.After(60 * time.Second):
		t.Fatalf("waited a minute for %s", what)
	}
}

type seenRequest struct {
	Host   string
	Header http.Header
}

func decodeSeen(t *testing.T, body string) seenRequest {
	t.Helper()
	var s seenRequest
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("backend answer %q: %v", body, err)
	}
	return s
}

type confCase struct {
	name string
	// notReference marks behaviours httputil.ReverseProxy does not have;
	// the reason is in the comment at the case.
	notReference bool
	run          func(t *testing.T, addr string, b *confBackend)
}

func TestConformance(t *testing.T) {
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			for _, cc := range confCases {
				t.Run(cc.name, func(t *testing.T) {
					if cc.notReference && f.name == "httputil" {
						t.Skip("the reference does not have this behaviour")
					}
					b := newConfBackend(t)
					cc.run(t, f.start(t, b.addr), b)
				})
			}
		})
	}
}

var confCases = []confCase{
	{name: "keep-alive", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		for i := 0; i < 3; i++ {
			c.send("POST /echo HTTP/1.1\r\nHost: " + confHost + "\r\nContent-Length: 5\r\n\r\nhello")
			resp, body := c.read("POST")
			if resp.StatusCode != 200 || body != "hello" || resp.Close {
				t.Fatalf("request %d: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
			}
		}
		if n := b.requests.Load(); n != 3 {
			t.Errorf("backend saw %d requests, want 3", n)
		}
	}},
	{name: "pipelining", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send(get("/headers", "X-Seq: 1\r\n") + get("/headers", "X-Seq: 2\r\n") + get("/headers", "X-Seq: 3\r\n"))
		for i := 1; i <= 3; i++ {
			resp, body := c.read("GET")
			if resp.StatusCode != 200 {
				t.Fatalf("response %d: status %d", i, resp.StatusCode)
			}
			if got := decodeSeen(t, body).Header.Get("X-Seq"); got != strconv.Itoa(i) {
				t.Errorf("response %d answers request %s", i, got)
			}
		}
	}},
	{name: "chunked both ways", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send("POST /echo HTTP/1.1\r\nHost: " + confHost + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
		resp, body := c.read("POST")
		if resp.StatusCode != 200 || body != "hello world" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("a response of unknown length came with Transfer-Encoding %v, want chunked", resp.TransferEncoding)
		}
	}},
	{name: "request streaming", run: func(t *testing.T, addr string, b *confBackend) {
		// Each chunk must reach the replica before the client sends the
		// next: nothing on the way waits for the whole body.
		c := confDial(t, addr)
		c.send("POST /reqstep HTTP/1.1\r\nHost: " + confHost + "\r\nTransfer-Encoding: chunked\r\n\r\n")
		for i := 0; i < 3; i++ {
			s := fmt.Sprintf("part%d;", i)
			c.send(fmt.Sprintf("%x\r\n%s\r\n", len(s), s))
			if got := recv(t, b.got, "the replica reading a chunk"); got != s {
				t.Fatalf("backend read %q, want %q", got, s)
			}
		}
		c.send("0\r\n\r\n")
		if resp, body := c.read("POST"); resp.StatusCode != 200 || body != "done" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}},
	{name: "response streaming", run: func(t *testing.T, addr string, b *confBackend) {
		// Each chunk must reach the client before the replica writes the
		// next.
		c := confDial(t, addr)
		c.send(get("/lockstep"))
		send(t, b.step, "the replica writing")
		resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		// Not closed: that would read to the end, which never comes.
		for i := 0; i < 3; i++ {
			if i > 0 {
				send(t, b.step, "the replica writing")
			}
			want := fmt.Sprintf("chunk%d;", i)
			got := make([]byte, len(want))
			if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != want {
				t.Fatalf("read %q, %v; want %q", got, err, want)
			}
		}
	}},
	{name: "expect 100-continue", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send("POST /echo HTTP/1.1\r\nHost: " + confHost + "\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		line, err := c.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("first line %q, %v; want 100 Continue before the body is sent", line, err)
		}
		if blank, _ := c.br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("100 Continue followed by %q", blank)
		}
		c.send("hello")
		if resp, body := c.read("POST"); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}},
	// httputil.ReverseProxy clones the request, and the clone's trailer
	// map is not the one net/http fills at the end of the body: request
	// trailers never reach the replica through it.
	{name: "request trailers", notReference: true, run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send("POST /trailers HTTP/1.1\r\nHost: " + confHost + "\r\nTransfer-Encoding: chunked\r\nTrailer: X-Req-Trailer\r\n\r\n" +
			"5\r\nhello\r\n0\r\nX-Req-Trailer: sent\r\n\r\n")
		resp, body := c.read("POST")
		if want := `read 5, trailer "sent"`; resp.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want %q", resp.StatusCode, body, want)
		}
	}},
	{name: "response trailers", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send("POST /trailers HTTP/1.1\r\nHost: " + confHost + "\r\nContent-Length: 5\r\n\r\nhello")
		resp, _ := c.read("POST")
		if resp.StatusCode != 200 || resp.Trailer.Get("X-Resp-Trailer") != "done" || resp.Trailer.Get("X-Seen-Req-Trailer") != "" {
			t.Fatalf("%d, trailers %v; want X-Resp-Trailer: done", resp.StatusCode, resp.Trailer)
		}
		// The connection stays usable.
		c.send(get("/fixed"))
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("after trailers: %d %q", resp.StatusCode, body)
		}
	}},
	{name: "HEAD", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send("HEAD /fixed HTTP/1.1\r\nHost: " + confHost + "\r\n\r\n")
		resp, body := c.read("HEAD")
		if resp.StatusCode != 200 || body != "" || resp.ContentLength != 5 {
			t.Fatalf("%d %q length %d; want 200, no body, length 5", resp.StatusCode, body, resp.ContentLength)
		}
		// A body sent after all would be read as the next response.
		c.send(get("/fixed"))
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("after HEAD: %d %q", resp.StatusCode, body)
		}
	}},
	{name: "204 and 304 without bodies", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		for _, code := range []int{204, 304} {
			c.send(get("/status/" + strconv.Itoa(code)))
			resp, body := c.read("GET")
			if resp.StatusCode != code || body != "" || len(resp.TransferEncoding) > 0 || resp.Header.Get("Content-Length") != "" {
				t.Fatalf("%d %q te=%v cl=%q; want %d with no body nor framing", resp.StatusCode, body,
					resp.TransferEncoding, resp.Header.Get("Content-Length"), code)
			}
		}
		c.send(get("/fixed"))
		if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "hello" {
			t.Fatalf("after 204/304: %d %q", resp.StatusCode, body)
		}
	}},
	{name: "hop-by-hop headers removed", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send(get("/hop", "Connection: keep-alive, X-Req-Hop\r\nX-Req-Hop: 1\r\nKeep-Alive: timeout=5\r\n"+
			"Proxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Req-Kept: 1\r\n"))
		resp, body := c.read("GET")
		seen := decodeSeen(t, body).Header
		for _, h := range []string{"X-Req-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
			if v := seen.Get(h); v != "" {
				t.Errorf("request header %s: %q reached the replica", h, v)
			}
		}
		if seen.Get("X-Req-Kept") != "1" {
			t.Errorf("end-to-end request header lost: %v", seen)
		}
		for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
			if v := resp.Header.Get(h); v != "" {
				t.Errorf("response header %s: %q reached the client", h, v)
			}
		}
		if resp.Header.Get("X-Resp-Kept") != "1" {
			t.Errorf("end-to-end response header lost: %v", resp.Header)
		}
	}},
	{name: "X-Forwarded-Proto and -Host set", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send(get("/headers", "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n"))
		_, body := c.read("GET")
		seen := decodeSeen(t, body)
		if got := seen.Header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
			t.Errorf("X-Forwarded-Proto %q, want http (the client's claim replaced)", got)
		}
		if got := seen.Header.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != confHost {
			t.Errorf("X-Forwarded-Host %q, want %q", got, confHost)
		}
		if got, want := seen.Header.Get("X-Forwarded-For"), "127.0.0.1"; got != want {
			t.Errorf("X-Forwarded-For %q, want %q", got, want)
		}
		if seen.Host != confHost {
			t.Errorf("the replica saw Host %q, want %q", seen.Host, confHost)
		}
	}},
	// httputil's SetXForwarded replaces a client's X-Forwarded-For; the
	// gateway appends to it, as its Director-based default does.
	{name: "X-Forwarded-For appended", notReference: true, run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send(get("/headers", "X-Forwarded-For: 192.0.2.7\r\n"))
		_, body := c.read("GET")
		if got, want := decodeSeen(t, body).Header.Get("X-Forwarded-For"), "192.0.2.7, 127.0.0.1"; got != want {
			t.Errorf("X-Forwarded-For %q, want %q", got, want)
		}
	}},
	// Content-Length with Transfer-Encoding: net/http reads the request by
	// its Transfer-Encoding and drops the Content-Length (RFC 9112 §6.3
	// allows that, and nothing tells a handler both came). Smuggling is
	// prevented by what follows: the replica gets one well-framed request,
	// the connection closes after the answer, and whatever the client sent
	// behind the chunked body is never read as a request. The reference's
	// plain http.Server keeps the connection open and serves the smuggled
	// request, hence gateway-only.
	{name: "content-length with transfer-encoding", notReference: true, run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		smuggled := get("/smuggled")
		c.send("POST /echo HTTP/1.1\r\nHost: " + confHost + "\r\nContent-Length: " + strconv.Itoa(5+len(smuggled)) +
			"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)
		resp, _ := c.read("POST")
		if resp.StatusCode != 400 && !resp.Close {
			t.Errorf("status %d without Connection: close", resp.StatusCode)
		}
		if !c.closed() {
			t.Errorf("the connection stayed open after a request with both framings")
		}
		if p := recv(t, b.paths, "the replica's first request"); p != "/echo" {
			t.Errorf("the replica saw %s first", p)
		}
		select {
		case p := <-b.paths:
			t.Errorf("the replica saw a second request %s", p)
		default:
		}
	}},
	{name: "oversized headers 431", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		big := strings.Repeat("a", 64<<10)
		// The server may answer and close before reading it all.
		go func() { _, _ = io.WriteString(c.c, get("/headers", "X-Big: "+big+"\r\n")) }()
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
		if n := b.requests.Load(); n != 0 {
			t.Errorf("the replica saw %d requests", n)
		}
	}},
	{name: "slow client", run: func(t *testing.T, addr string, b *confBackend) {
		// Headers begun and never finished: the header timeout closes the
		// connection (net/http may first answer 408).
		c := confDial(t, addr)
		c.send("GET /headers HTTP/1.1\r\nHost: " + confHost + "\r\nX-Slow: ")
		if resp, err := http.ReadResponse(c.br, nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d, want 408 or a closed connection", resp.StatusCode)
			}
		} else {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the connection stayed open for a minute")
			}
		}
		if n := b.requests.Load(); n != 0 {
			t.Errorf("the replica saw %d requests", n)
		}
	}},
	{name: "client stops reading", run: func(t *testing.T, addr string, b *confBackend) {
		// The client reads the headers of a large answer and stops; what
		// the proxy holds meanwhile is bounded by socket buffers (the
		// replica cannot finish), and once the client goes the replica's
		// write fails.
		const total = 1 << 30
		c := confDial(t, addr)
		c.send(get("/big?n=" + strconv.Itoa(total)))
		resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		waitFor(t, func() bool { return b.bigWritten.Load() >= 1<<20 })
		c.c.Close()
		if err := recv(t, b.ended, "the replica's end"); err == nil {
			t.Errorf("the replica wrote all %d bytes to a client that read none", total)
		}
		if w := b.bigWritten.Load(); w >= total {
			t.Errorf("the replica wrote %d bytes", w)
		}
	}},
	{name: "upgrade forwarded", run: func(t *testing.T, addr string, b *confBackend) {
		c := confDial(t, addr)
		c.send(get("/ws", "Connection: Upgrade\r\nUpgrade: echo\r\n"))
		resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" || !headerHasToken(resp.Header, "Connection", "upgrade") {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("%d %v %q; want 101 to echo", resp.StatusCode, resp.Header, body)
		}
		for i, msg := range []string{"ping", "pong pong"} {
			if i > 0 {
				// A switched connection is no longer bound by the
				// header timeout its request was read under.
				time.Sleep(confReadHeaderTimeout + confReadHeaderTimeout/4)
			}
			c.send(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c.br, got); err != nil || string(got) != msg {
				t.Fatalf("echo %q, %v; want %q", got, err, msg)
			}
		}
	}},
	{name: "streams with flat memory", run: func(t *testing.T, addr string, b *confBackend) {
		// 256 MiB up and 256 MiB down. The client, the proxy and the
		// replica share this process; each moves data through fixed
		// buffers, so what is allocated while it flows is the proxy's own
		// per-request cost, not the body. An external front's memory is
		// not seen here; "client stops reading" catches one that buffers.
		size := int64(256 << 20)
		if testing.Short() {
			size = 32 << 20
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := confDial(t, addr)
		c.send("POST /sink HTTP/1.1\r\nHost: " + confHost + "\r\nContent-Length: " + strconv.FormatInt(size, 10) + "\r\n\r\n")
		buf := make([]byte, 64<<10)
		for left := size; left > 0; {
			n, err := c.c.Write(buf[:min(left, int64(len(buf)))])
			if err != nil {
				t.Fatalf("uploading: %v", err)
			}
			left -= int64(n)
		}
		if resp, body := c.read("POST"); resp.StatusCode != 200 || body != strconv.FormatInt(size, 10) {
			t.Fatalf("upload: %d %q", resp.StatusCode, body)
		}
		c.send(get("/big?n=" + strconv.FormatInt(size, 10)))
		resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("download: %v %v", resp, err)
		}
		var got int64
		for {
			n, err := resp.Body.Read(buf)
			got += int64(n)
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if got != size {
			t.Fatalf("downloaded %d bytes, want %d", got, size)
		}
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%d MiB each way: %.1f MiB allocated, heap in use %.1f → %.1f MiB", size>>20,
			float64(alloc)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
		if limit := uint64(16 << 20); alloc > limit {
			t.Errorf("%d MiB allocated while %d MiB went each way; want under %d MiB", alloc>>20, size>>20, limit>>20)
		}
	}},
}
