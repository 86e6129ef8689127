// Package k8stest runs a real Kubernetes control plane for integration
// tests: kube-apiserver and etcd through controller-runtime's envtest, and
// optionally kube-scheduler, kube-controller-manager (garbage collector,
// endpoints) and kwok (simulated nodes), all from the directory named by
// KUBEBUILDER_ASSETS (built by hack/k8s-bins.sh), and Knative Serving's own
// controller and webhook out of cluster (StartKnative, from the directory
// named by KNATIVE_ASSETS, built by hack/knative-bins.sh).
package k8stest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// AssetsEnv names the directory with the control-plane binaries.
const AssetsEnv = "KUBEBUILDER_ASSETS"

// SkipReason is the message of integration tests skipped for lack of
// binaries.
const SkipReason = "integration test skipped: " + AssetsEnv + " is not set; run `make test-k8s`, " +
	"or `export " + AssetsEnv + "=$(hack/k8s-bins.sh)` and go test again"

// Assets returns the directory of the binaries, or "" when not set.
func Assets() string { return os.Getenv(AssetsEnv) }

// Options says what to run besides kube-apiserver and etcd.
type Options struct {
	// CRDDirectoryPaths are installed before Start returns.
	CRDDirectoryPaths []string
	// Scheme knows the CRD types; client-go's scheme when nil.
	Scheme *runtime.Scheme
	// Scheduler runs kube-scheduler.
	Scheduler bool
	// GarbageCollector runs kube-controller-manager with only the
	// garbage-collector controller.
	GarbageCollector bool
	// Endpoints adds kube-controller-manager's endpoints controller
	// (Endpoints of Services with a selector, from ready pods), which
	// Knative's ServerlessService reconciler reads.
	Endpoints bool
	// EndpointSlices adds kube-controller-manager's EndpointSlice
	// controllers (slices of Services with a selector, with each
	// endpoint's nodeName, and slices mirrored from selector-less
	// Services' Endpoints), which kantai's gateways read.
	EndpointSlices bool
	// DaemonSets adds kube-controller-manager's DaemonSet controller.
	DaemonSets bool
	// Kwok runs kwok, which simulates the nodes annotated
	// kwok.x-k8s.io/node=fake and the pods bound to them.
	Kwok bool
}

// KwokNodeAnnotation marks nodes that kwok manages.
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// Env is a running control plane.
type Env struct {
	// Config is an admin (system:masters) client config.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file.
	Kubeconfig string
	// Dir holds logs and configuration files; kept after Stop.
	Dir string

	env   *envtest.Environment
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
	// kill stops it with SIGKILL at once (for processes that drain for
	// long after SIGTERM).
	kill bool
}

// Start starts the control plane. Call Stop when done.
func Start(opts Options) (_ *Env, err error) {
	assets := Assets()
	if assets == "" {
		return nil, errors.New(SkipReason)
	}
	dir, err := os.MkdirTemp("", "k8stest-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()

	e.env = &envtest.Environment{
		CRDDirectoryPaths:        opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing:    len(opts.CRDDirectoryPaths) > 0,
		BinaryAssetsDirectory:    assets,
		Scheme:                   opts.Scheme,
		AttachControlPlaneOutput: false,
	}
	// Without these the API server picks the address of the default route
	// and fails on hosts that have none.
	e.env.ControlPlane.GetAPIServer().Configure().
		Set("advertise-address", "127.0.0.1").
		Set("endpoint-reconciler-type", "none")
	cfg, err := e.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	e.Config = cfg

	user, err := e.env.AddUser(envtest.User{Name: "k8stest-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	e.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}

	if opts.Scheduler {
		conf := filepath.Join(dir, "scheduler.yaml")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: 1000
  burst: 2000
leaderElection:
  leaderElect: false
`, e.Kubeconfig)), 0o600); err != nil {
			return nil, err
		}
		if err := e.run("kube-scheduler", filepath.Join(assets, "kube-scheduler"),
			"--config="+conf, "--secure-port=0"); err != nil {
			return nil, err
		}
	}
	var kcm []string
	if opts.GarbageCollector {
		kcm = append(kcm, "garbage-collector-controller")
	}
	if opts.Endpoints {
		kcm = append(kcm, "endpoints-controller")
	}
	if opts.EndpointSlices {
		kcm = append(kcm, "endpointslice-controller", "endpointslice-mirroring-controller")
	}
	if opts.DaemonSets {
		kcm = append(kcm, "daemonset-controller")
	}
	if len(kcm) > 0 {
		if err := e.run("kube-controller-manager", filepath.Join(assets, "kube-controller-manager"),
			"--kubeconfig="+e.Kubeconfig, "--controllers="+strings.Join(kcm, ","),
			"--leader-elect=false", "--secure-port=0", "--kube-api-qps=500", "--kube-api-burst=1000",
			"--flex-volume-plugin-dir="+filepath.Join(dir, "flexvolume")); err != nil {
			return nil, err
		}
	}
	if opts.Kwok {
		if err := e.run("kwok", filepath.Join(assets, "kwok"),
			"--kubeconfig="+e.Kubeconfig, "--config="+filepath.Join(assets, "kwok-stages.yaml"),
			"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector="+KwokNodeAnnotation+"=fake",
			"--node-ip=127.0.0.1", "--cidr=10.244.0.1/16", "--node-lease-duration-seconds=40",
			"--server-address="); err != nil {
			return nil, err
		}
	}
	// Give the processes a moment to fail on bad flags.
	time.Sleep(500 * time.Millisecond)
	for _, p := range e.procs {
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("%s exited early (%v); see %s", p.name, err, e.LogPath(p.name))
		default:
		}
	}
	return e, nil
}

// LogPath is the log file of the named process.
func (e *Env) LogPath(name string) string { return filepath.Join(e.Dir, name+".log") }

func (e *Env) run(name, bin string, args ...string) error {
	_, err := e.runEnv(name, bin, nil, args...)
	return err
}

// runEnv starts bin with the environment of the test plus env.
func (e *Env) runEnv(name, bin string, env []string, args ...string) (*proc, error) {
	logf, err := os.Create(e.LogPath(name))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	e.procs = append(e.procs, p)
	return p, nil
}

// Stop stops every process it started, then the API server and etcd.
func (e *Env) Stop() error {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		sig := syscall.SIGTERM
		if p.kill {
			sig = syscall.SIGKILL
		}
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	e.procs = nil
	if e.env != nil {
		return e.env.Stop()
	}
	return nil
}

// Eventually polls cond every interval until it returns true or an error,
// or timeout passes.
func Eventually(ctx context.Context, timeout, interval time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if ok && err == nil {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("condition not met within %v: %w", timeout, lastErr)
			}
			return fmt.Errorf("condition not met within %v", timeout)
		case <-time.After(interval):
		}
	}
}

// Main runs a package of integration tests: when the control plane's
// binaries (and, if knative, Knative's) are not provided, it prints why and
// runs the tests, which then skip; else it exits with run's code, run
// starting what the suite needs and calling m.Run.
func Main(m *testing.M, knative bool, run func() int) {
	switch {
	case Assets() == "":
		fmt.Println(SkipReason)
	case knative && KnativeAssets() == "":
		fmt.Println(KnativeSkipReason)
	default:
		os.Exit(run())
	}
	os.Exit(m.Run())
}
