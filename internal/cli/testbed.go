package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"kantai.dev/kantai/internal/bench/scenario"
	"kantai.dev/kantai/internal/testbed"
)

func testbedCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "testbed",
		Short: "Check a testbed file, or see the fleet it describes",
	}
	cmd.AddCommand(testbedValidateCmd(), testbedShowCmd())
	return cmd
}

func testbedValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check testbed files (or bench scenarios' testbeds); errors name the file and field",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, file := range args {
				tb, kind, err := readTestbedOrScenario(file)
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					bad++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: valid %s: %d nodes, %d links\n", file, kind, len(tb.Nodes), len(tb.Links))
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d files invalid", bad, len(args))
			}
			return nil
		},
	}
}

func testbedShowCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Print the fleet a testbed (or a bench scenario) describes: every node and every link, with the rule that set it",
		Long: `Prints the expanded testbed: every node (groups written out) and one link per
pair of nodes, with the rule of the file that set it. -o yaml prints a plain
testbed file that loads to the same fleet.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tb, _, err := readTestbedOrScenario(args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch output {
			case "yaml":
				data, err := yaml.Marshal(tb.Expanded())
				if err != nil {
					return fmt.Errorf("writing testbed: %w", err)
				}
				_, err = w.Write(data)
				return err
			case "json":
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(tb.Expanded())
			case "table", "":
				return printTestbed(w, tb)
			}
			return fmt.Errorf("-o: unknown format %q (table, yaml or json)", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, yaml or json")
	return cmd
}

// readTestbedOrScenario loads a testbed file, or the testbed of a bench
// scenario file (one with a top-level testbed: field).
func readTestbedOrScenario(file string) (*testbed.Testbed, string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, "", fmt.Errorf("reading testbed: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, testbed.MaxFileSize+1))
	f.Close()
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", file, err)
	}
	if len(data) > testbed.MaxFileSize {
		return nil, "", fmt.Errorf("%s: larger than %d bytes, the most a testbed file may have", file, testbed.MaxFileSize)
	}
	var top map[string]json.RawMessage
	if yaml.Unmarshal(data, &top) == nil {
		if _, ok := top["testbed"]; ok {
			s, err := scenario.Parse(data, file)
			if err != nil {
				return nil, "", err
			}
			return s.Testbed, "scenario", nil
		}
	}
	tb, err := testbed.Parse(data)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", file, err)
	}
	return tb, "testbed", nil
}

func printTestbed(w io.Writer, tb *testbed.Testbed) error {
	fmt.Fprintf(w, "%d nodes, %d links; load balancer %s, placement %s, domain %s\n\n",
		len(tb.Nodes), len(tb.Links), tb.Policies.LoadBalancer, tb.Policies.Placement, tb.Domain)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tGROUP\tCAPACITY\tSPEED\tADDRESS\tFROM")
	for i, n := range tb.Nodes {
		group := n.Group
		if group == "" {
			group = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%g\t%s\t%s\n", n.Name, n.Role, group, n.Capacity, n.Speed, n.Address, tb.NodeSource(i))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "A\tB\tLATENCY\tJITTER\tBANDWIDTH\tRULE")
	for i, l := range tb.Links {
		rule := tb.LinkRule(i)
		if rule == "" {
			rule = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%v\t%s\n", l.A, l.B, l.Latency, l.Jitter, l.Bandwidth, rule)
	}
	return tw.Flush()
}
