package linkemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if goroutines are left behind once every test
// has finished and stopped what it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tcpPair returns both ends of a TCP connection on loopback.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-accepted
	if r.err != nil {
		t.Fatal(r.err)
	}
	return client, r.c
}

func seeded(seed uint64) *mrand.Rand { return mrand.New(mrand.NewPCG(seed, seed+1)) }

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange sends out from a while b sends back, both at once, and returns
// what each side received.
func exchange(t *testing.T, a, b net.Conn, fromA, fromB []byte) (atB, atA []byte) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	send := func(c net.Conn, p []byte) {
		defer wg.Done()
		// Uneven writes exercise chunking and partial reads.
		for len(p) > 0 {
			n := min(len(p), 1+mrand.IntN(100_000))
			if _, err := c.Write(p[:n]); err != nil {
				errs <- err
				return
			}
			p = p[n:]
		}
	}
	recv := func(c net.Conn, n int, into *[]byte) {
		defer wg.Done()
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			errs <- err
		}
		*into = buf
	}
	wg.Add(4)
	go send(a, fromA)
	go send(b, fromB)
	go recv(b, len(fromA), &atB)
	go recv(a, len(fromB), &atA)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return atB, atA
}

func TestWrap_integrity(t *testing.T) {
	tests := []struct {
		name       string
		link       Link
		wrapServer bool // wrap both ends, so a wrapper reads from a wrapper
		size       int
	}{
		{"zero link", Link{}, false, 4 << 20},
		{"jittery link", Link{RTT: 4 * time.Millisecond, Jitter: 3 * time.Millisecond}, false, 2 << 20},
		{"jitter and bandwidth, both ends wrapped", Link{RTT: 2 * time.Millisecond, Jitter: 2 * time.Millisecond, BytesPerSec: 40e6}, true, 2 << 20},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, s := tcpPair(t)
			a := Wrap(c, tt.link, seeded(uint64(i)))
			b := s
			if tt.wrapServer {
				b = Wrap(s, tt.link, seeded(uint64(i)+100))
			}
			defer a.Close()
			defer b.Close()
			fromA, fromB := randomBytes(t, tt.size), randomBytes(t, tt.size+12345)
			atB, atA := exchange(t, a, b, fromA, fromB)
			if !bytes.Equal(atB, fromA) {
				t.Errorf("bytes written through the wrapper arrived changed or out of order")
			}
			if !bytes.Equal(atA, fromB) {
				t.Errorf("bytes read through the wrapper arrived changed or out of order")
			}
		})
	}
}

func TestWrap_bandwidth(t *testing.T) {
	const size = 1_000_000
	link := Link{RTT: 10 * time.Millisecond, BytesPerSec: 8e6 / 8} // 8 Mbit/s
	want := time.Duration(float64(size)/link.BytesPerSec*float64(time.Second)) + link.RTT/2
	for _, dir := range []string{"write", "read"} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			c, s := tcpPair(t)
			w := Wrap(c, link, nil)
			defer w.Close()
			defer s.Close()
			src, dst := w, s
			if dir == "read" {
				src, dst = s, w
			}
			payload := randomBytes(t, size)
			start := time.Now()
			go src.Write(payload)
			got := make([]byte, size)
			if _, err := io.ReadFull(dst, got); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			t.Logf("1 MB over 8 Mbit/s + 5 ms one way: %v (ideal %v)", took.Round(time.Millisecond), want)
			if took < want*95/100 || took > want*13/10 {
				t.Errorf("transfer took %v, want %v within -5%%/+30%%", took, want)
			}
			if !bytes.Equal(got, payload) {
				t.Errorf("payload changed")
			}
		})
	}
}

