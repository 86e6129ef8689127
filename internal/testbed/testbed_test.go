package testbed

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	tb := Default()
	if got := strings.Join(tb.NodeNames(), ","); got != "node1,node2,node3" {
		t.Errorf("nodes = %s", got)
	}
	n3, _ := tb.Node("node3")
	if n3.Role != RoleEdge || n3.Capacity != 3 {
		t.Errorf("node3 = %+v, want edge with capacity 3", n3)
	}
	l, ok := tb.LinkBetween("node3", "node1")
	if !ok || l.Latency.D() != 50*time.Millisecond || l.Jitter.D() != 10*time.Millisecond {
		t.Errorf("node3↔node1 = %+v, want 50ms ± 10ms", l)
	}
	if tb.Policies.LoadBalancer != DefaultLoadBalancer || tb.Domain != DefaultDomain {
		t.Errorf("defaults not filled: %+v", tb)
	}
}

func TestLoad_seedFileMatchesDefault(t *testing.T) {
	tb, err := Load("../../examples/testbeds/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	for i, n := range tb.Nodes {
		if n != def.Nodes[i] {
			t.Errorf("node %d = %+v, want %+v", i, n, def.Nodes[i])
		}
	}
	for i, l := range tb.Links {
		if l != def.Links[i] {
			t.Errorf("link %d = %+v, want %+v", i, l, def.Links[i])
		}
	}
}

