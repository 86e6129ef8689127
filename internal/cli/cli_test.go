package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kantai.dev/kantai/internal/fleet"
)

var kantaiBin, runtimeDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kantai-cli-test")
	if err != nil {
		panic(err)
	}
	kantaiBin = filepath.Join(dir, "kantai")
	// Every command finds the admin socket by itself, in this runtime dir.
	runtimeDir = filepath.Join(dir, "run")
	if err := os.Mkdir(runtimeDir, 0o700); err != nil {
		panic(err)
	}
	build := exec.Command("go", "build", "-o", kantaiBin, "kantai.dev/kantai/cmd/kantai")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kantai:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// kantaiCmd runs the CLI as a user would: no --admin flag, the socket in
// the user's runtime dir.
func kantaiCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(kantaiBin, args...)
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KANTAI_ADMIN") && !strings.HasPrefix(e, "XDG_RUNTIME_DIR=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "XDG_RUNTIME_DIR="+runtimeDir)
	return cmd
}

func kantai(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := kantaiCmd(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestCLI_lifecycle drives a real `kantai up` process through the commands
// a user types, then checks `kantai down` leaves no replica behind.
func TestCLI_lifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet")
	}
	dir := t.TempDir()
	tbFile := filepath.Join(dir, "testbed.yaml")
	tb := `nodes:
- {name: node1, role: cloud, capacity: 4, address: 127.78.70.1}
- {name: node3, role: edge, capacity: 2, address: 127.78.70.3}
links:
- {a: node1, b: node3, latency: 20ms, jitter: 2ms}
`
	if err := os.WriteFile(tbFile, []byte(tb), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := kantai(t, "get", "nodes"); err == nil || !strings.Contains(out, "no fleet is running") {
		t.Fatalf("get without a fleet: %v %q, want a 'no fleet is running' error", err, out)
	}
	var upOut bytes.Buffer
	up := kantaiCmd("up", "-f", tbFile, "--gateway-port", "28081", "--agent-port", "29697")
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	upDone := make(chan error, 1)
	go func() { upDone <- up.Wait() }()
	t.Cleanup(func() {
		_ = up.Process.Signal(syscall.SIGKILL)
	})
	waitUntil(t, 10*time.Second, func() bool { _, err := kantai(t, "get", "nodes"); return err == nil })

	out, err := kantai(t, "get", "nodes")
	if err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "127.78.70.3:28081") {
		t.Fatalf("get nodes: %v\n%s", err, out)
	}
	if out, err := kantai(t, "apply", "-f", filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(out, "missing.yaml") {
		t.Errorf("apply of a missing file: %v %q", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: x}\nspec: {template: {spec: {containers: []}}}\n"), 0o644)
	if out, err := kantai(t, "apply", "-f", bad); err == nil || !strings.Contains(out, "bad.yaml") || !strings.Contains(out, "containers") {
		t.Errorf("apply of a bad manifest: %v %q, want an error naming the file and field", err, out)
	}
	if out, err := kantai(t, "apply", "-f", "../../examples/hello.yaml"); err != nil || !strings.Contains(out, "service.serving.knative.dev/hello applied") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = kantai(t, "request", "--from", "node3", "http://hello.default.svc.cluster.local/")
	if err != nil || !strings.Contains(out, "200 OK") || !strings.Contains(out, "Konnichiwa from hello-") || !strings.Contains(out, "served by hello-") {
		t.Fatalf("request: %v\n%s", err, out)
	}
	if out, err := kantai(t, "request", "--from", "node9", "http://hello.default/"); err == nil || !strings.Contains(out, `no node "node9"`) {
		t.Errorf("request from an unknown node: %v %q", err, out)
	}
	if out, err := kantai(t, "request", "--from", "node1", "http://nothing.default/"); err == nil || !strings.Contains(out, "404") {
		t.Errorf("request to an unknown host: %v %q, want 404", err, out)
	}
	out, err = kantai(t, "request", "--explain", "--from", "node3", "http://hello.default.svc.cluster.local/")
	if err != nil || !strings.Contains(out, "EXPECTED") || !strings.Contains(out, "default/hello-00001") || !strings.Contains(out, "200 OK") {
		t.Errorf("request --explain: %v\n%s", err, out)
	}
	if out, err := kantai(t, "get", "estimates", "hello"); err != nil || strings.Count(out, "default/hello-00001") != 4 {
		t.Errorf("get estimates hello: %v, want a row per origin and node (4)\n%s", err, out)
	}
	if out, err := kantai(t, "get", "revisions"); err != nil || !strings.Contains(out, "hello-00001") || !strings.Contains(out, "100%") {
		t.Errorf("get revisions: %v\n%s", err, out)
	}
	for _, what := range []string{"functions", "replicas", "latency"} {
		out, err := kantai(t, "get", what)
		if err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) < 2 {
			t.Errorf("get %s: %v\n%s", what, err, out)
		}
	}
	out, err = kantai(t, "get", "replicas", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var reps []fleet.ReplicaStatus
	if err := json.Unmarshal([]byte(out), &reps); err != nil || len(reps) == 0 {
		t.Fatalf("get replicas -o json: %v %q", err, out)
	}
	sock := filepath.Join(runtimeDir, "kantai", "admin.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("admin socket %s: %v %v, want a socket with mode 0600", sock, fi.Mode(), err)
	}
	if out, err := kantai(t, "down"); err != nil || !strings.Contains(out, "fleet stopped") {
		t.Fatalf("down: %v %q", err, out)
	}
	// down returns only once the fleet's process has exited: by now it is
	// gone or a zombie waiting for this test to collect it.
	if running(up.Process.Pid) {
		t.Error("kantai down returned while kantai up was still running")
	}
	select {
	case err := <-upDone:
		if err != nil {
			t.Errorf("kantai up exited with %v\n%s", err, upOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kantai up still running 30s after down")
	}
	for _, r := range reps {
		if r.PID != 0 && syscall.Kill(r.PID, 0) == nil {
			t.Errorf("replica %s (pid %d) still running after down", r.Name, r.PID)
		}
	}
	t.Logf("kantai up said:\n%s", upOut.String())
	if !strings.Contains(upOut.String(), "fleet stopped") {
		t.Errorf("up output lacks the stop message:\n%s", upOut.String())
	}
}

// An admin API reachable beyond loopback without a token fails at start,
// before any fleet is started.
func TestCLI_upRefusesAnOpenAdminWithoutToken(t *testing.T) {
	for _, addr := range []string{"tcp://0.0.0.0:27781", "0.0.0.0:27781", "tcp://[::]:27781"} {
		out, err := kantai(t, "--admin", addr, "up", "--gateway-port", "28091", "--agent-port", "29691")
		if err == nil || !strings.Contains(out, "needs a token") {
			t.Errorf("up --admin %s without a token: %v %q, want a failure naming the token", addr, err, out)
		}
	}
}

// A fleet whose admin API is on TCP with a token: the CLI reaches it with
// the token from a file (env), and without the token it is refused.
func TestCLI_adminOverTCPWithToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet")
	}
	dir := t.TempDir()
	tbFile := filepath.Join(dir, "testbed.yaml")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tbFile, []byte("nodes:\n- {name: node1, role: cloud, capacity: 2, address: 127.78.71.1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte("tok-"+strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const addr = "tcp://127.78.71.1:27782"
	var upOut bytes.Buffer
	up := kantaiCmd("--admin", addr, "--admin-token-file", tokenFile, "up", "-f", tbFile, "--gateway-port", "28082", "--agent-port", "29698")
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	upDone := make(chan error, 1)
	go func() { upDone <- up.Wait() }()
	t.Cleanup(func() { _ = up.Process.Signal(syscall.SIGKILL) })
	withToken := func(args ...string) (string, error) {
		cmd := kantaiCmd(append([]string{"--admin", addr}, args...)...)
		cmd.Env = append(cmd.Env, "KANTAI_ADMIN_TOKEN_FILE="+tokenFile)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	waitUntil(t, 10*time.Second, func() bool { _, err := withToken("get", "nodes"); return err == nil })
	if out, err := kantai(t, "--admin", addr, "get", "nodes"); err == nil || !strings.Contains(out, "token") {
		t.Errorf("get nodes without the token: %v %q, want a refusal naming the token", err, out)
	}
	if out, err := kantai(t, "--admin", addr, "--admin-token", "wrong", "down"); err == nil || !strings.Contains(out, "token") {
		t.Errorf("down with a wrong token: %v %q, want a refusal", err, out)
	}
	if out, err := withToken("get", "nodes"); err != nil || !strings.Contains(out, "127.78.71.1:28082") {
		t.Errorf("get nodes with the token: %v %q", err, out)
	}
	// What a web page could send, even with the token, is refused by the
	// running fleet, which keeps running.
	token := "tok-" + strconv.Itoa(os.Getpid())
	for _, tt := range []struct {
		name, host, origin, ctype string
	}{
		{"from another origin", "", "https://evil.example", "application/yaml"},
		{"with a foreign Host", "evil.example:27782", "", "application/yaml"},
		{"as a text/plain form", "", "", "text/plain"},
	} {
		req, _ := http.NewRequest("POST", "http://127.78.71.1:27782/v1/shutdown", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", tt.ctype)
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
		}
		if tt.host != "" {
			req.Host = tt.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("shutdown %s: %v", tt.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("shutdown %s: %d %q, want 403", tt.name, resp.StatusCode, body)
		}
	}
	if _, err := withToken("get", "nodes"); err != nil {
		t.Fatalf("the fleet stopped after refused requests: %v", err)
	}
	if out, err := withToken("down"); err != nil || !strings.Contains(out, "fleet stopped") {
		t.Fatalf("down with the token: %v %q", err, out)
	}
	select {
	case err := <-upDone:
		if err != nil {
			t.Errorf("kantai up exited with %v\n%s", err, upOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kantai up still running 30s after down")
	}
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

func waitUntil(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
