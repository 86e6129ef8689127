// Package scenario defines the benchmark scenario files under
// bench/scenarios: the fleet, the functions, where gateways and replicas run,
// the load per function and origin node, how long to run, which policies to
// compare and which targets to check. Loading validates everything, and
// errors name the file and the field.
//
// A file describes its functions in one of two forms, loaded into the same
// Scenario.Functions:
//
//	function: {processing: …}         # one function; replicas: and load:
//	replicas: {fixed: …}              # at the top level (the original form)
//	load: [{origin: node3, …}]
//
//	functions:                        # several functions, each with its own
//	- name: light                     # replicas: and load:
//	  processing: {…}
//	  replicas: {fixed: …}
//	  load: [{origin: node3, …}]
package scenario

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"kantai.dev/kantai/internal/testbed"
)

// Policy names the benchmark knows how to compare.
const (
	PolicyKnative    = "knative"
	PolicyRoundRobin = "round-robin"
	PolicyLocalFirst = "local-first"
	PolicyFaast      = "faast"
	PolicyKantai     = "kantai"
	// Oracle is the reserved baseline name for the oracle distribution.
	Oracle = "oracle"
)

// Load kinds.
const (
	// KindClosed is closed-loop users with a think time (Locust-like).
	KindClosed = "closed"
	// KindOpen is an open-loop Poisson arrival process at a rate.
	KindOpen = "open"
	// KindConcurrency is fixed concurrency with no think time (hey-like).
	KindConcurrency = "concurrency"
)

// Check kinds. Each compares policy.metric with baseline.metric.
const (
	// CheckAtMost passes when policy ≤ factor × baseline.
	CheckAtMost = "atMost"
	// CheckAtLeast passes when policy ≥ factor × baseline.
	CheckAtLeast = "atLeast"
	// CheckFasterBy passes when baseline ≥ factor × policy, i.e. the policy's
	// value is at least factor times lower.
	CheckFasterBy = "fasterBy"
)

// OriginEach in a check's origin evaluates the check for every origin node
// separately.
const OriginEach = "each"

// Defaults used when a file leaves a field out.
const (
	DefaultFunctionName   = "hello"
	DefaultNamespace      = "default"
	DefaultImage          = "docker.io/bonavadeur/shuka:v1.0"
	DefaultPath           = "/"
	DefaultWorkers        = 8
	DefaultMaxOutstanding = 1000
	DefaultDrain          = 5 * time.Second
	DefaultQuickDuration  = 20 * time.Second
	DefaultQuickWarmup    = 2 * time.Second
	DefaultAutoscaleTgt   = 10
	DefaultAutoscaleWin   = 60 * time.Second
)

// Scenario is one benchmark: a file, or one cell of a file's sweep.
type Scenario struct {
	// Name identifies the scenario in tables and file names; defaults to the
	// file name without extension. A sweep cell appends its variant.
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	// Testbed is the fleet, decoded from the file's inline `testbed:` block in
	// the internal/testbed format, with EdgeCloud applied.
	Testbed *testbed.Testbed `json:"-"`
	// EdgeCloud, when set, overrides latency and jitter of every link
	// between an edge node and a cloud node.
	EdgeCloud *LinkOverride `json:"edgeCloud,omitempty"`
	// Functions are deployed side by side, each with its own replicas and
	// load. A file's one-function form (function:, replicas:, load:) loads
	// as a list of one.
	Functions []Function `json:"functions"`
	// Gateway is where users' requests enter, unless a policy overrides it:
	// "per-node" (every node's own gateway) or {central: <node>}.
	Gateway Gateway `json:"gateway"`
	// Duration is the measured window, after Warmup.
	Duration testbed.Duration `json:"duration"`
	// Warmup runs the load before the measured window; its requests are
	// not in the statistics.
	Warmup testbed.Duration `json:"warmup,omitempty"`
	// Drain bounds how long requests still in flight at the end of the
	// window may take before they are cut and counted as errors. Default 5s.
	Drain testbed.Duration `json:"drain,omitempty"`
	// Quick replaces Duration and Warmup for a --quick run. Default 20s/2s
	// (never longer than the full run).
	Quick *Quick `json:"quick,omitempty"`
	// Sweep expands the file into one cell per value.
	Sweep *Sweep `json:"sweep,omitempty"`
	// Policies to compare; the first is the baseline of every ratio.
	Policies []Policy `json:"policies"`
	Checks   []Check  `json:"checks,omitempty"`
	// Events change the network during the measured window (events.go).
	Events []Event `json:"events,omitempty"`

	// File is where the scenario was read from.
	File string `json:"-"`
	// Variant names the sweep value of a cell, e.g. "users=80".
	Variant string `json:"-"`
	// oneFunction records that the file used the one-function form, so that
	// errors name its fields as written (function.…, replicas.…, load[0].…).
	oneFunction bool
}

