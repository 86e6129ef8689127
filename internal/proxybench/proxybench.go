// Package proxybench measures the kantai gateway's overhead as a reverse
// proxy: one node, one function, one local replica, against a bare
// net/http/httputil.ReverseProxy and against nginx in front of the same
// loopback backend, with the same load generator, interleaved in rounds.
//
// For every target it measures latency at a fixed request rate (open loop),
// requests per second at saturation (closed loop, keep-alive connections),
// and the proxy's CPU time per request at saturation, read from /proc. The
// Go servers run in child processes of the same binary (see
// MaybeServeChild) so their CPU time is their own. Absolute figures drift
// with the machine; the ratios of one run are what the report judges.
package proxybench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Options configure a comparison. Zero fields take the defaults.
type Options struct {
	// Duration is the measured length of each run (default 10s).
	Duration time.Duration `json:"duration"`
	// Warmup precedes each run, unmeasured (default Duration/5, 0.1–2s).
	Warmup time.Duration `json:"warmup"`
	// Rounds repeats the interleaved runs (default 3).
	Rounds int `json:"rounds"`
	// Rate is the open loop's requests per second (default 2000).
	Rate int `json:"rate"`
	// Concurrency is the closed loop's connections (default 32).
	Concurrency int `json:"concurrency"`
	// NginxPath is the nginx binary; empty looks "nginx" up on PATH.
	NginxPath string `json:"nginx_path,omitempty"`
	// NoNginx leaves nginx out even when it is installed.
	NoNginx bool `json:"no_nginx,omitempty"`
	// NginxHeaders adds a second nginx, "nginx-headers", that does the
	// gateway's header work too (nginxKantaiHeaders): compared with the
	// gateway for information, not judged.
	NginxHeaders bool `json:"nginx_headers,omitempty"`
	// MaxOtherCores is how much CPU (in cores) other programs of the
	// machine may use during a run before the run is thrown away and
	// repeated (default 0.10; negative: never).
	MaxOtherCores float64 `json:"max_other_cores"`
	// Reruns bounds the repetitions of one disturbed run (default 2).
	Reruns int `json:"reruns"`
	// Variants adds kantai gateways run with other settings, each a
	// space-separated list of environment settings for its process
	// ("GOMAXPROCS=1 GOGC=400"); they are measured in the same rounds,
	// named "kantai " + the settings, and compared with nginx.
	Variants []string `json:"variants,omitempty"`
	// External adds proxies built elsewhere, each "name=program" or
	// "name=ENV=V ... program": the program is started like the package's
	// own children (see startProgram), with those settings, and measured
	// in the same rounds.
	External []string `json:"external,omitempty"`
	// ProxyProcs is the GOMAXPROCS of the Go proxies (kantai, httputil,
	// variants and external programs that set none of their own), so
	// that they get the CPU allowance of nginx's single worker process
	// (default 1; negative: inherit this process's setting).
	ProxyProcs int `json:"proxy_procs"`
	// AnswerBytes sizes the backend's answers (default: the 2 bytes "ok").
	AnswerBytes int `json:"answer_bytes,omitempty"`
	// UploadBytes has every request POST a body of this many bytes
	// (default: a GET without one).
	UploadBytes int `json:"upload_bytes,omitempty"`
}

