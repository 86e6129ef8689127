package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kantai.dev/kantai/internal/testbed"
)

func TestParse_events(t *testing.T) {
	const events = "events:\n- {at: 100s, link: {a: node1, b: edge, latency: 150ms}}\n- {at: 200s, node: {name: node3, down: true}}\n"
	s, err := Parse([]byte(valid+events), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Events) != 2 || s.Events[1].Node.Name != "node3" || s.Events[0].Link.Latency.D() != 150*time.Millisecond {
		t.Fatalf("events = %+v", s.Events)
	}
	if got, want := s.Events[0].String(), "at 1m40s: link node1–edge latency 150ms"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	// A quick run (20s of 300s) keeps each event's share of the window.
	quick := s.Cells(true)[0]
	if got := quick.Events[1].At.D(); got < 13333*time.Millisecond || got > 13334*time.Millisecond {
		t.Errorf("quick event at %v, want 200s × 20/300 ≈ 13.33s", got)
	}
	if s.Events[1].At.D() != 200*time.Second {
		t.Errorf("scaling changed the full scenario's event: %v", s.Events[1].At)
	}

	tests := []struct{ name, doc, want string }{
		{"after the window", "events:\n- {at: 300s, node: {name: node3, down: true}}\n", "events[0].at: must be within the measured window"},
		{"out of order", "events:\n- {at: 20s, node: {name: node3, down: true}}\n- {at: 10s, node: {name: node3}}\n", "events[1].at"},
		{"neither", "events:\n- {at: 20s}\n", "events[0]: give exactly one of link or node"},
		{"both", "events:\n- {at: 20s, node: {name: node3}, link: {a: node1, b: node3, reset: true}}\n", "events[0]: give exactly one"},
		{"unknown node", "events:\n- {at: 20s, node: {name: node9, down: true}}\n", `events[0].node.name: unknown node "node9"`},
		{"unknown link end", "events:\n- {at: 20s, link: {a: node1, b: fog, latency: 1ms}}\n", `events[0].link.b: unknown node "fog"`},
		{"nothing to change", "events:\n- {at: 20s, link: {a: node1, b: node3}}\n", "events[0].link: give reset"},
		{"reset and change", "events:\n- {at: 20s, link: {a: node1, b: node3, reset: true, latency: 1ms}}\n", "events[0].link: give reset"},
		{"latency too high", "events:\n- {at: 20s, link: {a: node1, b: node3, latency: 1h}}\n", "events[0].link.latency"},
		{"bandwidth zero", "events:\n- {at: 20s, link: {a: node1, b: node3, bandwidth: 0}}\n", "events[0].link.bandwidth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(valid+tt.doc), "t.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestReadFile_sizeCap(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(p, []byte("# "+strings.Repeat("x", testbed.MaxFileSize)+"\n"+valid), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ReadFile of a %d-byte file: %v, want the size named", testbed.MaxFileSize+len(valid), err)
	}
}
