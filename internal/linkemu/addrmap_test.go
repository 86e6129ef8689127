package linkemu

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

func TestAddressMap(t *testing.T) {
	for _, c := range []struct {
		spec, in, loop string
		err            bool
	}{
		{spec: "198.18.0.0/16=127.85.0.0/16", in: "198.18.3.7", loop: "127.85.3.7"},
		{spec: "198.18.0.0/15=127.84.0.0/15", in: "198.19.1.2", loop: "127.85.1.2"},
		{spec: "198.18.4.0/22=127.9.8.0/22", in: "198.18.6.9", loop: "127.9.10.9"},
		{spec: "198.18.0.0/16=127.85.0.0/16", in: "10.0.0.1", loop: "10.0.0.1"},
		{spec: "198.18.0.0/16", err: true},
		{spec: "198.18.0.0/16=10.0.0.0/16", err: true},
		{spec: "198.18.0.0/16=127.0.0.0/8", err: true},
		{spec: "fd00::/64=127.0.0.0/8", err: true},
	} {
		m, err := ParseAddressMap(c.spec)
		if c.err {
			if err == nil {
				t.Errorf("%s: no error", c.spec)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		in := netip.MustParseAddr(c.in)
		got := m.ToLoopback(in)
		if got.String() != c.loop {
			t.Errorf("%s: %s → %s, want %s", c.spec, c.in, got, c.loop)
		}
		if back := m.ToVirtual(got); back != in {
			t.Errorf("%s: %s back to %s, want %s", c.spec, got, back, in)
		}
	}
}

func TestAddressMap_Dialer(t *testing.T) {
	m, err := ParseAddressMap("198.18.0.0/16=127.85.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	var dialled []string
	dial := m.Dialer(func(_ context.Context, _, addr string) (net.Conn, error) {
		dialled = append(dialled, addr)
		return nil, nil
	})
	for _, a := range []string{"198.18.2.3:8012", "127.0.0.1:80", "example.com:80"} {
		_, _ = dial(context.Background(), "tcp", a)
	}
	want := []string{"127.85.2.3:8012", "127.0.0.1:80", "example.com:80"}
	for i := range want {
		if dialled[i] != want[i] {
			t.Errorf("dialled %s, want %s", dialled[i], want[i])
		}
	}
}
