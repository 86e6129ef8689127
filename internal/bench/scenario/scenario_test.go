package scenario

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kantai.dev/kantai/internal/testbed"
)

const valid = `
name: t
testbed:
  nodes:
  - {name: node1, role: cloud, capacity: 4}
  - {name: node3, role: edge, capacity: 2}
  links:
  - {a: node1, b: node3, latency: 50ms, jitter: 20ms}
function:
  processing: {distribution: uniform, min: 3ms, max: 5ms}
gateway: per-node
replicas:
  fixed: {node1: 1, node3: 1}
load:
- {origin: node3, kind: closed, users: 10, thinkTime: 100ms}
duration: 300s
warmup: 10s
policies:
- {name: knative, gateway: {central: node1}}
- kantai
checks:
- {kind: fasterBy, policy: kantai, metric: p50, factor: 10}
- {kind: atMost, policy: kantai, baseline: oracle, metric: p95, factor: 1.15, origin: each}
`

func TestParse_defaults(t *testing.T) {
	s, err := Parse([]byte(valid), "x.yaml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	if len(s.Functions) != 1 {
		t.Fatalf("%d functions, want the one-function form as one", len(s.Functions))
	}
	f := s.Functions[0]
	if f.Name != "hello" || f.Namespace != "default" || f.Image != DefaultImage || f.Path != "/" || f.Workers != 8 {
		t.Errorf("function defaults = %+v", f)
	}
	if s.Drain.D() != DefaultDrain {
		t.Errorf("drain = %v, want %v", s.Drain, DefaultDrain)
	}
	if s.Quick == nil || s.Quick.Duration.D() != 20*time.Second || s.Quick.Warmup.D() != 2*time.Second {
		t.Errorf("quick = %+v, want 20s/2s", s.Quick)
	}
	if s.Checks[0].Baseline != "knative" {
		t.Errorf("checks[0].baseline = %q, want the first policy", s.Checks[0].Baseline)
	}
	if got := s.GatewayFor(s.Policies[0]); got.Central != "node1" || got.EntryNode("node3") != "node1" {
		t.Errorf("knative gateway = %v, want central:node1", got)
	}
	if got := s.GatewayFor(s.Policies[1]); !got.PerNode() || got.EntryNode("node3") != "node3" {
		t.Errorf("kantai gateway = %v, want per-node", got)
	}
	if got := s.Nodes(); strings.Join(got, ",") != "node1,node3" {
		t.Errorf("Nodes() = %v", got)
	}
	if s.Baseline() != "knative" {
		t.Errorf("Baseline() = %q", s.Baseline())
	}
}

