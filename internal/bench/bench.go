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
	"math"
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
	// returns when users can send requests: the testbed (sc.Testbed), every
	// function (sc.Functions) with its replicas (fixed per node, or
	// autoscaled), the policy's load balancer (policy.Name) and its gateway
	// placement (sc.GatewayFor(policy)). Users at node o must reach the
	// gateway sc.GatewayFor(policy).EntryNode(o) through o's emulated links;
	// the instance's Host(name) names function name.
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
	Baseline string   `json:"baseline"`
	Nodes    []string `json:"nodes"`
	Origins  []string `json:"origins"`
	// Functions names the cell's functions, in the scenario's order. With
	// more than one, every policy and the oracle also report each function
	// separately (their "functions" lists, in this order).
	Functions []string        `json:"functions"`
	Policies  []*PolicyResult `json:"policies"`
	Oracle    *OracleResult   `json:"oracle,omitempty"`
	Checks    []CheckResult   `json:"checks"`
	// Files lists the charts and record files written, relative to OutDir.
	Files []string `json:"files,omitempty"`

	// latencies holds sorted successful response times by function ("" for
	// all functions together), then by policy name or scenario.Oracle.
	latencies map[string]map[string][]time.Duration
}

// PolicyResult is one policy's run in a cell.
type PolicyResult struct {
	Policy  string `json:"policy"`
	Gateway string `json:"gateway"`
	// Summary covers every origin (and every function); ByOrigin each
	// origin separately. Each summary's servedBy is the share served per
	// node.
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
	// Functions splits the run by function when the cell has several.
	Functions []*FunctionResult `json:"functions,omitempty"`
	// Error is set when the run could not be made or was interrupted.
	Error string `json:"error,omitempty"`
	// Warnings note problems that do not invalidate the run, such as a
	// failure to stop the instance.
	Warnings []string `json:"warnings,omitempty"`
}

// FunctionResult is one function's requests in a policy's run. Its ratios
// divide by the same function's baseline run and oracle.
type FunctionResult struct {
	Function   string                   `json:"function"`
	Summary    stats.Summary            `json:"summary"`
	ByOrigin   map[string]stats.Summary `json:"byOrigin,omitempty"`
	VsBaseline map[string]float64       `json:"vsBaseline,omitempty"`
	VsOracle   map[string]float64       `json:"vsOracle,omitempty"`
}

// OracleResult is the oracle's distribution for a cell. With several
// functions, Summary and ByOrigin mix the functions' oracles in the
// proportions the first policy's users sent, and Functions holds each
// function's own oracle (its processing time, its replicas' nodes).
type OracleResult struct {
	Summary  stats.Summary            `json:"summary"`
	ByOrigin map[string]stats.Summary `json:"byOrigin,omitempty"`
	// Choices are the oracle's node per origin; with several functions
	// they are in Functions.
	Choices   []oracle.Choice   `json:"choices,omitempty"`
	Functions []*FunctionOracle `json:"functions,omitempty"`
	Error     string            `json:"error,omitempty"`
}

// FunctionOracle is one function's oracle distribution and choices.
type FunctionOracle struct {
	Function string                   `json:"function"`
	Summary  stats.Summary            `json:"summary"`
	ByOrigin map[string]stats.Summary `json:"byOrigin,omitempty"`
	Choices  []oracle.Choice          `json:"choices"`
}

// function returns the function's result, nil when absent.
func (pr *PolicyResult) function(name string) *FunctionResult {
	for _, f := range pr.Functions {
		if f.Function == name {
			return f
		}
	}
	return nil
}

