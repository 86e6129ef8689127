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

func TestHopInHead(t *testing.T) {
	for _, tc := range []struct {
		head string
		want bool
	}{
		{"Host: a\r\nAccept: */*\r\n", false},
		{"Host: a\r\nX-Connection-Id: 1\r\nUpgraded: no\r\n", false},
		{"", false},
		{"Host: a\r\nconnection: close\r\n", true},
		{"Host: a\r\nKEEP-ALIVE: timeout=5\r\n", true},
		{"Te: trailers\r\n", true},
		{"Host: a\r\nProxy-Authorization: Basic eA==", true},
		{"Host: a\r\nUpgrade : websocket\r\n", true},
	} {
		if got := hopInHead([]byte(tc.head)); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.head, got, tc.want)
		}
	}
}

func TestNewListenerServer_refusesBadChoices(t *testing.T) {
	gw, err := New(Config{Node: "n1", Nodes: []string{"n1"}, Policy: "kantai"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, engine, syscalls, want string
	}{
		{"engine", "h2o", "", `gateway engine "h2o": want net/http or fasthttp`},
		{"syscalls", "", "fast", EnvSyscalls + `="fast": want raw or runtime`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvSyscalls, tc.syscalls)
			if _, err := NewListenerServer(tc.engine, gw, false, ServerOptions{}); err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