func TestParse_errors(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string
		want    string
	}{
		{"unknown field", [2]string{"warmup: 10s", "warmup: 10s\nwarmpu: 1s"}, "warmpu"},
		{"testbed invalid", [2]string{"b: node3, latency", "b: node9, latency"}, "testbed: links[0].b"},
		{"unknown origin", [2]string{"origin: node3", "origin: node7"}, "load[0].origin"},
		{"unknown kind", [2]string{"kind: closed", "kind: burst"}, "load[0].kind"},
		{"open without rate", [2]string{"kind: closed, users: 10, thinkTime: 100ms", "kind: open"}, "load[0].rate"},
		{"users on open", [2]string{"kind: closed", "kind: open, rate: 5"}, "load[0]: users"},
		{"think time on concurrency", [2]string{"kind: closed", "kind: concurrency"}, "load[0].thinkTime"},
		{"no users", [2]string{"users: 10", "users: 0"}, "load[0].users"},
		{"replica on unknown node", [2]string{"node3: 1}", "node9: 1}"}, "replicas.fixed.node9"},
		{"replicas above capacity", [2]string{"node3: 1}", "node3: 3}"}, "replicas.fixed.node3"},
		{"no replicas", [2]string{"fixed: {node1: 1, node3: 1}", "fixed: {node1: 0}"}, "replicas.fixed"},
		{"both replica modes", [2]string{"fixed: {node1: 1, node3: 1}", "fixed: {node1: 1}\n  autoscale: {}"}, "replicas:"},
		{"central gateway unknown", [2]string{"gateway: per-node", "gateway: {central: node5}"}, "gateway.central"},
		{"bad gateway", [2]string{"gateway: per-node", "gateway: everywhere"}, "gateway"},
		{"policy gateway unknown", [2]string{"central: node1}}", "central: node8}}"}, "policies[0].gateway.central"},
		{"unknown policy", [2]string{"- kantai", "- kantaii"}, "policies[1].name"},
		{"duplicate policy", [2]string{"- kantai", "- knative"}, "policies[1].name"},
		{"oracle as policy", [2]string{"- kantai", "- oracle"}, "policies[1].name"},
		{"no duration", [2]string{"duration: 300s", ""}, "duration"},
		{"bad duration", [2]string{"duration: 300s", "duration: 5 minutes"}, "duration"},
		{"processing", [2]string{"min: 3ms, max: 5ms", "min: 5ms, max: 3ms"}, "function.processing.max"},
		{"distribution", [2]string{"distribution: uniform", "distribution: pareto"}, "function.processing.distribution"},
		{"check kind", [2]string{"kind: fasterBy", "kind: quicker"}, "checks[0].kind"},
		{"check policy", [2]string{"policy: kantai, metric: p50", "policy: faast, metric: p50"}, "checks[0].policy"},
		{"check metric", [2]string{"metric: p50", "metric: p42"}, "checks[0].metric"},
		{"check factor", [2]string{"factor: 10", "factor: 0"}, "checks[0].factor"},
		{"check origin", [2]string{"origin: each", "origin: node1"}, "checks[1].origin"},
		{"oracle count", [2]string{"metric: p95", "metric: completed"}, "checks[1].metric"},
		{"self baseline", [2]string{"policy: kantai, metric: p50", "policy: knative, metric: p50"}, "checks[0].baseline"},
		{"bad name", [2]string{"name: t", "name: T T"}, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := strings.Replace(valid, tt.replace[0], tt.replace[1], 1)
			if data == valid {
				t.Fatalf("replacement %q not found", tt.replace[0])
			}
			_, err := Parse([]byte(data), "bench/x.yaml")
			if err == nil {
				t.Fatalf("Parse() error = nil, want one naming %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), "bench/x.yaml: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse() error = %q, want the file and %q", err, tt.want)
			}
		})
	}
}

func TestParse_noTestbed(t *testing.T) {
	data := valid[strings.Index(valid, "function:"):]
	if _, err := Parse([]byte(data), "f.yaml"); err == nil || !strings.Contains(err.Error(), "f.yaml: testbed") {
		t.Errorf("Parse() error = %v, want f.yaml: testbed", err)
	}
}

