// Package testbed describes an emulated edge–cloud fleet: its nodes, the
// links between them and the policies the platform runs with. The same
// description drives the local fleet, the benchmark's oracle and the tests.
package testbed

import (
	"encoding/json"
	"fmt"
	"kantai.dev/kantai/internal/balance"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/placement"
	"math"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Roles a node can have. They are labels for people and charts; no policy
// treats an edge node differently because of its role alone.
const (
	RoleEdge  = "edge"
	RoleCloud = "cloud"
)

// Testbed is the whole emulated fleet.
type Testbed struct {
	// Domain is the cluster's external domain: hello.default.<domain> routes
	// to function hello in namespace default.
	Domain string `json:"domain,omitempty"`
	// Policies names the pluggable algorithms, as registered in their packages.
	Policies Policies `json:"policies,omitempty"`
	// Nodes lists nodes one by one; Groups adds nodes by the dozen. After
	// loading, Nodes holds every node: those listed first, then each
	// group's in group order.
	Nodes []Node `json:"nodes,omitempty"`
	// Groups generate nodes that share a role, capacity and speed, named
	// from a pattern (see Group).
	Groups []Group `json:"groups,omitempty"`
	// Links are link rules: each end names a node, a group, a role or "*"
	// (any node), and the most specific rule sets each pair's link (see
	// the README's testbed section). After loading, Links holds exactly one
	// link per pair of nodes, node names at both ends, in node order.
	Links []Link `json:"links"`
	// Images maps a container image (exact, or a prefix ending in "*") to the
	// command that runs it as a process. Unmapped images run the built-in
	// function `kantai fn hello`.
	Images map[string][]string `json:"images,omitempty"`
	// Gateway tunes every node's gateway.
	Gateway Gateway `json:"gateway,omitempty"`

	// Filled by loading: where each node and link came from, for errors
	// and `kantai testbed show`, and an index for LinkBetween.
	nodeFrom  []string
	linkFrom  []string
	linkIndex map[[2]string]int
}

// Policies selects algorithms by registry name.
type Policies struct {
	LoadBalancer string `json:"loadBalancer,omitempty"`
	Placement    string `json:"placement,omitempty"`
}

// Node is one emulated machine.
type Node struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Capacity is the largest number of replicas (of all functions) the node
	// may run.
	Capacity int `json:"capacity"`
	// Speed multiplies every processing time on the node: 2 means twice as
	// slow. Default 1; must be positive and finite.
	Speed float64 `json:"speed,omitempty" check:"positive"`
	// Address is the node's loopback address; assigned when empty.
	Address string `json:"address,omitempty"`
	// Group is a label link rules can name; nodes a group generates carry
	// its name. A listed node with a declared group and no role takes the
	// group's role.
	Group string `json:"group,omitempty"`
}

// Link is the emulated path between two nodes, the same in both
// directions. In a file it is a rule whose ends may also name a group, a
// role or "*".
type Link struct {
	A string `json:"a"`
	B string `json:"b"`
	// Latency is the mean round-trip time, at most MaxLatency.
	Latency Duration `json:"latency"`
	// Jitter is the standard deviation of the round-trip time (normal), at
	// most Latency.
	Jitter Duration `json:"jitter,omitempty"`
	// Bandwidth in bits per second, e.g. "100Mbit", between MinBandwidth
	// and MaxBandwidth; left out, DefaultBandwidth.
	Bandwidth Bandwidth `json:"bandwidth,omitempty" check:"positive"`
}

// Gateway holds the knobs shared by all gateways.
type Gateway struct {
	// QueueDepth bounds the requests waiting for a replica, per function and
	// gateway; beyond it the gateway answers 503 with Retry-After.
	QueueDepth int `json:"queueDepth,omitempty"`
	// ActivationTimeout bounds how long a request waits for a first replica
	// (scale from zero) before the gateway answers 504.
	ActivationTimeout Duration `json:"activationTimeout,omitempty"`
	// Engine is the gateways' HTTP stack: "fasthttp" (the default) or
	// "net/http" (see docs/benchmarks.md for what differs).
	// KANTAI_GATEWAY_ENGINE sets it when the file does not.
	Engine string `json:"engine,omitempty"`
}

// Defaults used when the file leaves a field out.
const (
	DefaultDomain            = "example.com"
	DefaultLoadBalancer      = "kantai"
	DefaultPlacement         = "nearest"
	DefaultQueueDepth        = 1000
	DefaultActivationTimeout = 30 * time.Second
	DefaultBandwidth         = 100e6
)

// Bounds on what a testbed file may ask for. Beyond them the emulation
// would not do what the file says (a 1000h link hangs every request across
// it; jitter far above the latency is mostly clamped at zero and moves the
// mean) or the file is not a fleet this machine can run.
const (
	// MaxFileSize bounds a testbed file (a 200-node fleet with every link
	// written out takes about 1.3 MB).
	MaxFileSize = 4 << 20
	// MaxNodes is the most nodes a testbed may have: they share 127.77.0.0/24.
	MaxNodes = 200
	// MaxLatency bounds a link's latency.
	MaxLatency = 10 * time.Second
	// MinBandwidth and MaxBandwidth bound a link's rate, in bit/s.
	MinBandwidth = 64e3
	MaxBandwidth = 1e12
	// MaxSpeed bounds a node's speed factor.
	MaxSpeed = 1000
)

