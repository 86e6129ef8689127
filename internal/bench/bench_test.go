package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kantai.dev/kantai/internal/bench/load"
	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/testbed"
)

const fakeScenario = `
name: fake
description: runner test
testbed:
  nodes:
  - {name: node1, role: cloud, capacity: 4}
  - {name: node2, role: cloud, capacity: 4}
  - {name: node3, role: edge, capacity: 2}
  links:
  - {a: node1, b: node2, latency: 1ms}
  - {a: node1, b: node3, latency: 20ms, jitter: 2ms}
  - {a: node2, b: node3, latency: 20ms, jitter: 2ms}
function:
  processing: {distribution: constant, mean: 1ms}
gateway: per-node
replicas:
  fixed: {node1: 1, node2: 1, node3: 1}
load:
- {origin: node3, kind: closed, thinkTime: 10ms}
- {origin: node1, kind: open, rate: 50, maxOutstanding: 10}
sweep: {users: [1, 2]}
duration: 10s
quick: {duration: 300ms, warmup: 50ms}
drain: 1s
policies:
- {name: knative, gateway: {central: node1}}
- kantai
- faast
checks:
- {kind: atLeast, policy: kantai, metric: completed, factor: 0.01}
- {kind: atMost, policy: kantai, metric: mean, factor: 1000, origin: each}
- {kind: atMost, policy: kantai, baseline: oracle, metric: p95, factor: 1000}
- {kind: fasterBy, policy: faast, metric: p50, factor: 1}
`

// fakeEnv serves every origin from its own httptest server that answers
// after a small fixed delay. knative's central gateway spreads requests over
// all nodes; other policies serve locally. faast fails to start.
type fakeEnv struct {
	t       *testing.T
	mu      sync.Mutex
	started []string
	open    int
}

type fakeInstance struct {
	env     *fakeEnv
	servers map[string]*httptest.Server
	client  *http.Client
	fresh   *http.Client
}

func (e *fakeEnv) Start(_ context.Context, sc *scenario.Scenario, p scenario.Policy) (Instance, error) {
	e.mu.Lock()
	e.started = append(e.started, sc.Name+"/"+p.Name)
	e.mu.Unlock()
	if p.Name == scenario.PolicyFaast {
		return nil, errors.New("no such balancer")
	}
	gw := sc.GatewayFor(p)
	in := &fakeInstance{
		env:     e,
		servers: map[string]*httptest.Server{},
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		fresh:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
	nodes := sc.Testbed.NodeNames()
	for _, origin := range sc.Origins() {
		var mu sync.Mutex
		n := 0
		entry := gw.EntryNode(origin)
		in.servers[origin] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Millisecond)
			node := entry
			if !gw.PerNode() {
				mu.Lock()
				node = nodes[n%len(nodes)]
				n++
				mu.Unlock()
			}
			w.Header().Set(load.HeaderNode, node)
			w.Header().Set(load.HeaderReplica, strings.Split(r.Host, ".")[0]+"-"+node)
			_, _ = w.Write([]byte(node))
		}))
	}
	e.mu.Lock()
	e.open++
	e.mu.Unlock()
	return in, nil
}

func (in *fakeInstance) Client(_ string, keepAlive bool) *http.Client {
	if keepAlive {
		return in.client
	}
	return in.fresh
}
func (in *fakeInstance) URL(origin string) string { return in.servers[origin].URL }
func (in *fakeInstance) Host(fn string) string {
	if fn == "" {
		fn = "hello"
	}
	return fn + ".default.example.com"
}
func (in *fakeInstance) Close() error {
	for _, s := range in.servers {
		s.Close()
	}
	in.client.CloseIdleConnections()
	in.env.mu.Lock()
	in.env.open--
	in.env.mu.Unlock()
	return nil
}

var _ Instance = (*fakeInstance)(nil)

func parseFake(t *testing.T) *scenario.Scenario {
	t.Helper()
	s, err := scenario.Parse([]byte(fakeScenario), "fake.yaml")
	if err != nil {
		t.Fatalf("scenario: %v", err)
	}
	return s
}

