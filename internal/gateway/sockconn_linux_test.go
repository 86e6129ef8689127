package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// sockPair returns a sockConn dialled to a loopback listener and the
// listener's side of the connection, a plain *net.TCPConn. A non-zero buf
// sizes the sockConn's send buffer and the peer's receive buffer, before
// the connection opens (its window is set then).
func sockPair(t *testing.T, buf int) (*sockConn, *net.TCPConn) {
	t.Helper()
	t.Setenv(EnvSyscalls, "raw")
	bufs := func(opt int) func(_, _ string, rc syscall.RawConn) error {
		return func(_, _ string, rc syscall.RawConn) error {
			if buf == 0 {
				return nil
			}
			var serr error
			err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, buf) })
			return errors.Join(err, serr)
		}
	}
	ln, err := (&net.ListenConfig{Control: bufs(syscall.SO_RCVBUF)}).Listen(context.Background(), "tcp", "127.78.201.6:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := (&net.Dialer{Control: bufs(syscall.SO_SNDBUF)}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := sockConnOf(c).(*sockConn)
	if !ok {
		t.Fatalf("sockConnOf(%T) is no sockConn", c)
	}
	t.Cleanup(func() { _ = sc.Close(); _ = p.Close() })
	// A bound on every wait, so that a mistake fails rather than hangs.
	_ = p.SetDeadline(time.Now().Add(time.Minute))
	_ = sc.SetDeadline(time.Now().Add(time.Minute))
	return sc, p.(*net.TCPConn)
}

type readResult struct {
	b   []byte
	err error
}

func readAsync(c net.Conn, n int) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		b := make([]byte, n)
		k, err := c.Read(b)
		ch <- readResult{b[:k], err}
	}()
	return ch
}