// function returns the function's oracle, nil when absent.
func (o *OracleResult) function(name string) *FunctionOracle {
	for _, f := range o.Functions {
		if f.Function == name {
			return f
		}
	}
	return nil
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
		Functions:   sc.FunctionNames(),
		latencies:   map[string]map[string][]time.Duration{},
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
		cr.addLatencies(p.Name, lat)
		observed[p.Name] = observedPolicy(pr, cr.Functions)
		if err != nil {
			interrupted = err
			break
		}
	}

	cr.Oracle = runOracle(sc, cr, opts)
	observed[scenario.Oracle] = observedOracle(cr.Oracle, cr.Functions)
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
		baseOK := base != nil && base.Error == ""
		if baseOK {
			pr.VsBaseline = Ratios(pr.Summary, base.Summary)
		}
		if cr.Oracle.Error == "" {
			pr.VsOracle = OracleRatios(pr.Summary, cr.Oracle.Summary)
		}
		for _, fr := range pr.Functions {
			if baseOK {
				if bf := base.function(fr.Function); bf != nil {
					fr.VsBaseline = Ratios(fr.Summary, bf.Summary)
				}
			}
			if of := cr.Oracle.function(fr.Function); of != nil && cr.Oracle.Error == "" {
				fr.VsOracle = OracleRatios(fr.Summary, of.Summary)
			}
		}
	}
	if interrupted == nil {
		origins := map[string][]string{"": cr.Origins}
		for i := range sc.Functions {
			origins[sc.Functions[i].Name] = sc.Functions[i].Origins()
		}
		cr.Checks = EvaluateChecks(sc.Checks, observed, origins)
	}
	if err := writeCharts(sc, cr, opts); err != nil {
		return cr, err
	}
	if opts.Out != nil {
		printCell(opts.Out, cr)
	}
	return cr, interrupted
}

// addLatencies files one series' (a policy's or the oracle's) sorted
// latencies, given by function ("" for all functions).
func (cr *CellResult) addLatencies(series string, byFunction map[string][]time.Duration) {
	for fn, lat := range byFunction {
		if cr.latencies[fn] == nil {
			cr.latencies[fn] = map[string][]time.Duration{}
		}
		cr.latencies[fn][series] = lat
	}
}

// observedPolicy is what checks read of a policy's run; with one function,
// that function's figures are the run's.
func observedPolicy(pr *PolicyResult, functions []string) Observed {
	o := Observed{Summary: pr.Summary, ByOrigin: pr.ByOrigin, Err: pr.Error, Functions: map[string]Observed{}}
	if len(functions) == 1 {
		o.Functions[functions[0]] = Observed{Summary: pr.Summary, ByOrigin: pr.ByOrigin, Err: pr.Error}
	}
	for _, f := range pr.Functions {
		o.Functions[f.Function] = Observed{Summary: f.Summary, ByOrigin: f.ByOrigin, Err: pr.Error}
	}
	return o
}

func observedOracle(or *OracleResult, functions []string) Observed {
	if or.Error != "" {
		return Observed{Err: or.Error}
	}
	o := Observed{Summary: or.Summary, ByOrigin: or.ByOrigin, Functions: map[string]Observed{}}
	if len(functions) == 1 {
		o.Functions[functions[0]] = Observed{Summary: or.Summary, ByOrigin: or.ByOrigin}
	}
	for _, f := range or.Functions {
		o.Functions[f.Function] = Observed{Summary: f.Summary, ByOrigin: f.ByOrigin}
	}
	return o
}

