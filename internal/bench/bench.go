// Package bench runs `kantai bench`: for each scenario cell and policy it
// starts the system under test through an Env, drives the scenario's load,
// and turns the records into summaries, ratios to the baseline and to an
// oracle, declarative check results, a terminal table, a JSON file and
// charts.
package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"kantai.dev/kantai/internal/bench/load"
	"kantai.dev/kantai/internal/bench/oracle"
	"kantai.dev/kantai/internal/bench/plot"
	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/bench/stats"
)

// Env starts the system under test. The local fleet implements it.
type Env interface {
	// Start brings up the fleet for one scenario cell with one policy and
	// returns when users can send requests: the testbed (sc.Testbed), the
	// function (sc.Function) with its replicas (sc.Replicas: fixed per node,
	// or autoscaled), the policy's load balancer (policy.Name) and its
	// gateway placement (sc.GatewayFor(policy)). Users at node o must reach
	// the gateway sc.GatewayFor(policy).EntryNode(o) through o's emulated
	// links.
	Start(ctx context.Context, sc *scenario.Scenario, policy scenario.Policy) (Instance, error)
}

// Instance is one started fleet. The runner sends the load through it and
// then closes it before starting the next.
type Instance interface {
	load.Target
	// Close stops everything Start started.
	Close() error
}

// Options shape a Run.
type Options struct {
	// OutDir receives results.json and the PNG charts (and CSV records when
	// Records is set); created when missing. Empty writes no files.
	OutDir string
	// Quick uses each scenario's quick durations.
	Quick bool
	// Seed makes open-loop arrivals and the oracle reproducible.
	Seed uint64
	// Policies, when set, runs only these of each scenario's policies.
	Policies []string
	// OracleSamples is the oracle's sample size per cell. Default 20000.
	OracleSamples int
	// Records writes every request of every run as CSV.
	Records bool
	// Out receives the result tables; nil prints nothing.
	Out io.Writer
	// Progress receives a progress bar per run (os.Stderr in the CLI); nil
	// shows none.
	Progress io.Writer
}

// DefaultOracleSamples is the oracle's default sample size per cell.
const DefaultOracleSamples = 20000

// ResultsFile is the JSON file written to Options.OutDir.
const ResultsFile = "results.json"

// Results is everything a Run produced.
type Results struct {
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Quick    bool          `json:"quick"`
	Seed     uint64        `json:"seed"`
	Cells    []*CellResult `json:"scenarios"`
}

// CellResult is one scenario cell: every policy, the oracle and the checks.
type CellResult struct {
	Name        string `json:"name"`
	File        string `json:"file,omitempty"`
	Description string `json:"description,omitempty"`
	Variant     string `json:"variant,omitempty"`
	// Duration and Warmup are the measured window and the warm-up used.
	Duration string `json:"duration"`
	Warmup   string `json:"warmup"`
	// Baseline is the policy every ratio divides by.
	Baseline string          `json:"baseline"`
	Nodes    []string        `json:"nodes"`
	Origins  []string        `json:"origins"`
	Policies []*PolicyResult `json:"policies"`
	Oracle   *OracleResult   `json:"oracle,omitempty"`
	Checks   []CheckResult   `json:"checks"`
	// Files lists the charts and record files written, relative to OutDir.
	Files []string `json:"files,omitempty"`

	latencies map[string][]time.Duration
}

// PolicyResult is one policy's run in a cell.
type PolicyResult struct {
	Policy  string `json:"policy"`
	Gateway string `json:"gateway"`
	// Summary covers every origin; ByOrigin each origin separately. Each
	// summary's servedBy is the share served per node.
	Summary  stats.Summary            `json:"summary"`
	ByOrigin map[string]stats.Summary `json:"byOrigin,omitempty"`
	// WarmupRequests were sent during the warm-up and are not in the stats.
	WarmupRequests int `json:"warmupRequests"`
	// ErrorKinds counts failed requests by status or error text.
	ErrorKinds map[string]int `json:"errorKinds,omitempty"`
	// VsBaseline and VsOracle are this policy's metric divided by the
	// baseline's (or the oracle's).
	VsBaseline map[string]float64 `json:"vsBaseline,omitempty"`
	VsOracle   map[string]float64 `json:"vsOracle,omitempty"`
	// Phases split the measured window at the scenario's events.
	Phases []PhaseResult `json:"phases,omitempty"`
	// Error is set when the run could not be made or was interrupted.
	Error string `json:"error,omitempty"`
	// Warnings note problems that do not invalidate the run, such as a
	// failure to stop the instance.
	Warnings []string `json:"warnings,omitempty"`
}

