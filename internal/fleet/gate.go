package fleet

import (
	"net"
	"sync"
)

// gate is a listener that can be shut and opened again on the same
// address, as a machine that goes down and comes back: while shut nothing
// listens (clients are refused), and the connections it accepted before
// are closed. An http.Server serves it across both.
type gate struct {
	addr net.Addr

	mu      sync.Mutex
	network string
	address string
	ln      net.Listener // nil while shut
	changed chan struct{}
	closed  bool
	conns   map[*gateConn]struct{}
}

var _ net.Listener = (*gate)(nil)

func listenGate(network, address string) (*gate, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &gate{addr: ln.Addr(), network: network, address: ln.Addr().String(), ln: ln,
		changed: make(chan struct{}), conns: map[*gateConn]struct{}{}}, nil
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			return nil, net.ErrClosed
		}
		ln, changed := g.ln, g.changed
		g.mu.Unlock()
		if ln == nil {
			<-changed
			continue
		}
		c, err := ln.Accept()
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			if c != nil {
				c.Close()
			}
			return nil, net.ErrClosed
		}
		if g.ln != ln { // shut meanwhile
			g.mu.Unlock()
			if c != nil {
				c.Close()
			}
			continue
		}
		if err != nil {
			g.mu.Unlock()
			return nil, err
		}
		gc := &gateConn{Conn: c, g: g}
		g.conns[gc] = struct{}{}
		g.mu.Unlock()
		return gc, nil
	}
}

// shut stops listening and closes every connection accepted so far.
func (g *gate) shut() {
	g.mu.Lock()
	ln := g.ln
	g.ln = nil
	conns := g.conns
	g.conns = map[*gateConn]struct{}{}
	g.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for c := range conns {
		c.Conn.Close()
	}
}

// open listens again on the same address.
func (g *gate) open() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.ln != nil {
		return nil
	}
	ln, err := net.Listen(g.network, g.address)
	if err != nil {
		return err
	}
	g.ln = ln
	close(g.changed)
	g.changed = make(chan struct{})
	return nil
}

func (g *gate) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return net.ErrClosed
	}
	g.closed = true
	close(g.changed)
	if g.ln != nil {
		return g.ln.Close()
	}
	return nil
}

func (g *gate) Addr() net.Addr { return g.addr }

type gateConn struct {
	net.Conn
	g *gate
}

func (c *gateConn) Close() error {
	c.g.mu.Lock()
	delete(c.g.conns, c)
	c.g.mu.Unlock()
	return c.Conn.Close()
}
