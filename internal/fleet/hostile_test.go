package fleet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"kantai.dev/kantai/internal/manifest"
)

// idleConns is how many idle connections the hostile test holds against
// one gateway, from helper processes of perHolder connections each (a
// process's descriptor limit is 20,000 on the project's machines).
const idleConns = 20000

// TestFleet_hostileClients sends what a hostile or broken client sends to
// a real fleet's gateway, checks each answer, and checks that a normal
// request on a new connection is still served after each. Timings are
// printed, not asserted (bounds are generous).
func TestFleet_hostileClients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet and holds 20,000 connections")
	}
	exe, _ := os.Executable()
	tb := smallTestbed(t, 8)
	tb.Images = map[string][]string{"example/bulk": {exe, "bulk"}}
	f := startFleet(t, tb)
	for _, fn := range []*manifest.Function{
		{Name: "hello", Namespace: "default", Image: "example/hello", Port: 8080},
		{Name: "bulk", Namespace: "default", Image: "example/bulk", Port: 8080},
	} {
		if err := f.ApplyFixed(fn, map[string]int{"node1": 1}); err != nil {
			t.Fatal(err)
		}
	}
	addr, _ := f.GatewayAddr("node1")
	normalClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 60 * time.Second}
	normal := func(t *testing.T, when string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = "hello.default"
		start := time.Now()
		resp, err := normalClient.Do(req)
		if err != nil {
			t.Fatalf("normal request %s: %v", when, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "from hello-") {
			t.Fatalf("normal request %s: %d %q", when, resp.StatusCode, body)
		}
		t.Logf("normal request %s: 200 in %v", when, time.Since(start).Round(10*time.Microsecond))
	}
	// Wait for both replicas: a first normal request, and one to bulk.
	deadline := time.Now().Add(30 * time.Second)
	for len(f.Functions()) < 2 || f.Functions()[0].Ready["node1"] < 1 || f.Functions()[1].Ready["node1"] < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("replicas not ready within 30s: %+v", f.Replicas())
		}
		time.Sleep(20 * time.Millisecond)
	}
	normal(t, "before")

	raw := []struct {
		name, request string
		want          int
		body          string
	}{
		{"oversized header (100 KB)", "GET / HTTP/1.1\r\nHost: hello.default\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n", 431, ""},
		{"10,000 headers", "GET / HTTP/1.1\r\nHost: hello.default\r\n" + manyHeaders(10000) + "\r\n", 431, ""},
		{"CONNECT to a foreign host", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 405, "CONNECT"},
		{"CONNECT to a function's host", "CONNECT hello.default:80 HTTP/1.1\r\nHost: hello.default:80\r\n\r\n", 405, "CONNECT"},
		{"absolute-form to a foreign host", "GET http://evil.example/ HTTP/1.1\r\nHost: hello.default\r\n\r\n", 404, "evil.example"},
	}
	for _, tt := range raw {
		t.Run(tt.name, func(t *testing.T) {
			code, body := hostile(t, addr, tt.request)
			if code != tt.want || !strings.Contains(body, tt.body) {
				t.Errorf("got %d %q, want %d naming %q", code, body, tt.want, tt.body)
			}
			normal(t, "after")
		})
	}

	// Content-Length with Transfer-Encoding: net/http reads the request by
	// its Transfer-Encoding (RFC 9112 §6.3) and the gateway re-frames the
	// body for the replica. Something in front of the gateway may have
	// framed it by its Content-Length, so what follows the chunked body
	// (here a request for another host) must not be read as a request:
	// the gateway closes the connection after its answer (§6.1).
	t.Run("Content-Length with Transfer-Encoding", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		smuggled := "GET /smuggled HTTP/1.1\r\nHost: evil.example\r\n\r\n"
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: hello.default\r\nContent-Length: "+strconv.Itoa(5+len(smuggled))+
			"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+smuggled)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("first answer: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "Hello from hello-") || !resp.Close {
			t.Errorf("answer %d %q close=%v, want 200 from hello with Connection: close", resp.StatusCode, body, resp.Close)
		}
		if resp, err := http.ReadResponse(br, nil); err == nil {
			t.Errorf("the bytes after the chunked body were answered as a request: %s", resp.Status)
		}
		normal(t, "after")
	})

	t.Run("slowloris", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: hello.default\r\nX-Slow: ")
		start := time.Now()
		closed := make(chan error, 1)
		go func() {
			c.SetReadDeadline(time.Now().Add(120 * time.Second))
			_, err := c.Read(make([]byte, 1))
			closed <- err
		}()
		normal(t, "while a slowloris connection is open")
		if err := <-closed; err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("slowloris connection: %v after %v, want the gateway to close it", err, time.Since(start))
		}
		t.Logf("slowloris connection closed by the gateway after %v", time.Since(start).Round(time.Millisecond))
		normal(t, "after")
	})

	t.Run("200 MB body", func(t *testing.T) {
		_, peakBefore := rss()
		const size = 200 << 20
		req, _ := http.NewRequest("POST", "http://"+addr+"/", io.LimitReader(zeros{}, size))
		req.Host = "bulk.default"
		req.ContentLength = size
		start := time.Now()
		resp, err := normalClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != fmt.Sprintf("%d bytes", size) {
			t.Fatalf("200 MB POST: %d %q", resp.StatusCode, body)
		}
		_, peakAfter := rss()
		t.Logf("200 MB streamed in %v; peak RSS of this process (client + fleet) %.0f MiB before, %.0f MiB after",
			time.Since(start).Round(time.Millisecond), peakBefore, peakAfter)
		if peakAfter-peakBefore > 100 {
			t.Errorf("peak RSS grew by %.0f MiB streaming 200 MB; want the body streamed, not buffered", peakAfter-peakBefore)
		}
		normal(t, "after")
	})

	t.Run("client stops reading a large response", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: bulk.default\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /big: %v %v", resp, err)
		}
		// Read nothing more: the gateway's writes to this client block.
		normal(t, "while a client stops reading 1 GiB")
		c.Close()
		normal(t, "after that client went away")
	})

	t.Run("20,000 idle connections", func(t *testing.T) {
		fdsBefore := openFDs()
		rssBefore, _ := rss()
		held := 0
		var report []string
		for held < idleConns {
			n := min(perHolder, idleConns-held)
			got, said := holdIdle(t, exe, addr, n)
			held += got
			report = append(report, said)
			if got < n {
				break // the holder hit a limit; it says which
			}
		}
		start := time.Now()
		normal(t, "with the idle connections held")
		rssNow, peak := rss()
		st := f.byName["node1"].gwSrv.Stats()
		t.Logf("held %d idle connections (%s); gateway node1: %d open, %d idle evicted, %d refused; fleet process fds %d → %d (limit %d), RSS %.0f → %.0f MiB (peak %.0f); new request served %v after the last connection",
			held, strings.Join(report, "; "), st.Open, st.Evicted, st.Refused, fdsBefore, openFDs(), fdLimit(), rssBefore, rssNow, peak, time.Since(start).Round(time.Millisecond))
		if st.Open > 4096+1 {
			t.Errorf("gateway holds %d connections, over its bound of 4096", st.Open)
		}
		if held < idleConns/2 {
			t.Errorf("only %d idle connections held, want about %d", held, idleConns)
		}
	})
}

// perHolder is how many connections one holder process opens: well
// within a process's usual descriptor limit, so the test does not depend
// on raising it.
const perHolder = 10000

// holdIdle starts a helper process that opens n idle connections to addr
// and keeps them until the test ends; it returns how many it holds and
// what it said.
func holdIdle(t *testing.T, exe, addr string, n int) (int, string) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envHold+"="+addr+" "+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	next := lineReader(out)
	held := 0
	var said []string
	for {
		line, err := next()
		if err != nil {
			t.Fatalf("connection holder: %v (said %q)", err, said)
		}
		if line == "done" {
			return held, strings.Join(said, ", ")
		}
		if v, ok := strings.CutPrefix(line, "held "); ok {
			held, _ = strconv.Atoi(v)
		}
		said = append(said, line)
	}
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "X-H%d: v\r\n", i)
	}
	return b.String()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