// Default returns the seed's testbed: two cloud nodes 1 ms apart and an edge
// node 50 ± 10 ms from both.
func Default() *Testbed {
	tb := &Testbed{
		Nodes: []Node{
			{Name: "node1", Role: RoleCloud, Capacity: 10, Speed: 1},
			{Name: "node2", Role: RoleCloud, Capacity: 10, Speed: 1},
			{Name: "node3", Role: RoleEdge, Capacity: 3, Speed: 1},
		},
		Links: []Link{
			{A: "node1", B: "node2", Latency: Duration(time.Millisecond), Bandwidth: DefaultBandwidth},
			{A: "node1", B: "node3", Latency: Duration(50 * time.Millisecond), Jitter: Duration(10 * time.Millisecond), Bandwidth: DefaultBandwidth},
			{A: "node2", B: "node3", Latency: Duration(50 * time.Millisecond), Jitter: Duration(10 * time.Millisecond), Bandwidth: DefaultBandwidth},
		},
	}
	if err := tb.complete(); err != nil {
		panic(fmt.Sprintf("built-in testbed is invalid: %v", err))
	}
	return tb
}

// Load reads and validates a testbed file. Errors name the file and field.
func Load(path string) (*Testbed, error) {
	data, err := readCapped(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("reading testbed: %w", err)
	}
	tb, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tb, nil
}

// Parse decodes a testbed from YAML or JSON, rejecting unknown fields, and
// validates it.
func Parse(data []byte) (*Testbed, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("testbed is %d bytes, more than the %d a testbed may have", len(data), MaxFileSize)
	}
	// A first pass names the field of a value that cannot be decoded (the
	// decoder below says what is wrong, not where) and catches what JSON
	// cannot carry (.nan, .inf).
	if err := checkValues(data, reflect.TypeFor[Testbed]()); err != nil {
		return nil, err
	}
	var tb Testbed
	if err := yaml.UnmarshalStrict(data, &tb); err != nil {
		return nil, fmt.Errorf("decoding testbed: %w", err)
	}
	if err := tb.complete(); err != nil {
		return nil, err
	}
	return &tb, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// complete fills defaults and validates; every error names the field.
func (tb *Testbed) complete() error {
	if tb.Domain == "" {
		tb.Domain = DefaultDomain
	}
	if tb.Policies.LoadBalancer == "" {
		tb.Policies.LoadBalancer = DefaultLoadBalancer
	}
	if tb.Policies.Placement == "" {
		tb.Policies.Placement = DefaultPlacement
	}
	if !balance.Known(tb.Policies.LoadBalancer) {
		return fmt.Errorf("policies.loadBalancer: unknown policy %q (known: %s)", tb.Policies.LoadBalancer, strings.Join(balance.Names(), ", "))
	}
	if !slices.Contains(placement.Names(), tb.Policies.Placement) {
		return fmt.Errorf("policies.placement: unknown policy %q (known: %s)", tb.Policies.Placement, strings.Join(placement.Names(), ", "))
	}
	if tb.Gateway.QueueDepth == 0 {
		tb.Gateway.QueueDepth = DefaultQueueDepth
	}
	if tb.Gateway.QueueDepth < 0 {
		return fmt.Errorf("gateway.queueDepth: must not be negative, got %d", tb.Gateway.QueueDepth)
	}
	if tb.Gateway.ActivationTimeout == 0 {
		tb.Gateway.ActivationTimeout = Duration(DefaultActivationTimeout)
	}
	if tb.Gateway.ActivationTimeout < 0 {
		return fmt.Errorf("gateway.activationTimeout: must not be negative, got %v", tb.Gateway.ActivationTimeout)
	}
	if err := gateway.CheckEngine(tb.Gateway.Engine); err != nil {
		return fmt.Errorf("gateway.engine: %w", err)
	}
	if err := tb.expandGroups(); err != nil {
		return err
	}
	if len(tb.Nodes) == 0 {
		return fmt.Errorf("nodes: at least one node is required")
	}
	seen := map[string]int{}
	addrs := map[string]string{}
	for i := range tb.Nodes {
		n := &tb.Nodes[i]
		f := tb.nodeField(i)
		if !nameRE.MatchString(n.Name) || len(n.Name) > 63 {
			return fmt.Errorf("%s.name: %q is not a valid node name (lower-case letters, digits and '-')", f, n.Name)
		}
		if j, dup := seen[n.Name]; dup {
			return fmt.Errorf("%s.name: duplicate node name %q (also %s)", f, n.Name, tb.nodeField(j))
		}
		seen[n.Name] = i
		if n.Group != "" {
			if !nameRE.MatchString(n.Group) || len(n.Group) > 63 {
				return fmt.Errorf("%s.group: %q is not a valid group name (lower-case letters, digits and '-')", f, n.Group)
			}
			if n.Role == "" {
				if g, ok := tb.group(n.Group); ok {
					n.Role = g.Role
				}
			}
		}
		switch n.Role {
		case RoleEdge, RoleCloud:
		case "":
			n.Role = RoleCloud
		default:
			return fmt.Errorf("%s.role: %q is neither %q nor %q", f, n.Role, RoleEdge, RoleCloud)
		}
		if n.Capacity < 0 {
			return fmt.Errorf("%s.capacity: must not be negative, got %d", f, n.Capacity)
		}
		if n.Speed == 0 {
			n.Speed = 1
		}
		if !(n.Speed > 0 && n.Speed <= MaxSpeed) {
			return fmt.Errorf("%s.speed: must be a positive number up to %d, got %v", f, MaxSpeed, n.Speed)
		}
		if n.Address == "" {
			// 127.77.0.x: away from 127.0.0.1, which other programs use.
			n.Address = fmt.Sprintf("127.77.0.%d", i+10)
		}
		ip, err := netip.ParseAddr(n.Address)
		if err != nil || !ip.Is4() || !ip.IsLoopback() {
			return fmt.Errorf("%s.address: %q is not an IPv4 loopback address (127.0.0.0/8)", f, n.Address)
		}
		if other, dup := addrs[n.Address]; dup {
			return fmt.Errorf("%s.address: %s is also node %q's address", f, n.Address, other)
		}
		addrs[n.Address] = n.Name
	}
	if err := tb.expandLinks(); err != nil {
		return err
	}
	for image, cmd := range tb.Images {
		if len(cmd) == 0 || cmd[0] == "" {
			return fmt.Errorf("images[%q]: command must not be empty", image)
		}
	}
	return nil
}

