package testbed

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzParse feeds the testbed reader arbitrary documents. Whatever it
// accepts must be a fleet the emulation can run: every pair of nodes has
// one link within the documented bounds, and the expanded form loads to
// the same fleet. Run longer with
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 60s ./internal/testbed
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../examples/testbeds/*.yaml")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	const two = "nodes:\n- {name: a, capacity: 1}\n- {name: b, capacity: 1}\nlinks:\n"
	for _, s := range []string{
		two + "- {a: a, b: b, latency: 5ms}\n",
		"nodes:\n- {name: a, capacity: 1, speed: .nan}\nlinks: []\n",
		"nodes:\n- {name: a, capacity: 1, speed: .inf}\nlinks: []\n",
		"nodes:\n- {name: a, capacity: 1, speed: -0.0}\nlinks: []\n",
		two + "- {a: a, b: b, latency: 5ms, bandwidth: 0}\n",
		two + "- {a: a, b: b, latency: 1ms, jitter: 500ms}\n",
		two + "- {a: a, b: b, latency: 1000h}\n",
		two + "- {a: a, b: b, latency: 5ms, bandwidth: 1e309}\n",
		"groups:\n- {name: g, count: 200}\nlinks:\n- {a: \"*\", b: \"*\", latency: 1ms}\n",
		"groups:\n- {name: g, count: 3, names: \"x%09d\", address: 127.255.255.254}\nlinks:\n- {a: g, b: g, latency: 1ms}\n",
		"groups:\n- &g {name: g, count: 2}\n- *g\nlinks: []\n",
		`{"nodes":[{"name":"a","capacity":1}],"links":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, err := Parse(data)
		if err != nil {
			return
		}
		if len(tb.Nodes) == 0 || len(tb.Nodes) > MaxNodes {
			t.Fatalf("accepted %d nodes", len(tb.Nodes))
		}
		for _, n := range tb.Nodes {
			if !(n.Speed > 0 && n.Speed <= MaxSpeed) {
				t.Fatalf("node %s: accepted speed %v", n.Name, n.Speed)
			}
		}
		if want := len(tb.Nodes) * (len(tb.Nodes) - 1) / 2; len(tb.Links) != want {
			t.Fatalf("%d links for %d nodes, want %d", len(tb.Links), len(tb.Nodes), want)
		}
		for i, a := range tb.Nodes {
			for _, b := range tb.Nodes[i+1:] {
				l, ok := tb.LinkBetween(a.Name, b.Name)
				if !ok {
					t.Fatalf("no link %s–%s", a.Name, b.Name)
				}
				if l.Latency < 0 || l.Latency.D() > MaxLatency || l.Jitter < 0 || l.Jitter > l.Latency ||
					!(l.Bandwidth >= MinBandwidth && l.Bandwidth <= MaxBandwidth) {
					t.Fatalf("link %s–%s out of bounds: %+v", a.Name, b.Name, l)
				}
			}
		}
		if len(tb.Nodes) > 30 {
			return // the round trip of a large fleet costs seconds per input
		}
		out, err := yaml.Marshal(tb.Expanded())
		if err != nil {
			t.Fatalf("writing the expanded testbed: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("the expanded testbed does not load: %v\n%s", err, out)
		}
		if len(again.Nodes) != len(tb.Nodes) || len(again.Links) != len(tb.Links) {
			t.Fatalf("reloaded %d nodes, %d links; want %d, %d", len(again.Nodes), len(again.Links), len(tb.Nodes), len(tb.Links))
		}
		for i, l := range tb.Links {
			m := again.Links[i]
			if l.A != m.A || l.B != m.B || l.Latency != m.Latency || l.Jitter != m.Jitter ||
				math.Abs(float64(l.Bandwidth-m.Bandwidth)) > 1e-9*float64(l.Bandwidth) {
				t.Fatalf("link %d reloaded as %+v, want %+v", i, m, l)
			}
		}
	})
}
