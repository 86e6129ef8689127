package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLI_linkAndNode drives link and node changes on a real `kantai up`.
func TestCLI_linkAndNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a fleet")
	}
	const adminAddr = "127.0.0.1:27781"
	run := func(args ...string) (string, error) {
		t.Helper()
		return kantai(t, append([]string{"--admin", adminAddr}, args...)...)
	}
	tbFile := filepath.Join(t.TempDir(), "testbed.yaml")
	tb := `groups:
- {name: dc, count: 2, capacity: 2, address: 127.78.94.1}
- {name: far, role: edge, count: 1, capacity: 1, address: 127.78.94.9}
links:
- {a: "*", b: "*", latency: 20ms, jitter: 2ms}
`
	if err := os.WriteFile(tbFile, []byte(tb), 0o644); err != nil {
		t.Fatal(err)
	}
	var upOut bytes.Buffer
	up := exec.Command(kantaiBin, "--admin", adminAddr, "up", "-f", tbFile, "--gateway-port", "28091", "--agent-port", "29698")
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = up.Process.Signal(syscall.SIGKILL)
		_ = up.Wait()
		if t.Failed() {
			t.Logf("kantai up output:\n%s", upOut.String())
		}
	})
	waitUntil(t, 10*time.Second, func() bool { _, err := run("get", "nodes"); return err == nil })

	steps := []struct {
		args    []string
		want    []string
		wantErr bool
	}{
		{[]string{"link", "set", "dc-1", "far-1", "--latency", "150ms", "--jitter", "0s"}, []string{"dc-1  far-1  150ms    0s      100Mbit    changed"}, false},
		{[]string{"link", "set", "dc", "far", "--bandwidth", "5Mbit"}, []string{"dc-1  far-1  150ms", "dc-2  far-1  20ms     2ms     5Mbit      changed"}, false},
		{[]string{"link", "show", "--changed"}, []string{"dc-1  far-1", "dc-2  far-1"}, false},
		{[]string{"link", "set", "dc-1", "far-1", "--latency", "1000h"}, []string{"latency: must be between 0 and 10s"}, true},
		{[]string{"link", "set", "dc-1", "far-1"}, []string{"nothing to set"}, true},
		{[]string{"link", "set", "dc-1", "nowhere", "--latency", "1ms"}, []string{`unknown node "nowhere"`}, true},
		{[]string{"link", "cut", "dc", "far"}, []string{"dc-1  far-1  150ms", "cut"}, false},
		{[]string{"link", "reset"}, []string{"3 links as in the testbed"}, false},
		{[]string{"link", "show", "dc-1", "far-1"}, []string{"dc-1  far-1  20ms     2ms     100Mbit    as configured"}, false},
		{[]string{"node", "down", "far-1"}, []string{"node far-1 down"}, false},
		{[]string{"node", "up", "far-1"}, []string{"node far-1 up"}, false},
		{[]string{"node", "down", "nowhere"}, []string{`unknown node "nowhere"`}, true},
	}
	for _, s := range steps {
		out, err := run(s.args...)
		if (err != nil) != s.wantErr {
			t.Errorf("kantai %s: err %v, want error %v\n%s", strings.Join(s.args, " "), err, s.wantErr, out)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Errorf("kantai %s: output lacks %q:\n%s", strings.Join(s.args, " "), w, out)
			}
		}
	}
	if out, err := run("down"); err != nil {
		t.Errorf("down: %v %s", err, out)
	}
}
