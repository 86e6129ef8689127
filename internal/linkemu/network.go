package linkemu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Network knows the emulated nodes (each one a loopback address) and the
// links between them, and hands out dialers that make connections cross
// those links. It is safe for concurrent use. Links may change at any time:
// a new latency, jitter or rate applies at once to the bytes sent from then
// on, over open connections too; a cut link or a node that is down refuses
// new connections (ErrUnreachable) and breaks the open ones.
type Network struct {
	mu    sync.RWMutex
	ips   map[string]netip.Addr // node → address
	nodes map[netip.Addr]string // address → node
	links map[[2]string]*path   // ordered pair → link
	down  map[string]bool       // nodes that are down
	// prefixes are address ranges of nodes, longest first.
	prefixes []nodePrefix
	rng      *rand.Rand // seeds one source per connection; guarded by mu (write lock)
}

// ErrUnreachable is the error of a dial over a cut link or to or from a
// node that is down, and of reads and writes on a connection broken by
// either.
var ErrUnreachable = errors.New("linkemu: unreachable (link cut or node down)")

// path is the state of one link, shared by the connections over it.
type path struct {
	mu    sync.Mutex
	link  Link
	cut   bool
	conns map[*conn]struct{}
}

func (p *path) current() Link {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.link
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{
		ips:   map[string]netip.Addr{},
		nodes: map[netip.Addr]string{},
		links: map[[2]string]*path{},
		down:  map[string]bool{},
		rng:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

// Seed makes the jitter of connections dialled from now on reproducible.
func (n *Network) Seed(seed uint64) {
	n.mu.Lock()
	n.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	n.mu.Unlock()
}

// AddNode registers a node and its IP address, replacing an earlier entry
// for either. It panics if ip is not an IP address: node addresses come from
// a validated testbed.
func (n *Network) AddNode(name, ip string) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		panic(fmt.Sprintf("linkemu: node %q: %v", name, err))
	}
	addr = addr.Unmap()
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, ok := n.ips[name]; ok {
		delete(n.nodes, old)
	}
	if old, ok := n.nodes[addr]; ok {
		delete(n.ips, old)
	}
	n.ips[name] = addr
	n.nodes[addr] = name
}

// AddPrefix says that the addresses of a range belong to a node, such as
// the pods of a Kubernetes node: connections to them cross the node's
// links. The node's own address (AddNode), from which its dials leave, is
// unchanged; a node's own address takes precedence over any range, and a
// longer prefix over a shorter one.
func (n *Network) AddPrefix(name, prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return fmt.Errorf("linkemu: addresses of node %q: %w", name, err)
	}
	p = p.Masked()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.prefixes = append(n.prefixes, nodePrefix{p, name})
	sort.SliceStable(n.prefixes, func(i, j int) bool { return n.prefixes[i].p.Bits() > n.prefixes[j].p.Bits() })
	return nil
}

type nodePrefix struct {
	p    netip.Prefix
	name string
}

// SetLink sets the link between nodes a and b, in both directions. Open
// connections over it carry the bytes sent from now on with the new
// latency, jitter and rate. A link that was cut stays cut.
func (n *Network) SetLink(a, b string, l Link) {
	n.mu.Lock()
	p, ok := n.links[pair(a, b)]
	if !ok {
		p = &path{conns: map[*conn]struct{}{}}
		n.links[pair(a, b)] = p
	}
	n.mu.Unlock()
	p.mu.Lock()
	p.link = l
	p.mu.Unlock()
}

// Link returns the link between two nodes.
func (n *Network) Link(a, b string) (Link, bool) {
	p, ok := n.path(a, b)
	if !ok {
		return Link{}, false
	}
	return p.current(), true
}

func (n *Network) path(a, b string) (*path, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	p, ok := n.links[pair(a, b)]
	return p, ok
}

// SetCut cuts the link between a and b (cut true), or mends it. While cut,
// dialling across it fails with ErrUnreachable; cutting breaks the
// connections open over it. A pair without a link gets one, zero but for
// the cut.
func (n *Network) SetCut(a, b string, cut bool) {
	n.mu.Lock()
	p, ok := n.links[pair(a, b)]
	if !ok {
		p = &path{conns: map[*conn]struct{}{}}
		n.links[pair(a, b)] = p
	}
	n.mu.Unlock()
	p.mu.Lock()
	p.cut = cut
	var broken []*conn
	if cut {
		for c := range p.conns {
			broken = append(broken, c)
		}
	}
	p.mu.Unlock()
	for _, c := range broken {
		c.sever()
	}
}

