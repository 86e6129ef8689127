package nodeapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"kantai.dev/kantai/internal/gateway"
)

type fakeNode struct{ got []Processing }

func (f *fakeNode) State() State {
	return State{Node: "edge", Stats: gateway.Stats{Node: "edge", Epoch: 7}, Ingresses: map[string]int64{"ns/hello": 3}}
}

func (f *fakeNode) SetProcessing(p Processing) error {
	if p.Revision == "ns/gone" {
		return ErrUnknownRevision
	}
	f.got = append(f.got, p)
	return nil
}

func TestHandler(t *testing.T) {
	n := &fakeNode{}
	srv := httptest.NewServer(Handler(n, "s3cret"))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	good := NewClient("s3cret", 5*time.Second)
	st, err := good.State(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "edge" || st.Stats.Epoch != 7 || st.Ingresses["ns/hello"] != 3 {
		t.Errorf("state %+v", st)
	}
	p := Processing{Revision: "ns/hello-00001", PerNode: map[string]float64{"edge": 0.004}}
	if err := good.SetProcessing(ctx, addr, p); err != nil {
		t.Fatal(err)
	}
	if len(n.got) != 1 || n.got[0].PerNode["edge"] != 0.004 {
		t.Errorf("node got %+v", n.got)
	}
	if err := good.SetProcessing(ctx, addr, Processing{Revision: "ns/gone"}); err == nil || !strings.Contains(err.Error(), "422") {
		t.Errorf("unknown revision: %v, want a 422", err)
	}

	for _, tok := range []string{"", "wrong", "s3cretx"} {
		c := NewClient(tok, 5*time.Second)
		if _, err := c.State(ctx, addr); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("token %q: state %v, want 401", tok, err)
		}
		if err := c.SetProcessing(ctx, addr, p); err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("token %q: push %v, want 401", tok, err)
		}
	}
	if len(n.got) != 1 {
		t.Errorf("a push without the token reached the node: %+v", n.got)
	}

	// A node with no token configured refuses everyone.
	closed := httptest.NewServer(Handler(n, ""))
	defer closed.Close()
	if _, err := NewClient("", 5*time.Second).State(ctx, strings.TrimPrefix(closed.URL, "http://")); err == nil {
		t.Error("an API without a token answered")
	}

	// Malformed and unknown fields are refused, naming the problem.
	req, _ := http.NewRequest(http.MethodPut, srv.URL+PathProcessing, strings.NewReader(`{"revision":"ns/a","perNode":{},"extra":1}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: %s, want 400", resp.Status)
	}
}