func pairKey(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Node returns the node with that name.
func (tb *Testbed) Node(name string) (Node, bool) {
	for _, n := range tb.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// NodeNames returns the node names in file order.
func (tb *Testbed) NodeNames() []string {
	out := make([]string, len(tb.Nodes))
	for i, n := range tb.Nodes {
		out[i] = n.Name
	}
	return out
}

// LinkBetween returns the configured link between two nodes; a node to
// itself is a zero link.
func (tb *Testbed) LinkBetween(a, b string) (Link, bool) {
	if a == b {
		return Link{A: a, B: b}, true
	}
	k := pairKey(a, b)
	if i, ok := tb.linkIndex[k]; ok && i < len(tb.Links) && pairKey(tb.Links[i].A, tb.Links[i].B) == k {
		return tb.Links[i], true
	}
	for _, l := range tb.Links {
		if pairKey(l.A, l.B) == k {
			return l, true
		}
	}
	return Link{}, false
}

// Command returns the command that runs an image, and whether the testbed
// maps it. Exact matches win over prefix patterns; longer prefixes win.
func (tb *Testbed) Command(image string) ([]string, bool) {
	if cmd, ok := tb.Images[image]; ok {
		return cmd, true
	}
	var best string
	for pat := range tb.Images {
		if p, ok := strings.CutSuffix(pat, "*"); ok && strings.HasPrefix(image, p) && len(p) >= len(best) {
			best = pat
		}
	}
	if best != "" {
		return tb.Images[best], true
	}
	return nil, false
}

// SortedImages lists mapped images, for stable output.
func (tb *Testbed) SortedImages() []string {
	out := make([]string, 0, len(tb.Images))
	for k := range tb.Images {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Duration is a time.Duration written as "50ms" in files.
type Duration time.Duration

// D returns the standard library value.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"50ms\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Bandwidth is a rate in bits per second, written as "100Mbit", "1Gbit",
// "500kbit" or a plain number of bits per second.
type Bandwidth float64

// BytesPerSecond converts for the link emulator.
func (b Bandwidth) BytesPerSecond() float64 { return float64(b) / 8 }

func (b Bandwidth) String() string {
	switch {
	case b >= 1e9 && math.Mod(float64(b), 1e9) == 0:
		return fmt.Sprintf("%gGbit", float64(b)/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%gMbit", float64(b)/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%gkbit", float64(b)/1e3)
	}
	return fmt.Sprintf("%gbit", float64(b))
}

func (b Bandwidth) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

func (b *Bandwidth) UnmarshalJSON(data []byte) error {
	var n float64
	if err := json.Unmarshal(data, &n); err == nil {
		*b = Bandwidth(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("bandwidth must be like \"100Mbit\", got %s", data)
	}
	v, err := ParseBandwidth(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// ParseBandwidth reads "100Mbit", "1.5Gbit", "640kbit" or "1000" (bit/s).
func ParseBandwidth(s string) (Bandwidth, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	t = strings.TrimSuffix(t, "/s")
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = v, u.m
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("invalid bandwidth %q (want e.g. \"100Mbit\")", s)
	}
	return Bandwidth(v * mult), nil
}
