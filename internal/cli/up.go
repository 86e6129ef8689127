package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"kantai.dev/kantai/internal/admin"
	"kantai.dev/kantai/internal/demo"
	"kantai.dev/kantai/internal/fleet"
	"kantai.dev/kantai/internal/testbed"
)

func loadTestbed(path string) (*testbed.Testbed, error) {
	if path == "" {
		return testbed.Default(), nil
	}
	return testbed.Load(path)
}

func upCmd(g *globals) *cobra.Command {
	var file string
	var gwPort, agentPort int
	cmd := &cobra.Command{
		Use:   "up [-f testbed.yaml]",
		Short: "Run the emulated fleet in the foreground",
		Long: `Starts every node of the testbed on its own loopback address, each with a gateway
and a latency agent, plus the admin API the other commands use. Without -f it
runs the built-in testbed: node1 and node2 (cloud) 1 ms apart, node3 (edge,
capacity 3) 50 ms ± 10 ms from both. Stop it with Ctrl-C or kantai down.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tb, err := loadTestbed(file)
			if err != nil {
				return err
			}
			ep, token, err := g.adminEndpoint()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			ln, err := admin.Listen(ep, token)
			if err != nil {
				return err
			}
			f, err := fleet.Start(ctx, fleet.Options{Testbed: tb, GatewayPort: gwPort, AgentPort: agentPort, Log: g.logger()})
			if err != nil {
				ln.Close()
				return err
			}
			stopped := make(chan struct{})
			srv := &http.Server{
				Handler:           admin.Guard(admin.Handler(f, cancel, stopped), admin.GuardOptions{Endpoint: ep, Token: token}),
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       time.Minute,
				MaxHeaderBytes:    64 << 10,
			}
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					fmt.Fprintln(os.Stderr, "admin API stopped:", err)
				}
			}()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "kantai fleet up: %d nodes, load balancing %q, placement %q; admin API on %s\n",
				len(tb.Nodes), tb.Policies.LoadBalancer, tb.Policies.Placement, ep)
			for _, n := range f.Nodes() {
				fmt.Fprintf(out, "  %-8s %-5s gateway http://%s  (capacity %d)\n", n.Name, n.Role, n.Gateway, n.Capacity)
			}
			fmt.Fprintln(out, "Deploy with: kantai apply -f examples/hello.yaml   Stop with: Ctrl-C or kantai down")
			liveStatus(ctx, out, f)
			fmt.Fprintln(out, "stopping: gateways drain, then replicas …")
			f.Close()
			fmt.Fprintln(out, "fleet stopped")
			// Now `kantai down`'s answer can end; the process exits next.
			close(stopped)
			shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
			defer done()
			_ = srv.Shutdown(shutdownCtx)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "testbed YAML file (default: the built-in three-node testbed)")
	cmd.Flags().IntVar(&gwPort, "gateway-port", 8080, "gateway port on every node's address")
	cmd.Flags().IntVar(&agentPort, "agent-port", 9696, "latency agent port on every node's address")
	return cmd
}

// liveStatus prints a compact line whenever a function's replicas change,
// until ctx ends.
func liveStatus(ctx context.Context, out interface{ Write([]byte) (int, error) }, f *fleet.Fleet) {
	last := ""
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var parts []string
		for _, st := range f.Functions() {
			s := fmt.Sprintf("%s/%s %s", st.Namespace, st.Name, st.Replicas)
			if st.Panic {
				s += " (panic)"
			}
			parts = append(parts, s)
		}
		sort.Strings(parts)
		line := strings.Join(parts, "  ")
		if line == "" {
			line = "no functions"
		}
		if line != last {
			fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), line)
			last = line
		}
	}
}

func downCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the running fleet and every replica",
		Long: `Stops the running fleet: its gateways stop accepting connections, finish the
requests in flight and answer later ones on open connections with 503 and
Connection: close; then the replicas drain and stop. Returns once the fleet's
process has exited.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := c.Shutdown(ctx); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "fleet stopped")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the fleet to stop")
	return cmd
}

func demoCmd(g *globals) *cobra.Command {
	var burst int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Walk through the seed's scenario end to end on an embedded fleet",
		Long: `Starts the built-in three-node fleet in this process and follows the seed's
walkthrough: apply hello (window 12s, target 10); the first replica appears and
is scaled to zero after the window; a request from node3 is answered from
node3; a burst from node1 is answered by the cloud nodes; the measured latency
matrix is shown; everything is torn down. Exits non-zero if any step fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := demo.Run(cmd.Context(), cmd.OutOrStdout(), demo.Options{Burst: burst,
				Fleet: fleet.Options{GatewayPort: 18080, AgentPort: 19696}})
			if err != nil {
				return fmt.Errorf("demo failed: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\ndemo passed")
			return nil
		},
	}
	cmd.Flags().IntVar(&burst, "burst", 50, "requests in the burst from node1")
	return cmd
}
