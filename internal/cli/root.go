// Package cli is the kantai command line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"kantai.dev/kantai/internal/admin"
	"kantai.dev/kantai/internal/function"
	"kantai.dev/kantai/internal/proxybench"
)

type globals struct {
	adminAddr      string
	adminToken     string
	adminTokenFile string
	verbose        bool
}

// Main runs the command line and returns the exit code.
func Main(args []string) int {
	// The proxy benchmark runs its servers as children of this binary.
	proxybench.MaybeServeChild()
	// Replicas are this same binary; they skip cobra entirely.
	if len(args) == 2 && args[0] == "fn" && args[1] == "hello" {
		return function.Main()
	}
	g := &globals{}
	root := &cobra.Command{
		Use:   "kantai",
		Short: "A latency-aware serverless platform for edge–cloud fleets",
		Long: `kantai serves Knative Services across edge and cloud nodes: a gateway on every
node, measured latency between nodes, and replicas placed and chosen where
requests are answered fastest. Without a cluster it runs an emulated fleet
on this machine (kantai up); the demo walks through it (kantai demo).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.adminAddr, "admin", os.Getenv("KANTAI_ADMIN"),
		"the admin API: unix:///path/admin.sock, or tcp://host:port (env KANTAI_ADMIN; default: a Unix socket in $XDG_RUNTIME_DIR/kantai)")
	root.PersistentFlags().StringVar(&g.adminToken, "admin-token", os.Getenv("KANTAI_ADMIN_TOKEN"),
		"token the admin API requires (env KANTAI_ADMIN_TOKEN; prefer --admin-token-file, which ps does not show)")
	root.PersistentFlags().StringVar(&g.adminTokenFile, "admin-token-file", os.Getenv("KANTAI_ADMIN_TOKEN_FILE"),
		"file holding the admin token (env KANTAI_ADMIN_TOKEN_FILE; mode 0600)")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log debug detail")
	root.AddCommand(upCmd(g), downCmd(g), applyCmd(g), deleteCmd(g), getCmd(g), requestCmd(g), demoCmd(g), fnCmd(), benchCmd(g))
	root.AddCommand(testbedCmd(), linkCmd(g), nodeCmd(g))
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		if errors.Is(err, admin.ErrNotRunning) {
			return 3
		}
		return 1
	}
	return 0
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// quietLogger logs warnings only, unless -v: for commands whose own output
// matters more than the fleet's chatter.
func (g *globals) quietLogger() *slog.Logger {
	if g.verbose {
		return g.logger()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// adminEndpoint is where the admin API listens, and its token.
func (g *globals) adminEndpoint() (admin.Endpoint, string, error) {
	ep, err := admin.ParseEndpoint(g.adminAddr)
	if err != nil {
		return admin.Endpoint{}, "", fmt.Errorf("--admin: %w", err)
	}
	token, err := admin.LoadToken(g.adminToken, g.adminTokenFile)
	if err != nil {
		return admin.Endpoint{}, "", err
	}
	return ep, token, nil
}

// client returns the admin API's client.
func (g *globals) client() (*admin.Client, error) {
	ep, token, err := g.adminEndpoint()
	if err != nil {
		return nil, err
	}
	return admin.NewClient(ep, token), nil
}

func fnCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "fn hello",
		Short: "Run the built-in function (what replicas of unmapped images run)",
		Long: `Runs the built-in function the way a replica does: it listens on $KANTAI_ADDRESS:$PORT
and answers "<TARGET> from <KANTAI_REPLICA> in <KANTAI_NODE>", after an emulated
processing time ($KANTAI_PROCESSING, scaled by $KANTAI_SPEED), with $KANTAI_WORKERS
requests processed at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "hello" {
				return fmt.Errorf("unknown built-in function %q (known: hello)", args[0])
			}
			if code := function.Main(); code != 0 {
				return fmt.Errorf("function exited with code %d", code)
			}
			return nil
		},
	}
}