// TestWrap_RTT is the acceptance test: ping-pongs over one connection on an
// emulated 50 ± 10 ms link average about 50 ms with about 10 ms of spread.
// The bounds are generous, for a busy machine: delays are never shorter
// than drawn, but a loaded scheduler adds to them. How close the figures
// come is for BenchmarkLinkRTT.
func TestWrap_RTT(t *testing.T) {
	t.Parallel()
	const (
		pings  = 40
		rtt    = 50 * time.Millisecond
		jitter = 10 * time.Millisecond
	)
	c, s := tcpPair(t)
	w := Wrap(c, Link{RTT: rtt, Jitter: jitter}, seeded(42))
	defer w.Close()
	defer s.Close()
	go io.Copy(s, s) // echo
	var sum, sumSq float64
	msg, back := []byte("ping"), make([]byte, 4)
	for range pings {
		start := time.Now()
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(w, back); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start).Seconds()
		sum += d
		sumSq += d * d
	}
	mean := sum / pings
	sd := math.Sqrt(max(sumSq/pings-mean*mean, 0))
	t.Logf("%d ping-pongs over %v ± %v: mean %.2f ms, std dev %.2f ms", pings, rtt, jitter, mean*1e3, sd*1e3)
	// 40 draws of the seeded jitter average within about ±3 ms of 50 ms.
	if mean < 0.9*rtt.Seconds() || mean > 1.5*rtt.Seconds() {
		t.Errorf("mean RTT %.2f ms, want %v (between -10%% and +50%%)", mean*1e3, rtt)
	}
	if sd < 0.5*jitter.Seconds() || sd > 3*jitter.Seconds() {
		t.Errorf("RTT std dev %.2f ms, want about %v (between half and three times)", sd*1e3, jitter)
	}
}

func TestWrap_halfClose(t *testing.T) {
	t.Parallel()
	link := Link{RTT: 40 * time.Millisecond}
	c, s := tcpPair(t)
	w := Wrap(c, link, nil)
	defer s.Close()
	start := time.Now()
	if _, err := w.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := w.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Errorf("Write after CloseWrite succeeded")
	}
	// The server sees the data, then EOF, both one way (20 ms) later.
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q, %v; want %q, nil", got, err, "request")
	}
	if d := time.Since(start); d < link.RTT/2 {
		t.Errorf("server saw EOF after %v, before the one-way delay %v", d, link.RTT/2)
	}
	if _, err := s.Write([]byte("response")); err != nil {
		t.Fatal(err)
	}
	s.(*net.TCPConn).CloseWrite()
	// The client reads the response, then EOF, a full round trip in.
	got, err = io.ReadAll(w)
	if err != nil || string(got) != "response" {
		t.Fatalf("client read %q, %v; want %q, nil", got, err, "response")
	}
	if d := time.Since(start); d < link.RTT {
		t.Errorf("client saw EOF after %v, before one round trip %v", d, link.RTT)
	}
	if n, err := w.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read after EOF = %d, %v; want 0, EOF", n, err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := w.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v, want net.ErrClosed", err)
	}
	if err := w.Close(); err == nil {
		t.Errorf("second Close succeeded")
	}
}

