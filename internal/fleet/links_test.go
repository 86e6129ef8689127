package fleet

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"kantai.dev/kantai/internal/linkemu"
	"kantai.dev/kantai/internal/manifest"
	"kantai.dev/kantai/internal/testbed"
)

// getVia sends GET / for host to a node's gateway from another node,
// across the emulated link, on a new connection. It returns the status (or
// the error) and how long the exchange took, connection set-up included.
func getVia(t *testing.T, f *Fleet, from, to, host string) (int, string, time.Duration, error) {
	t.Helper()
	addr, _ := f.GatewayAddr(to)
	tr := &http.Transport{DialContext: f.Dialer(from), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
	req.Host = host
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, "", time.Since(start), err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), time.Since(start), nil
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// After `link set`, a new connection across the link takes the new
// latency (a handshake and an exchange: at least two round trips, never
// less), the agents measure it, and reset puts the testbed's link back.
func TestFleet_setLinkLive(t *testing.T) {
	tb := smallTestbed(t, 91)
	f := startFleet(t, tb)
	slow := testbed.Duration(150 * time.Millisecond)
	zero := testbed.Duration(0)
	got, err := f.SetLinks("node1", "node3", LinkChange{Latency: &slow, Jitter: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Latency != slow || got[0].Jitter != 0 || !got[0].Changed || got[0].Bandwidth != testbed.DefaultBandwidth {
		t.Fatalf("SetLinks = %+v, want node1–node3 at 150ms, no jitter, bandwidth kept, changed", got)
	}
	code, _, took, err := getVia(t, f, "node1", "node3", "nobody.default")
	if err != nil || code != http.StatusNotFound {
		t.Fatalf("request node1→node3: %d %v, want the gateway's 404", code, err)
	}
	t.Logf("new connection and one exchange across the 150 ms link: %v", took)
	if took < 2*slow.D() {
		t.Errorf("new connection and one exchange took %v, less than two round trips of the new latency", took)
	}
	// node2–node3 is unchanged.
	if l, _ := f.Links("node2", "node3"); len(l) != 1 || l[0].Changed || l[0].Latency.D() != 50*time.Millisecond {
		t.Errorf("node2–node3 = %+v, want the testbed's 50ms, unchanged", l)
	}
	// The agents see it: their estimate moves well above the configured 50 ms.
	waitFor(t, 20*time.Second, "agents measuring node1→node3 above 120ms", func() bool {
		d, ok := f.Latency().Get("node1", "node3")
		return ok && d > 120*time.Millisecond
	})

	bad := testbed.Duration(time.Hour)
	if _, err := f.SetLinks("node1", "node3", LinkChange{Latency: &bad}); err == nil || !strings.Contains(err.Error(), "latency: must be between 0 and 10s") {
		t.Errorf("latency 1h: %v, want the bound named", err)
	}
	big := testbed.Duration(time.Second)
	if _, err := f.SetLinks("node1", "node2", LinkChange{Jitter: &big}); err == nil || !strings.Contains(err.Error(), "jitter") {
		t.Errorf("jitter 1s on a 1ms link: %v, want it refused", err)
	}
	if _, err := f.SetLinks("node1", "node9", LinkChange{Latency: &slow}); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("unknown node: %v, want ErrUnknownNode", err)
	}
	// Sets: every link between the cloud role and node3.
	if l, err := f.SetLinks("cloud", "node3", LinkChange{Latency: &slow}); err != nil || len(l) != 2 {
		t.Errorf("SetLinks(cloud, node3) = %+v, %v; want two links", l, err)
	}

	if _, err := f.ResetLinks("", ""); err != nil {
		t.Fatal(err)
	}
	all, _ := f.Links("", "")
	for _, l := range all {
		conf, _ := tb.LinkBetween(l.A, l.B)
		if l.Changed || l.Latency != conf.Latency || l.Jitter != conf.Jitter {
			t.Errorf("after reset %s–%s = %+v, want the testbed's %+v", l.A, l.B, l, conf)
		}
	}
}

// A cut link refuses connections across it; mended, it carries them again.
func TestFleet_cutLink(t *testing.T) {
	f := startFleet(t, smallTestbed(t, 92))
	cut, mend := true, false
	if _, err := f.SetLinks("node1", "node3", LinkChange{Cut: &cut}); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := getVia(t, f, "node1", "node3", "nobody.default")
	if !errors.Is(err, linkemu.ErrUnreachable) {
		t.Errorf("request across a cut link: %v, want ErrUnreachable", err)
	}
	if code, _, _, err := getVia(t, f, "node2", "node3", "nobody.default"); err != nil || code != http.StatusNotFound {
		t.Errorf("request across another link: %d %v, want the gateway's 404", code, err)
	}
	if _, err := f.SetLinks("node1", "node3", LinkChange{Cut: &mend}); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := getVia(t, f, "node1", "node3", "nobody.default"); err != nil || code != http.StatusNotFound {
		t.Errorf("request across the mended link: %d %v, want the gateway's 404", code, err)
	}
	// A fleet closes with a node down (the cleanup does it).
	if err := f.SetNodeDown("node2", true); err != nil {
		t.Fatal(err)
	}
}

// A node that is down answers nothing: its gateway refuses connections,
// and a peer's gateway routes around it: requests go to the replica that
// is left. Up again, both serve as before.
func TestFleet_nodeDown(t *testing.T) {
	f := startFleet(t, smallTestbed(t, 93))
	fn := &manifest.Function{Name: "far", Namespace: "default", Image: "example/far", Port: 8080}
	if err := f.ApplyFixed(fn, map[string]int{"node2": 1, "node3": 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "ready replicas on node2 and node3", func() bool {
		st := f.Functions()
		return len(st) == 1 && st[0].Ready["node2"] == 1 && st[0].Ready["node3"] == 1
	})
	const host = "far.default"
	if code, body, _, err := getVia(t, f, "node1", "node1", host); err != nil || code != 200 {
		t.Fatalf("before: node1 → far: %d %q %v", code, body, err)
	}

	if err := f.SetNodeDown("node3", true); err != nil {
		t.Fatal(err)
	}
	if !f.NodeDown("node3") || strings.Join(f.DownNodes(), ",") != "node3" {
		t.Errorf("NodeDown(node3) = %v, DownNodes = %v", f.NodeDown("node3"), f.DownNodes())
	}
	for i := 0; i < 10; i++ {
		code, body, _, err := getVia(t, f, "node1", "node1", host)
		if err != nil || code != 200 || !strings.Contains(body, " in node2") {
			t.Fatalf("node1 → far with node3 down, request %d: %d %q %v, want 200 from node2", i, code, body, err)
		}
	}
	addr, _ := f.GatewayAddr("node3")
	if resp, err := http.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("node3's gateway answered %s while the node is down", resp.Status)
	}
	if _, _, _, err := getVia(t, f, "node2", "node3", host); !errors.Is(err, linkemu.ErrUnreachable) {
		t.Errorf("node2 → node3's gateway: %v, want ErrUnreachable", err)
	}
	// The other agents' probes fail: they mark node3 stale.
	waitFor(t, 20*time.Second, "node1's agent marking node3 stale", func() bool {
		return f.Latency()["node1"]["node3"].Stale
	})
	if err := f.SetNodeDown("node9", true); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("SetNodeDown(node9): %v, want ErrUnknownNode", err)
	}

	if err := f.SetNodeDown("node3", false); err != nil {
		t.Fatal(err)
	}
	if code, body, _, err := getVia(t, f, "node1", "node1", host); err != nil || code != 200 {
		t.Errorf("after up: node1 → far: %d %q %v, want 200", code, body, err)
	}
	if code, _, _, err := getVia(t, f, "node3", "node3", host); err != nil || code != 200 {
		t.Errorf("after up: node3's own gateway: %d %v, want 200", code, err)
	}
}
