// Package function is the built-in function kantai runs for images the
// testbed does not map to a command. It follows the Knative container
// contract (listen on $PORT, HTTP/1.1) and emulates a replica of finite
// capacity: a fixed number of worker slots, each request holding one for an
// emulated processing time scaled by the node's speed, and requests beyond
// the slots waiting their turn, as on a real, busy machine.
package function

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"strconv"
	"sync"
	"time"

	"kantai.dev/kantai/internal/manifest"
)

// Environment variables the fleet sets for a replica (besides the user's).
const (
	EnvPort       = "PORT"
	EnvTarget     = "TARGET"
	EnvReplica    = "KANTAI_REPLICA"
	EnvNode       = "KANTAI_NODE"
	EnvAddress    = "KANTAI_ADDRESS"
	EnvProcessing = "KANTAI_PROCESSING"
	EnvSpeed      = "KANTAI_SPEED"
	EnvWorkers    = "KANTAI_WORKERS"
)

// Config is one replica's configuration.
type Config struct {
	Target     string
	Replica    string
	Node       string
	Processing manifest.Processing
	// Speed multiplies processing times (2 = twice as slow).
	Speed float64
	// Workers is the number of requests processed at once; 0 means no limit.
	Workers int
}

// ConfigFromEnv reads the replica's configuration; errors name the variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{Target: getenv(EnvTarget), Replica: getenv(EnvReplica), Node: getenv(EnvNode), Speed: 1}
	if c.Target == "" {
		c.Target = "Hello"
	}
	var err error
	if c.Processing, err = manifest.ParseProcessing(getenv(EnvProcessing)); err != nil {
		return c, fmt.Errorf("%s: %w", EnvProcessing, err)
	}
	if s := getenv(EnvSpeed); s != "" {
		if c.Speed, err = strconv.ParseFloat(s, 64); err != nil || c.Speed <= 0 {
			return c, fmt.Errorf("%s: want a positive number, got %q", EnvSpeed, s)
		}
	}
	if s := getenv(EnvWorkers); s != "" {
		if c.Workers, err = strconv.Atoi(s); err != nil || c.Workers < 0 {
			return c, fmt.Errorf("%s: want a non-negative integer, got %q", EnvWorkers, s)
		}
	}
	return c, nil
}

// Handler answers "<TARGET> from <replica> in <node>".
type Handler struct {
	cfg   Config
	slots chan struct{}
	body  []byte
	mu    sync.Mutex
	rng   *rand.Rand
}

// NewHandler builds the function's HTTP handler.
func NewHandler(cfg Config, seed uint64) *Handler {
	h := &Handler{cfg: cfg, body: fmt.Appendf(nil, "%s from %s in %s\n", cfg.Target, cfg.Replica, cfg.Node),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	if cfg.Workers > 0 {
		h.slots = make(chan struct{}, cfg.Workers)
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		case <-r.Context().Done():
			return
		}
	}
	if d := h.sample(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(h.body)))
	_, _ = w.Write(h.body)
}

// sample draws one processing time, scaled by the node's speed.
func (h *Handler) sample() time.Duration {
	p := h.cfg.Processing
	var d float64
	switch p.Kind {
	case "fixed":
		d = float64(p.Mean)
	case "exp":
		h.mu.Lock()
		d = h.rng.ExpFloat64() * float64(p.Mean)
		h.mu.Unlock()
	case "uniform":
		h.mu.Lock()
		d = float64(p.Min) + h.rng.Float64()*float64(p.Max-p.Min)
		h.mu.Unlock()
	default:
		return 0
	}
	return time.Duration(d * h.cfg.Speed)
}

// Serve runs the function until ctx ends, then shuts down gracefully:
// requests in progress finish, new connections are refused.
func Serve(ctx context.Context, cfg Config, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: NewHandler(cfg, uint64(time.Now().UnixNano())), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("function listening", "address", ln.Addr().String(), "replica", cfg.Replica, "node", cfg.Node)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ListenAddress is where a replica listens: the node's address (or all
// interfaces) at $PORT.
func ListenAddress(getenv func(string) string) (string, error) {
	port := getenv(EnvPort)
	if port == "" {
		port = "8080"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%s: %q is not a port number", EnvPort, port)
	}
	return net.JoinHostPort(getenv(EnvAddress), port), nil
}

// Main runs a replica configured by the environment until SIGTERM or
// SIGINT, then stops gracefully; it returns the process exit code.
func Main() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	addr, err := ListenAddress(os.Getenv)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := Serve(ctx, cfg, addr, log); err != nil {
		log.Error("function failed", "err", err)
		return 1
	}
	return 0
}

// ServeIfReplica turns a test binary into the function process: fleet tests
// start replicas as "<test binary> hello" with KANTAI_REPLICA set, and call
// this first thing in TestMain. It returns when the process is not a replica.
func ServeIfReplica() {
	if os.Getenv(EnvReplica) != "" && len(os.Args) > 1 && os.Args[len(os.Args)-1] == "hello" {
		os.Exit(Main())
	}
}
