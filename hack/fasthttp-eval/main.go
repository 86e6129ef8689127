// Command fasthttp-eval is a bare reverse proxy on valyala/fasthttp
// (Server + HostClient), kept out of kantai's module: it exists to measure
// what that stack would give the gateway (kantai bench proxy --external)
// and which HTTP behaviours it keeps (the gateway's conformance suite with
// KANTAI_CONFORMANCE_FRONT set). It has none of the gateway's features:
// its figures bound what a fasthttp gateway could reach, from below.
//
// It speaks the protocol of kantai bench proxy's children: the backend's
// address in KANTAI_PROXYBENCH_BACKEND, "proxybench-listening ADDR" on
// standard output once listening, exit when standard input closes.
// FASTHTTP_EVAL_STREAM=1 streams bodies both ways (without it, fasthttp
// reads whole bodies into memory); FASTHTTP_EVAL_READ_TIMEOUT bounds the
// reading of a request (a Go duration; the suite's slow client needs one).
//
//	cd hack/fasthttp-eval && go build -o /tmp/fasthttp-eval .
//	KANTAI_CONFORMANCE_FRONT=/tmp/fasthttp-eval FASTHTTP_EVAL_STREAM=1 \
//	  FASTHTTP_EVAL_READ_TIMEOUT=2s go test -run TestConformance/external ./internal/gateway
//	bin/kantai bench proxy --external "fasthttp=FASTHTTP_EVAL_STREAM=1 /tmp/fasthttp-eval"
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	backend := os.Getenv("KANTAI_PROXYBENCH_BACKEND")
	if backend == "" {
		fmt.Fprintln(os.Stderr, "fasthttp-eval: KANTAI_PROXYBENCH_BACKEND not set")
		os.Exit(2)
	}
	hc := &fasthttp.HostClient{
		Addr:                          backend,
		MaxConns:                      1024,
		MaxIdleConnDuration:           90 * time.Second,
		DisableHeaderNamesNormalizing: true,
		StreamResponseBody:            os.Getenv("FASTHTTP_EVAL_STREAM") != "",
	}
	srv := &fasthttp.Server{
		Handler:                       func(ctx *fasthttp.RequestCtx) { proxy(ctx, hc) },
		ReadTimeout:                   envDuration("FASTHTTP_EVAL_READ_TIMEOUT"),
		IdleTimeout:                   60 * time.Second,
		ReadBufferSize:                16 << 10, // the largest request head, as the conformance suite's limit
		MaxRequestBodySize:            1 << 30,
		StreamRequestBody:             os.Getenv("FASTHTTP_EVAL_STREAM") != "",
		DisableHeaderNamesNormalizing: true,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fasthttp-eval:", err)
		os.Exit(1)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = ln.Close()
		os.Exit(0)
	}()
	fmt.Printf("proxybench-listening %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "fasthttp-eval:", err)
	}
}

func envDuration(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}

var hop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// dropHop deletes the hop-by-hop headers and those a Connection header
// names (read before it goes).
func dropHop(connection []byte, del func(string)) {
	for _, name := range strings.Split(string(connection), ",") {
		if name = strings.TrimSpace(name); name != "" {
			del(name)
		}
	}
	for _, h := range hop {
		del(h)
	}
}

func proxy(ctx *fasthttp.RequestCtx, hc *fasthttp.HostClient) {
	req := &ctx.Request
	dropHop(req.Header.Peek("Connection"), req.Header.Del)
	if ip, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		prior := req.Header.Peek("X-Forwarded-For")
		if len(prior) > 0 {
			req.Header.Set("X-Forwarded-For", string(prior)+", "+ip.IP.String())
		} else {
			req.Header.Set("X-Forwarded-For", ip.IP.String())
		}
	}
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.SetBytesV("X-Forwarded-Host", req.Header.Host())
	resp := &ctx.Response
	if err := hc.Do(req, resp); err != nil {
		ctx.Error("replica did not answer: "+err.Error(), fasthttp.StatusBadGateway)
		return
	}
	dropHop(resp.Header.Peek("Connection"), resp.Header.Del)
}