// LinkOverride sets a link's latency (mean RTT) and jitter (std. dev.).
type LinkOverride struct {
	Latency testbed.Duration `json:"latency"`
	Jitter  testbed.Duration `json:"jitter,omitempty"`
}

// Function is one function under test, with its replicas and its load.
type Function struct {
	// Name and Namespace give the host hello.default.<domain>. Defaults
	// "hello" and "default"; with several functions each needs its own name.
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Image is the container image; the testbed's images map decides what
	// runs it. Default: the paper's function image.
	Image string `json:"image,omitempty"`
	// Path is the request path users send. Default "/".
	Path string `json:"path,omitempty"`
	// Processing is the service time distribution on a node of speed 1.
	Processing Processing `json:"processing"`
	// Workers is the number of requests one replica handles in parallel
	// (the paper: gunicorn 1 worker × 8 threads). Default 8.
	Workers int `json:"workers,omitempty"`
	// ContainerConcurrency caps in-flight requests per replica at the
	// gateway, as in Knative; 0 means unlimited.
	ContainerConcurrency int `json:"containerConcurrency,omitempty"`
	// Replicas fixes this function's replicas per node or autoscales them.
	// In the one-function form it is the file's top-level replicas:.
	Replicas Replicas `json:"replicas"`
	// Load is the traffic its users send, per origin node. In the
	// one-function form it is the file's top-level load:.
	Load []Load `json:"load"`
}

// Processing distributions.
const (
	DistConstant    = "constant"
	DistUniform     = "uniform"
	DistNormal      = "normal"
	DistExponential = "exponential"
)

// Processing is a service-time distribution. Which fields apply depends on
// the distribution: constant uses Mean; uniform uses Min and Max; normal
// uses Mean and StdDev (clamped at Min, default 0); exponential uses Mean.
type Processing struct {
	Distribution string           `json:"distribution"`
	Min          testbed.Duration `json:"min,omitempty"`
	Max          testbed.Duration `json:"max,omitempty"`
	Mean         testbed.Duration `json:"mean,omitempty"`
	StdDev       testbed.Duration `json:"stddev,omitempty"`
}

// Sample draws one service time.
func (p Processing) Sample(rng *rand.Rand) time.Duration {
	switch p.Distribution {
	case DistUniform:
		lo, hi := p.Min.D(), p.Max.D()
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	case DistNormal:
		v := time.Duration(rng.NormFloat64()*float64(p.StdDev) + float64(p.Mean))
		return max(v, p.Min.D())
	case DistExponential:
		return time.Duration(rng.ExpFloat64() * float64(p.Mean))
	}
	return p.Mean.D()
}

// Expected returns the distribution's mean (for normal, ignoring the clamp).
func (p Processing) Expected() time.Duration {
	if p.Distribution == DistUniform {
		return (p.Min.D() + p.Max.D()) / 2
	}
	return p.Mean.D()
}

