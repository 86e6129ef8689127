package linkemu

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestProxy(t *testing.T) {
	t.Parallel()
	n := NewNetwork()
	n.AddNode("edge", "127.77.206.1")
	n.AddNode("cloud", "127.77.206.2")
	link := Link{RTT: 20 * time.Millisecond}
	n.SetLink("edge", "cloud", link)
	ln, err := net.Listen("tcp", "127.77.206.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
	p, err := n.Proxy("edge", "127.77.206.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, want := range []time.Duration{2 * link.RTT, link.RTT} { // the first pays for the handshake
		msg := bytes.Repeat([]byte{byte('a' + i)}, 1000)
		start := time.Now()
		c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("exchange %d: %v", i, err)
		}
		if d := time.Since(start); d < want*9/10 || d > want+time.Second/2 {
			t.Errorf("exchange %d took %v, want about %v", i, d, want)
		}
	}
	// Half-close crosses the proxy: the echo server sees EOF and closes.
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Errorf("after CloseWrite read %q, %v; want EOF", rest, err)
	}
}
