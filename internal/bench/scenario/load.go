package scenario

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"kantai.dev/kantai/internal/balance"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"kantai.dev/kantai/internal/bench/stats"
	"kantai.dev/kantai/internal/testbed"
)

// document is the file layout: the scenario with its testbed still raw, so
// the testbed package decodes and validates it, and the one-function form's
// top-level fields, which Parse moves into Scenario.Functions.
type document struct {
	Scenario
	Testbed  json.RawMessage `json:"testbed"`
	Function *Function       `json:"function,omitempty"`
	Replicas *Replicas       `json:"replicas,omitempty"`
	Load     []Load          `json:"load,omitempty"`
}

// functions moves the one-function form into the list, or checks that the
// list form has no top-level replicas: or load:.
func (doc *document) functions() error {
	one := doc.Function != nil || doc.Replicas != nil || doc.Load != nil
	if doc.Functions == nil {
		if !one {
			return fmt.Errorf("function: required: function: with top-level replicas: and load:, or functions:")
		}
		var f Function
		if doc.Function != nil {
			f = *doc.Function
		}
		if f.Replicas.Fixed != nil || f.Replicas.Autoscale != nil {
			return fmt.Errorf("function.replicas: with function:, replicas: is a top-level field; use functions: to give each function its own")
		}
		if f.Load != nil {
			return fmt.Errorf("function.load: with function:, load: is a top-level field; use functions: to give each function its own")
		}
		if doc.Replicas != nil {
			f.Replicas = *doc.Replicas
		}
		f.Load = doc.Load
		doc.Functions = []Function{f}
		doc.oneFunction = true
		return nil
	}
	switch {
	case doc.Function != nil:
		return fmt.Errorf("function: give either function: or functions:, not both")
	case doc.Replicas != nil:
		return fmt.Errorf("replicas: with functions:, each function has its own replicas:")
	case doc.Load != nil:
		return fmt.Errorf("load: with functions:, each function has its own load:")
	case len(doc.Functions) == 0:
		return fmt.Errorf("functions: at least one function is required")
	}
	return nil
}

// ReadFile reads and validates one scenario file.
func ReadFile(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading scenario: %w", err)
	}
	defer f.Close()
	// A scenario carries a testbed; it gets the testbed files' bound.
	data, err := io.ReadAll(io.LimitReader(f, testbed.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading scenario: %w", err)
	}
	if len(data) > testbed.MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes, the most a scenario file may have", path, testbed.MaxFileSize)
	}
	return Parse(data, path)
}

// ReadDir reads every *.yaml and *.yml file of a directory, sorted by name.
func ReadDir(dir string) ([]*Scenario, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading scenario directory: %w", err)
	}
	var out []*Scenario
	names := map[string]string{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		s, err := ReadFile(path)
		if err != nil {
			return nil, err
		}
		if other, dup := names[s.Name]; dup {
			return nil, fmt.Errorf("%s: name: %q is also the name of %s", path, s.Name, other)
		}
		names[s.Name] = path
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no scenario files (*.yaml)", dir)
	}
	return out, nil
}

