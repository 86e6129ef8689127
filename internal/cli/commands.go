package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kantai.dev/kantai/internal/demo"
	"kantai.dev/kantai/internal/fleet"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/manifest"
)

func applyCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f service.yaml",
		Short: "Deploy or update Knative Services (serving.knative.dev/v1) on the running fleet",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f is required: the manifest file (or - for standard input)")
			}
			in := io.Reader(os.Stdin)
			if file != "-" {
				fh, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("reading manifest: %w", err)
				}
				defer fh.Close()
				in = fh
			}
			data, err := manifest.ReadLimited(in)
			if err != nil {
				return fmt.Errorf("reading manifest %s: %w", file, err)
			}
			// Check locally first, so errors name the file.
			if _, err := manifest.ParseAll(data); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			keys, err := c.Apply(cmd.Context(), data)
			if err != nil {
				return err
			}
			for _, k := range keys {
				_, name, _ := strings.Cut(k, "/")
				fmt.Fprintf(cmd.OutOrStdout(), "service.serving.knative.dev/%s applied\n", name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "manifest file, or - for standard input")
	return cmd
}

func deleteCmd(g *globals) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a function; its replicas drain and stop",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.Delete(cmd.Context(), ns, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "service.serving.knative.dev/%s deleted\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "default", "namespace")
	return cmd
}

func getCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get nodes|functions|revisions|replicas|latency|estimates [FUNCTION]",
		Short: "Show the running fleet, kubectl-style",
		Long: `Shows the running fleet. "get estimates [FUNCTION]" prints, per gateway, the figures
its load-balancing policy decides from (round trip, processing, fresh service time and
expected time per node) for a function's revisions, or for all.`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"nodes", "functions", "revisions", "replicas", "latency", "estimates"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "wide" {
				return fmt.Errorf("--output: %q is not one of json, wide", output)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			var v any
			if len(args) == 2 && args[0] != "estimates" && args[0] != "estimate" {
				return fmt.Errorf("only estimates takes a name")
			}
			switch args[0] {
			case "estimates", "estimate":
				host := ""
				if len(args) == 2 {
					ns, name, found := strings.Cut(args[1], "/")
					if !found {
						ns, name = "default", args[1]
					}
					host = name + "." + ns
				}
				v, err = c.Estimates(ctx, "", host)
			case "nodes", "node", "no":
				v, err = c.Nodes(ctx)
			case "functions", "function", "fn", "ksvc":
				v, err = c.Functions(ctx)
			case "revisions", "revision", "rev":
				v, err = c.Revisions(ctx)
			case "replicas", "replica", "pods", "pod":
				v, err = c.Replicas(ctx)
			case "latency", "lat":
				v, err = c.Latency(ctx)
			default:
				return fmt.Errorf("unknown resource %q (want nodes, functions, revisions, replicas, latency or estimates)", args[0])
			}
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
			defer tw.Flush()
			now := time.Now()
			switch v := v.(type) {
			case []fleet.NodeStatus:
				fmt.Fprintln(tw, "NAME\tROLE\tADDRESS\tGATEWAY\tREPLICAS\tCAPACITY\tSPEED")
				for _, n := range v {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%g\n", n.Name, n.Role, n.Address, n.Gateway, n.Used, n.Capacity, n.Speed)
				}
			case []fleet.FunctionStatus:
				fmt.Fprintln(tw, "NAME\tURL\tLATESTREADY\tTRAFFIC\tREPLICAS\tMODE\tTARGET\tWINDOW\tCONCURRENCY\tAGE")
				for _, f := range v {
					mode := f.Mode
					if f.Panic {
						mode += ",panic"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%g\t%s\t%.2f\t%s\n", f.Name, f.URL, f.LatestReady, f.Traffic, f.Replicas, mode, f.Target, f.Window, f.Concurrency, age(now.Sub(f.Created)))
				}
			case []fleet.RevisionStatus:
				fmt.Fprintln(tw, "NAME\tFUNCTION\tGENERATION\tREADY\tTRAFFIC\tTAGS\tREPLICAS\tREASON\tAGE")
				for _, r := range v {
					tags := strings.Join(r.Tags, ",")
					if tags == "" {
						tags = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%t\t%d%%\t%s\t%s\t%s\t%s\n", r.Name, r.Function, r.Generation, r.Ready, r.Percent, tags, r.Replicas, r.Reason, age(now.Sub(r.Created)))
				}
			case []fleet.ReplicaStatus:
				fmt.Fprintln(tw, "NAME\tFUNCTION\tREVISION\tNODE\tSTATUS\tFOR\tADDRESS\tAGE")
				for _, r := range v {
					origin := r.Origin
					if origin == "" {
						origin = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Function, r.Revision, r.Node, r.State, origin, r.Address, age(now.Sub(r.Created)))
				}
			case map[string][]gateway.Estimate:
				tw.Flush()
				printEstimates(out, v)
			case latency.Matrix:
				// The matrix's rows are a map; the node list gives their order.
				nodes, err := c.Nodes(ctx)
				if err != nil {
					return err
				}
				var names []string
				for _, n := range nodes {
					names = append(names, n.Name)
				}
				demo.PrintLatency(tw, names, v)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// age prints durations the way kubectl does: 45s, 3m, 2h.
func age(d time.Duration) string {
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func requestCmd(g *globals) *cobra.Command {
	var from, method, data string
	var explain bool
	cmd := &cobra.Command{
		Use:   "request --from NODE URL",
		Short: "Send a request through a node's gateway, as a user at that node",
		Long: `Sends one HTTP request into the gateway of node NODE with the URL's host as the
Host header, e.g. kantai request --from node3 http://hello.default.svc.cluster.local/
and prints the status, the body, the time taken and which replica on which node
answered.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				return fmt.Errorf("--from is required: the node the request enters at")
			}
			raw := args[0]
			if !strings.Contains(raw, "://") {
				raw = "http://" + raw
			}
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" {
				return fmt.Errorf("URL %q: want e.g. http://hello.default.svc.cluster.local/", args[0])
			}
			if u.Scheme != "http" {
				return fmt.Errorf("URL %q: only http is served by the emulated fleet", args[0])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			nodes, err := c.Nodes(cmd.Context())
			if err != nil {
				return err
			}
			gw := ""
			var names []string
			for _, n := range nodes {
				names = append(names, n.Name)
				if n.Name == from {
					gw = n.Gateway
				}
			}
			if gw == "" {
				return fmt.Errorf("--from: no node %q (nodes: %s)", from, strings.Join(names, ", "))
			}
			if explain {
				est, err := c.Estimates(cmd.Context(), from, u.Host)
				if err != nil {
					return err
				}
				printEstimates(cmd.OutOrStdout(), est)
			}
			var body io.Reader
			if data != "" {
				body = strings.NewReader(data)
			}
			target := *u
			target.Host = gw
			req, err := http.NewRequestWithContext(cmd.Context(), method, target.String(), body)
			if err != nil {
				return err
			}
			req.Host = u.Host
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("request through %s's gateway: %w", from, err)
			}
			defer resp.Body.Close()
			respBody, err := io.ReadAll(resp.Body)
			took := time.Since(start)
			if err != nil {
				return fmt.Errorf("reading the answer: %w", err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s\n", resp.Status)
			fmt.Fprintf(out, "%s", respBody)
			if len(respBody) > 0 && respBody[len(respBody)-1] != '\n' {
				fmt.Fprintln(out)
			}
			served := "-"
			if r := resp.Header.Get(gateway.HeaderReplica); r != "" {
				served = r + " on " + resp.Header.Get(gateway.HeaderNode)
			}
			fmt.Fprintf(out, "time %v, served by %s, entered at %s\n", took.Round(100*time.Microsecond), served, from)
			if resp.StatusCode >= 400 {
				return fmt.Errorf("status %s", resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "node whose gateway the request enters (required)")
	cmd.Flags().StringVarP(&method, "request", "X", "GET", "HTTP method")
	cmd.Flags().StringVarP(&data, "data", "d", "", "request body")
	cmd.Flags().BoolVar(&explain, "explain", false, "first print the candidates and the times the gateway expects of each")
	return cmd
}

// printEstimates renders what gateways decide from, one row per origin,
// revision and node, kubectl-style.
func printEstimates(out io.Writer, est map[string][]gateway.Estimate) {
	tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "ORIGIN\tREVISION\tSHARE\tNODE\tREPLICAS\tINFLIGHT\tRTT\tPROCESSING\tSERVICE\tEXPECTED\tRESPONSES")
	ms := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	origins := make([]string, 0, len(est))
	for o := range est {
		origins = append(origins, o)
	}
	sort.Strings(origins)
	for _, o := range origins {
		for _, e := range est[o] {
			share := "-"
			if e.Percent > 0 {
				share = fmt.Sprintf("%d%%", e.Percent)
			}
			for _, n := range e.Nodes {
				svc := ms(n.Service)
				if n.Probe {
					svc += " (probe)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\n", o, e.Revision, share, n.Node,
					n.Replicas, n.InFlight, ms(n.RTT), ms(n.Processing), svc, ms(n.Expected), n.Responses)
			}
		}
	}
}