func (p Processing) String() string {
	switch p.Distribution {
	case DistUniform:
		return fmt.Sprintf("uniform %v–%v", p.Min, p.Max)
	case DistNormal:
		return fmt.Sprintf("normal %v±%v", p.Mean, p.StdDev)
	case DistExponential:
		return fmt.Sprintf("exponential mean %v", p.Mean)
	}
	return fmt.Sprintf("constant %v", p.Mean)
}

// Gateway says where users' requests enter the platform. The zero value is
// a gateway on every node (users hit their own node's gateway).
type Gateway struct {
	// Central names the single node whose gateway every user hits.
	Central string `json:"central,omitempty"`
}

// PerNode reports whether every node runs its own gateway.
func (g Gateway) PerNode() bool { return g.Central == "" }

// EntryNode returns the node whose gateway users at origin hit.
func (g Gateway) EntryNode(origin string) string {
	if g.Central != "" {
		return g.Central
	}
	return origin
}

func (g Gateway) String() string {
	if g.Central == "" {
		return "per-node"
	}
	return "central:" + g.Central
}

// MarshalJSON writes "per-node" or {"central": node}.
func (g Gateway) MarshalJSON() ([]byte, error) {
	if g.Central == "" {
		return json.Marshal("per-node")
	}
	return json.Marshal(map[string]string{"central": g.Central})
}

