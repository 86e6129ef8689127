package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kantai.dev/kantai/internal/fleet"
)

var kantaiBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kantai-cli-test")
	if err != nil {
		panic(err)
	}
	kantaiBin = filepath.Join(dir, "kantai")
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

const testAdmin = "127.0.0.1:27780"

func kantai(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(kantaiBin, append([]string{"--admin", testAdmin}, args...)...)
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
	up := exec.Command(kantaiBin, "--admin", testAdmin, "up", "-f", tbFile, "--gateway-port", "28081", "--agent-port", "29697")
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
	if out, err := kantai(t, "down"); err != nil || !strings.Contains(out, "fleet stopped") {
		t.Fatalf("down: %v %q", err, out)
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
	if !strings.Contains(upOut.String(), "fleet stopped") {
		t.Errorf("up output lacks the stop message:\n%s", upOut.String())
	}
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
