package linkemu

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer listens on ip and echoes every connection until the test ends.
func echoServer(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func ping(t *testing.T, c net.Conn) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte("ping")); err != nil {
		return 0, err
	}
	back := make([]byte, 4)
	if _, err := io.ReadFull(c, back); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// A link changed while a connection is open applies to that connection's
// next exchange, and to the handshake of new connections.
func TestNetwork_setLinkLive(t *testing.T) {
	t.Parallel()
	n := NewNetwork()
	n.AddNode("a", "127.77.205.1")
	n.AddNode("b", "127.77.205.2")
	n.SetLink("a", "b", Link{RTT: 2 * time.Millisecond})
	addr := echoServer(t, "127.77.205.2")
	c, err := n.Dialer("a")(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ping(t, c); err != nil {
		t.Fatal(err)
	}
	const slow = 60 * time.Millisecond
	n.SetLink("a", "b", Link{RTT: slow, BytesPerSec: 1e6})
	if l, _ := n.Link("b", "a"); l.RTT != slow {
		t.Errorf("Link(b, a) = %+v, want RTT %v", l, slow)
	}
	for i := range 3 {
		d, err := ping(t, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("exchange %d after the change: %v", i, d)
		if d < slow {
			t.Errorf("exchange %d on the open connection took %v, less than the new RTT %v", i, d, slow)
		}
	}
	start := time.Now()
	c2, err := n.Dialer("b")(context.Background(), "tcp", "127.77.205.1:1") // nothing listens: the handshake still waits
	if err == nil {
		c2.Close()
	}
	if d := time.Since(start); d < slow {
		t.Errorf("dial over the changed link took %v, less than its RTT %v", d, slow)
	}
}

func TestNetwork_cutAndDown(t *testing.T) {
	t.Parallel()
	n := NewNetwork()
	for name, ip := range map[string]string{"a": "127.77.206.1", "b": "127.77.206.2", "c": "127.77.206.3"} {
		n.AddNode(name, ip)
	}
	for _, p := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}} {
		n.SetLink(p[0], p[1], Link{RTT: time.Millisecond})
	}
	onB, onC := echoServer(t, "127.77.206.2"), echoServer(t, "127.77.206.3")
	dial := func(from, addr string) (net.Conn, error) {
		return n.Dialer(from)(context.Background(), "tcp", addr)
	}
	wantUnreachable := func(what string, err error) {
		t.Helper()
		var op *net.OpError
		if !errors.Is(err, ErrUnreachable) || !errors.As(err, &op) {
			t.Errorf("%s: %v, want a *net.OpError with ErrUnreachable", what, err)
		}
	}

	open, err := dial("a", onB)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	n.SetCut("b", "a", true)
	if !n.Cut("a", "b") {
		t.Error("Cut(a, b) = false after SetCut")
	}
	_, err = ping(t, open)
	wantUnreachable("exchange on a connection open when the link was cut", err)
	_, err = dial("a", onB)
	wantUnreachable("dial over a cut link", err)
	if c, err := dial("a", onC); err != nil {
		t.Errorf("dial over another link: %v", err)
	} else {
		c.Close()
	}
	n.SetCut("a", "b", false)
	if c, err := dial("a", onB); err != nil {
		t.Errorf("dial after the link was mended: %v", err)
	} else {
		c.Close()
	}

	toC, err := dial("a", onC)
	if err != nil {
		t.Fatal(err)
	}
	defer toC.Close()
	n.SetDown("c", true)
	if !n.Down("c") {
		t.Error("Down(c) = false")
	}
	_, err = ping(t, toC)
	wantUnreachable("exchange with a node taken down", err)
	_, err = dial("b", onC)
	wantUnreachable("dial to a node that is down", err)
	_, err = n.Dialer("c")(context.Background(), "tcp", onB)
	wantUnreachable("dial from a node that is down", err)
	if c, err := dial("a", onB); err != nil {
		t.Errorf("dial between nodes that are up: %v", err)
	} else {
		c.Close()
	}
	n.SetDown("c", false)
	c, err := dial("b", onC)
	if err != nil {
		t.Fatalf("dial after the node came back: %v", err)
	}
	defer c.Close()
	if _, err := ping(t, c); err != nil {
		t.Errorf("exchange after the node came back: %v", err)
	}
}
