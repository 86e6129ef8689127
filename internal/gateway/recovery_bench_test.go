package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkRecovery measures, in wall-clock time with the gateway's own
// refresh every second, how long after a remote node's processing time
// drops from 40 ms to 10 ms the kantai policy sends it most of the
// traffic: the remote node (5 ms away) then answers in 15 ms against the
// local node's 20 ms, but no request has gone there since it was slow.
// Run: go test -run '^$' -bench Recovery -benchtime 1x ./internal/gateway
func BenchmarkRecovery(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.ReportMetric(recoveryOnce(b).Seconds(), "s-to-recover")
	}
}

func recoveryOnce(b *testing.B) time.Duration {
	var remoteDelay atomic.Int64
	remoteDelay.Store(int64(40 * time.Millisecond))
	serve := func(name string, delay func() time.Duration) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(delay())
			fmt.Fprint(w, name)
		}))
		b.Cleanup(s.Close)
		return s
	}
	local := serve("local", func() time.Duration { return 20 * time.Millisecond })
	remote := serve("remote", func() time.Duration { return time.Duration(remoteDelay.Load()) })
	gw, err := New(Config{Node: "node1", Nodes: []string{"node1", "node2"}, Policy: "kantai",
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
		RTT:       func(string) (time.Duration, bool) { return 5 * time.Millisecond, true },
		Metrics:   NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		b.Fatal(err)
	}
	rev := RevisionConfig{Namespace: "default", Name: "fn-00001", Service: "fn"}
	gw.SetRevision(rev)
	gw.SetReplicas(rev.Key(), []ReplicaInfo{
		{Name: "local", Node: "node1", Address: strings.TrimPrefix(local.URL, "http://")},
		{Name: "remote", Node: "node2", Address: strings.TrimPrefix(remote.URL, "http://")},
	})
	if err := gw.SetRoutes(ServiceRoutes("fn", "default", "", []ServiceTarget{{Revision: rev.Key(), Percent: 100}})); err != nil {
		b.Fatal(err)
	}
	// What the control step would push: node2 measured slow.
	gw.SetProcessing(rev.Key(), map[string]time.Duration{"node1": 20 * time.Millisecond, "node2": 40 * time.Millisecond})
	srv := httptest.NewServer(gw)
	b.Cleanup(srv.Close)
	stop := make(chan struct{})
	b.Cleanup(func() { close(stop) })
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				gw.Refresh()
			}
		}
	}()
	// One user sending requests back to back.
	var toRemote, total atomic.Int64
	go func() {
		client := &http.Client{}
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("GET", srv.URL+"/", nil)
			req.Host = "fn.default"
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			buf := make([]byte, 16)
			n, _ := resp.Body.Read(buf)
			resp.Body.Close()
			total.Add(1)
			if string(buf[:n]) == "remote" {
				toRemote.Add(1)
			}
		}
	}()
	time.Sleep(8 * time.Second) // steady state: local wins, remote only probed
	b.Logf("before: %d of %d requests to the slow remote node", toRemote.Load(), total.Load())
	remoteDelay.Store(int64(10 * time.Millisecond))
	changed := time.Now()
	// Recovered when, over a half-second window, most requests go remote.
	for time.Since(changed) < 60*time.Second {
		r0, t0 := toRemote.Load(), total.Load()
		time.Sleep(500 * time.Millisecond)
		if dr, dt := toRemote.Load()-r0, total.Load()-t0; dt > 0 && dr*2 > dt {
			return time.Since(changed)
		}
	}
	b.Fatal("traffic did not move to the faster remote node within 60s")
	return 0
}