func (o Options) withDefaults() Options {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = min(max(o.Duration/5, 100*time.Millisecond), 2*time.Second)
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.Rate <= 0 {
		o.Rate = 2000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.MaxOtherCores == 0 {
		o.MaxOtherCores = 0.10
	}
	if o.Reruns <= 0 {
		o.Reruns = 2
	}
	if o.ProxyProcs == 0 {
		o.ProxyProcs = 1
	}
	return o
}

// Target names, in the order of each round.
const (
	TargetDirect = "direct"
	TargetNginx  = "nginx"
	// TargetNginxHeaders is nginx doing the gateway's header work
	// (Options.NginxHeaders).
	TargetNginxHeaders = "nginx-headers"
	TargetHTTPUtil     = "httputil"
	TargetKantai       = "kantai"
)

// Figures are one run's measurements, or the medians over rounds.
// Latencies are in microseconds, CPU in microseconds per request.
type Figures struct {
	// Open loop at Options.Rate.
	P50 float64 `json:"p50_us"`
	P90 float64 `json:"p90_us"`
	P99 float64 `json:"p99_us"`
	// OpenRequests and OpenErrors count the open loop's answers.
	OpenRequests int64 `json:"open_requests"`
	OpenErrors   int64 `json:"open_errors"`
	// Closed loop with Options.Concurrency connections.
	RPS            float64 `json:"rps"`
	ClosedP50      float64 `json:"closed_p50_us"`
	ClosedP99      float64 `json:"closed_p99_us"`
	ClosedRequests int64   `json:"closed_requests"`
	ClosedErrors   int64   `json:"closed_errors"`
	// CPU per request during the closed loop: the proxy's (0 for direct),
	// the backend's and the load generator's.
	ProxyCPU   float64 `json:"proxy_cpu_us_per_req"`
	BackendCPU float64 `json:"backend_cpu_us_per_req"`
	LoadCPU    float64 `json:"loadgen_cpu_us_per_req"`
	// OtherCores is the CPU other programs of the machine used during the
	// run (the larger of the two phases), in cores.
	OtherCores float64 `json:"other_cores"`
}

// RoundResult is one target's measurement in one round.
type RoundResult struct {
	Round int `json:"round"`
	Figures
	// Reruns counts the times this run was repeated for disturbance.
	Reruns int `json:"reruns,omitempty"`
	// Disturbed is set when the run was still disturbed after the reruns.
	Disturbed bool   `json:"disturbed,omitempty"`
	FirstErr  string `json:"first_error,omitempty"`
}

// TargetResult is one target's runs and their medians.
type TargetResult struct {
	Name     string `json:"name"`
	Measured bool   `json:"measured"`
	// Note says why a target was not measured, or what it was (version).
	Note   string        `json:"note,omitempty"`
	Runs   []RoundResult `json:"runs,omitempty"`
	Median Figures       `json:"median"`
}

// Ratio compares two targets' medians (A/B); 0 where not measured.
type Ratio struct {
	Name      string  `json:"name"` // "kantai/httputil"
	P50       float64 `json:"p50"`
	P99       float64 `json:"p99"`
	RPS       float64 `json:"rps"`
	CPU       float64 `json:"cpu_per_req"`
	ClosedP50 float64 `json:"closed_p50"`
	Measured  bool    `json:"measured"`
}

// Check statuses.
const (
	Pass        = "PASS"
	Miss        = "MISS"
	NotMeasured = "NOT MEASURED"
)

// Check is one target of the issue, judged on a ratio.
type Check struct {
	Name   string  `json:"name"`   // "p50 @ fixed rate vs httputil"
	Ratio  string  `json:"ratio"`  // "kantai/httputil p50"
	Want   string  `json:"want"`   // "< 1"
	Value  float64 `json:"value"`  // the measured ratio (0 if not measured)
	Status string  `json:"status"` // PASS, MISS, NOT MEASURED
	Detail string  `json:"detail,omitempty"`
}

// Result is a whole comparison.
type Result struct {
	Options      Options        `json:"options"`
	Started      time.Time      `json:"started"`
	Elapsed      time.Duration  `json:"elapsed"`
	GoVersion    string         `json:"go_version"`
	NginxVersion string         `json:"nginx_version,omitempty"`
	CPUs         int            `json:"cpus"`
	Targets      []TargetResult `json:"targets"`
	Ratios       []Ratio        `json:"ratios"`
	Checks       []Check        `json:"checks"`
	// VariantChecks are the same targets judged for each --variant
	// gateway (the ratios named after it); they do not count in Passed,
	// which is the shipped gateway's verdict.
	VariantChecks []Check `json:"variant_checks,omitempty"`
	// Passed is true when every check passed (none missed or unmeasured).
	Passed bool     `json:"passed"`
	Notes  []string `json:"notes,omitempty"`
}

// Target returns the named target's result, or nil.
func (r *Result) Target(name string) *TargetResult {
	for i := range r.Targets {
		if r.Targets[i].Name == name {
			return &r.Targets[i]
		}
	}
	return nil
}

type target struct {
	name string
	addr string
	srv  *server // nil for direct
}

// Run starts the backend and the proxies, measures them in interleaved
// rounds, writes progress and a report to out, and returns the figures.
// The caller's program must call MaybeServeChild at startup.
func Run(ctx context.Context, opts Options, out io.Writer) (Result, error) {
	if out == nil {
		out = io.Discard
	}
	opts = opts.withDefaults()
	res := Result{Options: opts, Started: time.Now(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	defer func() { res.Elapsed = time.Since(res.Started).Round(time.Millisecond) }()

	if opts.AnswerBytes < 0 || opts.UploadBytes < 0 {
		return res, fmt.Errorf("answer bytes %d, upload bytes %d: want 0 or more", opts.AnswerBytes, opts.UploadBytes)
	}
	var backendEnv []string
	if opts.AnswerBytes > 0 {
		backendEnv = []string{fmt.Sprintf("%s=%d", envAnswerBytes, opts.AnswerBytes)}
	}
	backend, err := startChild(ctx, roleBackend, "", backendEnv)
	if err != nil {
		return res, fmt.Errorf("backend: %w", err)
	}
	defer backend.stop()
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	targets := []target{{name: TargetDirect, addr: backend.addr}}
	res.Targets = append(res.Targets, TargetResult{Name: TargetDirect, Measured: true, Note: "the backend itself"})

	nginxRes := TargetResult{Name: TargetNginx}
	switch path := opts.NginxPath; {
	case opts.NoNginx:
		nginxRes.Note = "left out (NoNginx)"
	default:
		if path == "" {
			path, err = lookNginx()
		}
		if err != nil || path == "" {
			nginxRes.Note = "not installed (" + NginxHint + ")"
			break
		}
		res.NginxVersion = nginxVersion(path)
		s, err := startNginx(ctx, path, backend.addr, "")
		if err != nil {
			nginxRes.Note = "failed to start: " + err.Error()
			break
		}
		servers = append(servers, s)
		targets = append(targets, target{name: TargetNginx, addr: s.addr, srv: s})
		nginxRes.Measured = true
		nginxRes.Note = res.NginxVersion + ", worker_processes 1, upstream keepalive 64"
		if opts.NginxHeaders {
			s, err := startNginx(ctx, path, backend.addr, nginxKantaiHeaders)
			if err != nil {
				return res, fmt.Errorf("%s: %w", TargetNginxHeaders, err)
			}
			servers = append(servers, s)
			targets = append(targets, target{name: TargetNginxHeaders, addr: s.addr, srv: s})
		}
	}
	res.Targets = append(res.Targets, nginxRes)
	if nginxRes.Measured && opts.NginxHeaders {
		res.Targets = append(res.Targets, TargetResult{Name: TargetNginxHeaders, Measured: true,
			Note: "as nginx, with the gateway's request and answer headers"})
	}
	if !nginxRes.Measured {
		res.Notes = append(res.Notes, "nginx: "+nginxRes.Note)
	}

	// procs gives a proxy child the GOMAXPROCS of the comparison unless
	// its own settings name one.
	procs := func(env []string) []string {
		if opts.ProxyProcs < 0 || slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "GOMAXPROCS=") }) {
			return env
		}
		return append(slices.Clip(env), fmt.Sprintf("GOMAXPROCS=%d", opts.ProxyProcs))
	}
	for _, role := range []string{roleHTTPUtil, roleKantai} {
		s, err := startChild(ctx, role, backend.addr, procs(nil))
		if err != nil {
			return res, err
		}
		servers = append(servers, s)
		targets = append(targets, target{name: role, addr: s.addr, srv: s})
	}
	res.Targets = append(res.Targets,
		TargetResult{Name: TargetHTTPUtil, Measured: true, Note: "httputil.ReverseProxy, MaxIdleConnsPerHost 256, no buffer pool, " + procsNote(procs(nil))},
		TargetResult{Name: TargetKantai, Measured: true, Note: "gateway.New: node1, hello.default, 1 replica, policy kantai, " + procsNote(procs(nil))})
	for _, v := range opts.Variants {
		name := variantTarget(v)
		env := procs(strings.Fields(v))
		s, err := startChild(ctx, roleKantai, backend.addr, env)
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		servers = append(servers, s)
		targets = append(targets, target{name: name, addr: s.addr, srv: s})
		res.Targets = append(res.Targets, TargetResult{Name: name, Measured: true, Note: "as kantai, " + procsNote(env)})
	}
	for _, e := range opts.External {
		name, rest, _ := strings.Cut(e, "=")
		fields := strings.Fields(rest)
		if name == "" || len(fields) == 0 {
			return res, fmt.Errorf("external target %q: want name=program or name=ENV=V ... program", e)
		}
		exe, env := fields[len(fields)-1], procs(fields[:len(fields)-1])
		s, err := startProgram(ctx, exe, name, backend.addr, env)
		if err != nil {
			return res, fmt.Errorf("external target %s: %w", name, err)
		}
		servers = append(servers, s)
		targets = append(targets, target{name: name, addr: s.addr, srv: s})
		res.Targets = append(res.Targets, TargetResult{Name: name, Measured: true, Note: exe + ", " + strings.Join(env, " ")})
	}

	for _, t := range targets {
		if err := probe(t.addr); err != nil {
			return res, fmt.Errorf("%s at %s: %w", t.name, t.addr, err)
		}
	}

	fmt.Fprintf(out, "proxy overhead: %d rounds, %v per run (+%v warm-up), open loop %d req/s, closed loop c=%d, %d CPUs, %s, Go proxies at %s%s\n",
		opts.Rounds, opts.Duration, opts.Warmup, opts.Rate, opts.Concurrency, res.CPUs, res.GoVersion, procsNote(procs(nil)), bodiesNote(opts))
	for round := 1; round <= opts.Rounds; round++ {
		for _, t := range targets {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			run := RoundResult{Round: round}
			for {
				f, firstErr, err := measure(t, backend, opts)
				if err != nil {
					return res, fmt.Errorf("%s, round %d: %w", t.name, round, err)
				}
				run.Figures, run.FirstErr = f, firstErr
				if opts.MaxOtherCores < 0 || f.OtherCores <= opts.MaxOtherCores {
					run.Disturbed = false
					break
				}
				run.Disturbed = true
				if run.Reruns >= opts.Reruns {
					break
				}
				run.Reruns++
				fmt.Fprintf(out, "  %-8s round %d disturbed (other programs used %.2f cores): rerun\n", t.name, round, f.OtherCores)
			}
			tr := res.Target(t.name)
			tr.Runs = append(tr.Runs, run)
			fmt.Fprintf(out, "  %-8s round %d: p50 %6.0fµs p99 %6.0fµs | %7.0f req/s, proxy CPU %5.1fµs/req%s\n",
				t.name, round, run.P50, run.P99, run.RPS, run.ProxyCPU, disturbedMark(run))
		}
	}
	for i := range res.Targets {
		res.Targets[i].Median = medians(res.Targets[i].Runs)
		for _, r := range res.Targets[i].Runs {
			if r.OpenErrors+r.ClosedErrors > 0 {
				res.Notes = append(res.Notes, fmt.Sprintf("%s round %d: %d errors (first: %s)",
					res.Targets[i].Name, r.Round, r.OpenErrors+r.ClosedErrors, r.FirstErr))
			}
			if r.Disturbed {
				res.Notes = append(res.Notes, fmt.Sprintf("%s round %d: still disturbed after %d reruns (other programs used %.2f cores)",
					res.Targets[i].Name, r.Round, r.Reruns, r.OtherCores))
			}
		}
	}
	judge(&res)
	Report(out, &res)
	return res, nil
}

