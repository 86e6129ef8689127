package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/controller/pa"
	"kantai.dev/kantai/internal/function"
	"kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/k8stest"
	"kantai.dev/kantai/internal/linkemu"
)

const kantaiNamespace = "kantai-system"

// The emulated cluster: two edge nodes and a cloud node. Pods get virtual
// addresses 198.18.<node>.<pod>, and listen at 127.85.<node>.<pod>.
var nodes = []string{"edge-a", "edge-b", "cloud"}

const addressMap = "198.18.0.0/16=127.85.0.0/16"

var addrs = must(linkemu.ParseAddressMap(addressMap))

// emulation is the cluster the gateways and the controller are told of:
// the edges are 10 ms apart, and 30 ms from the cloud.
const emulation = `addressMap: ` + addressMap + `
nodes:
- {name: edge-a, pods: 127.85.1.0/24}
- {name: edge-b, pods: 127.85.2.0/24}
- {name: cloud, pods: 127.85.3.0/24}
links:
- {a: edge-a, b: edge-b, latency: 10ms}
- {a: edge-a, b: cloud, latency: 30ms}
- {a: edge-b, b: cloud, latency: 30ms}
`

const nodeToken = "e2e-node-token"

var tokenFile, emulationFile string

// kubeconfigs of kantai's ServiceAccounts, by name.
var kubeconfigs = map[string]string{}