func TestRun_endToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	env := &fakeEnv{t: t}
	var table, progress bytes.Buffer
	res, err := Run(context.Background(), env, []*scenario.Scenario{parseFake(t)}, Options{
		OutDir: dir, Quick: true, Seed: 42, OracleSamples: 500, Records: true, Out: &table, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	if env.open != 0 {
		t.Errorf("%d instances left open", env.open)
	}
	if got := strings.Join(env.started, " "); got != "fake-u1/knative fake-u1/kantai fake-u1/faast fake-u2/knative fake-u2/kantai fake-u2/faast" {
		t.Errorf("started = %s", got)
	}
	if len(res.Cells) != 2 {
		t.Fatalf("%d cells, want 2", len(res.Cells))
	}
	for _, cr := range res.Cells {
		if cr.Baseline != "knative" || cr.Duration != "300ms" || cr.Warmup != "50ms" {
			t.Errorf("%s: baseline %q, %s after %s", cr.Name, cr.Baseline, cr.Duration, cr.Warmup)
		}
		if len(cr.Policies) != 3 {
			t.Fatalf("%s: %d policies, want 3", cr.Name, len(cr.Policies))
		}
		for _, pr := range cr.Policies[:2] {
			s := pr.Summary
			if pr.Error != "" || s.Count == 0 || s.Completed == 0 || s.P50Ms <= 0 || s.Throughput <= 0 || len(s.ServedBy) == 0 {
				t.Errorf("%s/%s: summary %+v, error %q", cr.Name, pr.Policy, s, pr.Error)
			}
			if len(pr.ByOrigin) != 2 || pr.ByOrigin["node1"].Count == 0 || pr.ByOrigin["node3"].Count == 0 {
				t.Errorf("%s/%s: by origin %+v", cr.Name, pr.Policy, pr.ByOrigin)
			}
			if pr.WarmupRequests == 0 {
				t.Errorf("%s/%s: no warm-up requests", cr.Name, pr.Policy)
			}
			if _, ok := pr.VsBaseline["p50"]; !ok {
				t.Errorf("%s/%s: vsBaseline %v lacks p50", cr.Name, pr.Policy, pr.VsBaseline)
			}
			if _, ok := pr.VsOracle["p95"]; !ok {
				t.Errorf("%s/%s: vsOracle %v lacks p95", cr.Name, pr.Policy, pr.VsOracle)
			}
		}
		if kn := cr.Policies[0]; kn.Gateway != "central:node1" || len(kn.Summary.ServedBy) != 3 {
			t.Errorf("%s/knative: gateway %s, served %v; want central, spread over 3 nodes", cr.Name, kn.Gateway, kn.Summary.ServedBy)
		}
		if ka := cr.Policies[1]; ka.ByOrigin["node3"].ServedBy["node3"] != 1 {
			t.Errorf("%s/kantai: node3 users served %v, want all local", cr.Name, ka.ByOrigin["node3"].ServedBy)
		}
		if fa := cr.Policies[2]; !strings.Contains(fa.Error, "no such balancer") {
			t.Errorf("%s/faast: error %q, want the start failure", cr.Name, fa.Error)
		}
		if o := cr.Oracle; o == nil || o.Error != "" || o.Summary.Count < 400 || len(o.Choices) != 2 {
			t.Errorf("%s: oracle %+v", cr.Name, o)
		}
		for _, series := range []string{"knative", "kantai", scenario.Oracle} {
			if len(cr.latencies[""][series]) == 0 {
				t.Errorf("%s: no %s latencies for the CDF chart", cr.Name, series)
			}
		}
		// completed, mean × 2 origins, oracle p95, faast p50.
		if len(cr.Checks) != 5 {
			t.Fatalf("%s: %d checks, want 5", cr.Name, len(cr.Checks))
		}
		for i, c := range cr.Checks[:4] {
			if c.Status != StatusPass {
				t.Errorf("%s: check %d (%s) = %s %s", cr.Name, i, c.Description, c.Status, c.Note)
			}
		}
		if c := cr.Checks[1]; c.Origin != "node3" || cr.Checks[2].Origin != "node1" {
			t.Errorf("%s: per-origin checks for %q, %q; want node3, node1", cr.Name, c.Origin, cr.Checks[2].Origin)
		}
		if c := cr.Checks[4]; c.Status != StatusMiss || !strings.Contains(c.Note, "faast failed") {
			t.Errorf("%s: faast check = %s %q, want a MISS naming the failure", cr.Name, c.Status, c.Note)
		}
		for _, f := range cr.Files {
			if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
				t.Errorf("%s: file %s missing or empty (%v)", cr.Name, f, err)
			}
		}
		want := []string{cr.Name + "-cdf.png", cr.Name + "-served.png", cr.Name + "-knative.csv", cr.Name + "-kantai.csv"}
		if strings.Join(cr.Files, " ") != strings.Join(want, " ") {
			t.Errorf("%s: files %v, want %v", cr.Name, cr.Files, want)
		}
	}
	if pass, miss, skip := res.Checks(); pass != 8 || miss != 2 || skip != 0 {
		t.Errorf("Checks() = %d/%d/%d, want 8 pass, 2 miss", pass, miss, skip)
	}

	data, err := os.ReadFile(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatalf("reading results: %v", err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	cells, _ := decoded["scenarios"].([]any)
	if len(cells) != 2 {
		t.Fatalf("results.json has %d scenarios, want 2", len(cells))
	}
	cell := cells[0].(map[string]any)
	for _, k := range []string{"name", "baseline", "policies", "oracle", "checks", "files", "nodes", "origins"} {
		if _, ok := cell[k]; !ok {
			t.Errorf("results.json scenario lacks %q", k)
		}
	}
	pol := cell["policies"].([]any)[1].(map[string]any)
	sum := pol["summary"].(map[string]any)
	for _, k := range []string{"count", "completed", "errors", "meanMs", "p50Ms", "p90Ms", "p95Ms", "p99Ms", "maxMs", "throughput", "servedBy"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("results.json summary lacks %q", k)
		}
	}
	chk := cell["checks"].([]any)[0].(map[string]any)
	for _, k := range []string{"kind", "policy", "baseline", "metric", "factor", "value", "baselineValue", "status", "description"} {
		if _, ok := chk[k]; !ok {
			t.Errorf("results.json check lacks %q", k)
		}
	}

	out := table.String()
	for _, want := range []string{"== fake-u1", "== fake-u2", "knative", "kantai", "oracle", "per origin:", "PASS", "MISS", "faast failed", "checks: 8 PASS, 2 MISS, 0 SKIP"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(progress.String(), "fake-u1 kantai") {
		t.Errorf("progress output lacks the run's description: %q", progress.String())
	}
}

func TestRun_policyFilterSkipsChecks(t *testing.T) {
	s := parseFake(t)
	s.Sweep.Users = s.Sweep.Users[:1]
	res, err := Run(context.Background(), &fakeEnv{t: t}, []*scenario.Scenario{s}, Options{Quick: true, Policies: []string{"kantai"}})
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	cr := res.Cells[0]
	if len(cr.Policies) != 1 || cr.Baseline != "kantai" {
		t.Fatalf("policies %d, baseline %q; want kantai only", len(cr.Policies), cr.Baseline)
	}
	pass, miss, skip := res.Checks()
	// Oracle p95 still runs; the knative and faast checks are skipped.
	if pass != 1 || miss != 0 || skip != 4 {
		t.Errorf("Checks() = %d/%d/%d, want 1 pass, 4 skip", pass, miss, skip)
	}
	if len(cr.Files) != 0 {
		t.Errorf("files %v written without an output directory", cr.Files)
	}
}

func TestRun_cancel(t *testing.T) {
	s := parseFake(t)
	// A run this long could only end within the bound below by honouring
	// the cancel; the bound is generous for a busy machine.
	s.Duration = testbed.Duration(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	dir := t.TempDir()
	start := time.Now()
	res, err := Run(ctx, &fakeEnv{t: t}, []*scenario.Scenario{s}, Options{OutDir: dir, Quick: false})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run() error = %v, want the context's", err)
	}
	if time.Since(start) > time.Minute {
		t.Errorf("Run() of a one-hour scenario took %v after cancel", time.Since(start))
	}
	if len(res.Cells) != 1 || res.Cells[0].Policies[0].Error != "interrupted" || len(res.Cells[0].Checks) != 0 {
		t.Errorf("cells = %+v, want one interrupted cell without checks", res.Cells)
	}
	if _, err := os.Stat(filepath.Join(dir, ResultsFile)); err != nil {
		t.Errorf("partial results not written: %v", err)
	}
}

const fakeMulti = `
name: multi
testbed:
  nodes:
  - {name: node1, role: cloud, capacity: 4}
  - {name: node2, role: cloud, capacity: 4}
  - {name: node3, role: edge, capacity: 2, speed: 2}
  links:
  - {a: node1, b: node2, latency: 1ms}
  - {a: node1, b: node3, latency: 20ms}
  - {a: node2, b: node3, latency: 20ms}
functions:
- name: light
  processing: {distribution: constant, mean: 1ms}
  replicas:
    fixed: {node1: 1, node3: 1}
  load:
  - {origin: node3, kind: closed, users: 1, thinkTime: 10ms}
- name: heavy
  processing: {distribution: constant, mean: 50ms}
  replicas:
    fixed: {node2: 1, node3: 1}
  load:
  - {origin: node3, kind: closed, users: 1, thinkTime: 10ms}
  - {origin: node1, kind: open, rate: 50, maxOutstanding: 10}
duration: 10s
quick: {duration: 300ms, warmup: 50ms}
drain: 1s
policies:
- local-first
- kantai
checks:
- {kind: atMost, policy: kantai, baseline: oracle, metric: mean, factor: 1000, function: light, origin: node3}
- {kind: atMost, policy: kantai, metric: mean, factor: 1000, function: heavy, origin: each}
- {kind: atLeast, policy: kantai, metric: completed, factor: 0.01}
`

// TestRun_severalFunctions: every policy's figures, the oracle (each
// function's own processing time and replica nodes), the checks, the
// charts, the records and the table are split by function.
func TestRun_severalFunctions(t *testing.T) {
	sc, err := scenario.Parse([]byte(fakeMulti), "multi.yaml")
	if err != nil {
		t.Fatalf("scenario: %v", err)
	}
	dir := t.TempDir()
	var table bytes.Buffer
	res, err := Run(context.Background(), &fakeEnv{t: t}, []*scenario.Scenario{sc}, Options{
		OutDir: dir, Quick: true, Seed: 7, OracleSamples: 1000, Records: true, Out: &table,
	})
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	cr := res.Cells[0]
	if diff := cmp.Diff([]string{"light", "heavy"}, cr.Functions); diff != "" {
		t.Errorf("functions (-want,+got):\n%s", diff)
	}
	for _, pr := range cr.Policies {
		if pr.Error != "" || len(pr.Functions) != 2 {
			t.Fatalf("%s: error %q, %d function results, want 2", pr.Policy, pr.Error, len(pr.Functions))
		}
		light, heavy := pr.Functions[0], pr.Functions[1]
		if light.Function != "light" || heavy.Function != "heavy" {
			t.Errorf("%s: functions %s, %s; want light, heavy", pr.Policy, light.Function, heavy.Function)
		}
		if light.Summary.Count+heavy.Summary.Count != pr.Summary.Count || light.Summary.Completed == 0 || heavy.Summary.Completed == 0 {
			t.Errorf("%s: light %d + heavy %d requests, all %d", pr.Policy, light.Summary.Count, heavy.Summary.Count, pr.Summary.Count)
		}
		if len(light.ByOrigin) != 1 || len(heavy.ByOrigin) != 2 || heavy.ByOrigin["node1"].Count == 0 {
			t.Errorf("%s: origins light %v, heavy %v; want node3, and node1 and node3", pr.Policy, light.ByOrigin, heavy.ByOrigin)
		}
		for _, fr := range pr.Functions {
			if _, ok := fr.VsBaseline["p50"]; !ok {
				t.Errorf("%s/%s: vsBaseline %v lacks p50", pr.Policy, fr.Function, fr.VsBaseline)
			}
			if _, ok := fr.VsOracle["mean"]; !ok {
				t.Errorf("%s/%s: vsOracle %v lacks mean", pr.Policy, fr.Function, fr.VsOracle)
			}
		}
	}

	o := cr.Oracle
	if o.Error != "" || len(o.Functions) != 2 || len(o.Choices) != 0 || o.Summary.Count == 0 {
		t.Fatalf("oracle: error %q, %d functions, %d cell choices, %d samples", o.Error, len(o.Functions), len(o.Choices), o.Summary.Count)
	}
	type choice struct{ Origin, Node string }
	choices := map[string][]choice{}
	for _, f := range o.Functions {
		for _, c := range f.Choices {
			choices[f.Function] = append(choices[f.Function], choice{c.Origin, c.Node})
		}
	}
	// light: 1 ms × speed 2 at home beats 20 ms away; heavy: node2 (its
	// replica, 1 + 50 or 20 + 50 ms) beats 100 ms at the edge.
	want := map[string][]choice{"light": {{"node3", "node3"}}, "heavy": {{"node1", "node2"}, {"node3", "node2"}}}
	if diff := cmp.Diff(want, choices); diff != "" {
		t.Errorf("oracle choices (-want,+got):\n%s", diff)
	}
	if m := o.Functions[0].Summary.MeanMs; m != 2 {
		t.Errorf("light oracle mean = %v ms, want 2 (1 ms at speed 2, no RTT)", m)
	}
	if n := o.Functions[1].Summary.ServedBy["node2"]; n != 1 {
		t.Errorf("heavy oracle served by node2: %v, want all", n)
	}
	if mixed := o.Summary.Count; mixed > o.Functions[0].Summary.Count+o.Functions[1].Summary.Count {
		t.Errorf("mixed oracle has %d samples, more than the functions'", mixed)
	}

	var got []string
	for _, c := range cr.Checks {
		got = append(got, c.Status+" "+c.Function+" "+c.Origin)
	}
	if diff := cmp.Diff([]string{"PASS light node3", "PASS heavy node3", "PASS heavy node1", "PASS  "}, got); diff != "" {
		t.Errorf("checks (-want,+got):\n%s", diff)
	}

	// The CDF charts draw every policy and the oracle, per function.
	for _, fn := range []string{"light", "heavy"} {
		for _, series := range []string{"local-first", "kantai", scenario.Oracle} {
			if len(cr.latencies[fn][series]) == 0 {
				t.Errorf("no %s latencies for function %s's chart", series, fn)
			}
		}
	}

	wantFiles := []string{"multi-light-cdf.png", "multi-light-served.png", "multi-heavy-cdf.png", "multi-heavy-served.png",
		"multi-local-first.csv", "multi-kantai.csv"}
	if diff := cmp.Diff(wantFiles, cr.Files); diff != "" {
		t.Errorf("files (-want,+got):\n%s", diff)
	}
	for _, f := range cr.Files {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("file %s missing or empty (%v)", f, err)
		}
	}
	rows, err := csv.NewReader(mustOpen(t, filepath.Join(dir, "multi-kantai.csv"))).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("records: %d rows, %v", len(rows), err)
	}
	seen := map[string]bool{}
	for _, r := range rows[1:] {
		seen[r[7]] = true
	}
	if rows[0][7] != "function" || !seen["light"] || !seen["heavy"] {
		t.Errorf("records header %v, functions seen %v; want a function column with both", rows[0], seen)
	}

	data, err := os.ReadFile(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	bc := back.Cells[0]
	if len(bc.Functions) != 2 || bc.Policies[1].Functions[1].Function != "heavy" || bc.Oracle.Functions[0].Function != "light" ||
		bc.Checks[0].Function != "light" {
		t.Errorf("results.json lacks the functions: %s", data)
	}

	out := table.String()
	for _, w := range []string{"function light:", "function heavy:", "per origin:", "(function heavy, origin node1)"} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
