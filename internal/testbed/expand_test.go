package testbed

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func ms(v float64) Duration { return Duration(v * float64(time.Millisecond)) }

func TestLoad_regions30(t *testing.T) {
	tb, err := Load("../../examples/testbeds/regions-30.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(tb.Nodes), 30; got != want {
		t.Fatalf("%d nodes, want %d", got, want)
	}
	if got, want := len(tb.Links), 30*29/2; got != want {
		t.Fatalf("%d links, want %d", got, want)
	}
	n, _ := tb.Node("edge-b-10")
	if want := (Node{Name: "edge-b-10", Role: RoleEdge, Capacity: 3, Speed: 2, Group: "edge-b", Address: "127.77.0.39"}); n != want {
		t.Errorf("edge-b-10 = %+v, want %+v", n, want)
	}
	tests := []struct {
		a, b    string
		latency Duration
		jitter  Duration
		bw      Bandwidth
		rule    string
	}{
		{"cloud-a-1", "cloud-a-2", ms(1), 0, DefaultBandwidth, "links[2]"},      // group–group, same group
		{"cloud-a-1", "cloud-b-3", ms(20), ms(2), DefaultBandwidth, "links[1]"}, // role–role
		{"edge-a-3", "cloud-a-4", ms(10), ms(2), DefaultBandwidth, "links[4]"},  // group–group
		{"edge-a-3", "cloud-b-4", ms(80), ms(10), DefaultBandwidth, "links[0]"}, // "*"
		{"edge-a-3", "edge-b-3", ms(80), ms(10), DefaultBandwidth, "links[0]"},
		{"edge-b-3", "edge-b-7", ms(20), ms(4), 20e6, "links[7]"},
		{"cloud-a-1", "edge-a-1", ms(2), 0, DefaultBandwidth, "links[8]"}, // node–node beats group–group
		{"edge-a-2", "cloud-a-1", ms(10), ms(2), DefaultBandwidth, "links[4]"},
	}
	rules := map[[2]string]string{}
	for i, l := range tb.Links {
		rules[pairKey(l.A, l.B)] = tb.LinkRule(i)
	}
	for _, tt := range tests {
		l, ok := tb.LinkBetween(tt.b, tt.a)
		if !ok {
			t.Errorf("no link %s–%s", tt.a, tt.b)
			continue
		}
		if l.Latency != tt.latency || l.Jitter != tt.jitter || l.Bandwidth != tt.bw {
			t.Errorf("%s–%s = %v±%v %v, want %v±%v %v", tt.a, tt.b, l.Latency, l.Jitter, l.Bandwidth, tt.latency, tt.jitter, tt.bw)
		}
		if got := rules[pairKey(tt.a, tt.b)]; got != tt.rule {
			t.Errorf("%s–%s set by %s, want %s", tt.a, tt.b, got, tt.rule)
		}
	}
}

func TestLoad_regions100(t *testing.T) {
	data, err := os.ReadFile("../../examples/testbeds/regions-100.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines > 40 {
		t.Errorf("the 100-node example has %d lines; it should fit on one screen", lines)
	}
	tb, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.Nodes) != 100 || len(tb.Links) != 4950 {
		t.Fatalf("%d nodes and %d links, want 100 and 4950", len(tb.Nodes), len(tb.Links))
	}
	for _, c := range []struct {
		a, b string
		want Duration
	}{{"eu-1", "us-5", ms(15)}, {"us-2", "asia-1", ms(40)}, {"eu-e01", "eu-3", ms(10)}, {"eu-e01", "eu-e20", ms(20)}, {"eu-e01", "sa-e20", ms(80)}, {"asia-1", "asia-2", ms(1)}} {
		if l, _ := tb.LinkBetween(c.a, c.b); l.Latency != c.want {
			t.Errorf("%s–%s latency %v, want %v", c.a, c.b, l.Latency, c.want)
		}
	}
	if n, _ := tb.Node("sa-e20"); n.Address != "127.77.5.29" || n.Role != RoleEdge {
		t.Errorf("sa-e20 = %+v, want edge at 127.77.5.29", n)
	}
}

