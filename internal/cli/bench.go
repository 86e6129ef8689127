package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"kantai.dev/kantai/internal/bench"
	"kantai.dev/kantai/internal/bench/fleetenv"
	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/proxybench"
)

func benchCmd(g *globals) *cobra.Command {
	var (
		dir, out, policies string
		quick, records     bool
		seed               uint64
	)
	cmd := &cobra.Command{
		Use:   "bench [SCENARIO.yaml|NAME ...]",
		Short: "Compare load-balancing policies on the emulated fleet",
		Long: `Runs benchmark scenarios (YAML files; by default every file in bench/scenarios)
on a fresh emulated fleet per policy, and reports count, completed, errors,
mean, p50/p90/p95/p99, max, throughput and where requests were served, per
policy and per origin node, with ratios to the baseline policy and to an
oracle. Writes results.json and PNG charts (response-time CDFs, served-where)
to --out, and prints PASS/MISS for each scenario's targets. Exits 1 if any
target is missed.

Arguments are scenario files, or names of scenarios in --dir.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var scs []*scenario.Scenario
			var names []string
			for _, a := range args {
				if strings.HasSuffix(a, ".yaml") || strings.HasSuffix(a, ".yml") {
					sc, err := scenario.ReadFile(a)
					if err != nil {
						return err
					}
					scs = append(scs, sc)
				} else {
					names = append(names, a)
				}
			}
			if len(scs) == 0 || len(names) > 0 {
				all, err := scenario.ReadDir(dir)
				if err != nil {
					return err
				}
				sel, err := scenario.Select(all, names)
				if err != nil {
					return err
				}
				scs = append(scs, sel...)
			}
			var pol []string
			if policies != "" {
				pol = strings.Split(policies, ",")
			}
			if seed == 0 {
				seed = uint64(time.Now().UnixNano())
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "running %d scenario file(s), about %v; results in %s\n",
				len(scs), scenario.TotalTime(scs, quick).Round(time.Minute), out)
			env := &fleetenv.Env{Log: g.quietLogger()}
			res, err := bench.Run(cmd.Context(), env, scs, bench.Options{OutDir: out, Quick: quick, Seed: seed,
				Policies: pol, Records: records, Out: cmd.OutOrStdout(), Progress: os.Stderr})
			if err != nil {
				return err
			}
			if _, miss, _ := res.Checks(); miss > 0 {
				return fmt.Errorf("%d target(s) missed; see the table above and %s/results.json", miss, out)
			}
			return nil
		},
	}
	cmd.AddCommand(benchProxyCmd())
	cmd.Flags().StringVar(&dir, "dir", "bench/scenarios", "directory of scenario files")
	cmd.Flags().StringVarP(&out, "out", "o", "bench-out", "output directory for results.json and charts")
	cmd.Flags().BoolVar(&quick, "quick", false, "use each scenario's short durations (about 20s per run)")
	cmd.Flags().BoolVar(&records, "records", false, "also write every request as CSV")
	cmd.Flags().StringVar(&policies, "policies", "", "comma-separated policies to run (default: each scenario's list)")
	cmd.Flags().Uint64Var(&seed, "seed", 0, "random seed for arrivals and the oracle (default: from the clock)")
	return cmd
}

func benchProxyCmd() *cobra.Command {
	var (
		opts    proxybench.Options
		jsonOut string
	)
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Measure the gateway's overhead against httputil.ReverseProxy and nginx",
		Long: `Runs one loopback backend and, in front of it, the kantai gateway (one node, one
local replica), a bare net/http/httputil.ReverseProxy and nginx (when installed:
hack/nginx/install.sh), each in its own process. The same built-in load
generator drives them in interleaved rounds: p50/p99 at a fixed rate,
requests/s at saturation, and proxy CPU per request. Prints medians, ratios and
PASS/MISS for the targets (better than httputil on all four; against nginx:
p50 within 1.1×, p99 within 1.2×, requests/s at least 0.9×, CPU per request
within 1.5×), and the same for each --variant gateway. Exits 1 if a target of
the default gateway is missed. The requests are small GETs answered "ok";
--answer-bytes and --upload-bytes measure large bodies instead (nginx then
streams request bodies, as the Go proxies do: proxy_request_buffering off).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := proxybench.Run(cmd.Context(), opts, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if jsonOut != "" {
				data, err := json.MarshalIndent(res, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(jsonOut, data, 0o644); err != nil {
					return fmt.Errorf("writing %s: %w", jsonOut, err)
				}
			}
			if !res.Passed {
				return fmt.Errorf("gateway overhead targets not all met (see above)")
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&opts.Duration, "duration", 10*time.Second, "measured length of each run")
	cmd.Flags().IntVar(&opts.Rounds, "rounds", 3, "interleaved rounds over all targets")
	cmd.Flags().IntVar(&opts.Rate, "rate", 2000, "requests per second of the fixed-rate runs")
	cmd.Flags().IntVar(&opts.Concurrency, "concurrency", 32, "connections of the saturation runs")
	cmd.Flags().BoolVar(&opts.NoNginx, "no-nginx", false, "leave nginx out (its targets show NOT MEASURED)")
	cmd.Flags().BoolVar(&opts.NginxHeaders, "nginx-headers", false, "also measure nginx doing the gateway's header work (X-Forwarded-*, two answer headers), for information")
	cmd.Flags().Float64Var(&opts.MaxOtherCores, "max-other-cores", 0.10, "re-run a run when other programs use more CPU than this (negative: never)")
	cmd.Flags().StringVar(&jsonOut, "json", "", "also write the result as JSON to this file")
	cmd.Flags().IntVar(&opts.AnswerBytes, "answer-bytes", 0, "size of the backend's answers in bytes (default: 2); with large ones, lower --rate")
	cmd.Flags().IntVar(&opts.UploadBytes, "upload-bytes", 0, "POST a body of this many bytes with every request (default: GET without one)")
	cmd.Flags().IntVar(&opts.ProxyProcs, "proxy-procs", 1, "GOMAXPROCS of the Go proxies, nginx runs one worker process (negative: inherit)")
	cmd.Flags().StringArrayVar(&opts.External, "external", nil, `also measure a proxy program built elsewhere, "name=path" or "name=ENV=V ... path" (repeatable; see internal/proxybench startProgram)`)
	cmd.Flags().StringArrayVar(&opts.Variants, "variant", nil, `also measure a kantai gateway run with these environment settings (repeatable), e.g. --variant "GOMAXPROCS=1 GOGC=400"`)
	return cmd
}
