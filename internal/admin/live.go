package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"

	"kantai.dev/kantai/internal/fleet"
)

// maxLiveBody bounds a link or node change request.
const maxLiveBody = 64 << 10

// LinkRequest selects the links between two node sets (comma-separated
// node names, groups, roles or "*"; empty means "*") and, for a change,
// what to change.
type LinkRequest struct {
	A string `json:"a,omitempty"`
	B string `json:"b,omitempty"`
	fleet.LinkChange
}

// registerLive adds the routes that change the running fleet's network:
//
//	GET  /v1/links?a=&b=       the links as emulated now
//	POST /v1/links             set latency, jitter, bandwidth or cut (LinkRequest)
//	POST /v1/links/reset       back to the testbed (LinkRequest without changes)
//	POST /v1/nodes/{name}/down take a node down
//	POST /v1/nodes/{name}/up   bring it back
func registerLive(mux *http.ServeMux, f *fleet.Fleet) {
	mux.HandleFunc("GET /v1/links", func(w http.ResponseWriter, r *http.Request) {
		out, err := f.Links(r.URL.Query().Get("a"), r.URL.Query().Get("b"))
		if err != nil {
			liveError(w, err)
			return
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("POST /v1/links", func(w http.ResponseWriter, r *http.Request) {
		var req LinkRequest
		if !readLive(w, r, &req) {
			return
		}
		out, err := f.SetLinks(orAny(req.A), orAny(req.B), req.LinkChange)
		if err != nil {
			liveError(w, err)
			return
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("POST /v1/links/reset", func(w http.ResponseWriter, r *http.Request) {
		var req LinkRequest
		if !readLive(w, r, &req) {
			return
		}
		out, err := f.ResetLinks(req.A, req.B)
		if err != nil {
			liveError(w, err)
			return
		}
		writeJSON(w, out)
	})
	for _, state := range []string{"down", "up"} {
		mux.HandleFunc("POST /v1/nodes/{name}/"+state, func(w http.ResponseWriter, r *http.Request) {
			if err := f.SetNodeDown(r.PathValue("name"), state == "down"); err != nil {
				liveError(w, err)
				return
			}
			writeJSON(w, map[string]any{"node": r.PathValue("name"), "down": state == "down"})
		})
	}
}

func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

func readLive(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxLiveBody+1))
	if err != nil || len(data) > maxLiveBody {
		http.Error(w, "request body unreadable or larger than 64 KiB", http.StatusBadRequest)
		return false
	}
	if len(data) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "decoding request: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func liveError(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	if errors.Is(err, fleet.ErrUnknownNode) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}

// Links returns the links between two node sets as emulated now.
func (c *Client) Links(ctx context.Context, a, b string) ([]fleet.LinkStatus, error) {
	var out []fleet.LinkStatus
	q := url.Values{}
	if a != "" {
		q.Set("a", a)
	}
	if b != "" {
		q.Set("b", b)
	}
	path := "/v1/links"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// SetLinks changes the links between two node sets.
func (c *Client) SetLinks(ctx context.Context, req LinkRequest) ([]fleet.LinkStatus, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var out []fleet.LinkStatus
	return out, c.do(ctx, "POST", "/v1/links", body, &out)
}

// ResetLinks puts the links between two node sets (empty: all) back as
// the testbed has them.
func (c *Client) ResetLinks(ctx context.Context, a, b string) ([]fleet.LinkStatus, error) {
	body, err := json.Marshal(LinkRequest{A: a, B: b})
	if err != nil {
		return nil, err
	}
	var out []fleet.LinkStatus
	return out, c.do(ctx, "POST", "/v1/links/reset", body, &out)
}

// SetNodeDown takes a node down or brings it back up.
func (c *Client) SetNodeDown(ctx context.Context, name string, down bool) error {
	state := "up"
	if down {
		state = "down"
	}
	return c.do(ctx, "POST", "/v1/nodes/"+url.PathEscape(name)+"/"+state, nil, nil)
}
