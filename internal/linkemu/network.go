package linkemu

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Network knows the emulated nodes (each one a loopback address) and the
// links between them, and hands out dialers that make connections cross
// those links. It is safe for concurrent use; links may change at any time
// and apply to connections dialled afterwards.
type Network struct {
	mu    sync.RWMutex
	ips   map[string]netip.Addr // node → address
	nodes map[netip.Addr]string // address → node
	links map[[2]string]Link    // ordered pair → link
	rng   *rand.Rand            // seeds one source per connection; guarded by mu (write lock)
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{
		ips:   map[string]netip.Addr{},
		nodes: map[netip.Addr]string{},
		links: map[[2]string]Link{},
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

// SetLink sets the link between nodes a and b, in both directions.
func (n *Network) SetLink(a, b string, l Link) {
	n.mu.Lock()
	n.links[pair(a, b)] = l
	n.mu.Unlock()
}

// Link returns the link between two nodes.
func (n *Network) Link(a, b string) (Link, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	l, ok := n.links[pair(a, b)]
	return l, ok
}

// NodeOf returns the node that owns an IP address.
func (n *Network) NodeOf(ip string) (string, bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "", false
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	name, ok := n.nodes[addr.Unmap()]
	return name, ok
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
			link   Link
			linked bool
		)
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if dst, err := netip.ParseAddr(host); err == nil && dst.Unmap().IsLoopback() && dst.Unmap().Is4() {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(srcIP)}
				if to, ok := n.NodeOf(host); ok && to != from {
					link, linked = n.Link(from, to)
					linked = linked && !link.IsZero()
				}
			}
		}
		if !linked {
			return d.DialContext(ctx, network, addr)
		}
		rng := n.newRand()
		if err := sleep(ctx, newSampler(link, rng).roundTrip()); err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Source: d.LocalAddr, Err: err}
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return Wrap(c, link, rng), nil
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
