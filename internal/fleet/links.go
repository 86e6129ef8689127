package fleet

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"kantai.dev/kantai/internal/linkemu"
	"kantai.dev/kantai/internal/testbed"
)

// live holds what has changed in the running fleet's network since it
// started: links set or cut, nodes taken down. The testbed keeps the
// configured values, which reset goes back to.
type live struct {
	mu   sync.Mutex // serialises changes
	down map[string]bool
}

// LinkStatus is one link as the fleet emulates it now.
type LinkStatus struct {
	A         string            `json:"a"`
	B         string            `json:"b"`
	Latency   testbed.Duration  `json:"latency"`
	Jitter    testbed.Duration  `json:"jitter"`
	Bandwidth testbed.Bandwidth `json:"bandwidth"`
	// Cut links refuse connections and break those that were open.
	Cut bool `json:"cut,omitempty"`
	// Changed is true when the link differs from the testbed.
	Changed bool `json:"changed,omitempty"`
}

// LinkChange changes some of a link's properties; nil fields stay.
type LinkChange struct {
	Latency   *testbed.Duration  `json:"latency,omitempty"`
	Jitter    *testbed.Duration  `json:"jitter,omitempty"`
	Bandwidth *testbed.Bandwidth `json:"bandwidth,omitempty"`
	// Cut true cuts the links, false mends them.
	Cut *bool `json:"cut,omitempty"`
}

// ErrUnknownNode is returned for a name that is no node (nor, where sets
// are allowed, a group or role).
var ErrUnknownNode = errors.New("unknown node")