// OracleResult is the oracle's distribution for a cell.
type OracleResult struct {
	Summary  stats.Summary            `json:"summary"`
	ByOrigin map[string]stats.Summary `json:"byOrigin,omitempty"`
	Choices  []oracle.Choice          `json:"choices"`
	Error    string                   `json:"error,omitempty"`
}

// Checks tallies every cell's check results.
func (r *Results) Checks() (pass, miss, skip int) {
	for _, c := range r.Cells {
		p, m, s := CountChecks(c.Checks)
		pass, miss, skip = pass+p, miss+m, skip+s
	}
	return pass, miss, skip
}

// Run benchmarks every scenario cell with each of its policies, one run at a
// time. It writes outputs as it goes (results.json after every cell, so an
// interrupted run keeps what finished) and returns the results with ctx's
// error if ctx ends early. A policy that fails to start is recorded and the
// run goes on.
func Run(ctx context.Context, env Env, scs []*scenario.Scenario, opts Options) (*Results, error) {
	if opts.OracleSamples <= 0 {
		opts.OracleSamples = DefaultOracleSamples
	}
	if opts.OutDir != "" {
		if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating output directory: %w", err)
		}
	}
	res := &Results{Started: time.Now().UTC(), Quick: opts.Quick, Seed: opts.Seed}
	for _, s := range scs {
		for _, cell := range s.Cells(opts.Quick) {
			cr, err := runCell(ctx, env, cell, opts)
			if cr != nil {
				res.Cells = append(res.Cells, cr)
			}
			res.Finished = time.Now().UTC()
			if werr := writeJSON(opts.OutDir, res); werr != nil {
				return res, werr
			}
			if err != nil {
				return res, err
			}
		}
	}
	if opts.Out != nil {
		printTotals(opts.Out, res)
	}
	return res, nil
}

func runCell(ctx context.Context, env Env, sc *scenario.Scenario, opts Options) (*CellResult, error) {
	cr := &CellResult{
		Name:        sc.Name,
		File:        sc.File,
		Description: sc.Description,
		Variant:     sc.Variant,
		Duration:    sc.Duration.String(),
		Warmup:      sc.Warmup.String(),
		Nodes:       sc.Testbed.NodeNames(),
		Origins:     sc.Origins(),
		latencies:   map[string][]time.Duration{},
	}
	observed := map[string]Observed{}
	var interrupted error
	for _, p := range sc.Policies {
		if len(opts.Policies) > 0 && !slices.Contains(opts.Policies, p.Name) {
			continue
		}
		if cr.Baseline == "" {
			cr.Baseline = p.Name
		}
		pr, lat, err := runPolicy(ctx, env, sc, p, opts)
		cr.Policies = append(cr.Policies, pr)
		cr.latencies[p.Name] = lat
		observed[p.Name] = Observed{Summary: pr.Summary, ByOrigin: pr.ByOrigin, Err: pr.Error}
		if err != nil {
			interrupted = err
			break
		}
	}

	cr.Oracle = runOracle(sc, cr, opts)
	if cr.Oracle.Error == "" {
		observed[scenario.Oracle] = Observed{Summary: cr.Oracle.Summary, ByOrigin: cr.Oracle.ByOrigin}
	} else {
		observed[scenario.Oracle] = Observed{Err: cr.Oracle.Error}
	}
	var base *PolicyResult
	for _, pr := range cr.Policies {
		if pr.Policy == cr.Baseline {
			base = pr
		}
	}
	for _, pr := range cr.Policies {
		if pr.Error != "" {
			continue
		}
		if base != nil && base.Error == "" {
			pr.VsBaseline = Ratios(pr.Summary, base.Summary)
		}
		if cr.Oracle.Error == "" {
			pr.VsOracle = OracleRatios(pr.Summary, cr.Oracle.Summary)
		}
	}
	if interrupted == nil {
		cr.Checks = EvaluateChecks(sc.Checks, observed, cr.Origins)
	}
	if err := writeCharts(sc, cr, opts); err != nil {
		return cr, err
	}
	if opts.Out != nil {
		printCell(opts.Out, cr)
	}
	return cr, interrupted
}

