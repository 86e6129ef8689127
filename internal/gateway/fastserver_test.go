package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// startFastServer serves h on a loopback port with o behind a FastServer;
// it returns the server and its address.
func startFastServer(t *testing.T, h fasthttp.RequestHandler, o ServerOptions) (*FastServer, string) {
	t.Helper()
	s := NewFastServer(h, o)
	return s, serveOn(t, "127.78.201.2:0", s)
}