func lookNginx() (string, error) { return exec.LookPath("nginx") }

// bodiesNote states the bodies of the load when it has any.
func bodiesNote(o Options) string {
	s := ""
	if o.UploadBytes > 0 {
		s += fmt.Sprintf(", POST of %d B", o.UploadBytes)
	}
	if o.AnswerBytes > 0 {
		s += fmt.Sprintf(", answers of %d B", o.AnswerBytes)
	}
	return s
}

// procsNote states the GOMAXPROCS a child runs with: from its extra
// environment, else this process's, else the number of CPUs.
func procsNote(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GOMAXPROCS="); ok {
			return "GOMAXPROCS " + v
		}
	}
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		return "GOMAXPROCS " + v
	}
	return fmt.Sprintf("GOMAXPROCS %d (the CPUs)", runtime.NumCPU())
}

func disturbedMark(r RoundResult) string {
	if r.Disturbed {
		return fmt.Sprintf("  (disturbed: %.2f other cores)", r.OtherCores)
	}
	return ""
}

// probe sends one request and checks the answer.
func probe(addr string) error {
	c := &client{addr: addr, req: buildRequest(benchHost, 0)}
	defer c.close()
	var err error
	for i := 0; i < 50; i++ {
		var code int
		if code, err = c.do(); err == nil {
			if code != 200 {
				return fmt.Errorf("probe answered %d", code)
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("probe: %w", err)
}

// cpuSnap is the CPU time of everything a run accounts for.
type cpuSnap struct {
	proxy, backend, self time.Duration
	all                  map[int]time.Duration
	ours                 []int
	err                  error
}

func snapshot(t target, backend *server) cpuSnap {
	var s cpuSnap
	var errs [3]error
	s.ours = append(backend.pids(), os.Getpid())
	if t.srv != nil {
		pids := t.srv.pids()
		s.proxy, errs[0] = sumCPU(pids)
		s.ours = append(s.ours, pids...)
	}
	s.backend, errs[1] = sumCPU(backend.pids())
	s.self, errs[2] = procCPU(os.Getpid())
	s.all = allCPU()
	s.err = errors.Join(errs[:]...)
	return s
}

// otherCores is the CPU used by programs outside the run, in cores.
func otherCores(a, b cpuSnap, window time.Duration) float64 {
	return float64(othersDelta(a.all, b.all, b.ours)) / float64(window)
}

// measure runs the open and the closed loop against one target.
func measure(t target, backend *server, opts Options) (Figures, string, error) {
	var f Figures
	var a, b cpuSnap
	w := window{
		warmup: opts.Warmup, length: opts.Duration,
		atStart: func() { a = snapshot(t, backend) },
		atEnd:   func() { b = snapshot(t, backend) },
	}
	req := buildRequest(benchHost, opts.UploadBytes)
	open := openLoop(t.addr, req, opts.Rate, w)
	if a.err != nil || b.err != nil {
		return f, "", fmt.Errorf("reading CPU times: %w", errors.Join(a.err, b.err))
	}
	lat := sortedLatencies(&open)
	f.P50, f.P90, f.P99 = percentileUS(lat, .50), percentileUS(lat, .90), percentileUS(lat, .99)
	f.OpenRequests, f.OpenErrors = open.requests, open.errors
	f.OtherCores = otherCores(a, b, opts.Duration)

	closed := closedLoop(t.addr, req, opts.Concurrency, w)
	if a.err != nil || b.err != nil {
		return f, "", fmt.Errorf("reading CPU times: %w", errors.Join(a.err, b.err))
	}
	lat = sortedLatencies(&closed)
	f.ClosedP50, f.ClosedP99 = percentileUS(lat, .50), percentileUS(lat, .99)
	f.ClosedRequests, f.ClosedErrors = closed.requests, closed.errors
	f.RPS = float64(closed.requests) / opts.Duration.Seconds()
	if n := float64(closed.requests); n > 0 {
		f.ProxyCPU = float64(b.proxy-a.proxy) / 1e3 / n
		f.BackendCPU = float64(b.backend-a.backend) / 1e3 / n
		f.LoadCPU = float64(b.self-a.self) / 1e3 / n
	}
	f.OtherCores = max(f.OtherCores, otherCores(a, b, opts.Duration))

	firstErr := open.firstErr
	if firstErr == nil {
		firstErr = closed.firstErr
	}
	if firstErr != nil {
		return f, firstErr.Error(), nil
	}
	return f, "", nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medians(runs []RoundResult) Figures {
	pick := func(get func(*Figures) float64) float64 {
		xs := make([]float64, len(runs))
		for i := range runs {
			xs[i] = get(&runs[i].Figures)
		}
		return median(xs)
	}
	var m Figures
	m.P50 = pick(func(f *Figures) float64 { return f.P50 })
	m.P90 = pick(func(f *Figures) float64 { return f.P90 })
	m.P99 = pick(func(f *Figures) float64 { return f.P99 })
	m.OpenRequests = int64(pick(func(f *Figures) float64 { return float64(f.OpenRequests) }))
	m.OpenErrors = int64(pick(func(f *Figures) float64 { return float64(f.OpenErrors) }))
	m.RPS = pick(func(f *Figures) float64 { return f.RPS })
	m.ClosedP50 = pick(func(f *Figures) float64 { return f.ClosedP50 })
	m.ClosedP99 = pick(func(f *Figures) float64 { return f.ClosedP99 })
	m.ClosedRequests = int64(pick(func(f *Figures) float64 { return float64(f.ClosedRequests) }))
	m.ClosedErrors = int64(pick(func(f *Figures) float64 { return float64(f.ClosedErrors) }))
	m.ProxyCPU = pick(func(f *Figures) float64 { return f.ProxyCPU })
	m.BackendCPU = pick(func(f *Figures) float64 { return f.BackendCPU })
	m.LoadCPU = pick(func(f *Figures) float64 { return f.LoadCPU })
	m.OtherCores = pick(func(f *Figures) float64 { return f.OtherCores })
	return m
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func compare(res *Result, a, b string) Ratio {
	r := Ratio{Name: a + "/" + b}
	ta, tb := res.Target(a), res.Target(b)
	if ta == nil || tb == nil || !ta.Measured || !tb.Measured || len(ta.Runs) == 0 || len(tb.Runs) == 0 {
		return r
	}
	ma, mb := ta.Median, tb.Median
	r.Measured = true
	r.P50, r.P99 = ratio(ma.P50, mb.P50), ratio(ma.P99, mb.P99)
	r.RPS, r.CPU = ratio(ma.RPS, mb.RPS), ratio(ma.ProxyCPU, mb.ProxyCPU)
	r.ClosedP50 = ratio(ma.ClosedP50, mb.ClosedP50)
	return r
}

// judge computes the ratios and the checks.
func judge(res *Result) {
	vsHTTP := compare(res, TargetKantai, TargetHTTPUtil)
	vsNginx := compare(res, TargetKantai, TargetNginx)
	res.Ratios = []Ratio{vsHTTP, vsNginx,
		compare(res, TargetNginx, TargetDirect), compare(res, TargetHTTPUtil, TargetDirect),
		compare(res, TargetKantai, TargetDirect)}
	for _, v := range res.Options.Variants {
		name := variantTarget(v)
		res.Ratios = append(res.Ratios, compare(res, name, TargetNginx), compare(res, name, TargetKantai))
	}
	for _, e := range res.Options.External {
		name, _, _ := strings.Cut(e, "=")
		res.Ratios = append(res.Ratios, compare(res, name, TargetNginx), compare(res, name, TargetKantai))
	}
	if res.Options.NginxHeaders {
		res.Ratios = append(res.Ratios, compare(res, TargetKantai, TargetNginxHeaders), compare(res, TargetNginxHeaders, TargetNginx))
	}
	res.Checks = targetChecks(res, TargetKantai)
	for _, v := range res.Options.Variants {
		res.VariantChecks = append(res.VariantChecks, targetChecks(res, variantTarget(v))...)
	}
	res.Passed = true
	for _, c := range res.Checks {
		if c.Status != Pass {
			res.Passed = false
		}
	}
}

// variantTarget names the gateway target of --variant v ("ENV=V …").
func variantTarget(v string) string { return TargetKantai + " " + strings.Join(strings.Fields(v), " ") }

// targetChecks judges the targets for the gateway target name:
// better than httputil on all four, and within the bounds of nginx.
func targetChecks(res *Result, name string) []Check {
	vsHTTP := compare(res, name, TargetHTTPUtil)
	vsNginx := compare(res, name, TargetNginx)
	check := func(what, ratioName string, r Ratio, v float64, want string, ok bool) Check {
		c := Check{Name: what, Ratio: name + "/" + ratioName, Want: want}
		switch {
		case !r.Measured || v == 0:
			c.Status = NotMeasured
			if t := res.Target(TargetNginx); strings.HasPrefix(ratioName, TargetNginx) && t != nil && !t.Measured {
				c.Detail = "nginx " + t.Note
			}
		case ok:
			c.Status, c.Value = Pass, v
		default:
			c.Status, c.Value = Miss, v
		}
		return c
	}
	return []Check{
		check("p50 at fixed rate, better than httputil", "httputil p50", vsHTTP, vsHTTP.P50, "< 1", vsHTTP.P50 < 1),
		check("p99 at fixed rate, better than httputil", "httputil p99", vsHTTP, vsHTTP.P99, "< 1", vsHTTP.P99 < 1),
		check("req/s at saturation, better than httputil", "httputil req/s", vsHTTP, vsHTTP.RPS, "> 1", vsHTTP.RPS > 1),
		check("CPU per request, better than httputil", "httputil CPU/req", vsHTTP, vsHTTP.CPU, "< 1", vsHTTP.CPU < 1),
		check("p50 at fixed rate, within 1.1x nginx", "nginx p50", vsNginx, vsNginx.P50, "<= 1.1", vsNginx.P50 <= 1.1),
		check("p99 at fixed rate, within 1.2x nginx", "nginx p99", vsNginx, vsNginx.P99, "<= 1.2", vsNginx.P99 <= 1.2),
		check("req/s at saturation, at least 0.9x nginx", "nginx req/s", vsNginx, vsNginx.RPS, ">= 0.9", vsNginx.RPS >= 0.9),
		check("CPU per request, within 1.5x nginx", "nginx CPU/req", vsNginx, vsNginx.CPU, "<= 1.5", vsNginx.CPU <= 1.5),
	}
}

// Report writes the result as tables.
func Report(out io.Writer, res *Result) {
	o := res.Options
	fmt.Fprintf(out, "\nGateway overhead, medians of %d rounds (%v per run, loopback, %d CPUs, %s", o.Rounds, o.Duration, res.CPUs, res.GoVersion)
	if res.NginxVersion != "" {
		fmt.Fprintf(out, ", %s", res.NginxVersion)
	}
	fmt.Fprintf(out, "%s", bodiesNote(o))
	fmt.Fprintln(out, ")")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "target\t%d/s p50 µs\tp90\tp99\tc=%d req/s\tp50 µs\tp99 µs\tproxy CPU µs/req\tbackend\tload gen\terrors\t\n", o.Rate, o.Concurrency)
	for _, t := range res.Targets {
		if !t.Measured {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t\t\t\n", t.Name, "not measured")
			continue
		}
		m := t.Median
		cpu := fmt.Sprintf("%.1f", m.ProxyCPU)
		if t.Name == TargetDirect {
			cpu = "–"
		}
		var errs int64
		for _, r := range t.Runs {
			errs += r.OpenErrors + r.ClosedErrors
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%.1f\t%.1f\t%d\t\n",
			t.Name, m.P50, m.P90, m.P99, m.RPS, m.ClosedP50, m.ClosedP99, cpu, m.BackendCPU, m.LoadCPU, errs)
	}
	tw.Flush()

	fmt.Fprintln(out, "\nRatios of medians")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "ratio\tp50 @%d/s\tp99 @%d/s\treq/s @c=%d\tp50 @c=%d\tproxy CPU/req\t\n", o.Rate, o.Rate, o.Concurrency, o.Concurrency)
	for _, r := range res.Ratios {
		if !r.Measured {
			fmt.Fprintf(tw, "%s\tnot measured\t\t\t\t\t\n", r.Name)
			continue
		}
		cpu := fmt.Sprintf("%.2f", r.CPU)
		if strings.HasSuffix(r.Name, "/"+TargetDirect) {
			cpu = "–"
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t\n", r.Name, r.P50, r.P99, r.RPS, r.ClosedP50, cpu)
	}
	tw.Flush()

	fmt.Fprintln(out, "\nTargets")
	printChecks(out, res.Checks)
	if len(res.VariantChecks) > 0 {
		fmt.Fprintln(out, "\nThe same targets for the variants (not in the exit status)")
		printChecks(out, res.VariantChecks)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
}

func printChecks(out io.Writer, checks []Check) {
	for _, c := range checks {
		v := "–"
		if c.Status != NotMeasured {
			v = fmt.Sprintf("%.2f", c.Value)
		}
		fmt.Fprintf(out, "  %-12s %-44s %-24s = %-5s (want %s)", c.Status, c.Name, c.Ratio, v, c.Want)
		if c.Detail != "" {
			fmt.Fprintf(out, "  %s", c.Detail)
		}
		fmt.Fprintln(out)
	}
}