// The expanded testbed, written out, is a plain testbed that loads to the
// same nodes and links: what `kantai testbed show -o yaml` prints.
func TestParse_expandedRoundTrip(t *testing.T) {
	tb, err := Load("../../examples/testbeds/regions-30.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(tb.Expanded())
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(out)
	if err != nil {
		t.Fatalf("expanded testbed does not load: %v\n%s", err, out)
	}
	if diff := cmp.Diff(tb.Nodes, again.Nodes); diff != "" {
		t.Errorf("nodes (-want,+got):\n%s", diff)
	}
	if diff := cmp.Diff(tb.Links, again.Links); diff != "" {
		t.Errorf("links (-want,+got):\n%s", diff)
	}
}

func TestParse_groupsAndRules(t *testing.T) {
	const base = `groups:
- {name: c, role: cloud, count: 2, capacity: 4}
- {name: e, role: edge, count: 3, names: "edge%02d"}
nodes:
- {name: solo, group: e}
links:
- {a: "*", b: "*", latency: 30ms}
`
	tb, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(tb.NodeNames(), ","), "solo,c-1,c-2,edge01,edge02,edge03"; got != want {
		t.Errorf("nodes %s, want %s", got, want)
	}
	if n, _ := tb.Node("solo"); n.Role != RoleEdge {
		t.Errorf("solo has role %q, want the group's (edge)", n.Role)
	}
	if got := tb.NodeSource(3); got != "groups[1]" {
		t.Errorf("NodeSource(3) = %q, want groups[1]", got)
	}
	tests := []struct{ name, doc, want string }{
		{"same precedence", base + "- {a: c, b: edge, latency: 5ms}\n- {a: cloud, b: e, latency: 6ms}\n",
			`links[1] and links[2] both set the link between "solo" and "c-1" with the same precedence`},
		{"unknown end", base + "- {a: c, b: fog, latency: 5ms}\n", `links[1].b: unknown node "fog" (nor a group, a role or "*")`},
		{"duplicate rule", base + "- {a: c, b: e, latency: 5ms}\n- {a: e, b: c, latency: 6ms}\n", "links[2]: link e–c is already given by links[1]"},
		{"missing", strings.Replace(base, `- {a: "*", b: "*", latency: 30ms}`, "- {a: c, b: c, latency: 1ms}", 1), `missing link between "solo" and "c-1"`},
		{"group named like a role", strings.Replace(base, "name: c,", "name: cloud,", 1), `groups[0].name: "cloud" is a role`},
		{"group named like a node", strings.Replace(base, "{name: solo, group: e}", "{name: c, role: edge}", 1), `"c" is both a group and a node`},
		{"duplicate generated name", strings.Replace(base, "{name: solo, group: e}", "{name: c-2}", 1), `groups[0] (node "c-2").name: duplicate node name "c-2" (also nodes[0])`},
		{"bad pattern", strings.Replace(base, `"edge%02d"`, `"edge-%s-%d"`, 1), "groups[1].names"},
		{"two verbs", strings.Replace(base, `"edge%02d"`, `"e%d-%d"`, 1), "groups[1].names"},
		{"bad generated name", strings.Replace(base, `"edge%02d"`, `"Edge%d"`, 1), `groups[1].names: generated name "Edge1"`},
		{"too many", strings.Replace(base, "count: 3", "count: 199", 1), "groups[1].count: the testbed would have more than 200 nodes"},
		{"huge count", strings.Replace(base, "count: 3", "count: 9223372036854775807", 1), "groups[1].count: must be between 0 and 200"},
		{"negative count", strings.Replace(base, "count: 3", "count: -1", 1), "groups[1].count"},
		{"group nan speed", strings.Replace(base, "count: 2,", "count: 2, speed: .nan,", 1), "groups[0].speed: must be a finite number"},
		{"group address leaves loopback", strings.Replace(base, "count: 3,", "count: 3, address: 127.255.255.254,", 1), "groups[1].address"},
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

// The scenarios' testbeds use the old form: every pair written out.
func TestLoad_oldFormKeepsEveryLink(t *testing.T) {
	var b strings.Builder
	b.WriteString("nodes:\n")
	const n = 40
	for i := range n {
		fmt.Fprintf(&b, "- {name: n%d, capacity: 1}\n", i)
	}
	b.WriteString("links:\n")
	for i := range n {
		for j := i + 1; j < n; j++ {
			fmt.Fprintf(&b, "- {a: n%d, b: n%d, latency: %dms}\n", j, i, i+j)
		}
	}
	tb, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for j := i + 1; j < n; j++ {
			l, ok := tb.LinkBetween(fmt.Sprintf("n%d", i), fmt.Sprintf("n%d", j))
			if !ok || l.Latency != ms(float64(i+j)) {
				t.Fatalf("n%d–n%d = %+v, %v; want %dms", i, j, l, ok, i+j)
			}
		}
	}
	if math.Abs(float64(tb.Links[0].Bandwidth)-DefaultBandwidth) > 0 {
		t.Errorf("bandwidth left out = %v, want the default %v", tb.Links[0].Bandwidth, Bandwidth(DefaultBandwidth))
	}
}