// runPolicy runs one policy; the returned error is only ctx's.
func runPolicy(ctx context.Context, env Env, sc *scenario.Scenario, p scenario.Policy, opts Options) (*PolicyResult, []time.Duration, error) {
	pr := &PolicyResult{Policy: p.Name, Gateway: sc.GatewayFor(p).String()}
	inst, err := env.Start(ctx, sc, p)
	if err != nil {
		pr.Error = fmt.Sprintf("starting: %v", err)
		return pr, nil, ctx.Err()
	}
	var evs *eventRun
	if len(sc.Events) > 0 {
		et, ok := inst.(EventTarget)
		if !ok {
			pr.Error = "the scenario has events, which this environment cannot apply"
			_ = inst.Close()
			return pr, nil, ctx.Err()
		}
		evs = startEvents(ctx, et, sc.Events, time.Now().Add(sc.Warmup.D()))
	}
	var done atomic.Int64
	stop := startProgress(opts.Progress, sc, p.Name, &done)
	out, runErr := load.Run(ctx, inst, Specs(sc), load.Options{
		Warmup:   sc.Warmup.D(),
		Duration: sc.Duration.D(),
		Drain:    sc.Drain.D(),
		Path:     sc.Function.Path,
		Seed:     opts.Seed ^ nameHash(sc.Name+"/"+p.Name),
		Done:     &done,
	})
	stop()
	var applied []appliedEvent
	if evs != nil {
		applied = evs.stop()
	}
	if cerr := inst.Close(); cerr != nil {
		pr.Warnings = append(pr.Warnings, fmt.Sprintf("stopping: %v", cerr))
	}
	if runErr != nil && ctx.Err() == nil {
		pr.Error = runErr.Error()
		return pr, nil, nil
	}
	if ctx.Err() != nil {
		pr.Error = "interrupted"
	}

	obs := make([]stats.Obs, len(out.Records))
	lat := make([]time.Duration, 0, len(out.Records))
	kinds := map[string]int{}
	for i, r := range out.Records {
		ok := r.OK()
		obs[i] = stats.Obs{Origin: r.Origin, Node: r.Node, Latency: r.Duration, OK: ok}
		if ok {
			lat = append(lat, r.Duration)
		} else {
			countKind(kinds, r)
		}
	}
	slices.Sort(lat)
	pr.Summary = stats.Summarize(obs, out.Window)
	pr.ByOrigin = stats.ByOrigin(obs, out.Window)
	pr.WarmupRequests = out.Warmup
	if evs != nil {
		pr.Phases = phases(out.Records, out.Window, applied)
		if len(applied) < len(sc.Events) {
			pr.Warnings = append(pr.Warnings, fmt.Sprintf("%d of %d events applied", len(applied), len(sc.Events)))
		}
	}
	if len(kinds) > 0 {
		pr.ErrorKinds = kinds
	}
	if opts.Records && opts.OutDir != "" {
		if err := writeRecords(filepath.Join(opts.OutDir, recordsFile(sc.Name, p.Name)), out.Records); err != nil {
			return pr, lat, err
		}
	}
	return pr, lat, ctx.Err()
}

// maxErrorKinds bounds the distinct error texts kept per run.
const maxErrorKinds = 10

func countKind(kinds map[string]int, r load.Record) {
	k := r.Err
	if k == "" {
		k = fmt.Sprintf("status %d", r.Status)
	}
	if len(k) > 120 {
		k = k[:120]
	}
	if _, seen := kinds[k]; !seen && len(kinds) >= maxErrorKinds {
		k = "other"
	}
	kinds[k]++
}

// Specs turns a scenario's load list into generator specs.
func Specs(sc *scenario.Scenario) []load.Spec {
	out := make([]load.Spec, 0, len(sc.Load))
	for _, l := range sc.Load {
		s := load.Spec{
			Origin:         l.Origin,
			Users:          l.Users,
			ThinkTime:      l.ThinkTime.D(),
			Rate:           l.Rate,
			MaxOutstanding: l.MaxOutstanding,
			KeepAlive:      !l.NewConnection,
		}
		switch l.Kind {
		case scenario.KindOpen:
			s.Kind = load.Open
		case scenario.KindConcurrency:
			s.Kind = load.Concurrency
		default:
			s.Kind = load.Closed
		}
		out = append(out, s)
	}
	return out
}

// runOracle samples the oracle with the per-origin mix of the first policy
// that recorded requests (equal shares when none did).
func runOracle(sc *scenario.Scenario, cr *CellResult, opts Options) *OracleResult {
	weights := map[string]int{}
	for _, pr := range cr.Policies {
		if pr.Summary.Count == 0 {
			continue
		}
		for o, s := range pr.ByOrigin {
			weights[o] = s.Count
		}
		break
	}
	if len(weights) == 0 {
		for _, o := range cr.Origins {
			weights[o] = 1
		}
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	perOrigin := map[string]int{}
	for o, w := range weights {
		perOrigin[o] = max(1, opts.OracleSamples*w/total)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, nameHash(sc.Name)))
	obs, choices, err := oracle.Sample(oracle.Input{
		Testbed:    sc.Testbed,
		Nodes:      sc.Nodes(),
		Processing: sc.Function.Processing,
		PerOrigin:  perOrigin,
	}, rng)
	if err != nil {
		return &OracleResult{Error: err.Error()}
	}
	lat := make([]time.Duration, len(obs))
	for i, o := range obs {
		lat[i] = o.Latency
	}
	slices.Sort(lat)
	cr.latencies[scenario.Oracle] = lat
	return &OracleResult{
		Summary:  stats.Summarize(obs, 0),
		ByOrigin: stats.ByOrigin(obs, 0),
		Choices:  choices,
	}
}

