// Package emulated describes a Kubernetes cluster emulated on one machine:
// nodes whose pods run as processes on loopback addresses (the API server
// sees virtual addresses that an address map places on loopback), and
// emulated links between the nodes. kantai's gateway and controller take
// such a description to dial pods across the links, so latency-aware
// routing can be tried and tested without a fleet of machines.
package emulated

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"

	"sigs.k8s.io/yaml"

	"kantai.dev/kantai/internal/linkemu"
	"kantai.dev/kantai/internal/testbed"
)

// Cluster is an emulated cluster: where each node's pods listen on
// loopback, and the links between nodes.
type Cluster struct {
	// AddressMap places the pods' virtual addresses on loopback (see
	// linkemu.AddressMap), e.g. "198.18.0.0/16=127.85.0.0/16".
	AddressMap string `json:"addressMap"`
	// Nodes are the nodes and the loopback ranges of their pods.
	Nodes []Node `json:"nodes"`
	// Links are the links between nodes by name; a pair left out is a
	// plain loopback path.
	Links []testbed.Link `json:"links"`
}

// Node is one node of a Cluster.
type Node struct {
	Name string `json:"name"`
	Pods string `json:"pods"`
}

// Load reads a Cluster file.
func Load(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("emulated cluster: %w", err)
	}
	var e Cluster
	if err := yaml.UnmarshalStrict(data, &e); err != nil {
		return nil, fmt.Errorf("emulated cluster %s: %w", path, err)
	}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("emulated cluster %s: %w", path, err)
	}
	return &e, nil
}

func (e *Cluster) check() error {
	if _, err := linkemu.ParseAddressMap(e.AddressMap); err != nil {
		return fmt.Errorf("addressMap: %w", err)
	}
	known := map[string]bool{}
	for i, n := range e.Nodes {
		if n.Name == "" {
			return fmt.Errorf("nodes[%d].name: empty", i)
		}
		if known[n.Name] {
			return fmt.Errorf("nodes[%d].name: %q twice", i, n.Name)
		}
		known[n.Name] = true
		p, err := netip.ParsePrefix(n.Pods)
		if err != nil || !p.Addr().IsLoopback() {
			return fmt.Errorf("nodes[%d].pods: %q is not a loopback range (e.g. 127.85.1.0/24)", i, n.Pods)
		}
	}
	for i := range e.Links {
		l := &e.Links[i]
		f := fmt.Sprintf("links[%d]", i)
		for _, end := range []string{l.A, l.B} {
			if !known[end] {
				return fmt.Errorf("%s: node %q is not in nodes", f, end)
			}
		}
		if err := testbed.CheckLink(l, f); err != nil {
			return err
		}
	}
	return nil
}

// Dialer returns the dial function of node self, whose pod has the
// virtual address podIP: virtual addresses are placed on loopback, and a
// connection to another node's pod crosses the emulated link.
func (e *Cluster) Dialer(self, podIP string) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	m, err := linkemu.ParseAddressMap(e.AddressMap)
	if err != nil {
		return nil, err
	}
	own, err := netip.ParseAddr(podIP)
	if err != nil {
		return nil, fmt.Errorf("emulated cluster: pod IP %q: %w", podIP, err)
	}
	net := linkemu.NewNetwork()
	net.AddNode(self, m.ToLoopback(own).String())
	for _, n := range e.Nodes {
		if err := net.AddPrefix(n.Name, n.Pods); err != nil {
			return nil, err
		}
	}
	for _, l := range e.Links {
		net.SetLink(l.A, l.B, linkemu.Link{RTT: l.Latency.D(), Jitter: l.Jitter.D(), BytesPerSec: l.Bandwidth.BytesPerSecond()})
	}
	return m.Dialer(net.Dialer(self)), nil
}

// AddressDialer returns a dial function that places virtual addresses on
// loopback, for a program that runs on no node (the controller).
func (e *Cluster) AddressDialer() (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	m, err := linkemu.ParseAddressMap(e.AddressMap)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return m.Dialer(d.DialContext), nil
}
