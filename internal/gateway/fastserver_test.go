package gateway

import (
	"net"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp"
)

// startFastServer serves h on a loopback port with o behind a FastServer;
// it returns the server and its address.
func startFastServer(t *testing.T, h fasthttp.RequestHandler, o ServerOptions) (*FastServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.78.201.2:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewFastServer(h, o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}