func writeCharts(sc *scenario.Scenario, cr *CellResult, opts Options) error {
	if opts.OutDir == "" {
		return nil
	}
	var series []plot.Series
	for _, pr := range cr.Policies {
		series = append(series, plot.Series{Name: pr.Policy, Latencies: cr.latencies[pr.Policy]})
	}
	if lat := cr.latencies[scenario.Oracle]; len(lat) > 0 {
		series = append(series, plot.Series{Name: scenario.Oracle, Latencies: lat, Dashed: true})
	}
	title := fmt.Sprintf("%s: response time CDF (%s)", cr.Name, cellCaption(sc))
	cdf := cr.Name + "-cdf.png"
	if err := plot.CDF(filepath.Join(opts.OutDir, cdf), title, series); err != nil {
		return err
	}
	var groups []plot.Group
	for _, pr := range cr.Policies {
		if pr.Summary.Completed == 0 {
			continue
		}
		if len(cr.Origins) > 1 {
			groups = append(groups, plot.Group{Policy: pr.Policy, Origin: "all", Shares: pr.Summary.ServedBy})
		}
		for _, o := range cr.Origins {
			groups = append(groups, plot.Group{Policy: pr.Policy, Origin: "from " + o, Shares: pr.ByOrigin[o].ServedBy})
		}
	}
	served := cr.Name + "-served.png"
	if err := plot.ServedWhere(filepath.Join(opts.OutDir, served), cr.Name+": share served per node", cr.Nodes, groups); err != nil {
		return err
	}
	cr.Files = append(cr.Files, cdf, served)
	if opts.Records {
		for _, pr := range cr.Policies {
			if pr.Error == "" || pr.Error == "interrupted" {
				cr.Files = append(cr.Files, recordsFile(cr.Name, pr.Policy))
			}
		}
	}
	return nil
}

func cellCaption(sc *scenario.Scenario) string {
	var users []string
	for _, l := range sc.Load {
		switch l.Kind {
		case scenario.KindOpen:
			users = append(users, fmt.Sprintf("%g/s at %s", l.Rate, l.Origin))
		default:
			users = append(users, fmt.Sprintf("%d %s at %s", l.Users, l.Kind, l.Origin))
		}
	}
	caption := strings.Join(users, ", ")
	role := map[string]string{}
	for _, n := range sc.Testbed.Nodes {
		role[n.Name] = n.Role
	}
	var links []string
	for _, l := range sc.Testbed.Links {
		if role[l.A] != role[l.B] {
			if d := fmt.Sprintf("%v±%v", l.Latency, l.Jitter); !slices.Contains(links, d) {
				links = append(links, d)
			}
		}
	}
	if len(links) > 0 {
		caption += "; edge–cloud RTT " + strings.Join(links, ", ")
	}
	return caption
}

func recordsFile(cell, policy string) string { return cell + "-" + policy + ".csv" }

func nameHash(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// startProgress shows a time-based bar for one run; the returned func ends it.
func startProgress(w io.Writer, sc *scenario.Scenario, policy string, done *atomic.Int64) func() {
	if w == nil {
		return func() {}
	}
	total := sc.Warmup.D() + sc.Duration.D()
	desc := fmt.Sprintf("%s %s", sc.Name, policy)
	bar := progressbar.NewOptions64(int64(total/(100*time.Millisecond)),
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionOnCompletion(func() { _, _ = fmt.Fprintln(w) }),
	)
	start := time.Now()
	stopc := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopc:
				return
			case <-t.C:
				bar.Describe(fmt.Sprintf("%s (%d req)", desc, done.Load()))
				_ = bar.Set64(min(int64(time.Since(start)/(100*time.Millisecond)), bar.GetMax64()))
			}
		}
	}()
	return func() {
		close(stopc)
		<-finished
		bar.Describe(fmt.Sprintf("%s (%d req)", desc, done.Load()))
		_ = bar.Finish()
	}
}
