package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// serve runs Guard around a handler that answers 200 "ok" (and [] for
// /v1/nodes) on ln, until the test ends.
func serve(t *testing.T, ln net.Listener, o GuardOptions) {
	t.Helper()
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/nodes" {
			io.WriteString(w, "[]")
			return
		}
		io.WriteString(w, "ok")
	})
	srv := &http.Server{Handler: Guard(inner, o)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func loopbackTCP(t *testing.T, token string) (Endpoint, string) {
	t.Helper()
	ep, err := ParseEndpoint("tcp://127.78.200.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(ep, token)
	if err != nil {
		t.Fatal(err)
	}
	ep.Address = ln.Addr().String()
	serve(t, ln, GuardOptions{Endpoint: ep, Token: token})
	return ep, "http://" + ep.Address
}

func send(t *testing.T, method, url string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader("apiVersion: v1"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestGuard_refusals(t *testing.T) {
	_, base := loopbackTCP(t, "")
	yaml := map[string]string{"Content-Type": "application/yaml"}
	tests := []struct {
		name   string
		method string
		header map[string]string
		want   int
		reason string
	}{
		{"plain GET", "GET", nil, 200, ""},
		{"CLI-style POST", "POST", yaml, 200, ""},
		{"GET with an Origin", "GET", map[string]string{"Origin": "https://evil.example"}, 403, "Origin"},
		{"POST with an Origin", "POST", map[string]string{"Origin": "null", "Content-Type": "application/yaml"}, 403, "Origin"},
		{"no-cors fetch", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "Sec-Fetch-Site"},
		{"typed URL", "GET", map[string]string{"Sec-Fetch-Site": "none"}, 200, ""},
		{"text/plain POST", "POST", map[string]string{"Content-Type": "text/plain;charset=UTF-8"}, 403, "Content-Type"},
		{"form POST", "POST", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 403, "Content-Type"},
		{"multipart POST", "POST", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 403, "Content-Type"},
		{"POST without a type", "POST", nil, 403, "Content-Type"},
		{"DNS rebinding", "GET", map[string]string{"Host": "attacker.example:7780"}, 403, "Host"},
		{"rebinding to the bare name", "POST", map[string]string{"Host": "attacker.example", "Content-Type": "application/yaml"}, 403, "Host"},
		{"localhost", "GET", map[string]string{"Host": "localhost:7780"}, 200, ""},
		{"another loopback address", "GET", map[string]string{"Host": "127.0.0.1"}, 200, ""},
		{"IPv6 loopback", "GET", map[string]string{"Host": "[::1]:7780"}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, body := send(t, tt.method, base+"/v1/functions", tt.header)
			if got != tt.want || !strings.Contains(body, tt.reason) {
				t.Errorf("%s: got %d %q, want %d naming %q", tt.name, got, body, tt.want, tt.reason)
			}
		})
	}
}

func TestGuard_token(t *testing.T) {
	const token = "s3cret-token"
	ep, base := loopbackTCP(t, token)
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"none", "", 401},
		{"wrong", "Bearer s3cret-tokeN", 401},
		{"prefix", "Bearer s3cret", 401},
		{"basic", "Basic czNjcmV0LXRva2Vu", 401},
		{"right", "Bearer " + token, 200},
	}
	for _, tt := range tests {
		h := map[string]string{}
		if tt.auth != "" {
			h["Authorization"] = tt.auth
		}
		if got, body := send(t, "GET", base+"/metrics", h); got != tt.want {
			t.Errorf("%s token: got %d %q, want %d", tt.name, got, body, tt.want)
		}
	}
	if _, err := NewClient(ep, "").Nodes(context.Background()); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("client without the token: %v, want a refusal naming the token", err)
	}
	if _, err := NewClient(ep, token).Nodes(context.Background()); err != nil {
		t.Errorf("client with the token: %v", err)
	}
}

