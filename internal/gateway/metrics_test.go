package gateway

import (
	"strings"
	"testing"

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