// Cut reports whether the link between a and b is cut.
func (n *Network) Cut(a, b string) bool {
	p, ok := n.path(a, b)
	if !ok {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// SetDown takes a node down (down true) or brings it back up. While it is
// down, every dial from it or to its address fails with ErrUnreachable;
// taking it down breaks every connection it has over a link. Programs
// that reach the node's address without a Dialer are not stopped: that
// is the caller's part (the fleet closes the node's gateway).
func (n *Network) SetDown(name string, down bool) {
	n.mu.Lock()
	if down {
		n.down[name] = true
	} else {
		delete(n.down, name)
	}
	var paths []*path
	if down {
		for k, p := range n.links {
			if k[0] == name || k[1] == name {
				paths = append(paths, p)
			}
		}
	}
	n.mu.Unlock()
	for _, p := range paths {
		p.mu.Lock()
		var broken []*conn
		for c := range p.conns {
			broken = append(broken, c)
		}
		p.mu.Unlock()
		for _, c := range broken {
			c.sever()
		}
	}
}

// Down reports whether a node is down.
func (n *Network) Down(name string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.down[name]
}

// reachable reports whether from may reach to now (to may be "", an
// address of no node).
func (n *Network) reachable(from, to string) bool {
	n.mu.RLock()
	down := n.down[from] || (to != "" && n.down[to])
	p := n.links[pair(from, to)]
	n.mu.RUnlock()
	if down {
		return false
	}
	if p == nil || from == to || to == "" {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.cut
}

// NodeOf returns the node that owns an IP address.
func (n *Network) NodeOf(ip string) (string, bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "", false
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	addr = addr.Unmap()
	if name, ok := n.nodes[addr]; ok {
		return name, true
	}
	for _, np := range n.prefixes {
		if np.p.Contains(addr) {
			return np.name, true
		}
	}
	return "", false
}

// IP returns a node's address.
func (n *Network) IP(name string) (string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	ip, ok := n.ips[name]
	if !ok {
		return "", false
	}
	return ip.String(), true
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Dialer returns a dial function, suitable for http.Transport.DialContext,
// for programs running on node from. Connections to loopback addresses leave
// from from's address, so servers see where they come from. A connection to
// another node with a link first waits one sampled round trip, as a TCP
// handshake does, and then carries its traffic across the link (see Wrap).
// Connections within the node, to unknown addresses or over a zero link are
// plain. Dialling fails if from is not a node of the network.
func (n *Network) Dialer(from string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		srcIP, ok := n.IP(from)
		if !ok {
			return nil, fmt.Errorf("linkemu: dialling %s from unknown node %q", addr, from)
		}
		var d net.Dialer
		var (
			to string
			p  *path
		)
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if dst, err := netip.ParseAddr(host); err == nil && dst.Unmap().IsLoopback() && dst.Unmap().Is4() {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(srcIP)}
				to, _ = n.NodeOf(host)
				if to != "" && to != from {
					p, _ = n.path(from, to)
				}
			}
		}
		unreachable := func() error {
			return &net.OpError{Op: "dial", Net: network, Source: d.LocalAddr, Err: ErrUnreachable}
		}
		if !n.reachable(from, to) {
			return nil, unreachable()
		}
		if p == nil || p.current().IsZero() {
			return d.DialContext(ctx, network, addr)
		}
		rng := n.newRand()
		s := newLiveSampler(p.current, rng)
		if err := sleep(ctx, s.roundTrip()); err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Source: d.LocalAddr, Err: err}
		}
		if !n.reachable(from, to) { // cut during the handshake
			return nil, unreachable()
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		w := wrap(c, s)
		p.mu.Lock()
		p.conns[w] = struct{}{}
		p.mu.Unlock()
		w.onClose = func() {
			p.mu.Lock()
			delete(p.conns, w)
			p.mu.Unlock()
		}
		if !n.reachable(from, to) { // cut while connecting
			w.sever()
			w.Close()
			return nil, unreachable()
		}
		return w, nil
	}
}

func (n *Network) newRand() *rand.Rand {
	n.mu.Lock()
	defer n.mu.Unlock()
	return rand.New(rand.NewPCG(n.rng.Uint64(), n.rng.Uint64()))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	due, stop := after(time.Now().Add(d))
	defer stop()
	select {
	case <-due:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