func TestParse_edgeCloudOverride(t *testing.T) {
	data := strings.Replace(valid, "function:", "edgeCloud: {latency: 100ms, jitter: 10ms}\nfunction:", 1)
	s, err := Parse([]byte(data), "x.yaml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	l, _ := s.Testbed.LinkBetween("node1", "node3")
	if l.Latency.D() != 100*time.Millisecond || l.Jitter.D() != 10*time.Millisecond {
		t.Errorf("edge–cloud link = %v±%v, want 100ms±10ms", l.Latency, l.Jitter)
	}
}

func TestParse_autoscaleDefaults(t *testing.T) {
	data := strings.Replace(valid, "fixed: {node1: 1, node3: 1}", "autoscale: {minScale: 1}", 1)
	s, err := Parse([]byte(data), "x.yaml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	a := s.Functions[0].Replicas.Autoscale
	if a.MaxScale != 6 || a.Target != 10 || a.Window.D() != time.Minute {
		t.Errorf("autoscale = %+v, want maxScale 6 (capacity), target 10, window 1m", a)
	}
	if got := strings.Join(s.Nodes(), ","); got != "node1,node3" {
		t.Errorf("Nodes() = %q, want every node with capacity", got)
	}
}

func TestScenario_Cells(t *testing.T) {
	data := strings.Replace(valid, "duration: 300s", "duration: 300s\nsweep: {users: [50, 80]}\nquick: {duration: 5s, warmup: 1s}", 1)
	data = strings.Replace(data, "- {origin: node3, kind: closed, users: 10, thinkTime: 100ms}",
		"- {origin: node3, kind: closed, thinkTime: 100ms}\n- {origin: node1, kind: open, rate: 3}", 1)
	s, err := Parse([]byte(data), "x.yaml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	cells := s.Cells(true)
	if len(cells) != 2 {
		t.Fatalf("Cells() = %d cells, want 2", len(cells))
	}
	for i, u := range []int{50, 80} {
		c := cells[i]
		if l := c.Functions[0].Load; l[0].Users != u || l[1].Rate != 3 || l[1].Users != 0 {
			t.Errorf("cell %d load = %+v, want closed users %d and the open load unchanged", i, l, u)
		}
		if c.Duration.D() != 5*time.Second || c.Warmup.D() != time.Second || c.Sweep != nil {
			t.Errorf("cell %d = %v after %v, sweep %v; want the quick durations and no sweep", i, c.Duration, c.Warmup, c.Sweep)
		}
	}
	if cells[0].Name != "t-u50" || cells[0].Variant != "users=50" {
		t.Errorf("cell name = %q (%q), want t-u50 (users=50)", cells[0].Name, cells[0].Variant)
	}
	if s.Functions[0].Load[0].Users != 0 {
		t.Error("Cells() changed the scenario's own load")
	}
	if full := s.Cells(false); full[0].Duration.D() != 300*time.Second {
		t.Errorf("full cell duration = %v, want 300s", full[0].Duration)
	}
	if got := TotalTime([]*Scenario{s}, true); got != 2*2*6*time.Second {
		t.Errorf("TotalTime() = %v, want 24s", got)
	}
}

func TestProcessing_Sample(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	u := Processing{Distribution: DistUniform, Min: testbed.Duration(3 * time.Millisecond), Max: testbed.Duration(5 * time.Millisecond)}
	var sum time.Duration
	for range 10000 {
		v := u.Sample(rng)
		if v < 3*time.Millisecond || v > 5*time.Millisecond {
			t.Fatalf("uniform sample %v outside 3–5 ms", v)
		}
		sum += v
	}
	if mean := sum / 10000; mean < 3900*time.Microsecond || mean > 4100*time.Microsecond || u.Expected() != 4*time.Millisecond {
		t.Errorf("uniform mean = %v, expected %v; want 4 ms", mean, u.Expected())
	}
	c := Processing{Distribution: DistConstant, Mean: testbed.Duration(time.Millisecond)}
	if c.Sample(rng) != time.Millisecond {
		t.Error("constant sample differs from its mean")
	}
	n := Processing{Distribution: DistNormal, Mean: testbed.Duration(time.Millisecond), StdDev: testbed.Duration(5 * time.Millisecond)}
	for range 1000 {
		if n.Sample(rng) < 0 {
			t.Fatal("normal sample below its minimum 0")
		}
	}
}

// localBaseline lists the shipped scenarios whose baseline is local-first.
var localBaseline = map[string]bool{"hetero-speed": true, "two-functions": true}

// TestShipped loads every scenario file in bench/scenarios.
func TestShipped(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(self), "..", "..", "..", "bench", "scenarios")
	all, err := ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir() error = %v", err)
	}
	names := map[string]*Scenario{}
	for _, s := range all {
		names[s.Name] = s
		if len(s.Checks) == 0 && s.Name != "ci-smoke" {
			t.Errorf("%s has no checks", s.Name)
		}
		// The paper's comparisons divide by knative; the node-speed
		// scenarios divide by staying local, the choice they question.
		want := PolicyKnative
		if localBaseline[s.Name] {
			want = PolicyLocalFirst
		}
		if s.Baseline() != want {
			t.Errorf("%s: baseline %q, want %s", s.Name, s.Baseline(), want)
		}
		if s.Name != "ci-smoke" && !s.hasPolicy(PolicyKnative) {
			t.Errorf("%s: knative is not among the policies", s.Name)
		}
		for _, c := range s.Cells(true) {
			if c.Duration.D() > 20*time.Second {
				t.Errorf("%s: quick duration %v above 20s", c.Name, c.Duration)
			}
		}
	}
	for _, want := range []string{"grid-10u-50ms", "grid-10u-100ms", "grid-50u-50ms", "grid-50u-100ms", "overload", "every-node", "placement-loop", "ci-smoke"} {
		if names[want] == nil {
			t.Errorf("scenario %s not shipped", want)
		}
	}
	if s := names["ci-smoke"]; s != nil && (s.Duration.D()+s.Warmup.D() > 6*time.Second) {
		t.Errorf("ci-smoke runs %v per policy, want about 5s", s.Duration.D()+s.Warmup.D())
	}
	if s := names["overload"]; s != nil && len(s.Cells(false)) != 6 {
		t.Errorf("overload has %d cells, want 6", len(s.Cells(false)))
	}
	sel, err := Select(all, []string{"overload", "ci-smoke"})
	if err != nil || len(sel) != 2 || sel[0].Name != "overload" {
		t.Errorf("Select() = %v, %v", sel, err)
	}
	if _, err := Select(all, []string{"nope"}); err == nil {
		t.Error("Select(unknown) error = nil")
	}
}

// multi is valid in the list form: two functions with their own
// processing, replicas and load.
const multi = `
name: m
testbed:
  nodes:
  - {name: node1, role: cloud, capacity: 4}
  - {name: node2, role: cloud, capacity: 4}
  - {name: node3, role: edge, capacity: 2, speed: 2}
  links:
  - {a: node1, b: node2, latency: 1ms}
  - {a: node1, b: node3, latency: 50ms, jitter: 5ms}
  - {a: node2, b: node3, latency: 50ms, jitter: 5ms}
functions:
- name: light
  processing: {distribution: constant, mean: 3ms}
  replicas:
    fixed: {node1: 1, node3: 1}
  load:
  - {origin: node3, kind: closed, users: 4, thinkTime: 100ms}
- name: heavy
  processing: {distribution: constant, mean: 80ms}
  workers: 2
  containerConcurrency: 2
  replicas:
    autoscale: {minScale: 1}
  load:
  - {origin: node3, kind: closed, users: 4, thinkTime: 100ms}
  - {origin: node1, kind: open, rate: 5}
duration: 60s
policies:
- local-first
- kantai
checks:
- {kind: atMost, policy: kantai, baseline: oracle, metric: mean, factor: 1.15, function: heavy, origin: node1}
- {kind: atMost, policy: kantai, metric: mean, factor: 1, origin: node3}
`

// TestParse_forms loads the one-function form and the list form into the
// same representation.
func TestParse_forms(t *testing.T) {
	ms := func(n int) testbed.Duration { return testbed.Duration(time.Duration(n) * time.Millisecond) }
	tests := []struct {
		name string
		data string
		want []Function
	}{{
		name: "one-function form",
		data: valid,
		want: []Function{{Name: "hello", Namespace: "default", Image: DefaultImage, Path: "/", Workers: 8,
			Processing: Processing{Distribution: DistUniform, Min: ms(3), Max: ms(5)},
			Replicas:   Replicas{Fixed: map[string]int{"node1": 1, "node3": 1}},
			Load:       []Load{{Origin: "node3", Kind: KindClosed, Users: 10, ThinkTime: ms(100)}}}},
	}, {
		name: "one function in the list form",
		data: strings.Replace(valid, valid[strings.Index(valid, "function:"):strings.Index(valid, "duration:")], `functions:
- processing: {distribution: uniform, min: 3ms, max: 5ms}
  replicas:
    fixed: {node1: 1, node3: 1}
  load:
  - {origin: node3, kind: closed, users: 10, thinkTime: 100ms}
gateway: per-node
`, 1),
		want: []Function{{Name: "hello", Namespace: "default", Image: DefaultImage, Path: "/", Workers: 8,
			Processing: Processing{Distribution: DistUniform, Min: ms(3), Max: ms(5)},
			Replicas:   Replicas{Fixed: map[string]int{"node1": 1, "node3": 1}},
			Load:       []Load{{Origin: "node3", Kind: KindClosed, Users: 10, ThinkTime: ms(100)}}}},
	}, {
		name: "two functions",
		data: multi,
		want: []Function{{Name: "light", Namespace: "default", Image: DefaultImage, Path: "/", Workers: 8,
			Processing: Processing{Distribution: DistConstant, Mean: ms(3)},
			Replicas:   Replicas{Fixed: map[string]int{"node1": 1, "node3": 1}},
			Load:       []Load{{Origin: "node3", Kind: KindClosed, Users: 4, ThinkTime: ms(100)}},
		}, {Name: "heavy", Namespace: "default", Image: DefaultImage, Path: "/", Workers: 2, ContainerConcurrency: 2,
			Processing: Processing{Distribution: DistConstant, Mean: ms(80)},
			Replicas: Replicas{Autoscale: &Autoscale{MinScale: 1, MaxScale: 10, Target: DefaultAutoscaleTgt,
				Window: testbed.Duration(DefaultAutoscaleWin)}},
			Load: []Load{{Origin: "node3", Kind: KindClosed, Users: 4, ThinkTime: ms(100)},
				{Origin: "node1", Kind: KindOpen, Rate: 5, MaxOutstanding: DefaultMaxOutstanding}},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.data), "x.yaml")
			if err != nil {
				t.Fatalf("Parse() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, s.Functions); diff != "" {
				t.Errorf("Functions (-want,+got):\n%s", diff)
			}
		})
	}
}

// TestParse_severalFunctions checks what the list form adds: per-function
// nodes and origins, and checks that name a function.
func TestParse_severalFunctions(t *testing.T) {
	s, err := Parse([]byte(multi), "x.yaml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	light, _ := s.Function("light")
	heavy, _ := s.Function("heavy")
	got := map[string][]string{
		"FunctionNames":  s.FunctionNames(),
		"Origins":        s.Origins(),
		"Nodes":          s.Nodes(),
		"light.Nodes":    light.Nodes(s.Testbed),
		"light.Origins":  light.Origins(),
		"heavy.Nodes":    heavy.Nodes(s.Testbed),
		"heavy.Origins":  heavy.Origins(),
		"checks[0]":      {s.Checks[0].Function, s.Checks[0].String()},
		"checks[1]":      {s.Checks[1].Function, s.Checks[1].Baseline},
		"FunctionField":  {s.FunctionField(1), s.ReplicasField(1), s.LoadField(1)},
		"Autoscaled":     {fmt.Sprint(s.Autoscaled())},
		"unknown lookup": {fmt.Sprint(s.Function("hello"))},
	}
	want := map[string][]string{
		"FunctionNames":  {"light", "heavy"},
		"Origins":        {"node3", "node1"},
		"Nodes":          {"node1", "node2", "node3"},
		"light.Nodes":    {"node1", "node3"},
		"light.Origins":  {"node3"},
		"heavy.Nodes":    {"node1", "node2", "node3"},
		"heavy.Origins":  {"node3", "node1"},
		"checks[0]":      {"heavy", "kantai mean ≤ 1.15× oracle (function heavy, origin node1)"},
		"checks[1]":      {"", "local-first"},
		"FunctionField":  {"functions[1]", "functions[1].replicas", "functions[1].load"},
		"Autoscaled":     {"true"},
		"unknown lookup": {"<nil> false"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want,+got):\n%s", diff)
	}
	one, err := Parse([]byte(valid), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if f := []string{one.FunctionField(0), one.ReplicasField(0), one.LoadField(0)}; strings.Join(f, " ") != "function replicas load" {
		t.Errorf("one-function form fields = %v, want function replicas load", f)
	}
}

// TestParse_functionsErrors: errors in the list form name the file and the
// field as written, functions[i]…; mixing the forms is refused.
func TestParse_functionsErrors(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		replace [2]string
		want    string
	}{
		{"unknown origin", multi, [2]string{"- {origin: node1, kind: open", "- {origin: node9, kind: open"},
			`functions[1].load[1].origin: unknown node "node9"`},
		{"unknown replica node", multi, [2]string{"fixed: {node1: 1, node3: 1}", "fixed: {node9: 1}"},
			`functions[0].replicas.fixed.node9: unknown node "node9"`},
		{"replicas above capacity", multi, [2]string{"fixed: {node1: 1, node3: 1}", "fixed: {node3: 3}"},
			"functions[0].replicas.fixed.node3: 3 replicas exceed the node's capacity 2"},
		{"autoscale bound", multi, [2]string{"autoscale: {minScale: 1}", "autoscale: {minScale: 1, maxScale: 99}"},
			"functions[1].replicas.autoscale.maxScale"},
		{"no replicas", multi, [2]string{"    autoscale: {minScale: 1}\n", ""}, "functions[1].replicas: required"},
		{"no load", multi, [2]string{"  load:\n  - {origin: node3, kind: closed, users: 4, thinkTime: 100ms}\n- name: heavy", "- name: heavy"},
			"functions[0].load: at least one load entry is required"},
		{"load kind", multi, [2]string{"kind: open", "kind: burst"}, "functions[1].load[1].kind"},
		{"processing", multi, [2]string{"mean: 80ms}", "mean: 80ms, min: 1ms}"}, "functions[1].processing: constant takes mean only"},
		{"workers", multi, [2]string{"workers: 2", "workers: -1"}, "functions[1].workers"},
		{"duplicate name", multi, [2]string{"name: heavy", "name: light"}, `functions[1].name: "light" is also the name of functions[0]`},
		{"name required", multi, [2]string{"- name: heavy\n  processing", "- processing"}, "functions[1].name: required when there are several functions"},
		{"name not a label", multi, [2]string{"name: heavy", "name: Heavy_1"}, "functions[1].name"},
		{"empty list", multi, [2]string{multi[strings.Index(multi, "functions:"):strings.Index(multi, "duration:")], "functions: []\n"},
			"functions: at least one function is required"},
		{"both forms", multi, [2]string{"functions:", "function: {processing: {distribution: constant, mean: 1ms}}\nfunctions:"},
			"function: give either function: or functions:, not both"},
		{"top-level replicas with functions", multi, [2]string{"functions:", "replicas: {fixed: {node1: 1}}\nfunctions:"},
			"replicas: with functions:, each function has its own replicas:"},
		{"top-level load with functions", multi, [2]string{"functions:", "load: [{origin: node3, kind: closed, users: 1}]\nfunctions:"},
			"load: with functions:, each function has its own load:"},
		{"replicas inside function:", valid, [2]string{"function:\n", "function:\n  replicas: {fixed: {node1: 1}}\n"},
			"function.replicas: with function:, replicas: is a top-level field"},
		{"load inside function:", valid, [2]string{"function:\n", "function:\n  load: [{origin: node3, kind: closed, users: 1}]\n"},
			"function.load: with function:, load: is a top-level field"},
		{"no function at all", valid, [2]string{valid[strings.Index(valid, "function:"):strings.Index(valid, "duration:")], "gateway: per-node\n"},
			"function: required"},
		{"capacity across functions", multi, [2]string{"autoscale: {minScale: 1}", "fixed: {node3: 2}"},
			"functions[1].replicas.fixed.node3: with the functions before it, 3 replicas exceed the node's capacity 2"},
		{"check function", multi, [2]string{"function: heavy,", "function: medium,"}, `checks[0].function: unknown function "medium"`},
		{"check origin of another function", multi, [2]string{"function: heavy, origin: node1", "function: light, origin: node1"},
			`checks[0].origin: "node1" is neither "each" nor an origin of function light's load`},
		{"sweep without users", multi, [2]string{"duration: 60s", "duration: 60s\nsweep: {users: []}"}, "sweep.users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := strings.Replace(tt.data, tt.replace[0], tt.replace[1], 1)
			if data == tt.data {
				t.Fatalf("replacement %q not found", tt.replace[0])
			}
			_, err := Parse([]byte(data), "bench/m.yaml")
			if err == nil {
				t.Fatalf("Parse() error = nil, want one naming %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), "bench/m.yaml: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse() error = %q, want the file and %q", err, tt.want)
			}
		})
	}
}

// TestScenario_CellsSeveralFunctions: a sweep sets the users of every
// function's closed loads and leaves the scenario's own loads alone.
func TestScenario_CellsSeveralFunctions(t *testing.T) {
	s, err := Parse([]byte(strings.Replace(multi, "duration: 60s", "duration: 60s\nsweep: {users: [7]}", 1)), "x.yaml")
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	c := s.Cells(false)[0]
	got := []int{c.Functions[0].Load[0].Users, c.Functions[1].Load[0].Users, c.Functions[1].Load[1].Users, s.Functions[1].Load[0].Users}
	if diff := cmp.Diff([]int{7, 7, 0, 4}, got); diff != "" {
		t.Errorf("users (light, heavy closed, heavy open, original heavy) (-want,+got):\n%s", diff)
	}
}
