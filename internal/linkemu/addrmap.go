package linkemu

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// AddressMap places a virtual address range on loopback: address
// Virtual+k is reached at Loopback+k. An emulated Kubernetes cluster needs
// it because the API server refuses loopback addresses in Endpoints and
// EndpointSlices, so pods get addresses of a range no network routes
// (198.18.0.0/15, set aside for benchmarks) while their processes listen on
// loopback.
type AddressMap struct {
	Virtual, Loopback netip.Prefix
}

// ParseAddressMap reads "VIRTUAL=LOOPBACK", two IPv4 prefixes of the same
// length, the second within 127.0.0.0/8.
func ParseAddressMap(s string) (AddressMap, error) {
	v, l, ok := strings.Cut(s, "=")
	if !ok {
		return AddressMap{}, fmt.Errorf("address map %q: want VIRTUAL=LOOPBACK, e.g. 198.18.0.0/16=127.85.0.0/16", s)
	}
	var m AddressMap
	var err error
	if m.Virtual, err = netip.ParsePrefix(v); err != nil {
		return AddressMap{}, fmt.Errorf("address map %q: virtual range: %w", s, err)
	}
	if m.Loopback, err = netip.ParsePrefix(l); err != nil {
		return AddressMap{}, fmt.Errorf("address map %q: loopback range: %w", s, err)
	}
	switch {
	case !m.Virtual.Addr().Is4() || !m.Loopback.Addr().Is4():
		return AddressMap{}, fmt.Errorf("address map %q: both ranges must be IPv4", s)
	case m.Virtual.Bits() != m.Loopback.Bits():
		return AddressMap{}, fmt.Errorf("address map %q: ranges of different sizes (/%d, /%d)", s, m.Virtual.Bits(), m.Loopback.Bits())
	case !m.Loopback.Addr().IsLoopback():
		return AddressMap{}, fmt.Errorf("address map %q: %s is not a loopback range", s, m.Loopback)
	}
	m.Virtual, m.Loopback = m.Virtual.Masked(), m.Loopback.Masked()
	return m, nil
}

func (m AddressMap) String() string { return m.Virtual.String() + "=" + m.Loopback.String() }

// move carries a from one prefix to the same offset in the other.
func move(a netip.Addr, from, to netip.Prefix) netip.Addr {
	f, t, b := from.Addr().As4(), to.Addr().As4(), a.As4()
	for i := range b {
		keep := 0
		if bits := from.Bits() - 8*i; bits < 8 {
			keep = max(bits, 0)
		} else {
			keep = 8
		}
		mask := byte(0xff << (8 - keep))
		b[i] = t[i]&mask | (b[i]^f[i]&mask)&^mask
	}
	return netip.AddrFrom4(b)
}

// ToLoopback returns where a virtual address is reached; other addresses
// are returned as they are.
func (m AddressMap) ToLoopback(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if !m.Virtual.IsValid() || !m.Virtual.Contains(a) {
		return a
	}
	return move(a, m.Virtual, m.Loopback)
}

// ToVirtual returns the virtual address of a loopback one in the range;
// other addresses are returned as they are.
func (m AddressMap) ToVirtual(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if !m.Loopback.IsValid() || !m.Loopback.Contains(a) {
		return a
	}
	return move(a, m.Loopback, m.Virtual)
}

// Dialer wraps dial so that connections to virtual addresses go to their
// loopback places.
func (m AddressMap) Dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if !m.Virtual.IsValid() {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && m.Virtual.Contains(a.Unmap()) {
				addr = net.JoinHostPort(m.ToLoopback(a).String(), port)
			}
		}
		return dial(ctx, network, addr)
	}
}
