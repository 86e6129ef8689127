package latency

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"kantai.dev/kantai/internal/linkemu"
)

func TestParseHandling(t *testing.T) {
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"ping;dur=0.042", 42 * time.Microsecond},
		{formatHandling(1234567 * time.Nanosecond), 1234600 * time.Nanosecond}, // rounded to four decimals of a millisecond
		{"db;dur=9, ping;desc=\"x\";dur=2", 2 * time.Millisecond},
		{"db;dur=9", 0},
		{"ping;dur=-1", 0},
		{"ping;dur=abc", 0},
		{"ping;dur=99999999", 0}, // above MaxRTT
	}
	for _, tt := range tests {
		if got := parseHandling(tt.header); got != tt.want {
			t.Errorf("parseHandling(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

// TestAgent_subtractsHandling checks that the time a peer spends between
// reading the request and writing the answer is reported and not counted
// as round trip.
func TestAgent_subtractsHandling(t *testing.T) {
	const slow = 500 * time.Millisecond
	n := linkemu.NewNetwork()
	n.AddNode("peer", "127.77.205.52")
	n.SetLink("a", "peer", linkemu.Link{RTT: 10 * time.Millisecond})
	peer, err := New(Config{Node: "peer", Addr: "127.77.205.52:1"})
	if err != nil {
		t.Fatal(err)
	}
	// The peer's handler, served as Run serves it, behind a busy step.
	ln, err := net.Listen("tcp", "127.77.205.52:0")
	if err != nil {
		t.Fatal(err)
	}
	h := peer.Handler()
	var requests atomic.Int32
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			time.Sleep(slow) // the peer is busy: this is what is measured, not a wait for an event
			h.ServeHTTP(w, r)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, servedConnKey{}, c)
		},
	}
	go srv.Serve(stampingListener{ln})
	defer srv.Close()

	fx := startFleet(t, n, map[string]string{"a": "127.77.205.51"}, func(c *Config) {
		c.Peers = map[string]string{"peer": ln.Addr().String()}
	})
	// The first probe opens the connection and asks twice, timing the
	// second exchange; the next probe asks once on the kept connection.
	for round, wantRequests := range []int32{2, 3} {
		e := fx.round()[[2]string{"a", "peer"}]
		if got := requests.Load(); got != wantRequests {
			t.Errorf("round %d: the peer has had %d requests, want %d", round+1, got, wantRequests)
		}
		if e.Err != nil {
			t.Fatal(e.Err)
		}
		t.Logf("RTT %v, handling %v", e.RTT, e.Handling)
		if e.Handling < slow || e.RTT < 10*time.Millisecond || e.RTT >= slow {
			t.Errorf("probe: RTT %v, handling %v; want handling ≥ %v subtracted from an RTT ≥ 10 ms", e.RTT, e.Handling, slow)
		}
	}
}
