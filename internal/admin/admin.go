// Package admin is the local fleet's control API on loopback, which the
// CLI's other commands (apply, get, request, down) use while `kantai up`
// runs, and its client.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kantai.dev/kantai/internal/fleet"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/manifest"
)

// DefaultAddr is where `kantai up` serves the admin API; KANTAI_ADMIN
// overrides it for every command.
const DefaultAddr = "127.0.0.1:7780"

// maxManifest bounds an applied manifest.
const maxManifest = 1 << 20

// Handler serves the admin API for a fleet; shutdown is called on
// POST /v1/shutdown.
func Handler(f *fleet.Fleet, shutdown func()) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Nodes()) })
	mux.HandleFunc("GET /v1/functions", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Functions()) })
	mux.HandleFunc("GET /v1/replicas", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Replicas()) })
	mux.HandleFunc("GET /v1/latency", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, f.Latency()) })
	mux.HandleFunc("POST /v1/functions", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
		if err != nil || len(data) > maxManifest {
			http.Error(w, "manifest unreadable or larger than 1 MiB", http.StatusBadRequest)
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
		w.WriteHeader(http.StatusAccepted)
		go shutdown()
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
	Addr string
	HTTP *http.Client
}

// NewClient returns a client for the admin API at addr.
func NewClient(addr string) *Client {
	return &Client{Addr: addr, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// ErrNotRunning means no fleet answers at the admin address.
var ErrNotRunning = errors.New("no fleet is running (start one with `kantai up`)")

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotRunning, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return errors.New(strings.TrimSpace(string(data)))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding %s: %w", path, err)
		}
	}
	return nil
}

func (c *Client) Nodes(ctx context.Context) ([]fleet.NodeStatus, error) {
	var out []fleet.NodeStatus
	return out, c.do(ctx, "GET", "/v1/nodes", nil, &out)
}

func (c *Client) Functions(ctx context.Context) ([]fleet.FunctionStatus, error) {
	var out []fleet.FunctionStatus
	return out, c.do(ctx, "GET", "/v1/functions", nil, &out)
}

func (c *Client) Replicas(ctx context.Context) ([]fleet.ReplicaStatus, error) {
	var out []fleet.ReplicaStatus
	return out, c.do(ctx, "GET", "/v1/replicas", nil, &out)
}

func (c *Client) Latency(ctx context.Context) (latency.Matrix, error) {
	var out latency.Matrix
	return out, c.do(ctx, "GET", "/v1/latency", nil, &out)
}

// Apply sends manifest YAML; it returns the applied functions' keys.
func (c *Client) Apply(ctx context.Context, manifestYAML []byte) ([]string, error) {
	var out []string
	return out, c.do(ctx, "POST", "/v1/functions", manifestYAML, &out)
}

func (c *Client) Delete(ctx context.Context, namespace, name string) error {
	return c.do(ctx, "DELETE", "/v1/functions/"+namespace+"/"+name, nil, nil)
}

func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/shutdown", nil, nil)
}
