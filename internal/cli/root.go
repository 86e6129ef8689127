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
	adminAddr string
	verbose   bool
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
	defAdmin := os.Getenv("KANTAI_ADMIN")
	if defAdmin == "" {
		defAdmin = admin.DefaultAddr
	}
	root.PersistentFlags().StringVar(&g.adminAddr, "admin", defAdmin, "address of the running fleet's admin API (env KANTAI_ADMIN)")
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

func (g *globals) client() *admin.Client { return admin.NewClient(g.adminAddr) }

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