// UnmarshalJSON reads "per-node", "central:<node>" or {central: <node>}.
func (g *Gateway) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		switch {
		case s == "per-node":
			*g = Gateway{}
			return nil
		case strings.HasPrefix(s, "central:"):
			*g = Gateway{Central: strings.TrimSpace(strings.TrimPrefix(s, "central:"))}
			return nil
		}
		return fmt.Errorf("gateway must be \"per-node\" or {central: <node>}, got %q", s)
	}
	var obj struct {
		Central string `json:"central"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&obj); err != nil {
		return fmt.Errorf("gateway must be \"per-node\" or {central: <node>}: %w", err)
	}
	if obj.Central == "" {
		return fmt.Errorf("gateway.central: node name required")
	}
	*g = Gateway{Central: obj.Central}
	return nil
}

// Replicas fixes the replica set or lets the autoscaler run. Exactly one of
// the two is given.
type Replicas struct {
	// Fixed maps node → replicas, with autoscaling off. Nodes left out run
	// none.
	Fixed map[string]int `json:"fixed,omitempty"`
	// Autoscale turns the autoscaler on with these bounds.
	Autoscale *Autoscale `json:"autoscale,omitempty"`
}

// Autoscale holds Knative-style autoscaling settings for the function.
type Autoscale struct {
	// MinScale and MaxScale bound the total number of replicas; MaxScale 0
	// means the fleet's total capacity.
	MinScale int `json:"minScale,omitempty"`
	MaxScale int `json:"maxScale,omitempty"`
	// Target is the in-flight requests per replica the autoscaler aims for.
	// Default 10 (the paper's setting).
	Target float64 `json:"target,omitempty"`
	// Window is the stable averaging window. Default 60s.
	Window testbed.Duration `json:"window,omitempty"`
}

// Nodes returns the nodes that can run the function's replicas, in testbed
// order: nodes with a fixed count above zero, or every node with capacity
// when autoscaled.
func (f *Function) Nodes(tb *testbed.Testbed) []string {
	var out []string
	for _, n := range tb.Nodes {
		if f.Replicas.Autoscale != nil {
			if n.Capacity > 0 {
				out = append(out, n.Name)
			}
		} else if f.Replicas.Fixed[n.Name] > 0 {
			out = append(out, n.Name)
		}
	}
	return out
}

// Origins returns the distinct origin nodes of the function's load, in order.
func (f *Function) Origins() []string {
	var out []string
	for _, l := range f.Load {
		if !slices.Contains(out, l.Origin) {
			out = append(out, l.Origin)
		}
	}
	return out
}

// Nodes returns the nodes that can run a replica of any function, in testbed
// order.
func (s *Scenario) Nodes() []string {
	var out []string
	for _, n := range s.Testbed.Nodes {
		for i := range s.Functions {
			if slices.Contains(s.Functions[i].Nodes(s.Testbed), n.Name) {
				out = append(out, n.Name)
				break
			}
		}
	}
	return out
}

// FunctionNames returns the functions' names, in order.
func (s *Scenario) FunctionNames() []string {
	out := make([]string, len(s.Functions))
	for i, f := range s.Functions {
		out[i] = f.Name
	}
	return out
}

// Function returns the function with this name.
func (s *Scenario) Function(name string) (*Function, bool) {
	for i := range s.Functions {
		if s.Functions[i].Name == name {
			return &s.Functions[i], true
		}
	}
	return nil, false
}

// Autoscaled reports whether any function's replicas are autoscaled.
func (s *Scenario) Autoscaled() bool {
	return slices.ContainsFunc(s.Functions, func(f Function) bool { return f.Replicas.Autoscale != nil })
}

// FunctionField names function i as the file wrote it, for error messages:
// "function" in the one-function form, "functions[i]" otherwise.
func (s *Scenario) FunctionField(i int) string {
	if s.oneFunction {
		return "function"
	}
	return fmt.Sprintf("functions[%d]", i)
}

// ReplicasField names function i's replicas as the file wrote them:
// "replicas" in the one-function form, "functions[i].replicas" otherwise.
func (s *Scenario) ReplicasField(i int) string {
	if s.oneFunction {
		return "replicas"
	}
	return s.FunctionField(i) + ".replicas"
}

// LoadField names function i's load as the file wrote it: "load" in the
// one-function form, "functions[i].load" otherwise.
func (s *Scenario) LoadField(i int) string {
	if s.oneFunction {
		return "load"
	}
	return s.FunctionField(i) + ".load"
}

// Load is the traffic sent from users at one node.
type Load struct {
	// Origin is the node the users sit on.
	Origin string `json:"origin"`
	// Kind is closed, open or concurrency.
	Kind string `json:"kind"`
	// Users is the number of closed-loop users, or the fixed concurrency.
	Users int `json:"users,omitempty"`
	// ThinkTime is the pause after each response (closed loop only).
	ThinkTime testbed.Duration `json:"thinkTime,omitempty"`
	// Rate is the mean arrival rate in requests per second (open loop).
	Rate float64 `json:"rate,omitempty"`
	// MaxOutstanding bounds in-flight requests of an open loop; arrivals
	// beyond it are counted as errors. Default 1000.
	MaxOutstanding int `json:"maxOutstanding,omitempty"`
	// NewConnection opens a new connection per request instead of keeping
	// connections alive.
	NewConnection bool `json:"newConnection,omitempty"`
}

// Quick holds the --quick durations.
type Quick struct {
	Duration testbed.Duration `json:"duration"`
	Warmup   testbed.Duration `json:"warmup,omitempty"`
}

// Sweep expands a scenario into cells. Users replaces the users of every
// closed and concurrency load of every function.
type Sweep struct {
	Users []int `json:"users"`
}

// Policy is one compared policy.
type Policy struct {
	Name string `json:"name"`
	// Gateway overrides the scenario's gateway placement for this policy,
	// e.g. knative's single central gateway.
	Gateway *Gateway `json:"gateway,omitempty"`
}

// UnmarshalJSON accepts a bare name or {name, gateway}.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*p = Policy{Name: s}
		return nil
	}
	type plain Policy
	var v plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("policy must be a name or {name, gateway}: %w", err)
	}
	*p = Policy(v)
	return nil
}

// GatewayFor returns where a policy's users enter.
func (s *Scenario) GatewayFor(p Policy) Gateway {
	if p.Gateway != nil {
		return *p.Gateway
	}
	return s.Gateway
}

// Baseline returns the first policy's name.
func (s *Scenario) Baseline() string {
	if len(s.Policies) == 0 {
		return ""
	}
	return s.Policies[0].Name
}

// Check is a declarative target: compare Policy's Metric with Baseline's,
// scaled by Factor, according to Kind.
type Check struct {
	// Name is a free label shown in reports.
	Name   string `json:"name,omitempty"`
	Kind   string `json:"kind"`
	Policy string `json:"policy"`
	// Baseline is a policy name or "oracle"; default: the first policy.
	Baseline string  `json:"baseline,omitempty"`
	Metric   string  `json:"metric"`
	Factor   float64 `json:"factor"`
	// Origin restricts the check to requests from one node, or "each" for
	// one result per origin node; empty means all requests.
	Origin string `json:"origin,omitempty"`
	// Function restricts the check to one function's requests, compared
	// with that function's own oracle; empty means every function's.
	Function string `json:"function,omitempty"`
}

func (c Check) String() string {
	if c.Name != "" {
		return c.Name
	}
	var rel string
	switch c.Kind {
	case CheckAtMost:
		rel = fmt.Sprintf("%s %s ≤ %g× %s", c.Policy, c.Metric, c.Factor, c.Baseline)
	case CheckAtLeast:
		rel = fmt.Sprintf("%s %s ≥ %g× %s", c.Policy, c.Metric, c.Factor, c.Baseline)
	case CheckFasterBy:
		rel = fmt.Sprintf("%s %s ≥ %g× lower than %s", c.Policy, c.Metric, c.Factor, c.Baseline)
	default:
		rel = fmt.Sprintf("%s %s %s %g %s", c.Policy, c.Metric, c.Kind, c.Factor, c.Baseline)
	}
	var scope []string
	if c.Function != "" {
		scope = append(scope, "function "+c.Function)
	}
	if c.Origin != "" {
		scope = append(scope, "origin "+c.Origin)
	}
	if len(scope) > 0 {
		rel += " (" + strings.Join(scope, ", ") + ")"
	}
	return rel
}

// Origins returns the distinct origin nodes of every function's load, in
// order.
func (s *Scenario) Origins() []string {
	var out []string
	for i := range s.Functions {
		for _, o := range s.Functions[i].Origins() {
			if !slices.Contains(out, o) {
				out = append(out, o)
			}
		}
	}
	return out
}

// Cells expands the scenario into the runs to make: itself, or one copy per
// sweep value. With quick, the quick durations replace the full ones.
func (s *Scenario) Cells(quick bool) []*Scenario {
	base := *s
	base.Sweep = nil
	if quick && s.Quick != nil {
		base.Duration, base.Warmup = s.Quick.Duration, s.Quick.Warmup
		base.Events = scaleEvents(s.Events, s.Duration.D(), s.Quick.Duration.D())
	}
	if s.Sweep == nil || len(s.Sweep.Users) == 0 {
		c := base
		return []*Scenario{&c}
	}
	out := make([]*Scenario, 0, len(s.Sweep.Users))
	for _, u := range s.Sweep.Users {
		c := base
		c.Variant = fmt.Sprintf("users=%d", u)
		c.Name = fmt.Sprintf("%s-u%d", s.Name, u)
		c.Functions = slices.Clone(s.Functions)
		for i := range c.Functions {
			f := &c.Functions[i]
			f.Load = slices.Clone(f.Load)
			for j := range f.Load {
				if f.Load[j].Kind != KindOpen {
					f.Load[j].Users = u
				}
			}
		}
		out = append(out, &c)
	}
	return out
}

// applyEdgeCloud overrides latency and jitter of edge–cloud links.
func applyEdgeCloud(tb *testbed.Testbed, o LinkOverride) int {
	role := map[string]string{}
	for _, n := range tb.Nodes {
		role[n.Name] = n.Role
	}
	changed := 0
	for i := range tb.Links {
		l := &tb.Links[i]
		if role[l.A] != role[l.B] {
			l.Latency, l.Jitter = o.Latency, o.Jitter
			changed++
		}
	}
	return changed
}

func positiveFinite(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }
