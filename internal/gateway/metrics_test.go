package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A deleted revision leaves no series behind in /metrics; other
// revisions' series stay.
func TestMetrics_deletedRevisionDisappears(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		fx := newEngineFixture(t, e, nil)
		fx.gw.SetRevision(RevisionConfig{Namespace: "default", Name: "other-00001", Service: "other"})
		b := newBackend(t, "hello-node3-abcde")
		fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{b.info("node3")})
		fx.gw.Refresh()
		if resp, _ := fx.get("hello.default"); resp.StatusCode != 200 {
			t.Fatalf("request: %d", resp.StatusCode)
		}
		count := func(fn string) int {
			t.Helper()
			mfs, err := fx.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, mf := range mfs {
				if !strings.HasPrefix(mf.GetName(), "kantai_gateway_") {
					continue
				}
				for _, m := range mf.Metric {
					for _, l := range m.Label {
						if l.GetName() == "revision" && l.GetValue() == fn {
							n++
						}
					}
				}
			}
			return n
		}
		hello, other := "default/"+rev1, "default/other-00001"
		if count(hello) == 0 || count(other) == 0 {
			t.Fatalf("series before the delete: hello %d, other %d; want some of each", count(hello), count(other))
		}
		if got := testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("hello", hello, "node3", "node3", "200")); got != 1 {
			t.Fatalf("requests counted = %v, want 1", got)
		}
		fx.gw.RemoveRevision(hello)
		if n := count(hello); n != 0 {
			t.Errorf("%d series of the deleted revision remain", n)
		}
		if count(other) == 0 {
			t.Error("the other revision's series went too")
		}
	})
}

// Gateways started together refresh at phases of their own: the same for a
// node at every start, inside the interval, and spread over it.
func TestRefreshPhase(t *testing.T) {
	const interval = time.Second
	if got := refreshPhase("n", 0); got != 0 {
		t.Errorf("refreshPhase with no interval = %v, want 0", got)
	}
	seen := map[time.Duration]bool{}
	var lo, hi int
	for i := range 100 {
		node := fmt.Sprintf("node%02d", i)
		p := refreshPhase(node, interval)
		if p < 0 || p >= interval {
			t.Fatalf("refreshPhase(%q) = %v, outside [0, %v)", node, p, interval)
		}
		if again := refreshPhase(node, interval); again != p {
			t.Errorf("refreshPhase(%q) = %v, then %v", node, p, again)
		}
		seen[p] = true
		if p < interval/2 {
			lo++
		} else {
			hi++
		}
	}
	if len(seen) < 95 || lo < 30 || hi < 30 {
		t.Errorf("100 nodes: %d distinct phases, %d in the first half, %d in the second", len(seen), lo, hi)
	}
}

// Refresh publishes each destination's estimates under their own kind.
func TestMetrics_estimates(t *testing.T) {
	fx := newFixture(t, func(c *Config) {
		c.RTT = func(n string) (time.Duration, bool) {
			return map[string]time.Duration{"node1": 30 * time.Millisecond, "node2": 7 * time.Millisecond}[n], n != "node3"
		}
	})
	fx.gw.SetProcessing("default/"+rev1, map[string]time.Duration{"node1": 40 * time.Millisecond, "node2": 250 * time.Millisecond})
	// Only destinations that have held a replica have series.
	fx.gw.SetReplicas("default/"+rev1, []ReplicaInfo{
		{Name: "hello-node2-a", Node: "node2", Address: "127.0.0.1:1"},
		{Name: "hello-node3-a", Node: "node3", Address: "127.0.0.1:2"},
	})
	fx.gw.Refresh()
	want := `
# HELP kantai_gateway_estimate_seconds What a gateway's policy decides from, per revision and destination node (once the node has held one of the revision's replicas): rtt, processing (the control step's estimate), service (the gateway's fresh figure, 0 when stale) and expected (the kantai policy's expected time at the node's best replica, 0 without one).
# TYPE kantai_gateway_estimate_seconds gauge
`
	for _, dest := range []struct {
		node                      string
		rtt, processing, expected float64
	}{{"node2", 0.007, 0.25, 0.257}, {"node3", 0, 0, 0}} {
		for _, e := range []struct {
			kind string
			v    float64
		}{{"expected", dest.expected}, {"processing", dest.processing}, {"rtt", dest.rtt}, {"service", 0}} {
			want += fmt.Sprintf("kantai_gateway_estimate_seconds{destination=%q,estimate=%q,function=\"hello\",origin=\"node3\",revision=\"default/%s\"} %g\n", dest.node, e.kind, rev1, e.v)
		}
	}
	if err := testutil.GatherAndCompare(fx.reg, strings.NewReader(want), "kantai_gateway_estimate_seconds"); err != nil {
		t.Error(err)
	}
}
