package fleet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kantai.dev/kantai/internal/function"
	"kantai.dev/kantai/internal/manifest"
	"kantai.dev/kantai/internal/testbed"
)

// The test binary doubles as several helper processes, chosen before
// TestMain runs:
//   - a replica of image example/bulk ("<test binary> bulk"): POST counts
//     the body's bytes, GET /big writes 1 GiB;
//   - a client holding idle connections (envHold);
//   - a fleet to be killed (envOrphanDir).
const (
	envHold      = "KANTAI_TEST_HOLD"
	envOrphanDir = "KANTAI_TEST_ORPHAN_DIR"
)

func init() {
	if os.Getenv(function.EnvReplica) != "" {
		if len(os.Args) > 1 && os.Args[len(os.Args)-1] == "bulk" {
			os.Exit(serveBulk())
		}
		return // TestMain serves the built-in function
	}
	if spec := os.Getenv(envHold); spec != "" {
		os.Exit(holdConnections(spec))
	}
	if dir := os.Getenv(envOrphanDir); dir != "" {
		os.Unsetenv(envOrphanDir) // not for the replicas it starts
		os.Exit(runFleetToBeKilled(dir))
	}
}

func serveBulk() int {
	addr, err := function.ListenAddress(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%d bytes\n", n)
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for i := 0; i < 1024; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "bulk\n") })
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// holdConnections opens up to count connections to addr ("addr count"),
// sending nothing, reports "held N" on stdout, and keeps them until stdin
// closes.
func holdConnections(spec string) int {
	addr, countStr, _ := strings.Cut(spec, " ")
	count, _ := strconv.Atoi(countStr)
	var conns []net.Conn
	var firstErr error
	for len(conns) < count {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			firstErr = err // most likely EMFILE: this process's descriptor limit
			break
		}
		conns = append(conns, c)
	}
	fmt.Printf("held %d\n", len(conns))
	if firstErr != nil {
		fmt.Printf("stopped by %v\n", firstErr)
	}
	fmt.Println("done")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// orphanScript is a replica that starts a grandchild first, as a
// `sh -c "server & …"` image does. The grandchild's pid goes to $PIDFILE.
const orphanScript = `sleep 1000 & echo $! > "$PIDFILE"; exec "$0" hello`

// forkerTestbed maps image example/forker to orphanScript around exe.
func forkerTestbed(base int, exe string) *testbed.Testbed {
	tb := testbed.Default()
	for i := range tb.Nodes {
		tb.Nodes[i].Address = fmt.Sprintf("127.78.%d.%d", base, i+1)
	}
	tb.Images = map[string][]string{"example/forker": {"sh", "-c", orphanScript, exe}}
	return tb
}

func forkerFunction(pidFile string) *manifest.Function {
	return &manifest.Function{Name: "forker", Namespace: "default", Image: "example/forker", Port: 8080,
		Env: []manifest.EnvVar{{Name: "PIDFILE", Value: pidFile}}}
}

// runFleetToBeKilled starts a fleet with one forker replica, prints
// "ready <replica pid>" once it serves, and waits to be killed.
func runFleetToBeKilled(dir string) int {
	exe, _ := os.Executable()
	f, err := Start(context.Background(), Options{Testbed: forkerTestbed(6, exe), FunctionCommand: []string{exe},
		GatewayPort: 18080, AgentPort: 19696, ControlInterval: 200 * time.Millisecond})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if err := f.ApplyFixed(forkerFunction(filepath.Join(dir, "grandchild.pid")), map[string]int{"node1": 1}); err != nil {
		fmt.Println("error", err)
		return 1
	}
	for {
		for _, r := range f.Replicas() {
			if r.State == StateReady {
				fmt.Printf("ready %d\n", r.PID)
				select {} // until SIGKILL
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processState is a process's state letter from /proc ("" if gone).
func processState(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return "?"
	}
	return s[i+2 : i+3]
}

// alive reports a process that runs (zombies have ended).
func alive(pid int) bool {
	st := processState(pid)
	return st != "" && st != "Z" && st != "X"
}

// readPID waits for a pid file a replica writes.
func readPID(t *testing.T, path string) int {
	t.Helper()
	return readPIDOtherThan(t, path, 0)
}

// readPIDOtherThan waits for a pid file to hold a pid other than old.
func readPIDOtherThan(t *testing.T, path string, old int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && perr == nil && pid > 0 && pid != old {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within 30s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGone waits until pid has ended; a grandchild killed by the watchdog
// is re-parented and reaped by whoever is its subreaper, so that may take
// a moment after the kill.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still running 30s later", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rss is this process's resident set (VmRSS) and peak (VmHWM), in MiB.
func rss() (cur, peak float64) {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			switch f[0] {
			case "VmRSS:":
				cur = kb / 1024
			case "VmHWM:":
				peak = kb / 1024
			}
		}
	}
	return cur, peak
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func fdLimit() uint64 {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

// lineReader reads a helper's stdout lines.
func lineReader(r io.Reader) func() (string, error) {
	br := bufio.NewReader(r)
	return func() (string, error) {
		s, err := br.ReadString('\n')
		return strings.TrimSpace(s), err
	}
}
