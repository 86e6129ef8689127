package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkTransport_buffers forwards bodies through a gateway whose
// transport has write buffers of net/http's 4 KiB or larger ones (read
// buffers stay at 4 KiB): 1 MiB down, 1 MiB up, and a 2-byte answer.
//
//	go test -run '^$' -bench Transport_buffers -benchmem ./internal/gateway
func BenchmarkTransport_buffers(b *testing.B) {
	payload := make([]byte, 1<<20)
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
			return
		}
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
			_, _ = w.Write(payload)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})}
	bln, err := net.Listen("tcp", "127.78.201.5:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = backend.Serve(bln) }()
	defer backend.Close()

	for _, buf := range []int{4 << 10, 16 << 10, 32 << 10, 64 << 10} {
		tr := NewTransport(nil)
		tr.WriteBufferSize = buf
		gw, err := New(Config{Node: "n1", Nodes: []string{"n1"}, Policy: "kantai",
			Transport: tr, Metrics: NewMetrics(prometheus.NewRegistry())})
		if err != nil {
			b.Fatal(err)
		}
		gw.SetRevision(RevisionConfig{Namespace: "default", Name: "buf-00001", Service: "buf"})
		gw.SetReplicas("default/buf-00001", []ReplicaInfo{{Name: "r1", Node: "n1", Address: bln.Addr().String()}})
		if err := gw.SetRoutes(ServiceRoutes("buf", "default", "", []ServiceTarget{{Revision: "default/buf-00001", Percent: 100}})); err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.78.201.5:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := NewServer(gw, ServerOptions{})
		go func() { _ = srv.Serve(ln) }()
		name := "write-" + strconv.Itoa(buf>>10) + "KiB"
		for _, c := range []struct {
			name string
			req  string
			body []byte
			n    int64
		}{
			{"down-1MiB", "GET /big HTTP/1.1\r\nHost: buf.default\r\n\r\n", nil, 1 << 20},
			{"up-1MiB", "POST / HTTP/1.1\r\nHost: buf.default\r\nContent-Length: " + strconv.Itoa(len(payload)) + "\r\n\r\n", payload, 1 << 20},
			{"small", "GET / HTTP/1.1\r\nHost: buf.default\r\n\r\n", nil, 2},
		} {
			b.Run(name+"/"+c.name, func(b *testing.B) {
				conn, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				br := bufio.NewReaderSize(conn, 64<<10)
				sink := make([]byte, 64<<10)
				b.SetBytes(c.n)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := io.WriteString(conn, c.req); err != nil {
						b.Fatal(err)
					}
					if c.body != nil {
						if _, err := conn.Write(c.body); err != nil {
							b.Fatal(err)
						}
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil || resp.StatusCode != 200 {
						b.Fatalf("%v %v", resp, err)
					}
					_, _ = io.CopyBuffer(io.Discard, resp.Body, sink)
					resp.Body.Close()
				}
			})
		}
		srv.Close()
	}
}