// Parse decodes a scenario from YAML or JSON, rejecting unknown fields, fills
// defaults and validates it. file names the source in errors and gives the
// default name.
func Parse(data []byte, file string) (*Scenario, error) {
	var doc document
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: decoding scenario: %w", file, err)
	}
	if len(doc.Testbed) == 0 || string(doc.Testbed) == "null" {
		return nil, fmt.Errorf("%s: testbed: required (the fleet, in the testbed file format)", file)
	}
	tb, err := testbed.Parse(doc.Testbed)
	if err != nil {
		return nil, fmt.Errorf("%s: testbed: %w", file, err)
	}
	if err := doc.functions(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	s := doc.Scenario
	s.File = file
	s.Testbed = tb
	if err := s.complete(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &s, nil
}

var scenarioNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$`)

// complete fills defaults and validates; errors name the field.
func (s *Scenario) complete() error {
	if s.Name == "" && s.File != "" {
		s.Name = strings.TrimSuffix(filepath.Base(s.File), filepath.Ext(s.File))
	}
	if !scenarioNameRE.MatchString(s.Name) {
		return fmt.Errorf("name: %q is not a valid scenario name (lower-case letters, digits, '-', '_', '.')", s.Name)
	}
	if s.EdgeCloud != nil {
		if s.EdgeCloud.Latency < 0 || s.EdgeCloud.Jitter < 0 {
			return fmt.Errorf("edgeCloud: latency and jitter must not be negative")
		}
		if applyEdgeCloud(s.Testbed, *s.EdgeCloud) == 0 {
			return fmt.Errorf("edgeCloud: the testbed has no link between an edge and a cloud node")
		}
	}
	if err := s.completeFunctions(); err != nil {
		return err
	}
	if err := s.checkNode("gateway.central", s.Gateway.Central, true); err != nil {
		return err
	}
	for i := range s.Functions {
		if err := s.completeReplicas(i); err != nil {
			return err
		}
		if err := s.completeLoad(i); err != nil {
			return err
		}
	}
	if err := s.checkCapacity(); err != nil {
		return err
	}
	if err := s.completeSweep(); err != nil {
		return err
	}
	if err := s.completeTimes(); err != nil {
		return err
	}
	if err := s.completeEvents(); err != nil {
		return err
	}
	if err := s.completePolicies(); err != nil {
		return err
	}
	return s.completeChecks()
}

func (s *Scenario) checkNode(field, name string, optional bool) error {
	if name == "" && optional {
		return nil
	}
	if _, ok := s.Testbed.Node(name); !ok {
		return fmt.Errorf("%s: unknown node %q (testbed nodes: %s)", field, name, strings.Join(s.Testbed.NodeNames(), ", "))
	}
	return nil
}

// functionNameRE is a DNS-1035 label: the name is part of the function's host.
var functionNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// completeFunctions fills each function's defaults and checks that no two
// share a host.
func (s *Scenario) completeFunctions() error {
	seen := map[string]int{}
	for i := range s.Functions {
		f := &s.Functions[i]
		field := s.FunctionField(i)
		if f.Name == "" && len(s.Functions) > 1 {
			return fmt.Errorf("%s.name: required when there are several functions", field)
		}
		if err := f.complete(); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		if !functionNameRE.MatchString(f.Name) || len(f.Name) > 63 {
			return fmt.Errorf("%s.name: %q is not a DNS label (lower-case letters, digits and '-', starting with a letter)", field, f.Name)
		}
		key := f.Namespace + "/" + f.Name
		if j, dup := seen[key]; dup {
			return fmt.Errorf("%s.name: %q is also the name of %s", field, f.Name, s.FunctionField(j))
		}
		seen[key] = i
	}
	return nil
}

func (f *Function) complete() error {
	if f.Name == "" {
		f.Name = DefaultFunctionName
	}
	if f.Namespace == "" {
		f.Namespace = DefaultNamespace
	}
	if f.Image == "" {
		f.Image = DefaultImage
	}
	if f.Path == "" {
		f.Path = DefaultPath
	}
	if !strings.HasPrefix(f.Path, "/") {
		return fmt.Errorf("path: must start with '/', got %q", f.Path)
	}
	if f.Workers == 0 {
		f.Workers = DefaultWorkers
	}
	if f.Workers < 0 {
		return fmt.Errorf("workers: must be positive, got %d", f.Workers)
	}
	if f.ContainerConcurrency < 0 {
		return fmt.Errorf("containerConcurrency: must not be negative, got %d", f.ContainerConcurrency)
	}
	p := &f.Processing
	if p.Min < 0 || p.Max < 0 || p.Mean < 0 || p.StdDev < 0 {
		return fmt.Errorf("processing: durations must not be negative")
	}
	switch p.Distribution {
	case DistUniform:
		if p.Max < p.Min {
			return fmt.Errorf("processing.max: %v is below min %v", p.Max, p.Min)
		}
		if p.Mean != 0 || p.StdDev != 0 {
			return fmt.Errorf("processing: uniform takes min and max only")
		}
	case DistConstant, DistExponential:
		if p.Min != 0 || p.Max != 0 || p.StdDev != 0 {
			return fmt.Errorf("processing: %s takes mean only", p.Distribution)
		}
	case DistNormal:
		if p.Max != 0 {
			return fmt.Errorf("processing: normal takes mean, stddev and an optional min")
		}
	case "":
		return fmt.Errorf("processing.distribution: required (%s, %s, %s or %s)", DistUniform, DistConstant, DistNormal, DistExponential)
	default:
		return fmt.Errorf("processing.distribution: unknown %q (want %s, %s, %s or %s)", p.Distribution, DistUniform, DistConstant, DistNormal, DistExponential)
	}
	return nil
}

func (s *Scenario) completeReplicas(i int) error {
	r := &s.Functions[i].Replicas
	field := s.ReplicasField(i)
	switch {
	case r.Fixed != nil && r.Autoscale != nil:
		return fmt.Errorf("%s: give either fixed or autoscale, not both", field)
	case r.Fixed == nil && r.Autoscale == nil:
		return fmt.Errorf("%s: required: fixed (node → count) or autoscale", field)
	case r.Fixed != nil:
		total := 0
		for _, name := range slices.Sorted(maps.Keys(r.Fixed)) {
			f := fmt.Sprintf("%s.fixed.%s", field, name)
			n, ok := s.Testbed.Node(name)
			if !ok {
				return s.checkNode(f, name, false)
			}
			c := r.Fixed[name]
			if c < 0 {
				return fmt.Errorf("%s: must not be negative, got %d", f, c)
			}
			if c > n.Capacity {
				return fmt.Errorf("%s: %d replicas exceed the node's capacity %d", f, c, n.Capacity)
			}
			total += c
		}
		if total == 0 {
			return fmt.Errorf("%s.fixed: at least one replica is required", field)
		}
	default:
		a := r.Autoscale
		capacity := 0
		for _, n := range s.Testbed.Nodes {
			capacity += n.Capacity
		}
		if a.MaxScale == 0 {
			a.MaxScale = capacity
		}
		if a.Target == 0 {
			a.Target = DefaultAutoscaleTgt
		}
		if a.Window == 0 {
			a.Window = testbed.Duration(DefaultAutoscaleWin)
		}
		switch {
		case a.MinScale < 0:
			return fmt.Errorf("%s.autoscale.minScale: must not be negative, got %d", field, a.MinScale)
		case a.MaxScale < 1 || a.MaxScale < a.MinScale:
			return fmt.Errorf("%s.autoscale.maxScale: %d must be at least 1 and at least minScale %d", field, a.MaxScale, a.MinScale)
		case a.MaxScale > capacity:
			return fmt.Errorf("%s.autoscale.maxScale: %d exceeds the fleet's capacity %d", field, a.MaxScale, capacity)
		case !positiveFinite(a.Target):
			return fmt.Errorf("%s.autoscale.target: must be positive, got %v", field, a.Target)
		case a.Window < 0:
			return fmt.Errorf("%s.autoscale.window: must not be negative, got %v", field, a.Window)
		}
	}
	return nil
}

// checkCapacity checks that fixed replicas of all functions together fit
// each node; a single function's were checked with its replicas.
func (s *Scenario) checkCapacity() error {
	used := map[string]int{}
	for i, fn := range s.Functions {
		for _, name := range slices.Sorted(maps.Keys(fn.Replicas.Fixed)) {
			used[name] += fn.Replicas.Fixed[name]
			n, _ := s.Testbed.Node(name)
			if used[name] > n.Capacity {
				return fmt.Errorf("%s.fixed.%s: with the functions before it, %d replicas exceed the node's capacity %d",
					s.ReplicasField(i), name, used[name], n.Capacity)
			}
		}
	}
	return nil
}

func (s *Scenario) completeLoad(fi int) error {
	load := s.Functions[fi].Load
	field := s.LoadField(fi)
	if len(load) == 0 {
		return fmt.Errorf("%s: at least one load entry is required", field)
	}
	for i := range load {
		l := &load[i]
		f := fmt.Sprintf("%s[%d]", field, i)
		if err := s.checkNode(f+".origin", l.Origin, false); err != nil {
			return err
		}
		if l.ThinkTime < 0 {
			return fmt.Errorf("%s.thinkTime: must not be negative, got %v", f, l.ThinkTime)
		}
		switch l.Kind {
		case KindClosed, KindConcurrency:
			if l.Users <= 0 && s.Sweep == nil {
				return fmt.Errorf("%s.users: must be positive, got %d", f, l.Users)
			}
			if l.Rate != 0 || l.MaxOutstanding != 0 {
				return fmt.Errorf("%s: rate and maxOutstanding apply to kind %q only", f, KindOpen)
			}
			if l.Kind == KindConcurrency && l.ThinkTime != 0 {
				return fmt.Errorf("%s.thinkTime: kind %q has no think time; use kind %q", f, KindConcurrency, KindClosed)
			}
		case KindOpen:
			if !positiveFinite(l.Rate) {
				return fmt.Errorf("%s.rate: must be a positive number of requests per second, got %v", f, l.Rate)
			}
			if l.Users != 0 || l.ThinkTime != 0 {
				return fmt.Errorf("%s: users and thinkTime do not apply to kind %q", f, KindOpen)
			}
			if l.MaxOutstanding == 0 {
				l.MaxOutstanding = DefaultMaxOutstanding
			}
			if l.MaxOutstanding < 0 {
				return fmt.Errorf("%s.maxOutstanding: must be positive, got %d", f, l.MaxOutstanding)
			}
		case "":
			return fmt.Errorf("%s.kind: required (%s, %s or %s)", f, KindClosed, KindOpen, KindConcurrency)
		default:
			return fmt.Errorf("%s.kind: unknown %q (want %s, %s or %s)", f, l.Kind, KindClosed, KindOpen, KindConcurrency)
		}
	}
	return nil
}

func (s *Scenario) completeSweep() error {
	if s.Sweep != nil {
		if len(s.Sweep.Users) == 0 {
			return fmt.Errorf("sweep.users: at least one value is required")
		}
		for i, u := range s.Sweep.Users {
			if u <= 0 {
				return fmt.Errorf("sweep.users[%d]: must be positive, got %d", i, u)
			}
		}
		if !slices.ContainsFunc(s.Functions, func(f Function) bool {
			return slices.ContainsFunc(f.Load, func(l Load) bool { return l.Kind != KindOpen })
		}) {
			return fmt.Errorf("sweep.users: no closed or concurrency load to sweep")
		}
	}
	return nil
}

func (s *Scenario) completeTimes() error {
	if s.Duration <= 0 {
		return fmt.Errorf("duration: required and positive, e.g. \"300s\", got %v", s.Duration)
	}
	if s.Warmup < 0 {
		return fmt.Errorf("warmup: must not be negative, got %v", s.Warmup)
	}
	if s.Drain == 0 {
		s.Drain = testbed.Duration(DefaultDrain)
	}
	if s.Drain < 0 {
		return fmt.Errorf("drain: must not be negative, got %v", s.Drain)
	}
	if s.Quick == nil {
		s.Quick = &Quick{
			Duration: testbed.Duration(min(DefaultQuickDuration, s.Duration.D())),
			Warmup:   testbed.Duration(min(DefaultQuickWarmup, s.Warmup.D())),
		}
	}
	if s.Quick.Duration <= 0 {
		return fmt.Errorf("quick.duration: required and positive, got %v", s.Quick.Duration)
	}
	if s.Quick.Warmup < 0 {
		return fmt.Errorf("quick.warmup: must not be negative, got %v", s.Quick.Warmup)
	}
	return nil
}

func (s *Scenario) completePolicies() error {
	if len(s.Policies) == 0 {
		return fmt.Errorf("policies: at least one policy is required; the first is the baseline")
	}
	seen := map[string]int{}
	for i, p := range s.Policies {
		f := fmt.Sprintf("policies[%d]", i)
		if p.Name == Oracle {
			return fmt.Errorf("%s.name: %q is reserved for the oracle baseline", f, Oracle)
		}
		if !balance.Known(p.Name) {
			return fmt.Errorf("%s.name: unknown policy %q (known: %s)", f, p.Name, strings.Join(balance.Names(), ", "))
		}
		if j, dup := seen[p.Name]; dup {
			return fmt.Errorf("%s.name: %q is also policies[%d]", f, p.Name, j)
		}
		seen[p.Name] = i
		if p.Gateway != nil {
			if err := s.checkNode(f+".gateway.central", p.Gateway.Central, true); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Scenario) completeChecks() error {
	for i := range s.Checks {
		c := &s.Checks[i]
		f := fmt.Sprintf("checks[%d]", i)
		origins := s.Origins()
		if c.Function != "" {
			fn, ok := s.Function(c.Function)
			if !ok {
				return fmt.Errorf("%s.function: unknown function %q (functions: %s)", f, c.Function, strings.Join(s.FunctionNames(), ", "))
			}
			origins = fn.Origins()
		}
		switch c.Kind {
		case CheckAtMost, CheckAtLeast, CheckFasterBy:
		case "":
			return fmt.Errorf("%s.kind: required (%s, %s or %s)", f, CheckAtMost, CheckAtLeast, CheckFasterBy)
		default:
			return fmt.Errorf("%s.kind: unknown %q (want %s, %s or %s)", f, c.Kind, CheckAtMost, CheckAtLeast, CheckFasterBy)
		}
		if !s.hasPolicy(c.Policy) {
			return fmt.Errorf("%s.policy: %q is not among the scenario's policies", f, c.Policy)
		}
		if c.Baseline == "" {
			c.Baseline = s.Baseline()
		}
		if c.Baseline != Oracle && !s.hasPolicy(c.Baseline) {
			return fmt.Errorf("%s.baseline: %q is neither a scenario policy nor %q", f, c.Baseline, Oracle)
		}
		if c.Baseline == c.Policy {
			return fmt.Errorf("%s.baseline: compares policy %q with itself", f, c.Policy)
		}
		if _, ok := (stats.Summary{}).Value(c.Metric); !ok {
			return fmt.Errorf("%s.metric: unknown %q (want one of %s)", f, c.Metric, strings.Join(stats.Metrics, ", "))
		}
		if c.Baseline == Oracle && !stats.IsLatency(c.Metric) {
			return fmt.Errorf("%s.metric: the oracle has response times only, not %q", f, c.Metric)
		}
		if !positiveFinite(c.Factor) {
			return fmt.Errorf("%s.factor: must be a positive number, got %v", f, c.Factor)
		}
		if c.Origin != "" && c.Origin != OriginEach && !slices.Contains(origins, c.Origin) {
			of := "the load"
			if c.Function != "" {
				of = "function " + c.Function + "'s load"
			}
			return fmt.Errorf("%s.origin: %q is neither %q nor an origin of %s (%s)", f, c.Origin, OriginEach, of, strings.Join(origins, ", "))
		}
	}
	return nil
}

func (s *Scenario) hasPolicy(name string) bool {
	return slices.ContainsFunc(s.Policies, func(p Policy) bool { return p.Name == name })
}

// Select picks scenarios by name from a loaded set, in the order given; an
// empty list selects all. Sweep cells are selected through their file.
func Select(all []*Scenario, names []string) ([]*Scenario, error) {
	if len(names) == 0 {
		return all, nil
	}
	var out []*Scenario
	var missing []string
	for _, n := range names {
		i := slices.IndexFunc(all, func(s *Scenario) bool { return s.Name == n })
		if i < 0 {
			missing = append(missing, n)
			continue
		}
		out = append(out, all[i])
	}
	if len(missing) > 0 {
		known := make([]string, len(all))
		for i, s := range all {
			known[i] = s.Name
		}
		return nil, errors.New("unknown scenario " + strings.Join(missing, ", ") + " (known: " + strings.Join(known, ", ") + ")")
	}
	return out, nil
}

// TotalTime estimates the wall time of running the scenarios: warm-up plus
// duration of every cell and policy, not counting start-up and drain.
func TotalTime(scs []*Scenario, quick bool) time.Duration {
	var t time.Duration
	for _, s := range scs {
		for _, c := range s.Cells(quick) {
			t += time.Duration(len(c.Policies)) * (c.Warmup.D() + c.Duration.D())
		}
	}
	return t
}
