package scenario

import (
	"fmt"
	"strings"
	"time"

	"kantai.dev/kantai/internal/testbed"
)

// Event changes the fleet's network at a time of the measured window: a
// link's latency, jitter or bandwidth, a cut, a reset, or a node going down
// or up. The results then have one phase per stretch between events.
type Event struct {
	// At is the offset from the start of the measured window. A --quick run
	// scales it by its shorter duration, so the phases keep their shares.
	At testbed.Duration `json:"at"`
	// Link changes the links between two node sets, as `kantai link` does.
	Link *LinkEvent `json:"link,omitempty"`
	// Node takes a node down or brings it up, as `kantai node` does.
	Node *NodeEvent `json:"node,omitempty"`
}

// LinkEvent selects the links between A and B (comma-separated node
// names, groups, roles or "*") and says what changes; fields left out stay.
type LinkEvent struct {
	A         string             `json:"a"`
	B         string             `json:"b"`
	Latency   *testbed.Duration  `json:"latency,omitempty"`
	Jitter    *testbed.Duration  `json:"jitter,omitempty"`
	Bandwidth *testbed.Bandwidth `json:"bandwidth,omitempty"`
	// Cut true cuts the links (a partition), false mends them.
	Cut *bool `json:"cut,omitempty"`
	// Reset puts the links back as the testbed has them; nothing else may
	// be set with it.
	Reset bool `json:"reset,omitempty"`
}

// NodeEvent takes a node down (Down true) or brings it back up.
type NodeEvent struct {
	Name string `json:"name"`
	Down bool   `json:"down"`
}

// String describes the event for tables: "at 30s: link node1–node3 latency 150ms".
func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "at %v: ", e.At)
	switch {
	case e.Node != nil && e.Node.Down:
		fmt.Fprintf(&b, "node %s down", e.Node.Name)
	case e.Node != nil:
		fmt.Fprintf(&b, "node %s up", e.Node.Name)
	case e.Link != nil:
		l := e.Link
		fmt.Fprintf(&b, "link %s–%s", l.A, l.B)
		if l.Reset {
			b.WriteString(" reset")
		}
		if l.Latency != nil {
			fmt.Fprintf(&b, " latency %v", *l.Latency)
		}
		if l.Jitter != nil {
			fmt.Fprintf(&b, " jitter %v", *l.Jitter)
		}
		if l.Bandwidth != nil {
			fmt.Fprintf(&b, " bandwidth %v", *l.Bandwidth)
		}
		if l.Cut != nil && *l.Cut {
			b.WriteString(" cut")
		} else if l.Cut != nil {
			b.WriteString(" mended")
		}
	}
	return b.String()
}

// completeEvents validates the events against the testbed and the window;
// errors name the field.
func (s *Scenario) completeEvents() error {
	known := func(set string) error {
		for _, item := range strings.Split(set, ",") {
			item = strings.TrimSpace(item)
			found := item == testbed.Any || item == testbed.RoleEdge || item == testbed.RoleCloud
			for _, n := range s.Testbed.Nodes {
				found = found || n.Name == item || (n.Group != "" && n.Group == item)
			}
			if !found {
				return fmt.Errorf("unknown node %q (nor a group, a role or %q)", item, testbed.Any)
			}
		}
		return nil
	}
	var last testbed.Duration
	for i, e := range s.Events {
		f := fmt.Sprintf("events[%d]", i)
		if e.At < 0 || e.At >= s.Duration {
			return fmt.Errorf("%s.at: must be within the measured window [0, %v), got %v", f, s.Duration, e.At)
		}
		if e.At < last {
			return fmt.Errorf("%s.at: %v comes before the event before it (%v); list events in time order", f, e.At, last)
		}
		last = e.At
		if (e.Link == nil) == (e.Node == nil) {
			return fmt.Errorf("%s: give exactly one of link or node", f)
		}
		if n := e.Node; n != nil {
			if _, ok := s.Testbed.Node(n.Name); !ok {
				return fmt.Errorf("%s.node.name: unknown node %q", f, n.Name)
			}
			continue
		}
		l := e.Link
		if err := known(l.A); err != nil {
			return fmt.Errorf("%s.link.a: %w", f, err)
		}
		if err := known(l.B); err != nil {
			return fmt.Errorf("%s.link.b: %w", f, err)
		}
		changes := l.Latency != nil || l.Jitter != nil || l.Bandwidth != nil || l.Cut != nil
		if l.Reset == changes {
			return fmt.Errorf("%s.link: give reset, or what to change (latency, jitter, bandwidth, cut), not both", f)
		}
		if l.Latency != nil && (*l.Latency < 0 || l.Latency.D() > testbed.MaxLatency) {
			return fmt.Errorf("%s.link.latency: must be between 0 and %v, got %v", f, testbed.MaxLatency, *l.Latency)
		}
		if l.Jitter != nil && (*l.Jitter < 0 || l.Jitter.D() > testbed.MaxLatency) {
			return fmt.Errorf("%s.link.jitter: must be between 0 and %v, got %v", f, testbed.MaxLatency, *l.Jitter)
		}
		if l.Bandwidth != nil && !(*l.Bandwidth >= testbed.MinBandwidth && *l.Bandwidth <= testbed.MaxBandwidth) {
			return fmt.Errorf("%s.link.bandwidth: must be between %v and %v, got %v", f, testbed.Bandwidth(testbed.MinBandwidth), testbed.Bandwidth(testbed.MaxBandwidth), *l.Bandwidth)
		}
	}
	return nil
}

// scaleEvents returns the events with their times scaled from a window of
// full to one of short.
func scaleEvents(events []Event, full, short time.Duration) []Event {
	if len(events) == 0 || full <= 0 || short == full {
		return events
	}
	out := make([]Event, len(events))
	for i, e := range events {
		e.At = testbed.Duration(float64(e.At) * float64(short) / float64(full))
		out[i] = e
	}
	return out
}