// nothingToRead fails unless c has nothing to read at once: what a
// sockConn holds has not been written, so it cannot be on its way.
func nothingToRead(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Unix(1, 0))
	var b [1]byte
	if n, err := c.Read(b[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer read %d bytes (%v), want nothing sent yet", n, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
}

func TestSockConn_heldRequestGoesWithTheRead(t *testing.T) {
	for _, size := range []int{1, 300, maxHeld} {
		c, peer := sockPair(t, 0)
		req := bytes.Repeat([]byte{'q'}, size)
		for round := range 2 { // the second on the same connection, its buffer kept
			holdRequest(c)
			// Written in two parts, as a head and a body are.
			if n, err := c.Write(req[:size/2]); n != size/2 || err != nil {
				t.Fatalf("size %d: Write = %d, %v", size, n, err)
			}
			if n, err := c.Write(req[size/2:]); n != size-size/2 || err != nil {
				t.Fatalf("size %d: Write = %d, %v", size, n, err)
			}
			nothingToRead(t, peer)
			got := readAsync(c, 64)
			in := make([]byte, size)
			if _, err := io.ReadFull(peer, in); err != nil || !bytes.Equal(in, req) {
				t.Fatalf("size %d round %d: peer read %v, request intact %v", size, round, err, bytes.Equal(in, req))
			}
			if _, err := peer.Write([]byte("answer")); err != nil {
				t.Fatal(err)
			}
			if r := <-got; r.err != nil || string(r.b) != "answer" {
				t.Fatalf("size %d round %d: Read = %q, %v", size, round, r.b, r.err)
			}
		}
	}
}

func TestSockConn_longRequestIsNotHeld(t *testing.T) {
	c, peer := sockPair(t, 0)
	holdRequest(c)
	head := []byte("head ")
	body := bytes.Repeat([]byte{'b'}, maxHeld)
	if _, err := c.Write(head); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(body); err != nil { // over the bound: both go now
		t.Fatal(err)
	}
	in := make([]byte, len(head)+len(body))
	if _, err := io.ReadFull(peer, in); err != nil || !bytes.Equal(in, append(head, body...)) {
		t.Fatalf("peer read %v, in order %v", err, bytes.Equal(in, append(head, body...)))
	}
	// Nothing is held any more: a write goes at once.
	if _, err := c.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(peer, in[:4]); err != nil || string(in[:4]) != "more" {
		t.Fatalf("peer read %q, %v", in[:4], err)
	}
}

// A held request larger than the socket's buffers: the read sends what
// fits, the rest goes as the peer takes it, and then the answer is read.
func TestSockConn_heldRequestOverTheSocketBuffer(t *testing.T) {
	c, peer := sockPair(t, 1024)
	holdRequest(c)
	req := bytes.Repeat([]byte("0123456789abcdef"), maxHeld/16)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	got := readAsync(c, 64)
	in := make([]byte, len(req))
	if _, err := io.ReadFull(peer, in); err != nil || !bytes.Equal(in, req) {
		t.Fatalf("peer read %v, request intact %v", err, bytes.Equal(in, req))
	}
	if _, err := peer.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || string(r.b) != "answer" {
		t.Fatalf("Read = %q, %v", r.b, r.err)
	}
}

// net.Conn lets a write run while a read waits: the write must not wait
// for the read (net/http's server writes while its background read waits).
func TestSockConn_writeWhileAReadWaits(t *testing.T) {
	c, peer := sockPair(t, 0)
	got := readAsync(c, 64)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	in := make([]byte, 4)
	if _, err := io.ReadFull(peer, in); err != nil || string(in) != "ping" {
		t.Fatalf("peer read %q, %v", in, err)
	}
	if _, err := peer.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || string(r.b) != "pong" {
		t.Fatalf("Read = %q, %v", r.b, r.err)
	}
}

func TestSockConn_ends(t *testing.T) {
	for _, tc := range []struct {
		name string
		held bool                                 // a request is held when the read begins
		end  func(c *sockConn, peer *net.TCPConn) // while (or before) the read waits
		want func(error) bool
	}{
		{"peer closes", false, func(_ *sockConn, p *net.TCPConn) { _ = p.Close() },
			func(err error) bool { return err == io.EOF }},
		{"peer closes, request held", true, func(_ *sockConn, p *net.TCPConn) { _ = p.Close() },
			func(err error) bool { return err != nil }},
		{"peer resets, request held", true, func(_ *sockConn, p *net.TCPConn) { _ = p.SetLinger(0); _ = p.Close() },
			func(err error) bool {
				return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
			}},
		{"deadline", false, func(c *sockConn, _ *net.TCPConn) { _ = c.SetReadDeadline(time.Unix(1, 0)) },
			func(err error) bool { return isTimeout(err) && errors.Is(err, os.ErrDeadlineExceeded) }},
		{"deadline, request held", true, func(c *sockConn, _ *net.TCPConn) { _ = c.SetReadDeadline(time.Unix(1, 0)) },
			func(err error) bool { return isTimeout(err) }},
		{"closed", false, func(c *sockConn, _ *net.TCPConn) { _ = c.Close() },
			func(err error) bool { return errors.Is(err, net.ErrClosed) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, peer := sockPair(t, 0)
			if tc.held {
				// The peer is gone before the request is sent.
				tc.end(c, peer)
				holdRequest(c)
				if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				r := <-readAsync(c, 64)
				if !tc.want(r.err) {
					t.Fatalf("Read = %q, %v", r.b, r.err)
				}
				return
			}
			got := readAsync(c, 64)
			tc.end(c, peer)
			r := <-got
			if !tc.want(r.err) {
				t.Fatalf("Read = %q, %v", r.b, r.err)
			}
			// As net's connections report it: one OpError, "read".
			var oe *net.OpError
			if r.err != io.EOF && (!errors.As(r.err, &oe) || oe.Op != "read" || errors.As(oe.Err, new(*net.OpError))) {
				t.Fatalf("Read's error %#v, want a read OpError holding the cause", r.err)
			}
		})
	}
}

// A client's answer is held until the read for its next request, which
// sends it and waits for that request without trying the socket first.
func TestSockConn_heldAnswerGoesWithTheRead(t *testing.T) {
	sc, peer := sockPair(t, 0)
	holdAnswer(sc)
	if _, err := io.WriteString(sc, "answer 1"); err != nil {
		t.Fatal(err)
	}
	nothingToRead(t, peer)
	got := readAsync(sc, 64)
	b := make([]byte, 64)
	n, err := peer.Read(b)
	if err != nil || string(b[:n]) != "answer 1" {
		t.Fatalf("peer read %q, %v", b[:n], err)
	}
	if _, err := io.WriteString(peer, "request 2"); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || string(r.b) != "request 2" {
		t.Fatalf("read %q, %v", r.b, r.err)
	}
	if sc.pipelines.Load() {
		t.Error("a client that waited for its answer was taken for one that pipelines")
	}
}

// A request the client sent before its answer went out, whose readiness
// the poller has already reported (and forgets when the read begins), is
// read once answerProbe has passed, well before the deadline set; and
// that client's answers are not held again.
func TestSockConn_heldAnswerPipelinedRequest(t *testing.T) {
	sc, peer := sockPair(t, 0)
	_ = sc.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(peer, "request 2"); err != nil {
		t.Fatal(err)
	}
	// The poller reports readiness as it wakes another read: after
	// this, sc's socket is marked ready with no read waiting on it.
	other, otherPeer := sockPair(t, 0)
	wake := readAsync(other, 8)
	if _, err := io.WriteString(otherPeer, "x"); err != nil {
		t.Fatal(err)
	}
	if r := <-wake; r.err != nil {
		t.Fatal(r.err)
	}

	holdAnswer(sc)
	if _, err := io.WriteString(sc, "answer 1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b := make([]byte, 64)
	n, err := sc.Read(b)
	if err != nil || string(b[:n]) != "request 2" {
		t.Fatalf("read %q, %v after %v", b[:n], err, time.Since(start))
	}
	n, err = peer.Read(b)
	if err != nil || string(b[:n]) != "answer 1" {
		t.Fatalf("peer read %q, %v", b[:n], err)
	}
	holdAnswer(sc)
	if sc.hold.Load() != !sc.pipelines.Load() {
		t.Errorf("hold %v with pipelines %v: want answers held only for a client that does not pipeline", sc.hold.Load(), sc.pipelines.Load())
	}
}

// With nothing coming, the read after a held answer ends at the deadline
// set, not at answerProbe, and the answer has gone.
func TestSockConn_heldAnswerKeepsTheDeadline(t *testing.T) {
	sc, peer := sockPair(t, 0)
	holdAnswer(sc)
	wait := 3 * answerProbe
	deadline := time.Now().Add(wait)
	_ = sc.SetReadDeadline(deadline)
	if _, err := io.WriteString(sc, "answer 1"); err != nil {
		t.Fatal(err)
	}
	var b [64]byte
	n, err := sc.Read(b[:])
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v: want the deadline passed", n, err)
	}
	if now := time.Now(); now.Before(deadline) {
		t.Errorf("read ended %v before its deadline", deadline.Sub(now))
	}
	n, err = peer.Read(b[:])
	if err != nil || string(b[:n]) != "answer 1" {
		t.Fatalf("peer read %q, %v", b[:n], err)
	}
	if sc.pipelines.Load() {
		t.Error("an idle client was taken for one that pipelines")
	}
}

// A server that closes a connection holding an answer sends it first.
func TestSockConn_closeSendsTheHeldAnswer(t *testing.T) {
	sc, peer := sockPair(t, 0)
	holdAnswer(sc)
	if _, err := io.WriteString(sc, "answer 1"); err != nil {
		t.Fatal(err)
	}
	nothingToRead(t, peer)
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "answer 1" {
		t.Fatalf("peer read %q, %v: want the answer, then the end", got, err)
	}
}

func TestSockConnOf_otherConnsAsTheyAre(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := sockConnOf(a); got != a {
		t.Fatalf("sockConnOf(pipe) = %T, want the pipe", got)
	}
	holdRequest(a) // no effect, no panic
}

func TestSockConnOf_syscallsChosen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.78.201.6:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		env string
		raw bool
	}{{"", true}, {"raw", true}, {"runtime", false}} {
		t.Setenv(EnvSyscalls, tc.env)
		if _, raw := sockConnOf(c).(*sockConn); raw != tc.raw {
			t.Errorf("%s=%q: sockConn %v, want %v", EnvSyscalls, tc.env, raw, tc.raw)
		}
	}
}