// TestWrap_closeFlushes checks that data written just before Close still
// reaches the peer, after its delay, followed by EOF.
func TestWrap_closeFlushes(t *testing.T) {
	t.Parallel()
	link := Link{RTT: 30 * time.Millisecond}
	c, s := tcpPair(t)
	defer s.Close()
	w := Wrap(c, link, nil)
	start := time.Now()
	w.Write([]byte("last words"))
	w.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v, want net.ErrClosed", err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "last words" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if d := time.Since(start); d < link.RTT/2 {
		t.Errorf("data arrived after %v, before the one-way delay", d)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

func TestWrap_deadlines(t *testing.T) {
	t.Parallel()
	c, s := tcpPair(t)
	w := Wrap(c, Link{RTT: 20 * time.Millisecond}, nil)
	defer w.Close()
	defer s.Close()
	buf := make([]byte, 16)

	t.Run("read deadline expires", func(t *testing.T) {
		w.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		_, err := w.Read(buf)
		if !isTimeout(err) {
			t.Fatalf("Read: %v, want a timeout", err)
		}
		if d := time.Since(start); d < 45*time.Millisecond || d > time.Second {
			t.Errorf("Read returned after %v, want about 50ms", d)
		}
		if _, err := w.Read(buf); !isTimeout(err) {
			t.Errorf("Read past the deadline: %v, want a timeout", err)
		}
	})
	t.Run("deadline moved into the past unblocks a Read", func(t *testing.T) {
		w.SetReadDeadline(time.Time{})
		done := make(chan error, 1)
		go func() { _, err := w.Read(buf); done <- err }()
		time.Sleep(30 * time.Millisecond)
		w.SetDeadline(time.Now())
		select {
		case err := <-done:
			if !isTimeout(err) {
				t.Errorf("Read: %v, want a timeout", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Read still blocked after its deadline passed")
		}
	})
	t.Run("conn usable after a timeout", func(t *testing.T) {
		w.SetDeadline(time.Time{})
		s.Write([]byte("late"))
		n, err := io.ReadFull(w, buf[:4])
		if err != nil || string(buf[:n]) != "late" {
			t.Errorf("Read = %q, %v", buf[:n], err)
		}
	})
	t.Run("data held back by the link is not delivered past the deadline", func(t *testing.T) {
		s.Write([]byte("x"))
		w.SetReadDeadline(time.Now().Add(2 * time.Millisecond)) // the byte needs 10 ms
		if _, err := w.Read(buf); !isTimeout(err) {
			t.Errorf("Read: %v, want a timeout", err)
		}
		w.SetReadDeadline(time.Time{})
		if n, err := w.Read(buf); n != 1 || err != nil {
			t.Errorf("Read = %d, %v; want 1, nil", n, err)
		}
	})
	t.Run("Close unblocks a Read", func(t *testing.T) {
		c, s := tcpPair(t)
		defer s.Close()
		w := Wrap(c, Link{}, nil)
		done := make(chan error, 1)
		go func() { _, err := w.Read(buf); done <- err }()
		time.Sleep(20 * time.Millisecond)
		w.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read: %v, want net.ErrClosed", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Read still blocked after Close")
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		c, s := tcpPair(t)
		defer s.Close()
		// At 1 kB/s the queue fills and Write must wait for room.
		w := Wrap(c, Link{BytesPerSec: 1000}, nil)
		defer w.Close()
		w.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := w.Write(make([]byte, 2*queueLimit))
		if !isTimeout(err) {
			t.Fatalf("Write: %v, want a timeout", err)
		}
		if n == 0 || n >= 2*queueLimit {
			t.Errorf("Write wrote %d bytes, want part of the buffer", n)
		}
	})
}

// server starts an HTTP server on ip and returns its address.
func server(t *testing.T, ip string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestNetwork_HTTP(t *testing.T) {
	t.Parallel()
	n := NewNetwork()
	n.AddNode("edge", "127.77.201.1")
	n.AddNode("cloud", "127.77.201.2")
	link := Link{RTT: 20 * time.Millisecond, Jitter: time.Millisecond}
	n.SetLink("edge", "cloud", link)

	var mu sync.Mutex
	conns, from := 0, map[string]bool{}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			mu.Lock()
			from[host] = true
			mu.Unlock()
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Write(body)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				mu.Lock()
				conns++
				mu.Unlock()
			}
		},
	}
	ln, err := net.Listen("tcp", "127.77.201.2:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	tr := &http.Transport{DialContext: n.Dialer("edge")}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String() + "/"
	for i := range 6 {
		body := randomBytes(t, 1+i*50_000)
		start := time.Now()
		resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("request %d: echo differs (err %v)", i, err)
		}
		want := link.RTT
		if i == 0 {
			want = 2 * link.RTT // handshake, then the exchange
		}
		t.Logf("request %d (%d bytes): %v", i, len(body), took.Round(100*time.Microsecond))
		if took < want*8/10 {
			t.Errorf("request %d took %v, less than %v", i, took, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("server saw %d connections, want 1 (keep-alive)", conns)
	}
	if !from["127.77.201.1"] || len(from) != 1 {
		t.Errorf("requests came from %v, want only the edge node's address", from)
	}
}

func TestNetwork_Dialer(t *testing.T) {
	t.Parallel()
	n := NewNetwork()
	n.AddNode("a", "127.77.202.1")
	n.AddNode("b", "127.77.202.2")
	n.AddNode("c", "127.77.202.3")
	n.SetLink("a", "b", Link{RTT: 30 * time.Millisecond})
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	onA, onB, onC := server(t, "127.77.202.1", ok), server(t, "127.77.202.2", ok), server(t, "127.77.202.3", ok)
	other := server(t, "127.0.0.1", ok)

	tests := []struct {
		name, from, addr string
		wrapped          bool
		minSetup         time.Duration
		srcIP            string
		wantErr          string
	}{
		{"other node", "a", onB, true, 30 * time.Millisecond, "127.77.202.1", ""},
		{"same node", "a", onA, false, 0, "127.77.202.1", ""},
		{"node without a link", "a", onC, false, 0, "127.77.202.1", ""},
		{"unknown address", "b", other, false, 0, "127.77.202.2", ""},
		{"unknown origin", "z", onB, false, 0, "", `unknown node "z"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			c, err := n.Dialer(tt.from)(context.Background(), "tcp", tt.addr)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("dial: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if d := time.Since(start); d < tt.minSetup {
				t.Errorf("dial took %v, want at least %v", d, tt.minSetup)
			}
			if _, isWrapped := c.(*conn); isWrapped != tt.wrapped {
				t.Errorf("wrapped = %v, want %v", isWrapped, tt.wrapped)
			}
			if host, _, _ := net.SplitHostPort(c.LocalAddr().String()); host != tt.srcIP {
				t.Errorf("local address %v, want %s", c.LocalAddr(), tt.srcIP)
			}
		})
	}
	t.Run("cancelled while waiting for the handshake", func(t *testing.T) {
		n.SetLink("a", "c", Link{RTT: 10 * time.Second})
		defer n.SetLink("a", "c", Link{})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := n.Dialer("a")(ctx, "tcp", onC)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("dial: %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("dial returned after %v", d)
		}
	})
	if name, ok := n.NodeOf("127.77.202.2"); !ok || name != "b" {
		t.Errorf(`NodeOf("127.77.202.2") = %q, %v; want "b", true`, name, ok)
	}
	if _, ok := n.NodeOf("127.0.0.1"); ok {
		t.Errorf(`NodeOf("127.0.0.1") found a node`)
	}
}

func TestSampler(t *testing.T) {
	s := newSampler(Link{RTT: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}, seeded(7))
	const n = 20000
	var sum, sumSq float64
	for range n {
		d := s.roundTrip().Seconds()
		sum += d
		sumSq += d * d
	}
	mean := sum / n
	sd := math.Sqrt(sumSq/n - mean*mean)
	if math.Abs(mean-0.050) > 0.0005 || math.Abs(sd-0.010) > 0.0005 {
		t.Errorf("round trips: mean %.4fs, sd %.4fs; want 0.050s, 0.010s", mean, sd)
	}
	if d := newSampler(Link{RTT: time.Millisecond, Jitter: time.Second}, seeded(1)); d.oneWay() < 0 {
		t.Errorf("negative delay")
	}
}

func BenchmarkWrap_throughput(b *testing.B) {
	for _, size := range []int{512, 32 << 10} {
		b.Run(fmt.Sprintf("write=%d", size), func(b *testing.B) {
			c, s := tcpPair(b)
			w := Wrap(c, Link{}, nil)
			defer s.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(io.Discard, s)
				close(done)
			}()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			w.Close()
			<-done
		})
	}
}

func TestNetwork_AddPrefix(t *testing.T) {
	n := NewNetwork()
	n.AddNode("edge", "127.90.0.1")
	n.AddNode("cloud", "127.90.0.2")
	for _, c := range []struct{ node, prefix string }{
		{"edge", "127.90.0.0/16"}, {"cloud", "127.90.2.0/24"},
	} {
		if err := n.AddPrefix(c.node, c.prefix); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.AddPrefix("cloud", "not-a-prefix"); err == nil {
		t.Error("AddPrefix took a malformed range")
	}
	for _, c := range []struct{ ip, node string }{
		{"127.90.1.7", "edge"},  // edge's range
		{"127.90.2.7", "cloud"}, // the longer prefix wins
		{"127.90.0.2", "cloud"}, // a node's own address wins over ranges
		{"127.91.0.1", ""},      // nobody's
	} {
		if got, _ := n.NodeOf(c.ip); got != c.node {
			t.Errorf("NodeOf(%s) = %q, want %q", c.ip, got, c.node)
		}
	}
	if ip, _ := n.IP("edge"); ip != "127.90.0.1" {
		t.Errorf("edge's own address became %s", ip)
	}
}
