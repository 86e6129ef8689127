package fleet

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"kantai.dev/kantai/internal/manifest"
)

func parseOne(t *testing.T, doc string) *manifest.Function {
	t.Helper()
	fns, err := manifest.ParseAll([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return fns[0]
}

const revService = `apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: echo}
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
        kantai.dev/workers: "4"
        kantai.dev/processing-time: "5ms"
    spec:
      timeoutSeconds: TIMEOUT
      containers:
      - image: example/echo
        env: [{name: TARGET, value: VALUE}]
`

func revDoc(value string, timeout int, traffic string) string {
	doc := strings.NewReplacer("VALUE", value, "TIMEOUT", fmt.Sprint(timeout)).Replace(revService)
	if traffic != "" {
		doc += "  traffic:\n" + traffic
	}
	return doc
}

// A re-apply with a new env makes revision 2, which takes the traffic once
// ready while revision 1 drains; POSTs under way lose nothing. Then a 90/10
// split, a tag host, and timeoutSeconds.
func TestFleet_revisions(t *testing.T) {
	f := startFleet(t, smallTestbed(t, 3))
	if err := f.Apply(parseOne(t, revDoc("one", 30, ""))); err != nil {
		t.Fatal(err)
	}
	addr, _ := f.GatewayAddr("node1")
	say := func(host string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, resp.Header.Get("X-Kantai-Replica"), " ")
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	eventually(t, "revision 1 serving", func() bool { _, body := say("echo.default"); return strings.Contains(body, "one from") })

	load := postLoad(addr, "echo.default", 6)
	eventually(t, "30 requests answered", func() bool { return load.total.Load() >= 30 })
	if err := f.Apply(parseOne(t, revDoc("two", 30, ""))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "revision 2 serving and revision 1 gone", func() bool {
		_, body := say("echo.default")
		revs := f.Revisions()
		return strings.Contains(body, "two from") && len(revs) == 2 && revs[0].Replicas == "0-0-0/0-0-0" && revs[1].Percent == 100
	})
	after := load.total.Load()
	eventually(t, "30 more requests answered", func() bool { return load.total.Load() >= after+30 })
	load.stop()
	t.Logf("rollout under load: %d requests, %d failed", load.total.Load(), load.failed.Load())
	if load.failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the rollout: %s", load.failed.Load(), load.total.Load(), load.firstErr())
	}
	for _, r := range f.Replicas() {
		if r.Revision != "echo-00002" && r.State != StateStopping {
			t.Errorf("replica %s of %s left after the rollout", r.Name, r.Revision)
		}
	}

	// The same template again with a traffic block: no new revision.
	split := "  - {revisionName: echo-00001, percent: 90}\n  - {revisionName: echo-00002, percent: 10, tag: canary}\n"
	if err := f.Apply(parseOne(t, revDoc("two", 30, split))); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Revisions()); n != 2 {
		t.Fatalf("%d revisions after a traffic-only change, want 2", n)
	}
	eventually(t, "revision 1 back for its 90%", func() bool { return f.Revisions()[0].Ready && readyTotal(f) == 2 })
	counts := map[string]int{}
	for i := 0; i < 2000; i++ {
		code, body := say("echo.default.example.com")
		if code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
		switch {
		case strings.Contains(body, "one from"):
			counts["one"]++
		case strings.Contains(body, "two from"):
			counts["two"]++
		}
	}
	t.Logf("2000 requests split %v", counts)
	if one := counts["one"]; one < 1740 || one > 1860 {
		t.Errorf("90/10 split gave %v, want 1800±60 to revision 1", counts)
	}
	for i := 0; i < 10; i++ {
		if _, body := say("canary-echo.default.svc.cluster.local"); !strings.Contains(body, "two from") {
			t.Fatalf("tag host answered %q, want revision 2", body)
		}
	}
	if bad := f.Apply(parseOne(t, revDoc("two", 30, "  - {revisionName: echo-00009, percent: 100}\n"))); bad == nil || !strings.Contains(bad.Error(), "spec.traffic[0].revisionName") {
		t.Errorf("a split to a missing revision: %v, want an error naming the field", bad)
	}
}

// timeoutSeconds is enforced: a request longer than it gets 504 saying so.
func TestFleet_timeoutSeconds(t *testing.T) {
	f := startFleet(t, smallTestbed(t, 4))
	doc := strings.Replace(revDoc("slow", 1, ""), `"5ms"`, `"3s"`, 1)
	if err := f.Apply(parseOne(t, doc)); err != nil {
		t.Fatal(err)
	}
	addr, _ := f.GatewayAddr("node1")
	eventually(t, "a ready replica", func() bool { return readyTotal(f) == 1 })
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = "echo.default"
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	resp.Body.Close()
	t.Logf("answered %d after %v: %s", resp.StatusCode, time.Since(start).Round(time.Millisecond), buf[:n])
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(buf[:n]), "timeout") {
		t.Errorf("got %d %q, want 504 naming the timeout", resp.StatusCode, buf[:n])
	}
}

func readyTotal(f *Fleet) int {
	n := 0
	for _, r := range f.Replicas() {
		if r.State == StateReady {
			n++
		}
	}
	return n
}