// runPolicy runs one policy; the returned error is only ctx's. The
// latencies are sorted, by function ("" for all).
func runPolicy(ctx context.Context, env Env, sc *scenario.Scenario, p scenario.Policy, opts Options) (*PolicyResult, map[string][]time.Duration, error) {
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
	byFunction := map[string][]stats.Obs{}
	kinds := map[string]int{}
	for i, r := range out.Records {
		ok := r.OK()
		obs[i] = stats.Obs{Origin: r.Origin, Node: r.Node, Latency: r.Duration, OK: ok}
		if len(sc.Functions) > 1 {
			byFunction[r.Function] = append(byFunction[r.Function], obs[i])
		}
		if !ok {
			countKind(kinds, r)
		}
	}
	lat := map[string][]time.Duration{"": okLatencies(obs)}
	pr.Summary = stats.Summarize(obs, out.Window)
	pr.ByOrigin = stats.ByOrigin(obs, out.Window)
	if len(sc.Functions) > 1 {
		for _, f := range sc.Functions {
			fo := byFunction[f.Name]
			pr.Functions = append(pr.Functions, &FunctionResult{Function: f.Name,
				Summary: stats.Summarize(fo, out.Window), ByOrigin: stats.ByOrigin(fo, out.Window)})
			lat[f.Name] = okLatencies(fo)
		}
	}
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

// okLatencies returns the successful requests' response times, sorted.
func okLatencies(obs []stats.Obs) []time.Duration {
	lat := make([]time.Duration, 0, len(obs))
	for _, o := range obs {
		if o.OK {
			lat = append(lat, o.Latency)
		}
	}
	slices.Sort(lat)
	return lat
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

// Specs turns every function's load list into generator specs, in the
// scenario's order.
func Specs(sc *scenario.Scenario) []load.Spec {
	var out []load.Spec
	for _, f := range sc.Functions {
		for _, l := range f.Load {
			s := load.Spec{
				Function:       f.Name,
				Path:           f.Path,
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
	}
	return out
}

// runOracle samples each function's oracle (its processing time, its
// replicas' nodes) with the per-origin mix of the first policy that recorded
// requests (equal shares when none did). With several functions the cell's
// oracle mixes them in the same policy's proportions.
func runOracle(sc *scenario.Scenario, cr *CellResult, opts Options) *OracleResult {
	var first *PolicyResult
	for _, pr := range cr.Policies {
		if pr.Summary.Count > 0 {
			first = pr
			break
		}
	}
	several := len(sc.Functions) > 1
	res := &OracleResult{}
	parts := make([][]stats.Obs, len(sc.Functions))
	shares := make([]float64, len(sc.Functions))
	for i := range sc.Functions {
		f := &sc.Functions[i]
		var byOrigin map[string]stats.Summary
		if first != nil {
			byOrigin = first.ByOrigin
			if fr := first.function(f.Name); fr != nil {
				byOrigin = fr.ByOrigin
			}
		}
		weights := map[string]int{}
		for o, s := range byOrigin {
			if s.Count > 0 {
				weights[o] = s.Count
			}
		}
		if len(weights) == 0 {
			for _, o := range f.Origins() {
				weights[o] = 1
			}
		}
		total := 0
		for _, w := range weights {
			total += w
		}
		if first != nil && several {
			if fr := first.function(f.Name); fr != nil {
				shares[i] = float64(fr.Summary.Count)
			}
		} else {
			shares[i] = 1
		}
		perOrigin := map[string]int{}
		for o, w := range weights {
			perOrigin[o] = max(1, opts.OracleSamples*w/total)
		}
		// One function keeps the seed its cell always had.
		stream := sc.Name
		if several {
			stream += "/" + f.Name
		}
		rng := rand.New(rand.NewPCG(opts.Seed, nameHash(stream)))
		obs, choices, err := oracle.Sample(oracle.Input{
			Testbed:    sc.Testbed,
			Nodes:      f.Nodes(sc.Testbed),
			Processing: f.Processing,
			PerOrigin:  perOrigin,
		}, rng)
		if err != nil {
			if several {
				return &OracleResult{Error: fmt.Sprintf("function %s: %v", f.Name, err)}
			}
			return &OracleResult{Error: err.Error()}
		}
		parts[i] = obs
		if !several {
			res.Choices = choices
			continue
		}
		res.Functions = append(res.Functions, &FunctionOracle{Function: f.Name,
			Summary: stats.Summarize(obs, 0), ByOrigin: stats.ByOrigin(obs, 0), Choices: choices})
		cr.addLatencies(scenario.Oracle, map[string][]time.Duration{f.Name: okLatencies(obs)})
	}
	all := mix(parts, shares)
	res.Summary = stats.Summarize(all, 0)
	res.ByOrigin = stats.ByOrigin(all, 0)
	cr.addLatencies(scenario.Oracle, map[string][]time.Duration{"": okLatencies(all)})
	return res
}

// mix draws one sample from several, part i making up shares[i] of it
// (equal shares when all are zero). It takes evenly spaced elements of each
// part, which keeps a part's own mix of origins, and makes the result as
// large as the parts allow.
func mix(parts [][]stats.Obs, shares []float64) []stats.Obs {
	if len(parts) == 1 {
		return parts[0]
	}
	total := 0.0
	for _, s := range shares {
		total += s
	}
	if total == 0 {
		for i := range shares {
			shares[i] = 1
		}
		total = float64(len(shares))
	}
	size := math.Inf(1)
	for i, p := range parts {
		if shares[i] > 0 {
			size = min(size, float64(len(p))*total/shares[i])
		}
	}
	var out []stats.Obs
	for i, p := range parts {
		k := min(len(p), int(math.Round(size*shares[i]/total)))
		for j := range k {
			out = append(out, p[j*len(p)/k])
		}
	}
	return out
}

// writeCharts draws the cell's CDF and served-where charts; with several
// functions, one pair per function, named after it.
func writeCharts(sc *scenario.Scenario, cr *CellResult, opts Options) error {
	if opts.OutDir == "" {
		return nil
	}
	if len(sc.Functions) == 1 {
		summary := func(pr *PolicyResult) (stats.Summary, map[string]stats.Summary) { return pr.Summary, pr.ByOrigin }
		if err := writeChartPair(opts.OutDir, cr, cr.Name, cr.Name, cellCaption(sc, sc.Functions[0].Load),
			cr.latencies[""], cr.Origins, summary); err != nil {
			return err
		}
	}
	for i := range sc.Functions {
		if len(sc.Functions) == 1 {
			break
		}
		f := &sc.Functions[i]
		summary := func(pr *PolicyResult) (stats.Summary, map[string]stats.Summary) {
			if fr := pr.function(f.Name); fr != nil {
				return fr.Summary, fr.ByOrigin
			}
			return stats.Summary{}, nil
		}
		caption := fmt.Sprintf("%s; %s", f.Processing, cellCaption(sc, f.Load))
		if err := writeChartPair(opts.OutDir, cr, cr.Name+"-"+f.Name, cr.Name+"/"+f.Name, caption,
			cr.latencies[f.Name], f.Origins(), summary); err != nil {
			return err
		}
	}
	if opts.Records {
		for _, pr := range cr.Policies {
			if pr.Error == "" || pr.Error == "interrupted" {
				cr.Files = append(cr.Files, recordsFile(cr.Name, pr.Policy))
			}
		}
	}
	return nil
}

// writeChartPair writes <base>-cdf.png and <base>-served.png.
func writeChartPair(dir string, cr *CellResult, base, title, caption string, lat map[string][]time.Duration,
	origins []string, summary func(*PolicyResult) (stats.Summary, map[string]stats.Summary)) error {
	var series []plot.Series
	for _, pr := range cr.Policies {
		series = append(series, plot.Series{Name: pr.Policy, Latencies: lat[pr.Policy]})
	}
	if ol := lat[scenario.Oracle]; len(ol) > 0 {
		series = append(series, plot.Series{Name: scenario.Oracle, Latencies: ol, Dashed: true})
	}
	cdf := base + "-cdf.png"
	if err := plot.CDF(filepath.Join(dir, cdf), fmt.Sprintf("%s: response time CDF (%s)", title, caption), series); err != nil {
		return err
	}
	var groups []plot.Group
	for _, pr := range cr.Policies {
		s, byOrigin := summary(pr)
		if s.Completed == 0 {
			continue
		}
		if len(origins) > 1 {
			groups = append(groups, plot.Group{Policy: pr.Policy, Origin: "all", Shares: s.ServedBy})
		}
		for _, o := range origins {
			groups = append(groups, plot.Group{Policy: pr.Policy, Origin: "from " + o, Shares: byOrigin[o].ServedBy})
		}
	}
	served := base + "-served.png"
	if err := plot.ServedWhere(filepath.Join(dir, served), title+": share served per node", cr.Nodes, groups); err != nil {
		return err
	}
	cr.Files = append(cr.Files, cdf, served)
	return nil
}

func cellCaption(sc *scenario.Scenario, loads []scenario.Load) string {
	var users []string
	for _, l := range loads {
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