// A held answer larger than the socket takes at once: the read sends what
// fits, waits for room for the rest, and then reads on under the deadline
// set, not answerProbe's, whether the client's next request comes later or
// was in before the answer went.
func TestSockConn_heldAnswerOverTheSocketBuffer(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined=%v", pipelined), func(t *testing.T) {
			sc, peer := sockPair(t, 1024)
			if pipelined {
				if _, err := io.WriteString(peer, "request 2"); err != nil {
					t.Fatal(err)
				}
			}
			holdAnswer(sc)
			_ = sc.SetReadDeadline(time.Now().Add(time.Minute))
			answer := bytes.Repeat([]byte("0123456789abcdef"), maxHeld/16)
			if _, err := sc.Write(answer); err != nil {
				t.Fatal(err)
			}
			got := readAsync(sc, 64)
			// Past answerProbe with the rest of the answer still waiting
			// for room: that must not end the read.
			select {
			case r := <-got:
				t.Fatalf("Read ended early: %q, %v", r.b, r.err)
			case <-time.After(3 * answerProbe):
			}
			in := make([]byte, len(answer))
			if _, err := io.ReadFull(peer, in); err != nil || !bytes.Equal(in, answer) {
				t.Fatalf("peer read %v, answer intact %v", err, bytes.Equal(in, answer))
			}
			if !pipelined {
				select {
				case r := <-got:
					t.Fatalf("Read ended with no request sent: %q, %v", r.b, r.err)
				case <-time.After(3 * answerProbe):
				}
				if _, err := io.WriteString(peer, "request 2"); err != nil {
					t.Fatal(err)
				}
			}
			if r := <-got; r.err != nil || string(r.b) != "request 2" {
				t.Fatalf("Read = %q, %v", r.b, r.err)
			}
		})
	}
}

