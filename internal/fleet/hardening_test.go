package fleet

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"kantai.dev/kantai/internal/manifest"
)

// Closing the fleet under POST load loses nothing: every request sent gets
// an answer (200, or 503 with Connection: close once the gateway drains);
// after that, new connections are refused, which a client sees before
// sending anything. No request is cut (EOF, reset).
func TestFleet_closeUnderPOSTLoadLosesNothing(t *testing.T) {
	f := startFleet(t, smallTestbed(t, 3))
	fn := &manifest.Function{Name: "busy", Namespace: "default", Image: "example/busy", Port: 8080, Workers: 4,
		Processing: manifest.Processing{Kind: "fixed", Mean: 20 * time.Millisecond}}
	if err := f.ApplyFixed(fn, map[string]int{"node1": 2}); err != nil {
		t.Fatal(err)
	}
	addr, _ := f.GatewayAddr("node1")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var ok, unavailable, refused, lost atomic.Int32
	var lostErrs sync.Map
	warm := make(chan struct{})
	var warmOnce sync.Once
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader("work"))
				req.Host = "busy.default"
				resp, err := client.Do(req)
				if err != nil {
					if errors.Is(err, syscall.ECONNREFUSED) {
						refused.Add(1)
						return // the gateway is gone; nothing was sent
					}
					lost.Add(1)
					lostErrs.Store(err.Error(), true)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					if ok.Add(1) == 100 {
						warmOnce.Do(func() { close(warm) })
					}
				case 503:
					unavailable.Add(1)
					if !resp.Close {
						t.Errorf("503 without Connection: close")
					}
				default:
					lost.Add(1)
					lostErrs.Store(resp.Status, true)
				}
			}
		}()
	}
	select {
	case <-warm:
	case <-time.After(60 * time.Second):
		t.Fatalf("100 requests not answered within 60s (ok %d)", ok.Load())
	}
	start := time.Now()
	f.Close()
	took := time.Since(start)
	wg.Wait()
	t.Logf("close under load took %v: %d answered 200, %d answered 503 + close, %d refused at connect, %d lost (EOF or reset)",
		took.Round(time.Millisecond), ok.Load(), unavailable.Load(), refused.Load(), lost.Load())
	if lost.Load() != 0 {
		var errs []string
		lostErrs.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
		t.Errorf("%d requests lost while closing: %v", lost.Load(), errs)
	}
}

// A replica's child in its process group dies and is reaped with it:
// when the replica exits by itself, and when the fleet closes.
func TestFleet_replicaChildrenAreKilledAndReaped(t *testing.T) {
	exe, _ := os.Executable()
	f := startFleet(t, forkerTestbed(7, exe))
	dir := t.TempDir()
	if err := f.ApplyFixed(forkerFunction(filepath.Join(dir, "1.pid")), map[string]int{"node1": 1}); err != nil {
		t.Fatal(err)
	}
	grandchild := readPID(t, filepath.Join(dir, "1.pid"))
	replica := waitReadyPID(t, f)
	// The replica dies alone (its group's other member lives on) …
	if err := syscall.Kill(replica, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// … and the fleet kills and reaps its group: the grandchild is gone
	// entirely, not a zombie, so the fleet (its subreaper) collected it.
	deadline := time.Now().Add(30 * time.Second)
	for processState(grandchild) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d of a replica that died is in state %q 30s later, want reaped", grandchild, processState(grandchild))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The fleet replaces the replica; its new grandchild goes with Close.
	second := readPIDOtherThan(t, filepath.Join(dir, "1.pid"), grandchild)
	f.Close()
	if alive(second) {
		t.Errorf("grandchild %d still running after Close", second)
	}
}

func waitReadyPID(t *testing.T, f *Fleet) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, r := range f.Replicas() {
			if r.State == StateReady && r.PID > 0 {
				return r.PID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready replica within 30s: %+v", f.Replicas())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// After SIGKILL of the fleet's process, nothing it started remains: the
// replica dies by Pdeathsig, its grandchild by the watchdog.
func TestFleet_noOrphansAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envOrphanDir+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := lineReader(out)()
	replica, perr := strconv.Atoi(strings.TrimPrefix(line, "ready "))
	if err != nil || perr != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("fleet helper said %q (%v)", line, err)
	}
	grandchild := readPID(t, filepath.Join(dir, "grandchild.pid"))
	if !alive(replica) || !alive(grandchild) {
		t.Fatalf("replica %d alive %v, grandchild %d alive %v; want both running", replica, alive(replica), grandchild, alive(grandchild))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitGone(t, replica, "replica")
	waitGone(t, grandchild, "grandchild")
	t.Logf("fleet %d killed; replica %d and grandchild %d gone", cmd.Process.Pid, replica, grandchild)
}

// hostile sends raw bytes on a fresh connection and returns the status
// line's code (0 if the connection closed without an answer).
func hostile(t *testing.T, addr string, raw string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	go io.WriteString(c, raw) // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode, string(body)
}
