package proxybench

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"kantai.dev/kantai/internal/gateway"
)

// stubTransport answers every request at once, without I/O, so that a
// benchmark sees the gateway's own cost.
type stubTransport struct{}

type stubBody struct{ r strings.Reader }

func (b *stubBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *stubBody) Close() error               { return nil }

func (stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// Report the request written, as http.Transport does.
	if trace := httptrace.ContextClientTrace(r.Context()); trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{})
	}
	b := &stubBody{}
	b.r.Reset("ok")
	return &http.Response{
		StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, ContentLength: 2, Request: r,
		Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Length": {"2"}},
		Body:   b,
	}, nil
}

// recorder is a ResponseWriter that keeps nothing, reused across requests.
type recorder struct {
	h    http.Header
	code int
	n    int
}

func (w *recorder) Header() http.Header         { return w.h }
func (w *recorder) WriteHeader(code int)        { w.code = code }
func (w *recorder) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkGateway_ServeHTTP measures one request through the gateway:
//   - stub: ServeHTTP alone, the replica answered by a stub transport; the
//     allocations are the gateway's own plus the stub's response (2).
//   - loopback: a real server and transport to a backend process over
//     loopback, requests one after another; allocations are the gateway
//     process's (server, gateway, transport).
//   - loopback-parallel: the same with GOMAXPROCS×8 connections.
func BenchmarkGateway_ServeHTTP(b *testing.B) {
	b.Run("stub", func(b *testing.B) {
		g2, err := newKantaiGateway("127.0.0.1:1", stubTransport{}, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		req, _ := http.NewRequest("GET", "http://"+benchHost+"/", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.RequestURI = "/"
		req.Header.Set("User-Agent", "bench")
		req.Header.Set("Accept", "*/*")
		w := &recorder{h: make(http.Header, 8)}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			clear(w.h)
			g2.ServeHTTP(w, req)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		}
	})

	backend, err := startChild(context.Background(), roleBackend, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer backend.stop()
	g, err := newKantaiGateway(backend.addr, nil, prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: g}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	addr := ln.Addr().String()
	if err := probe(addr); err != nil {
		b.Fatal(err)
	}

	benchLoopback(b, "", addr)

	// The same gateway on the fasthttp engine.
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fsrv := gateway.NewFastServer(g.FastHandler(), gateway.ServerOptions{})
	go func() { _ = fsrv.Serve(fln) }()
	defer fsrv.Close()
	if err := probe(fln.Addr().String()); err != nil {
		b.Fatal(err)
	}
	benchLoopback(b, "-fasthttp", fln.Addr().String())
}

// benchLoopback runs the loopback benchmarks against the gateway at addr.
func benchLoopback(b *testing.B, suffix, addr string) {
	b.Run("loopback"+suffix, func(b *testing.B) {
		c := &client{addr: addr, req: buildRequest(benchHost, 0)}
		defer c.close()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if code, err := c.do(); err != nil || code != 200 {
				b.Fatalf("%d %v", code, err)
			}
		}
	})
	b.Run("loopback-parallel"+suffix, func(b *testing.B) {
		b.SetParallelism(8)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			c := &client{addr: addr, req: buildRequest(benchHost, 0)}
			defer c.close()
			for pb.Next() {
				if code, err := c.do(); err != nil || code != 200 {
					b.Errorf("%d %v", code, err)
					return
				}
			}
		})
	})
}
