package gateway

import (
	"context"
	"fmt"
	"net"
	"os"
)

// Forwarding engines: the gateway serves and forwards with net/http
// (Server, ServeHTTP, http.Transport) or with fasthttp (FastServer,
// FastHandler, a fasthttp.HostClient per replica). Both run the same
// request path and keep the same behaviours.
const (
	EngineNetHTTP = "net/http"
	EngineFast    = "fasthttp"

	// DefaultEngine is the engine an empty name selects: fasthttp, which
	// costs a gateway about half net/http's CPU per request
	// (docs/benchmarks.md, "The fasthttp engine").
	DefaultEngine = EngineFast
)

// EnvEngine is the environment variable that selects the engine where a
// command has no flag for it (kantai bench proxy's gateway, a fleet).
const EnvEngine = "KANTAI_GATEWAY_ENGINE"

// EnvSyscalls is the environment variable that chooses how the gateway's
// sockets make their system calls: "raw" (the default, see sockConn) or
// "runtime", net's ordinary calls, to compare the two.
const EnvSyscalls = "KANTAI_GATEWAY_SYSCALLS"

// rawSyscalls reports whether a new socket makes raw system calls
// (checkSyscalls reports a value of EnvSyscalls it does not know).
func rawSyscalls() bool { return os.Getenv(EnvSyscalls) != "runtime" }

func checkSyscalls() error {
	switch v := os.Getenv(EnvSyscalls); v {
	case "", "raw", "runtime":
		return nil
	default:
		return fmt.Errorf("%s=%q: want raw or runtime", EnvSyscalls, v)
	}
}

// CheckEngine reports an engine name that is neither EngineNetHTTP nor
// EngineFast; "" means DefaultEngine.
func CheckEngine(engine string) error {
	switch engine {
	case "", EngineNetHTTP, EngineFast:
		return nil
	}
	return fmt.Errorf("gateway engine %q: want %s or %s", engine, EngineNetHTTP, EngineFast)
}

// ListenerServer is a gateway listener's server, on either engine.
type ListenerServer interface {
	Serve(ln net.Listener) error
	Shutdown(ctx context.Context) error
	Close() error
	Stats() ServerStats
}

// NewListenerServer returns the server of one of gw's listeners on
// engine: the in-cluster listener (every route), or with external the
// external one (see External).
func NewListenerServer(engine string, gw *Gateway, external bool, o ServerOptions) (ListenerServer, error) {
	if err := CheckEngine(engine); err != nil {
		return nil, err
	}
	if err := checkSyscalls(); err != nil {
		return nil, err
	}
	if engine == "" {
		engine = DefaultEngine
	}
	if engine == EngineFast {
		h := gw.FastHandler()
		if external {
			h = gw.FastExternal()
		}
		return NewFastServer(h, o), nil
	}
	if external {
		return NewServer(gw.External(), o), nil
	}
	return NewServer(gw, o), nil
}
