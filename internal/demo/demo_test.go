package demo

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"kantai.dev/kantai/internal/fleet"
	"kantai.dev/kantai/internal/function"
	"kantai.dev/kantai/internal/testbed"
)

// TestMain lets the test binary double as the function process.
func TestMain(m *testing.M) {
	function.ServeIfReplica()
	os.Exit(m.Run())
}

// TestRun is the end-to-end test: the seed's walkthrough on a real fleet of
// sockets, emulated links and replica processes.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end demo takes about 15s")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tb := testbed.Default()
	for i := range tb.Nodes {
		tb.Nodes[i].Address = "127.78.60." + string(rune('1'+i))
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = Run(ctx, &out, Options{Fleet: fleet.Options{Testbed: tb, FunctionCommand: []string{exe},
		GatewayPort: 28080, AgentPort: 29696}})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}
	for _, want := range []string{"Konnichiwa from hello-node3-", "0-0-1/0-0-1", "burst from node1: served node1=", "0 replica processes left"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
