package proxybench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kantai.dev/kantai/internal/gateway"
)

// The Go servers of a comparison (backend, kantai gateway, httputil proxy)
// each run in a child process, so that each one's CPU time can be read from
// /proc apart from the load generator's. The child is the same binary,
// started with these variables set; MaybeServeChild turns it into the
// server before the program does anything else.
const (
	envRole    = "KANTAI_PROXYBENCH_ROLE"
	envBackend = "KANTAI_PROXYBENCH_BACKEND"
	readyTag   = "proxybench-listening "
	// envAnswerBytes sizes the backend's answers (Options.AnswerBytes).
	envAnswerBytes = "KANTAI_PROXYBENCH_ANSWER_BYTES"
)

// Roles a child process can take.
const (
	roleBackend  = "backend"
	roleKantai   = "kantai"
	roleHTTPUtil = "httputil"
)

// Function served by the gateway under test.
const (
	benchNamespace = "default"
	benchName      = "hello"
	benchHost      = benchName + "." + benchNamespace
	benchNode      = "node1"
	benchReplica   = benchName + "-" + benchNode + "-1"
)

// MaybeServeChild returns at once in an ordinary process. In a process that
// Run started as one of its servers, it serves until its standard input is
// closed and then exits the process, never returning. Programs that call
// Run (the CLI's main, the package's tests) must call it first thing.
func MaybeServeChild() {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	if err := serveChild(role, os.Getenv(envBackend)); err != nil {
		fmt.Fprintf(os.Stderr, "proxybench %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveChild(role, backend string) error {
	var h http.Handler
	var gw *gateway.Gateway
	switch role {
	case roleBackend:
		answer := []byte("ok")
		if v := os.Getenv(envAnswerBytes); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("%s=%q: want a number of bytes", envAnswerBytes, v)
			}
			answer = bytes.Repeat([]byte("k"), n)
		}
		length := []string{strconv.Itoa(len(answer))}
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// All of an upload is read, as a function would.
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
			w.Header()["Content-Length"] = length
			_, _ = w.Write(answer)
		})
	case roleKantai:
		g, err := newKantaiGateway(backend, nil, prometheus.NewRegistry())
		if err != nil {
			return err
		}
		h, gw = g, g
	case roleHTTPUtil:
		p, err := newHTTPUtilProxy(backend)
		if err != nil {
			return err
		}
		h = p
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The kantai gateway runs behind the server the fleet gives it, so
	// the comparison includes its connection tracking and limits; its
	// engine is the one gateway.EnvEngine names (a variant may set it).
	var srv interface {
		Serve(net.Listener) error
		Close() error
	}
	if role == roleKantai {
		if srv, err = gateway.NewListenerServer(os.Getenv(gateway.EnvEngine), gw, false, gateway.ServerOptions{}); err != nil {
			_ = ln.Close()
			return err
		}
	} else {
		srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // the parent is gone or done
		_ = srv.Close()
	}()
	fmt.Printf("%s%s\n", readyTag, ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newKantaiGateway is the gateway of a one-node fleet with one function
// whose single replica is the backend. A nil rt is the transport the
// fleet's gateways use.
func newKantaiGateway(backend string, rt http.RoundTripper, reg *prometheus.Registry) (*gateway.Gateway, error) {
	if rt == nil {
		rt = gateway.NewTransport(nil) // as the fleet's gateways
	}
	g, err := gateway.New(gateway.Config{
		Node:      benchNode,
		Nodes:     []string{benchNode},
		Policy:    "kantai",
		Metrics:   gateway.NewMetrics(reg),
		Transport: rt,
	})
	if err != nil {
		return nil, fmt.Errorf("kantai gateway: %w", err)
	}
	rev := gateway.RevisionConfig{Namespace: benchNamespace, Name: benchName + "-00001", Service: benchName}
	g.SetRevision(rev)
	g.SetReplicas(rev.Key(), []gateway.ReplicaInfo{
		{Name: benchReplica, Node: benchNode, Address: backend},
	})
	if err := g.SetRoutes(gateway.ServiceRoutes(benchName, benchNamespace, "", []gateway.ServiceTarget{{Revision: rev.Key(), Percent: 100}})); err != nil {
		return nil, fmt.Errorf("kantai gateway: %w", err)
	}
	return g, nil
}

// newHTTPUtilProxy is the standard library's reverse proxy with a tuned
// transport and nothing else (no buffer pool).
func newHTTPUtilProxy(backend string) (*httputil.ReverseProxy, error) {
	u, err := url.Parse("http://" + backend)
	if err != nil {
		return nil, err
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	return p, nil
}

// server is a started server process.
type server struct {
	name  string
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// pids are the processes whose CPU time is the server's.
	pids func() []int
	done chan struct{}
	log  *strings.Builder
}

func (s *server) stop() {
	if s == nil || s.cmd == nil {
		return
	}
	if s.stdin != nil {
		s.stdin.Close()
	}
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-s.done:
	case <-time.After(3 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// startChild re-executes this program as one of the Go servers and waits
// for its listening address.
func startChild(ctx context.Context, role, backend string, env []string) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%s: finding this program: %w", role, err)
	}
	return startProgram(ctx, exe, role, backend, env)
}

// startProgram starts exe as a server of the comparison: it finds the
// role and the backend's address in its environment, prints readyTag and
// its address once listening, and exits when its standard input closes.
// An external target (Options.External) is such a program.
func startProgram(ctx context.Context, exe, role, backend string, env []string) (*server, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(append(os.Environ(), envRole+"="+role, envBackend+"="+backend), env...)
	setParentDeathSignal(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errLog := &strings.Builder{}
	cmd.Stderr = &limitedWriter{w: errLog, n: 8 << 10}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: starting %s: %w", role, exe, err)
	}
	s := &server{name: role, cmd: cmd, stdin: stdin, done: make(chan struct{}), log: errLog}
	pid := cmd.Process.Pid
	s.pids = func() []int { return []int{pid} }
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if t := sc.Text(); strings.HasPrefix(t, readyTag) {
				lines <- strings.TrimPrefix(t, readyTag)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	select {
	case s.addr = <-lines:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s: child exited before listening: %s", role, strings.TrimSpace(errLog.String()))
	case <-time.After(20 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s: child did not listen within 20s", role)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		q := p
		if len(q) > l.n {
			q = q[:l.n]
		}
		l.n -= len(q)
		_, _ = l.w.Write(q)
	}
	return len(p), nil
}
