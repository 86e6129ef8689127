package emulated

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	const good = `addressMap: 198.18.0.0/16=127.86.0.0/16
nodes:
- {name: edge, pods: 127.86.1.0/24}
- {name: cloud, pods: 127.86.2.0/24}
links:
- {a: edge, b: cloud, latency: 20ms, jitter: 1ms}
`
	for _, c := range []struct {
		name, text, err string
	}{
		{"good", good, ""},
		{"bad map", strings.Replace(good, "127.86.0.0/16", "10.0.0.0/16", 1), "addressMap"},
		{"not loopback", strings.Replace(good, "127.86.1.0/24", "10.1.0.0/24", 1), "nodes[0].pods"},
		{"twice", strings.Replace(good, "name: cloud", "name: edge", 1), "nodes[1].name"},
		{"unknown end", strings.Replace(good, "b: cloud", "b: moon", 1), `links[0]: node "moon"`},
		{"jitter", strings.Replace(good, "jitter: 1ms", "jitter: 30ms", 1), "links[0].jitter"},
		{"unknown field", good + "extra: 1\n", "extra"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "emulation.yaml")
			if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
				t.Fatal(err)
			}
			e, err := Load(path)
			switch {
			case c.err == "" && err != nil:
				t.Fatal(err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one naming %q", err, c.err)
			case c.err == "" && (len(e.Nodes) != 2 || e.Links[0].Latency.D().Milliseconds() != 20):
				t.Fatalf("parsed %+v", e)
			}
		})
	}
}

// A pod's virtual address is dialled at its loopback place.
func TestCluster_Dialer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.86.2.9:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			close(accepted)
		}
	}()
	e := &Cluster{AddressMap: "198.18.0.0/16=127.86.0.0/16",
		Nodes: []Node{{Name: "edge", Pods: "127.86.1.0/24"}, {Name: "cloud", Pods: "127.86.2.0/24"}}}
	dial, err := e.Dialer("edge", "198.18.1.1")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c, err := dial(context.Background(), "tcp", net.JoinHostPort("198.18.2.9", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-accepted
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != "127.86.1.1" {
		t.Errorf("the dial left from %s, want edge's pod address 127.86.1.1", got)
	}
}
