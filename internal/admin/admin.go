// Package admin is the local fleet's control API, which the CLI's other
// commands (apply, get, request, down) use while `kantai up` runs, and its
// client. It listens on a Unix socket only its user can open (see
// DefaultSocket), or on TCP when asked; Guard refuses what a web page or a
// client without the token could send.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kantai.dev/kantai/internal/fleet"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/manifest"
)

// HeaderPID carries the fleet process's id in the answer to
// POST /v1/shutdown, so a local client can wait for the process to end.
const HeaderPID = "X-Kantai-Pid"

// Handler serves the admin API for a fleet. POST /v1/shutdown calls
// shutdown and holds its answer open until stopped is closed (the fleet
// has stopped), so the caller learns when shutdown is over.
func Handler(f *fleet.Fleet, shutdown func(), stopped <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Nodes()) })
	mux.HandleFunc("GET /v1/functions", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Functions()) })
	mux.HandleFunc("GET /v1/estimates", func(w http.ResponseWriter, r *http.Request) {
		e, err := f.Estimates(r.URL.Query().Get("node"), r.URL.Query().Get("host"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, e)
	})
	mux.HandleFunc("GET /v1/revisions", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Revisions()) })
	mux.HandleFunc("GET /v1/replicas", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Replicas()) })
	mux.HandleFunc("GET /v1/latency", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Latency()) })
	mux.HandleFunc("POST /v1/functions", func(w http.ResponseWriter, r *http.Request) {
		data, err := manifest.ReadLimited(r.Body)
		if err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, manifest.ErrTooLarge) {
				code = http.StatusRequestEntityTooLarge
			}
			http.Error(w, "manifest: "+err.Error(), code)
			return
		}
		fns, err := manifest.ParseAll(data)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var applied []string
		for _, fn := range fns {
			if err := f.Apply(fn); err != nil {
				http.Error(w, err.Error(), http.StatusUnprocessableEntity)
				return
			}
			applied = append(applied, fn.Key())
		}
		writeJSON(w, applied)
	})
	mux.HandleFunc("DELETE /v1/functions/{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := f.Delete(r.PathValue("namespace") + "/" + r.PathValue("name")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderPID, strconv.Itoa(os.Getpid()))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, "stopping")
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		go shutdown()
		select {
		case <-stopped:
			fmt.Fprintln(w, "stopped")
		case <-r.Context().Done():
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(f.Registry(), promhttp.HandlerOpts{}))
	registerLive(mux, f) // links and nodes changed at run time (live.go)
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Client talks to a running fleet.
type Client struct {
	Endpoint Endpoint
	Token    string
	HTTP     *http.Client
}

// NewClient returns a client for the admin API at ep; token may be empty.
func NewClient(ep Endpoint, token string) *Client {
	tr := &http.Transport{DialContext: ep.dialer(), DisableCompression: true}
	return &Client{Endpoint: ep, Token: token, HTTP: &http.Client{Transport: tr}}
}

// requestTimeout bounds every call but Shutdown, which waits for the
// fleet to drain.
const requestTimeout = 30 * time.Second

// ErrNotRunning means no fleet answers at the admin address.
var ErrNotRunning = errors.New("no fleet is running (start one with `kantai up`)")

func (c *Client) url(path string) string {
	if c.Endpoint.Network == "tcp" {
		return "http://" + c.Endpoint.Address + path
	}
	return "http://localhost" + path // the dialer ignores the host
}

func (c *Client) request(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/yaml")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("admin API at %s: %w", c.Endpoint, err)
		}
		return nil, fmt.Errorf("%w: admin API at %s: %v", ErrNotRunning, c.Endpoint, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, errors.New(strings.TrimSpace(string(data)))
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding %s: %w", path, err)
		}
	}
	return nil
}

// Nodes lists the fleet's nodes.
func (c *Client) Nodes(ctx context.Context) ([]fleet.NodeStatus, error) {
	var out []fleet.NodeStatus
	return out, c.do(ctx, "GET", "/v1/nodes", nil, &out)
}

// Functions lists the deployed functions.
func (c *Client) Functions(ctx context.Context) ([]fleet.FunctionStatus, error) {
	var out []fleet.FunctionStatus
	return out, c.do(ctx, "GET", "/v1/functions", nil, &out)
}

// Estimates returns the figures each node's gateway (or node's alone)
// decides from, for the revisions host routes to (all when host is "").
func (c *Client) Estimates(ctx context.Context, node, host string) (map[string][]gateway.Estimate, error) {
	var out map[string][]gateway.Estimate
	q := url.Values{"node": {node}, "host": {host}}
	return out, c.do(ctx, "GET", "/v1/estimates?"+q.Encode(), nil, &out)
}

func (c *Client) Revisions(ctx context.Context) ([]fleet.RevisionStatus, error) {
	var out []fleet.RevisionStatus
	return out, c.do(ctx, "GET", "/v1/revisions", nil, &out)
}

// Replicas lists every replica.
func (c *Client) Replicas(ctx context.Context) ([]fleet.ReplicaStatus, error) {
	var out []fleet.ReplicaStatus
	return out, c.do(ctx, "GET", "/v1/replicas", nil, &out)
}

// Latency returns the measured RTT matrix.
func (c *Client) Latency(ctx context.Context) (latency.Matrix, error) {
	var out latency.Matrix
	return out, c.do(ctx, "GET", "/v1/latency", nil, &out)
}

// Apply sends manifest YAML; it returns the applied functions' keys.
func (c *Client) Apply(ctx context.Context, manifestYAML []byte) ([]string, error) {
	var out []string
	return out, c.do(ctx, "POST", "/v1/functions", manifestYAML, &out)
}

// Delete removes a function.
func (c *Client) Delete(ctx context.Context, namespace, name string) error {
	return c.do(ctx, "DELETE", "/v1/functions/"+namespace+"/"+name, nil, nil)
}

// Shutdown stops the fleet and returns once it has stopped: the answer
// ends when the fleet has drained, and on this machine (Unix socket or
// loopback) Shutdown then waits for the fleet's process to exit.
func (c *Client) Shutdown(ctx context.Context) error {
	resp, err := c.request(ctx, "POST", "/v1/shutdown", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The answer ends when the fleet has stopped, or when its process
	// ended first; the wait below tells which.
	_, _ = io.Copy(io.Discard, resp.Body)
	pid, _ := strconv.Atoi(resp.Header.Get(HeaderPID))
	if pid <= 0 || (c.Endpoint.Network == "tcp" && !IsLoopbackHost(c.Endpoint.Host())) {
		return nil
	}
	return waitExit(ctx, pid)
}

// waitExit waits until process pid has exited (or is a zombie: it has
// exited and only waits for its parent to collect it).
func waitExit(ctx context.Context, pid int) error {
	for {
		if !alive(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the fleet process %d to exit: %w", pid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return errors.Is(err, syscall.EPERM)
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state …; comm may contain spaces and parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}
