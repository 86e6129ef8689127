package nodeapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Node is what a node's side of the API serves from.
type Node interface {
	State() State
	SetProcessing(Processing) error
}

// maxBody bounds a pushed request body.
const maxBody = 1 << 20

// Handler serves the node API for n; every request must carry
// "Authorization: Bearer <token>". An empty token refuses everything: the
// API is closed unless its owner configured a secret.
func Handler(n Node, token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathState, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(n.State())
	})
	mux.HandleFunc("PUT "+PathProcessing, func(w http.ResponseWriter, r *http.Request) {
		var p Processing
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			http.Error(w, "processing: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := n.SetProcessing(p); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kantai-node"`)
			http.Error(w, "node API: missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Client calls the node API of any node.
type Client struct {
	Token string
	HTTP  *http.Client
}

// NewClient returns a client whose calls time out after timeout.
func NewClient(token string, timeout time.Duration) *Client {
	return &Client{Token: token, HTTP: &http.Client{Timeout: timeout}}
}

// State reads the state of the node whose API listens at addr (host:port).
func (c *Client) State(ctx context.Context, addr string) (State, error) {
	var st State
	resp, err := c.do(ctx, http.MethodGet, addr, PathState, nil)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("node API %s: decoding state: %w", addr, err)
	}
	return st, nil
}

// SetProcessing pushes one revision's processing estimates to a node.
func (c *Client) SetProcessing(ctx context.Context, addr string, p Processing) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPut, addr, PathProcessing, body)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func (c *Client) do(ctx context.Context, method, addr, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return nil, fmt.Errorf("node API %s: %w", addr, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node API %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("node API %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
}

// ErrUnknownRevision is returned by a node asked to take estimates for a
// revision it does not route.
var ErrUnknownRevision = errors.New("unknown revision")
