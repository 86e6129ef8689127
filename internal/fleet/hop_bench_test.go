package fleet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"kantai.dev/kantai/internal/manifest"
)

// BenchmarkFleet_gatewayHop measures what the gateway adds inside the
// embedded fleet: one replica of hello on node3, requested one at a time
// over a keep-alive connection either through node3's gateway (a local
// replica, no emulated link) or directly at the replica's address, in
// alternating batches so both see the same machine. Reported: p50 and p99
// of each, and their differences (the hop).
//
//	go test -run '^$' -bench Fleet_gatewayHop -benchtime 4000x ./internal/fleet
func BenchmarkFleet_gatewayHop(b *testing.B) {
	tb := smallTestbed(b, 94)
	f := startFleet(b, tb)
	fns, err := manifest.LoadFile("../../examples/hello.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if err := f.ApplyFixed(fns[0], map[string]int{"node3": 1}); err != nil {
		b.Fatal(err)
	}
	gwAddr, _ := f.GatewayAddr("node3")
	host := "hello.default"
	var replicaAddr string
	deadline := time.Now().Add(60 * time.Second)
	for replicaAddr == "" {
		if time.Now().After(deadline) {
			b.Fatal("no ready replica within 60s")
		}
		f.mu.Lock()
		for _, svc := range f.svcs {
			for _, rev := range svc.revisions {
				for _, r := range rev.replicas {
					r.mu.Lock()
					if r.state == StateReady {
						replicaAddr = r.addr
					}
					r.mu.Unlock()
				}
			}
		}
		f.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	via, err := dialKeepAlive(gwAddr, host)
	if err != nil {
		b.Fatal(err)
	}
	defer via.c.Close()
	direct, err := dialKeepAlive(replicaAddr, host)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.c.Close()
	// Until the gateway answers from the replica (routes published).
	for {
		if time.Now().After(deadline) {
			b.Fatal("the gateway did not answer 200 within 60s")
		}
		if code, err := via.do(); err != nil {
			b.Fatal(err)
		} else if code == 200 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	const batch = 100
	var viaLat, directLat []time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		for _, k := range []*keepAliveClient{direct, via} {
			for range batch {
				start := time.Now()
				code, err := k.do()
				d := time.Since(start)
				if err != nil || code != 200 {
					b.Fatalf("%d %v", code, err)
				}
				if k == via {
					viaLat = append(viaLat, d)
				} else {
					directLat = append(directLat, d)
				}
			}
		}
	}
	b.StopTimer()
	slices.Sort(viaLat)
	slices.Sort(directLat)
	pct := func(xs []time.Duration, p float64) float64 {
		return float64(xs[int(p*float64(len(xs)-1))].Microseconds())
	}
	b.ReportMetric(pct(directLat, .5), "direct-p50-µs")
	b.ReportMetric(pct(directLat, .99), "direct-p99-µs")
	b.ReportMetric(pct(viaLat, .5), "gateway-p50-µs")
	b.ReportMetric(pct(viaLat, .99), "gateway-p99-µs")
	b.ReportMetric(pct(viaLat, .5)-pct(directLat, .5), "hop-p50-µs")
	b.ReportMetric(pct(viaLat, .99)-pct(directLat, .99), "hop-p99-µs")
}

// keepAliveClient sends one fixed GET at a time on one connection.
type keepAliveClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func dialKeepAlive(addr, host string) (*keepAliveClient, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &keepAliveClient{c: c, br: bufio.NewReader(c),
		req: []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n")}, nil
}

func (k *keepAliveClient) do() (int, error) {
	if _, err := k.c.Write(k.req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return 0, fmt.Errorf("reading: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
