package gateway

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A deleted function leaves no series behind in /metrics; other
// functions' series stay.
func TestMetrics_deletedFunctionDisappears(t *testing.T) {
	fx := newFixture(t, nil)
	fx.gw.SetFunction(FunctionConfig{Namespace: "default", Name: "other"})
	b := newBackend(t, "hello-node3-abcde")
	fx.gw.SetReplicas("default/hello", []ReplicaInfo{b.info("node3")})
	if resp, _ := fx.get(t, "hello.default"); resp.StatusCode != 200 {
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
					if l.GetName() == "function" && l.GetValue() == fn {
						n++
					}
				}
			}
		}
		return n
	}
	if count("default/hello") == 0 || count("default/other") == 0 {
		t.Fatalf("series before the delete: hello %d, other %d; want some of each", count("default/hello"), count("default/other"))
	}
	if got := testutil.ToFloat64(fx.gw.cfg.Metrics.requests.WithLabelValues("default/hello", "node3", "node3", "200")); got != 1 {
		t.Fatalf("requests counted = %v, want 1", got)
	}
	fx.gw.RemoveFunction("default/hello")
	if n := count("default/hello"); n != 0 {
		t.Errorf("%d series of the deleted function remain", n)
	}
	if count("default/other") == 0 {
		t.Error("the other function's series went too")
	}
}
