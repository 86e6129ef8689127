package nodegw_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/k8stest"
	"kantai.dev/kantai/internal/nodeapi"
)

// shutdownDelay is the binary's: long enough for a check or two on a busy
// machine.
const shutdownDelay = 10 * time.Second

// TestBinary runs cmd/kantai-gateway as a process with a kubeconfig and
// a token file: it becomes ready, its node API holds an Ingress of the
// class and refuses a wrong token; on SIGTERM it says it is not ready but
// still serves for the shutdown delay, then drains and exits 0.
func TestBinary(t *testing.T) {
	requireEnv(t)
	if testing.Short() {
		t.Skip("builds cmd/kantai-gateway; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kantai-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, "kantai.dev/kantai/cmd/kantai-gateway").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	token := fmt.Sprintf("tok-%d", rand.Uint64())
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("gwbin-%04d", rand.IntN(10000))
	node := "node-" + ns
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})

	cmd := exec.Command(bin, "--kubeconfig="+testEnv.Kubeconfig, "--token-file="+tokenFile, "--namespace="+kantaiNamespace,
		"--external-addr=127.0.0.1:0", "--internal-addr=127.0.0.1:0", "--agent-addr=127.0.0.1:0",
		"--node-api-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0", "--drain-timeout=5s",
		"--shutdown-delay="+shutdownDelay.String())
	cmd.Env = append(os.Environ(), "NODE_NAME="+node, "POD_IP=192.0.2.1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The log (JSON lines) tells the addresses it listens on.
	var (
		mu    sync.Mutex
		lines []string
	)
	started := make(chan map[string]any, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "Starting" {
				started <- rec
			}
		}
	}()
	logs := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(lines, "\n")
	}
	done := make(chan error, 1)
	go func() { <-scanned; done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var rec map[string]any
	select {
	case rec = <-started:
	case err := <-done:
		exited = true
		t.Fatalf("kantai-gateway exited: %v\n%s", err, logs())
	case <-time.After(long):
		t.Fatalf("kantai-gateway did not start within %v\n%s", long, logs())
	}
	api, metrics, ext := rec["nodeAPI"].(string), rec["metrics"].(string), rec["external"].(string)
	if rec["node"] != node || api == "" || metrics == "" || ext == "" {
		t.Fatalf("start record %v", rec)
	}

	ing := createIngress(t, ns, "hello", ingress.Class, "hello."+ns+".example.com", "r1")
	err = k8stest.Eventually(context.Background(), long, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("never ready: %v\n%s", err, logs())
	}
	waitState(t, nodeapi.NewClient(token, 10*time.Second), api, "the Ingress held", func(st nodeapi.State) bool {
		return st.Node == node && st.Ingresses[ns+"/hello"] == ing.Generation
	})
	if _, err := nodeapi.NewClient("wrong", 10*time.Second).State(context.Background(), api); err == nil ||
		!strings.Contains(err.Error(), "401") {
		t.Errorf("state with a wrong token: err = %v, want 401", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Not ready at once; still serving until the delay ends (the delay is
	// long enough that both checks fall inside it).
	err = k8stest.Eventually(context.Background(), shutdownDelay, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable, nil
	})
	if err != nil {
		t.Errorf("still ready after SIGTERM: %v", err)
	} else if r := get(t, ext, "nobody."+ns+".example.com"); r.code != http.StatusNotFound {
		t.Errorf("within the shutdown delay: %d %q, want the gateway's 404", r.code, r.body)
	}
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs())
		}
	case <-time.After(long):
		t.Fatalf("no exit within %v of SIGTERM\n%s", long, logs())
	}
	if testing.Verbose() {
		t.Logf("kantai-gateway's log:\n%s", logs())
	}
	for _, msg := range []string{`"msg":"Not ready; serving until the shutdown delay ends"`, `"msg":"Draining the gateway listeners"`, `"msg":"Stopped"`} {
		if !strings.Contains(logs(), msg) {
			t.Errorf("log lacks %s:\n%s", msg, logs())
		}
	}
}
