// Command kantai-gateway runs on every node of a Kubernetes cluster (a
// DaemonSet, config/gateway): kantai's gateway for the Knative Ingresses
// of its class, the node's latency agent, and the node API the
// controller's leader polls. See package nodegw.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/kube/emulated"
	"kantai.dev/kantai/internal/kube/nodegw"
	"kantai.dev/kantai/internal/nodeapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	// The first signal drains; a second one kills.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kantai-gateway:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// run parses args and runs the daemon until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("kantai-gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       nodegw.Config
		tokenFile string
		kubecfg   string
		level     slog.Level
		emulation string
	)
	fs.StringVar(&cfg.Node, "node", os.Getenv("NODE_NAME"), "name of this node (default $NODE_NAME)")
	fs.StringVar(&cfg.PodIP, "pod-ip", os.Getenv("POD_IP"), "this pod's IP (default $POD_IP)")
	fs.StringVar(&cfg.External, "external-addr", nodegw.DefaultExternalAddr, "listen address of the gateway for traffic from outside the cluster")
	fs.StringVar(&cfg.Internal, "internal-addr", nodegw.DefaultInternalAddr, "listen address of the gateway for traffic from inside the cluster")
	fs.StringVar(&cfg.Agent, "agent-addr", nodegw.DefaultAgentAddr, "listen address of the latency agent")
	fs.StringVar(&cfg.NodeAPI, "node-api-addr", fmt.Sprintf(":%d", nodeapi.DefaultPort), "listen address of the node API (bearer token)")
	fs.StringVar(&cfg.Metrics, "metrics-addr", nodegw.DefaultMetricsAddr, "listen address of /metrics, /healthz and /readyz (no token)")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the node API's bearer token (required)")
	fs.StringVar(&cfg.Policy, "policy", nodegw.DefaultPolicy, "load-balancing policy")
	fs.StringVar(&kubecfg, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	fs.StringVar(&cfg.Namespace, "namespace", envOr("POD_NAMESPACE", nodegw.DefaultNamespace), "kantai's namespace, which holds the gateways' headless Service (default $POD_NAMESPACE)")
	fs.StringVar(&cfg.PeersService, "peers-service", nodegw.DefaultPeersService, "the gateways' headless Service, whose endpoints are the latency peers")
	fs.IntVar(&cfg.QueueDepth, "queue-depth", 0, "requests waiting per revision at most (0: the gateway's default)")
	fs.DurationVar(&cfg.ActivationTimeout, "activation-timeout", nodegw.DefaultActivationTimeout, "how long a request waits for a replica")
	fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", 0, "how long the gateway keeps serving, not ready, after SIGTERM before it drains")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", nodegw.DefaultDrainTimeout, "how long the gateway drains on SIGTERM")
	fs.DurationVar(&cfg.LatencyInterval, "latency-interval", 0, "the latency agent's probing round (0: its default)")
	fs.StringVar(&cfg.Engine, "engine", gateway.DefaultEngine, "the gateway's forwarding engine: "+gateway.EngineNetHTTP+" or "+gateway.EngineFast)
	fs.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", gateway.DefaultMaxHeaderBytes, "largest request line and headers, in bytes (431 beyond); on fasthttp also each client connection's read buffer")
	fs.TextVar(&level, "log-level", slog.LevelInfo, "log level (debug, info, warn, error)")
	fs.StringVar(&emulation, "emulation", "", "emulated clusters on one machine only: a file placing the pods' virtual addresses on loopback and the links between nodes (see docs/kubernetes.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	handler := slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	cfg.Log = slog.New(handler)
	// controller-runtime's caches log through logr.
	ctrllog.SetLogger(logr.FromSlogHandler(handler))

	if tokenFile == "" {
		return errors.New("--token-file is required: the node API does not run without a token")
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	if cfg.Token = strings.TrimSpace(string(tok)); cfg.Token == "" {
		return fmt.Errorf("--token-file %s is empty", tokenFile)
	}
	if emulation != "" {
		e, err := emulated.Load(emulation)
		if err != nil {
			return fmt.Errorf("--emulation: %w", err)
		}
		if cfg.Dial, err = e.Dialer(cfg.Node, cfg.PodIP); err != nil {
			return fmt.Errorf("--emulation: %w", err)
		}
	}
	// An empty path means the in-cluster configuration.
	if cfg.Rest, err = clientcmd.BuildConfigFromFlags("", kubecfg); err != nil {
		return fmt.Errorf("loading the API server configuration: %w", err)
	}
	cfg.Rest.UserAgent = "kantai-gateway/" + cfg.Node
	d, err := nodegw.New(cfg)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}