// An answer too long to hold is sent as it is written, and the next
// read's deadline is the one set: no probe stays armed for an answer that
// is not held (the client watch clears the deadline for its wait).
func TestSockConn_answerTooLongToHoldLeavesNoProbe(t *testing.T) {
	sc, peer := sockPair(t, 0)
	holdAnswer(sc)
	answer := bytes.Repeat([]byte{'a'}, maxHeld+1)
	done := make(chan error, 1)
	go func() { _, err := io.CopyN(io.Discard, peer, int64(len(answer))); done <- err }()
	if _, err := sc.Write(answer); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("peer read: %v", err)
	}
	_ = sc.SetReadDeadline(time.Time{})
	if sc.probing.Load() || sc.probe.Load() {
		t.Fatalf("probing %v, probe %v after an answer that was not held", sc.probing.Load(), sc.probe.Load())
	}
}

// Close sends a held answer that does not fit the socket at once in full,
// waiting for the client to make room.
func TestSockConn_closeSendsALargeHeldAnswer(t *testing.T) {
	defer func(d time.Duration) { closeSendWait = d }(closeSendWait)
	closeSendWait = time.Minute // the peer below reads at its pace
	sc, peer := sockPair(t, 1024)
	holdAnswer(sc)
	answer := bytes.Repeat([]byte("0123456789abcdef"), maxHeld/16)
	if _, err := sc.Write(answer); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- sc.Close() }()
	got, err := io.ReadAll(peer)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("peer read %d of %d bytes, %v: want the whole answer, then the end", len(got), len(answer), err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