// The configured host is accepted besides loopback names (a TCP admin API
// reached by the name it was given).
func TestGuard_configuredHost(t *testing.T) {
	ep := Endpoint{Network: "tcp", Address: "admin.internal:7780"}
	h := Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), GuardOptions{Endpoint: ep, Token: "t"})
	for host, want := range map[string]int{"admin.internal:7780": 200, "ADMIN.internal": 200, "other.internal:7780": 403, "": 403} {
		req, _ := http.NewRequest("GET", "/v1/nodes", nil)
		req.Host = host
		req.Header.Set("Authorization", "Bearer t")
		rec := &recorder{header: http.Header{}, code: 200}
		h.ServeHTTP(rec, req)
		if rec.code != want {
			t.Errorf("Host %q: got %d, want %d", host, rec.code, want)
		}
	}
}

type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(p []byte) (int, error) { return len(p), nil }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func TestListen_beyondLoopbackNeedsAToken(t *testing.T) {
	for _, addr := range []string{"tcp://0.0.0.0:0", ":0", "tcp://[::]:0", "tcp://192.0.2.1:7780", "tcp://example.com:7780"} {
		ep, err := ParseEndpoint(addr)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := Listen(ep, "")
		if err == nil {
			ln.Close()
			t.Errorf("Listen(%s) without a token succeeded, want an error", addr)
			continue
		}
		if !errors.Is(err, ErrTokenRequired) || !strings.Contains(err.Error(), "token") {
			t.Errorf("Listen(%s): %v, want ErrTokenRequired", addr, err)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	tests := []struct {
		in, want string
	}{
		{"", "unix:///run/user/1000/kantai/admin.sock"},
		{"unix:///tmp/x/admin.sock", "unix:///tmp/x/admin.sock"},
		{"/tmp/x/admin.sock", "unix:///tmp/x/admin.sock"},
		{"127.0.0.1:7780", "tcp://127.0.0.1:7780"},
		{"tcp://localhost:7780", "tcp://localhost:7780"},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"unix://relative.sock", "localhost", "tcp://host"} {
		if _, err := ParseEndpoint(bad); err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", bad)
		}
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	got, _ := ParseEndpoint("")
	if want := filepath.Join(os.TempDir(), "kantai-"+strconv.Itoa(os.Getuid()), "admin.sock"); got.Address != want {
		t.Errorf("default socket without XDG_RUNTIME_DIR = %s, want %s", got.Address, want)
	}
}

func TestListen_unixSocket(t *testing.T) {
	run := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", run)
	ep, err := ParseEndpoint("")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(ep, "")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, GuardOptions{Endpoint: ep})
	for path, want := range map[string]os.FileMode{filepath.Join(run, "kantai"): 0o700, ep.Address: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	if _, err := NewClient(ep, "").Nodes(context.Background()); err != nil {
		t.Errorf("client over the socket: %v", err)
	}
	if ln2, err := Listen(ep, ""); err == nil || !strings.Contains(err.Error(), "already running") {
		if ln2 != nil {
			ln2.Close()
		}
		t.Errorf("second Listen on a live socket: %v, want 'already running'", err)
	}
}

func TestListen_staleSocketIsReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kantai")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close() // the socket file stays, as after a SIGKILL
	ln, err := Listen(Endpoint{Network: "unix", Address: path}, "")
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	ln.Close()
}

func TestListen_unixDirMustBePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(Endpoint{Network: "unix", Address: filepath.Join(dir, "admin.sock")}, "")
	if err == nil {
		ln.Close()
		t.Fatal("Listen in a directory open to others succeeded")
	}
	if !strings.Contains(err.Error(), "open to other users") {
		t.Errorf("got %v, want a refusal naming the mode", err)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	os.WriteFile(good, []byte("abc123\n"), 0o600)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("abc123\n"), 0o644)
	os.Chmod(open, 0o644)
	if got, err := LoadToken("", good); err != nil || got != "abc123" {
		t.Errorf("LoadToken(file) = %q, %v", got, err)
	}
	if got, err := LoadToken("flag", good); err != nil || got != "flag" {
		t.Errorf("LoadToken(flag, file) = %q, %v; the flag wins", got, err)
	}
	if _, err := LoadToken("", open); err == nil {
		t.Error("a token file readable by others was accepted")
	}
}
