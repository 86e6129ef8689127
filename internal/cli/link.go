package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kantai.dev/kantai/internal/admin"
	"kantai.dev/kantai/internal/fleet"
	"kantai.dev/kantai/internal/testbed"
)

const setsHelp = `A and B are node sets: comma-separated node names, groups, roles or "*"
(every node); the command applies to every link between a node of A and a
node of B.`

func linkCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "link",
		Short: "Change the running fleet's links: latency, jitter, bandwidth, cuts",
	}
	cmd.AddCommand(linkSetCmd(g), linkCutCmd(g), linkResetCmd(g), linkShowCmd(g))
	return cmd
}

func linkSetCmd(g *globals) *cobra.Command {
	var latency, jitter time.Duration
	var bandwidth string
	cmd := &cobra.Command{
		Use:   "set A B [--latency 150ms] [--jitter 10ms] [--bandwidth 20Mbit]",
		Short: "Set the latency, jitter or bandwidth of links while the fleet runs",
		Long: `Sets the latency (mean RTT), jitter (its standard deviation) or bandwidth of
links while the fleet runs. The change applies at once, to connections
already open too; what is not given stays. The testbed's bounds hold:
latency at most 10s, jitter at most the latency, bandwidth 64kbit–1000Gbit.

` + setsHelp,
		Example: `  kantai link set node1 node3 --latency 150ms
  kantai link set cloud edge --latency 80ms --jitter 10ms
  kantai link set node1,node2 node3 --bandwidth 5Mbit`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := admin.LinkRequest{A: args[0], B: args[1]}
			if cmd.Flags().Changed("latency") {
				d := testbed.Duration(latency)
				req.Latency = &d
			}
			if cmd.Flags().Changed("jitter") {
				d := testbed.Duration(jitter)
				req.Jitter = &d
			}
			if cmd.Flags().Changed("bandwidth") {
				bw, err := testbed.ParseBandwidth(bandwidth)
				if err != nil {
					return fmt.Errorf("--bandwidth: %w", err)
				}
				req.Bandwidth = &bw
			}
			if req.Latency == nil && req.Jitter == nil && req.Bandwidth == nil {
				return fmt.Errorf("nothing to set: give --latency, --jitter or --bandwidth")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.SetLinks(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printLinks(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().DurationVar(&latency, "latency", 0, "mean round-trip time, e.g. 150ms")
	cmd.Flags().DurationVar(&jitter, "jitter", 0, "standard deviation of the round-trip time")
	cmd.Flags().StringVar(&bandwidth, "bandwidth", "", "rate, e.g. 20Mbit")
	return cmd
}

func linkCutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cut A B",
		Short: "Cut links (a partition between two node sets): connections across are refused and open ones break",
		Long: `Cuts every link between A and B: new connections across them are refused
and open ones break, so the two sets are partitioned. kantai link reset mends
them.

` + setsHelp,
		Example: `  kantai link cut node1 node3
  kantai link cut cloud-a,edge-a cloud-b,edge-b   # two regions apart`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cut := true
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.SetLinks(cmd.Context(), admin.LinkRequest{A: args[0], B: args[1], LinkChange: fleet.LinkChange{Cut: &cut}})
			if err != nil {
				return err
			}
			return printLinks(cmd.OutOrStdout(), out)
		},
	}
}

func linkResetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reset [A B]",
		Short: "Put links back as the testbed has them (every link without arguments), mending cuts",
		Long:  "Puts links back as the testbed has them, mending cuts; without arguments every link.\n\n" + setsHelp,
		Args:  cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, b, err := optionalEnds(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.ResetLinks(cmd.Context(), a, b)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d links as in the testbed\n", len(out))
			return nil
		},
	}
}

func linkShowCmd(g *globals) *cobra.Command {
	var changed bool
	cmd := &cobra.Command{
		Use:   "show [A B]",
		Short: "Print links as the running fleet emulates them now",
		Long:  "Prints links as the running fleet emulates them now; without arguments every link.\n\n" + setsHelp,
		Args:  cobra.RangeArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, b, err := optionalEnds(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.Links(cmd.Context(), a, b)
			if err != nil {
				return err
			}
			if changed {
				kept := out[:0]
				for _, l := range out {
					if l.Changed {
						kept = append(kept, l)
					}
				}
				out = kept
			}
			return printLinks(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().BoolVar(&changed, "changed", false, "only links that differ from the testbed")
	return cmd
}

func printLinks(w io.Writer, links []fleet.LinkStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "A\tB\tLATENCY\tJITTER\tBANDWIDTH\tSTATE")
	for _, l := range links {
		state := "as configured"
		switch {
		case l.Cut:
			state = "cut"
		case l.Changed:
			state = "changed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%v\t%s\n", l.A, l.B, l.Latency, l.Jitter, l.Bandwidth, state)
	}
	return tw.Flush()
}

func nodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Take nodes of the running fleet down and bring them back",
	}
	for _, state := range []string{"down", "up"} {
		short := "Take a node down: its gateway, agent and replicas stop answering, links to it fail"
		if state == "up" {
			short = "Bring a node that is down back up"
		}
		cmd.AddCommand(&cobra.Command{
			Use:   state + " NAME",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				if err := c.SetNodeDown(cmd.Context(), args[0], state == "down"); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "node %s %s\n", args[0], state)
				return nil
			},
		})
	}
	return cmd
}

// optionalEnds reads "[A B]": both ends of one link, or none for every
// link.
func optionalEnds(args []string) (a, b string, err error) {
	switch len(args) {
	case 0:
		return "", "", nil
	case 2:
		return args[0], args[1], nil
	}
	return "", "", fmt.Errorf("give both ends (A B), or none for every link")
}