// impersonating writes a kubeconfig that acts as the ServiceAccount
// kantai-system/sa.
func impersonating(env *k8stest.Env, sa string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		return "", err
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate = "system:serviceaccount:" + kantaiNamespace + ":" + sa
	}
	path := filepath.Join(env.Dir, sa+".kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}

// taint adds a taint to a node.
func taint(ctx context.Context, node string, t corev1.Taint) error {
	n := &corev1.Node{}
	if err := k8sClient.Get(ctx, k8stest.Key("", node), n); err != nil {
		return err
	}
	orig := n.DeepCopy()
	n.Spec.Taints = append(n.Spec.Taints, t)
	return k8sClient.Patch(ctx, n, client.MergeFrom(orig))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var (
	scheme    = runtime.NewScheme()
	testEnv   *k8stest.Env
	k8sClient client.WithWatch
	bins      = map[string]string{} // command → built binary
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, kantaiv1alpha1.AddToScheme, asv1alpha1.AddToScheme,
		netv1alpha1.AddToScheme, servingv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
}

func TestMain(m *testing.M) { k8stest.Main(m, true, func() int { return runWithEnv(m) }) }

func runWithEnv(m *testing.M) int {
	ctrllog.SetLogger(logr.Discard())
	start := time.Now()
	dir, err := os.MkdirTemp("", "kantai-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, cmd := range []string{"kantai", "kantai-controller", "kantai-gateway"} {
		bins[cmd] = filepath.Join(dir, cmd)
		if out, err := exec.Command("go", "build", "-o", bins[cmd], "kantai.dev/kantai/cmd/"+cmd).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", cmd, err, out)
			return 1
		}
	}
	env, err := k8stest.Start(k8stest.Options{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")},
		Scheme:            scheme,
		Scheduler:         true,
		GarbageCollector:  true,
		Endpoints:         true,
		EndpointSlices:    true,
		DaemonSets:        true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer env.Stop()
	testEnv = env
	if k8sClient, err = client.NewWithWatch(env.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := env.StartKnative(ctx, k8sClient, k8stest.KnativeOptions{
		Webhook: true,
		Config: map[string]map[string]string{
			"config-autoscaler": {"pod-autoscaler-class": pa.Class, "allow-zero-initial-scale": "true"},
		},
	}); err != nil {
		fmt.Fprintln(os.Stderr, "starting Knative:", err)
		return 1
	}
	if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kantaiNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8stest.SetConfig(ctx, k8sClient, kantaiNamespace, pa.ConfigMapName, map[string]string{pa.KeyNodeCapacity: "4"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, n := range nodes {
		if err := k8stest.ProcessNode(ctx, k8sClient, n, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// The cloud node is reserved for other work: revisions, which do not
	// tolerate the taint, never run there; the gateway does.
	if err := taint(ctx, "cloud", corev1.Taint{Key: "dedicated", Value: "batch", Effect: corev1.TaintEffectNoSchedule}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := k8stest.StartProcessKubelet(ctx, k8sClient, addrs, nodes, runPod, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	// The gateways' DaemonSet, as config/gateway has it, with the token
	// Secret the gateways and the controller share.
	tokenFile = filepath.Join(env.Dir, "node-token")
	if err := os.WriteFile(tokenFile, []byte(nodeToken), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: kantaiNamespace, Name: "kantai-node-token"},
		StringData: map[string]string{"token": nodeToken}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	emulationFile = filepath.Join(env.Dir, "emulation.yaml")
	if err := os.WriteFile(emulationFile, []byte(emulation), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// kantai's components act as their ServiceAccounts with the RBAC of
	// config/, so a missing permission fails these tests.
	root := filepath.Join("..", "..", "config")
	if err := k8stest.ApplyFiles(ctx, k8sClient, nil,
		filepath.Join(root, "rbac", "service_account.yaml"), filepath.Join(root, "rbac", "role.yaml"),
		filepath.Join(root, "rbac", "role_binding.yaml"),
		filepath.Join(root, "knative", "rbac", "role.yaml"), filepath.Join(root, "knative", "rbac", "role_binding.yaml"),
	); err != nil {
		fmt.Fprintln(os.Stderr, "installing RBAC:", err)
		return 1
	}
	for _, sa := range []string{"kantai-controller", "kantai-gateway"} {
		if kubeconfigs[sa], err = impersonating(env, sa); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	gw := filepath.Join(root, "gateway")
	if err := k8stest.ApplyFiles(ctx, k8sClient, nil, filepath.Join(gw, "service_account.yaml"), filepath.Join(gw, "role.yaml"),
		filepath.Join(gw, "role_binding.yaml"), filepath.Join(gw, "services.yaml"), filepath.Join(gw, "daemonset.yaml")); err != nil {
		fmt.Fprintln(os.Stderr, "installing the gateway DaemonSet:", err)
		return 1
	}
	if err := k8stest.SetConfig(ctx, k8sClient, k8stest.KnativeNamespace, "config-network",
		map[string]string{"ingress-class": ingress.Class}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	stop, err := startProcess("kantai-controller", env.Dir, []string{"KUBECONFIG=" + kubeconfigs["kantai-controller"]},
		bins["kantai-controller"], "--pod-autoscaler", "--ingress", "--leader-elect=false",
		"--namespace="+kantaiNamespace, "--knative-namespace="+k8stest.KnativeNamespace,
		"--gateway-namespace="+kantaiNamespace, "--node-token-file="+tokenFile, "--emulation="+emulationFile,
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--tick=500ms")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	// Every test may enter at any node's gateway.
	err = k8stest.Eventually(ctx, 3*time.Minute, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := k8sClient.List(ctx, &pods, client.InNamespace(kantaiNamespace),
			client.MatchingLabels{"app.kubernetes.io/name": "kantai-gateway"}); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running++
			}
		}
		return running == len(nodes), nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "the gateways did not start:", err)
		return 1
	}
	fmt.Printf("cluster with Knative and kantai up in %v (logs in %s)\n", time.Since(start).Round(time.Millisecond), env.Dir)
	return m.Run()
}

// runPod is the process kubelet's Runner: a revision's pod runs kantai's
// built-in function where queue-proxy would listen (8012, the port
// Knative's private Service targets); a gateway pod runs the
// kantai-gateway binary as the DaemonSet says, listening on the pod's
// loopback address, dialling through the emulated links.
func runPod(ctx context.Context, pod *corev1.Pod, ip string) (func(), error) {
	if pod.Labels["app.kubernetes.io/name"] == "kantai-gateway" {
		virtual := addrs.ToVirtual(netip.MustParseAddr(ip)).String()
		args, env, err := containerCommand(ctx, pod, virtual, testEnv.Dir)
		if err != nil {
			return nil, err
		}
		// Knative's controller holds *:8080 (its probe port), so the
		// gateway listens on 18080 and 18081 here.
		args = append(args, "--kubeconfig="+kubeconfigs["kantai-gateway"], "--emulation="+emulationFile, "--shutdown-delay=0",
			"--external-addr="+ip+":18080", "--internal-addr="+ip+":18081", "--agent-addr="+ip+":9696",
			"--node-api-addr="+ip+":9697", "--metrics-addr="+ip+":9698", "--latency-interval=500ms")
		name := "gateway-" + pod.Spec.NodeName
		stop, exited, err := startProcessDone(name, testEnv.Dir, env, bins["kantai-gateway"], args...)
		if err != nil {
			return nil, err
		}
		if err := waitReady(ctx, "http://"+ip+":9698/readyz", exited); err != nil {
			stop()
			out, _ := os.ReadFile(filepath.Join(testEnv.Dir, name+".log"))
			return nil, fmt.Errorf("gateway on %s: %w\n%s", pod.Spec.NodeName, err, out)
		}
		return stop, nil
	}
	if _, ok := pod.Labels["serving.knative.dev/revision"]; ok {
		target := ""
		for _, c := range pod.Spec.Containers {
			for _, e := range c.Env {
				if e.Name == "TARGET" {
					target = e.Value
				}
			}
		}
		env := []string{
			function.EnvAddress + "=" + ip, function.EnvPort + "=8012", function.EnvTarget + "=" + target,
			function.EnvReplica + "=" + pod.Name, function.EnvNode + "=" + pod.Spec.NodeName,
		}
		stop, err := startProcess("pod-"+pod.Name, testEnv.Dir, env, bins["kantai"], "fn", "hello")
		if err != nil {
			return nil, err
		}
		if err := waitListening(ctx, net.JoinHostPort(ip, "8012")); err != nil {
			stop()
			return nil, err
		}
		return stop, nil
	}
	return nil, fmt.Errorf("pod %s/%s: nothing to run for it", pod.Namespace, pod.Name)
}

// startProcess runs bin with its output in dir/name.log; stop ends it
// (SIGTERM, then SIGKILL after 10 s) and waits.
func startProcess(name, dir string, env []string, bin string, args ...string) (stop func(), err error) {
	stop, _, err = startProcessDone(name, dir, env, bin, args...)
	return stop, err
}

// startProcessDone is startProcess that also returns a channel closed
// when the process has exited.
func startProcessDone(name, dir string, env []string, bin string, args ...string) (stop func(), exited <-chan struct{}, err error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}, done, nil
}

// waitReady returns once url answers 200, or fails once exited is closed.
func waitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	c := &http.Client{Timeout: time.Second}
	return k8stest.Eventually(ctx, 60*time.Second, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		select {
		case <-exited:
			return false, errors.New("exited before it was ready")
		default:
		}
		resp, err := c.Get(url)
		if err != nil {
			return false, nil //nolint:nilerr // not up yet
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// waitListening returns once addr accepts connections.
func waitListening(ctx context.Context, addr string) error {
	return k8stest.Eventually(ctx, 30*time.Second, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, nil //nolint:nilerr // not listening yet
		}
		c.Close()
		return true, nil
	})
}

func requireEnv(tb testing.TB) {
	tb.Helper()
	if testEnv == nil {
		if k8stest.Assets() == "" {
			tb.Skip(k8stest.SkipReason)
		}
		tb.Skip(k8stest.KnativeSkipReason)
	}
}