// Nodes resolves a set of nodes written as a comma-separated list of node
// names, groups, roles or "*" (every node), in testbed order.
func (f *Fleet) nodeSet(spec string) ([]string, error) {
	in := map[string]bool{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		found := false
		for _, n := range f.tb.Nodes {
			if item == testbed.Any || n.Name == item || n.Group == item || n.Role == item {
				in[n.Name] = true
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w %q (nor a group, a role or %q)", ErrUnknownNode, item, testbed.Any)
		}
	}
	var out []string
	for _, n := range f.tb.Nodes {
		if in[n.Name] {
			out = append(out, n.Name)
		}
	}
	return out, nil
}

// pairs lists the links between two node sets, each once, in testbed
// order.
func (f *Fleet) pairs(a, b string) ([][2]string, error) {
	as, err := f.nodeSet(a)
	if err != nil {
		return nil, err
	}
	bs, err := f.nodeSet(b)
	if err != nil {
		return nil, err
	}
	inA, inB := map[string]bool{}, map[string]bool{}
	for _, x := range as {
		inA[x] = true
	}
	for _, y := range bs {
		inB[y] = true
	}
	var out [][2]string
	names := f.tb.NodeNames()
	for i, x := range names {
		for _, y := range names[i+1:] {
			if (inA[x] && inB[y]) || (inA[y] && inB[x]) {
				out = append(out, [2]string{x, y})
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no link joins %q and %q", a, b)
	}
	return out, nil
}

func (f *Fleet) linkStatus(a, b string) LinkStatus {
	l, _ := f.net.Link(a, b)
	st := LinkStatus{A: a, B: b, Latency: testbed.Duration(l.RTT), Jitter: testbed.Duration(l.Jitter),
		Bandwidth: testbed.Bandwidth(l.BytesPerSec * 8), Cut: f.net.Cut(a, b)}
	conf, _ := f.tb.LinkBetween(a, b)
	st.Changed = st.Cut || conf.Latency != st.Latency || conf.Jitter != st.Jitter || conf.Bandwidth != st.Bandwidth
	return st
}

// Links returns the links between two node sets (see SetLinks) as the
// fleet emulates them now; empty sets mean every link.
func (f *Fleet) Links(a, b string) ([]LinkStatus, error) {
	if a == "" {
		a = testbed.Any
	}
	if b == "" {
		b = testbed.Any
	}
	pairs, err := f.pairs(a, b)
	if err != nil {
		return nil, err
	}
	out := make([]LinkStatus, 0, len(pairs))
	for _, p := range pairs {
		out = append(out, f.linkStatus(p[0], p[1]))
	}
	return out, nil
}

// SetLinks changes every link between the node sets a and b while the
// fleet runs. A set is a comma-separated list of node names, groups, roles
// or "*". New latency, jitter and bandwidth apply at once, to open
// connections too; the values must keep within the testbed's bounds.
// Cutting a link refuses new connections across it and breaks the open
// ones. It returns the links as they are now.
func (f *Fleet) SetLinks(a, b string, c LinkChange) ([]LinkStatus, error) {
	pairs, err := f.pairs(a, b)
	if err != nil {
		return nil, err
	}
	f.live.mu.Lock()
	defer f.live.mu.Unlock()
	type change struct {
		a, b string
		l    testbed.Link
	}
	var changes []change
	for _, p := range pairs {
		st := f.linkStatus(p[0], p[1])
		l := testbed.Link{A: p[0], B: p[1], Latency: st.Latency, Jitter: st.Jitter, Bandwidth: st.Bandwidth}
		if c.Latency != nil {
			l.Latency = *c.Latency
		}
		if c.Jitter != nil {
			l.Jitter = *c.Jitter
		}
		if c.Bandwidth != nil {
			l.Bandwidth = *c.Bandwidth
			if l.Bandwidth == 0 {
				return nil, fmt.Errorf("bandwidth: must be positive, got 0")
			}
		}
		if err := testbed.CheckLink(&l, "link "+p[0]+"–"+p[1]); err != nil {
			return nil, err
		}
		changes = append(changes, change{p[0], p[1], l})
	}
	out := make([]LinkStatus, 0, len(changes))
	for _, ch := range changes {
		f.net.SetLink(ch.a, ch.b, emulated(ch.l))
		if c.Cut != nil {
			f.net.SetCut(ch.a, ch.b, *c.Cut)
		}
		out = append(out, f.linkStatus(ch.a, ch.b))
	}
	if c.Cut != nil && *c.Cut {
		f.dropIdle()
	}
	f.log.Info("links changed", "a", a, "b", b, "links", len(out))
	return out, nil
}

// ResetLinks puts the links between two node sets back as the testbed
// has them, mended if they were cut; empty sets mean every link.
func (f *Fleet) ResetLinks(a, b string) ([]LinkStatus, error) {
	if a == "" {
		a = testbed.Any
	}
	if b == "" {
		b = testbed.Any
	}
	pairs, err := f.pairs(a, b)
	if err != nil {
		return nil, err
	}
	f.live.mu.Lock()
	defer f.live.mu.Unlock()
	out := make([]LinkStatus, 0, len(pairs))
	for _, p := range pairs {
		conf, _ := f.tb.LinkBetween(p[0], p[1])
		f.net.SetLink(p[0], p[1], emulated(conf))
		f.net.SetCut(p[0], p[1], false)
		out = append(out, f.linkStatus(p[0], p[1]))
	}
	f.log.Info("links reset", "a", a, "b", b, "links", len(out))
	return out, nil
}

// emulated converts a testbed link for the emulator.
func emulated(l testbed.Link) linkemu.Link {
	return linkemu.Link{RTT: l.Latency.D(), Jitter: l.Jitter.D(), BytesPerSec: l.Bandwidth.BytesPerSecond()}
}

// SetNodeDown takes a node down (down true) or brings it back. A node that
// is down answers nothing: its gateway stops listening and drops its
// connections, and every connection across a link to or from it is
// refused or broken, so its agent, replicas and gateway are unreachable
// from the other nodes (their gateways answer 502 for a request whose
// replica there cannot be reached, after trying other replicas for
// requests without a body). Its replicas keep running and come back with
// it. Meanwhile the gateways stop choosing them and the control step
// counts them as lost: it places replacements on the nodes that are up.
func (f *Fleet) SetNodeDown(name string, down bool) error {
	if err := f.setNodeDown(name, down); err != nil {
		return err
	}
	f.mu.Lock()
	for _, svc := range f.svcs {
		for _, rev := range svc.revisions {
			f.publishLocked(rev)
		}
	}
	f.mu.Unlock()
	f.Kick()
	return nil
}

func (f *Fleet) setNodeDown(name string, down bool) error {
	n, ok := f.byName[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownNode, name)
	}
	f.live.mu.Lock()
	defer f.live.mu.Unlock()
	if f.live.down == nil {
		f.live.down = map[string]bool{}
	}
	if f.live.down[name] == down {
		return nil
	}
	g, _ := n.gwLn.(*gate)
	if down {
		f.net.SetDown(name, true)
		if g != nil {
			g.shut()
		}
		f.live.down[name] = true
		f.dropIdle()
	} else {
		if g != nil {
			if err := g.open(); err != nil {
				return fmt.Errorf("node %s: gateway: %w", name, err)
			}
		}
		f.net.SetDown(name, false)
		delete(f.live.down, name)
	}
	f.log.Info("node state changed", "node", name, "down", down)
	return nil
}

// NodeDown reports whether a node is down (see SetNodeDown).
func (f *Fleet) NodeDown(name string) bool {
	f.live.mu.Lock()
	defer f.live.mu.Unlock()
	return f.live.down[name]
}

// DownNodes lists the nodes that are down, sorted.
func (f *Fleet) DownNodes() []string {
	f.live.mu.Lock()
	defer f.live.mu.Unlock()
	out := make([]string, 0, len(f.live.down))
	for n := range f.live.down {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// dropIdle closes the gateways' idle keep-alive connections, which may
// lead across a link that was just cut.
func (f *Fleet) dropIdle() {
	for _, n := range f.nodes {
		n.transport.CloseIdleConnections()
	}
}