func TestParse_rejects(t *testing.T) {
	const ok = `nodes:
- {name: a, capacity: 1}
- {name: b, capacity: 1}
links:
- {a: a, b: b, latency: 5ms}
`
	if _, err := Parse([]byte(ok)); err != nil {
		t.Fatalf("valid testbed rejected: %v", err)
	}
	tests := []struct{ name, doc, want string }{
		{"unknown node in link", strings.Replace(ok, "{a: a, b: b", "{a: a, b: c", 1), `links[0].b: unknown node "c"`},
		{"missing pair", strings.Replace(ok, "- {name: b, capacity: 1}", "- {name: b, capacity: 1}\n- {name: c, capacity: 1}", 1), `missing link between "a" and "c"`},
		{"negative latency", strings.Replace(ok, "latency: 5ms", "latency: -5ms", 1), "links[0].latency: must be between 0 and 10s"},
		{"negative jitter", strings.Replace(ok, "latency: 5ms", "latency: 5ms, jitter: -1ms", 1), "links[0].jitter"},
		{"negative bandwidth", strings.Replace(ok, "latency: 5ms", "latency: 5ms, bandwidth: -10", 1), "links[0].bandwidth"},
		{"bad bandwidth", strings.Replace(ok, "latency: 5ms", "latency: 5ms, bandwidth: fast", 1), "invalid bandwidth"},
		{"negative capacity", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, capacity: -1}", 1), "nodes[0].capacity"},
		{"negative speed", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, capacity: 1, speed: -2}", 1), "nodes[0].speed"},
		{"duplicate node", strings.Replace(ok, "{name: b,", "{name: a,", 1), `nodes[1].name: duplicate node name "a"`},
		{"duplicate link", ok + "- {a: b, b: a, latency: 1ms}\n", "links[1]: link b–a is already given by links[0]"},
		{"self link", ok + "- {a: a, b: a, latency: 1ms}\n", "two different nodes"},
		{"bad role", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, role: fog, capacity: 1}", 1), "nodes[0].role"},
		{"bad name", strings.Replace(ok, "{name: a,", "{name: A_1,", 1), "nodes[0].name"},
		{"not loopback", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, capacity: 1, address: 10.0.0.1}", 1), "nodes[0].address"},
		{"unknown field", ok + "colour: blue\n", "colour"},
		{"bad duration", strings.Replace(ok, "latency: 5ms", "latency: soon", 1), "invalid duration"},
		{"no nodes", "nodes: []\nlinks: []\n", "at least one node"},
		{"empty image command", ok + "images:\n  foo: []\n", `images["foo"]`},
		// Issue 10's input edges: each error names the field.
		{"nan speed", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, capacity: 1, speed: .nan}", 1), "nodes[0].speed: must be a finite number"},
		{"inf speed", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, capacity: 1, speed: .inf}", 1), "nodes[0].speed: must be a finite number"},
		{"zero speed", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, capacity: 1, speed: 0}", 1), "nodes[0].speed: must be positive"},
		{"huge speed", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, capacity: 1, speed: 1e300}", 1), "nodes[0].speed"},
		{"zero bandwidth", strings.Replace(ok, "latency: 5ms", "latency: 5ms, bandwidth: 0", 1), "links[0].bandwidth: must be positive"},
		{"zero bandwidth string", strings.Replace(ok, "latency: 5ms", "latency: 5ms, bandwidth: 0Mbit", 1), "links[0].bandwidth: must be positive"},
		{"tiny bandwidth", strings.Replace(ok, "latency: 5ms", "latency: 5ms, bandwidth: 10bit", 1), "links[0].bandwidth: must be between 64kbit"},
		{"nan bandwidth", strings.Replace(ok, "latency: 5ms", "latency: 5ms, bandwidth: .nan", 1), "links[0].bandwidth: must be a finite number"},
		{"bad bandwidth field", strings.Replace(ok, "latency: 5ms", "latency: 5ms, bandwidth: fast", 1), "links[0].bandwidth: invalid bandwidth"},
		{"bad duration field", strings.Replace(ok, "latency: 5ms", "latency: soon", 1), `links[0].latency: invalid duration "soon"`},
		{"huge latency", strings.Replace(ok, "latency: 5ms", "latency: 1000h", 1), "links[0].latency: must be between 0 and 10s, got 1000h0m0s"},
		{"jitter above latency", strings.Replace(ok, "latency: 5ms", "latency: 1ms, jitter: 500ms", 1), "links[0].jitter: 500ms is more than the latency 1ms"},
		{"capacity not a number", strings.Replace(ok, "{name: a, capacity: 1}", "{name: a, capacity: lots}", 1), "nodes[0].capacity: want an integer"},
		{"too large", "# " + strings.Repeat("x", MaxFileSize) + "\n" + ok, "more than the 4194304"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("accepted, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestLoad_errorNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte("nodes: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v does not name the file", err)
	}
}

func TestCommand(t *testing.T) {
	tb := Default()
	tb.Images = map[string][]string{"example/app:v1": {"app"}, "example/*": {"generic"}, "example/app*": {"longer"}}
	tests := []struct {
		image string
		want  string
	}{{"example/app:v1", "app"}, {"example/app:v2", "longer"}, {"example/other", "generic"}, {"docker.io/x", ""}}
	for _, tt := range tests {
		cmd, ok := tb.Command(tt.image)
		got := ""
		if ok {
			got = cmd[0]
		}
		if got != tt.want {
			t.Errorf("Command(%q) = %q, want %q", tt.image, got, tt.want)
		}
	}
}

func TestParseBandwidth(t *testing.T) {
	tests := []struct {
		in   string
		want Bandwidth
	}{{"100Mbit", 100e6}, {"1Gbit", 1e9}, {"640kbit", 640e3}, {"1000", 1000}, {"2.5Mbit/s", 2.5e6}}
	for _, tt := range tests {
		got, err := ParseBandwidth(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseBandwidth(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParse_policiesFromTheRegistry(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"policies: {loadBalancer: fastest}\nnodes: [{name: a, role: cloud, capacity: 1}]\n", "policies.loadBalancer: unknown policy \"fastest\" (known: faast, kantai"},
		{"policies: {placement: best}\nnodes: [{name: a, role: cloud, capacity: 1}]\n", "policies.placement: unknown policy \"best\" (known: nearest, spread)"},
		{"gateway: {engine: nginx}\nnodes: [{name: a, role: cloud, capacity: 1}]\n", `gateway.engine: gateway engine "nginx": want net/http or fasthttp`},
	} {
		if _, err := Parse([]byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tt.doc, err, tt.want)
		}
	}
}
