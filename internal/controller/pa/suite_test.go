package pa_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/controller/nrs"
	"kantai.dev/kantai/internal/controller/pa"
	"kantai.dev/kantai/internal/k8stest"
)

// The controller's namespace (config-kantai) in these tests.
const kantaiNamespace = "kantai-system"

// serviceAccount is the controller's ServiceAccount in config/, as a user.
const serviceAccount = "system:serviceaccount:" + kantaiNamespace + ":kantai-controller"

var (
	scheme    = runtime.NewScheme()
	testEnv   *k8stest.Env
	k8sClient client.WithWatch
	// saConfig acts as serviceAccount.
	saConfig *rest.Config

	// Nodes: kwok simulates them; pods on them become Running and Ready.
	// nodeA has the capacity annotation 1; nodeB takes config-kantai's
	// node-capacity 3; nodeTainted has a taint the revisions do not
	// tolerate.
	nodeA, nodeB, nodeTainted = "kwok-a", "kwok-b", "kwok-tainted"
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, kantaiv1alpha1.AddToScheme, asv1alpha1.AddToScheme, netv1alpha1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
}

// TestMain starts kube-apiserver, etcd, kube-scheduler,
// kube-controller-manager (garbage collector and endpoints), kwok, and
// Knative Serving 1.15's controller and webhook, then the NodeReplicaSet
// controller and the PodAutoscaler reconciler, when KUBEBUILDER_ASSETS and
// KNATIVE_ASSETS are set; otherwise the integration tests skip.
func TestMain(m *testing.M) { k8stest.Main(m, true, func() int { return runWithEnv(m) }) }

func runWithEnv(m *testing.M) int {
	start := time.Now()
	env, err := k8stest.Start(k8stest.Options{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		Scheme:            scheme,
		Scheduler:         true,
		GarbageCollector:  true,
		Endpoints:         true,
		DaemonSets:        true,
		Kwok:              true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer env.Stop()
	fmt.Printf("control plane up in %v (logs in %s)\n", time.Since(start).Round(time.Millisecond), env.Dir)
	testEnv = env
	k8sClient, err = client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()

	kstart := time.Now()
	if _, err := env.StartKnative(ctx, k8sClient, k8stest.KnativeOptions{
		Webhook: true,
		Config: map[string]map[string]string{
			"config-autoscaler": {"pod-autoscaler-class": pa.Class, "allow-zero-initial-scale": "true"},
		},
	}); err != nil {
		fmt.Fprintln(os.Stderr, "starting Knative:", err)
		return 1
	}
	fmt.Printf("Knative controller leading, webhook ready in %v\n", time.Since(kstart).Round(time.Millisecond))

	if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kantaiNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := k8stest.SetConfig(ctx, k8sClient, kantaiNamespace, pa.ConfigMapName, map[string]string{pa.KeyNodeCapacity: "3"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := createNodes(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "creating nodes:", err)
		return 1
	}
	// The controllers run as the ServiceAccount of config/ with the RBAC
	// that make generate writes, so a missing permission fails the tests.
	root := filepath.Join("..", "..", "..", "config")
	if err := k8stest.ApplyFiles(ctx, k8sClient, nil,
		filepath.Join(root, "rbac", "service_account.yaml"), filepath.Join(root, "rbac", "role.yaml"),
		filepath.Join(root, "rbac", "role_binding.yaml"),
		filepath.Join(root, "knative", "rbac", "role.yaml"), filepath.Join(root, "knative", "rbac", "role_binding.yaml"),
	); err != nil {
		fmt.Fprintln(os.Stderr, "installing RBAC:", err)
		return 1
	}
	saConfig = rest.CopyConfig(env.Config)
	saConfig.Impersonate = rest.ImpersonationConfig{UserName: serviceAccount}

	if os.Getenv("PA_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	if err := startControllers(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the PodAutoscaler reconciler:", err)
		return 1
	}
	defer stopControllers()
	return m.Run()
}

// The NodeReplicaSet controller and the PodAutoscaler reconciler run in
// one manager, as in cmd/kantai-controller, that a test can stop and start
// again, as a restart or a new leader does.
var (
	ctrlMu     sync.Mutex
	ctrlCancel func()
)

func startControllers() error {
	ctrlMu.Lock()
	defer ctrlMu.Unlock()
	byObject := nrs.CacheByObject()
	maps.Copy(byObject, pa.CacheByObject(kantaiNamespace, k8stest.KnativeNamespace))
	mgr, err := ctrl.NewManager(saConfig, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cache.Options{ByObject: byObject},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// A restarted manager registers its controller names again in
		// this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return err
	}
	if err := (&nrs.Reconciler{}).SetupWithManager(mgr, 4); err != nil {
		return err
	}
	r := &pa.Reconciler{Namespace: kantaiNamespace, KnativeNamespace: k8stest.KnativeNamespace, Tick: 500 * time.Millisecond}
	if err := r.SetupWithManager(mgr, 4); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	ctrlCancel = func() { cancel(); <-done }
	return nil
}

func stopControllers() {
	ctrlMu.Lock()
	defer ctrlMu.Unlock()
	if ctrlCancel != nil {
		ctrlCancel()
		ctrlCancel = nil
	}
}

// createNodes creates the kwok nodes and waits until they are Ready.
func createNodes(ctx context.Context) error {
	for _, n := range []struct {
		name  string
		ann   map[string]string
		taint []corev1.Taint
	}{
		{nodeA, map[string]string{pa.CapacityAnnotation: "1"}, nil},
		{nodeB, nil, nil},
		{nodeTainted, nil, []corev1.Taint{{Key: "dedicated", Value: "other", Effect: corev1.TaintEffectNoSchedule}}},
	} {
		ann := map[string]string{k8stest.KwokNodeAnnotation: "fake"}
		for k, v := range n.ann {
			ann[k] = v
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Annotations: ann,
				Labels: map[string]string{"kubernetes.io/hostname": n.name, "type": "kwok"}},
			Spec: corev1.NodeSpec{Taints: n.taint},
		}
		if err := k8sClient.Create(ctx, node); err != nil {
			return err
		}
		orig := node.DeepCopy()
		node.Status = corev1.NodeStatus{Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"),
			corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110")}}
		node.Status.Allocatable = node.Status.Capacity
		if err := k8sClient.Status().Patch(ctx, node, client.MergeFrom(orig)); err != nil {
			return err
		}
	}
	err := k8stest.Eventually(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		var list corev1.NodeList
		if err := k8sClient.List(ctx, &list); err != nil {
			return false, err
		}
		ready := 0
		for _, n := range list.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == 3, nil
	})
	if err != nil {
		return err
	}
	// The API server taints new nodes node.kubernetes.io/not-ready; the
	// node lifecycle controller of kube-controller-manager, which the
	// harness does not run, removes the taint once the node is Ready. Do
	// its part.
	var list corev1.NodeList
	if err := k8sClient.List(ctx, &list); err != nil {
		return err
	}
	for i := range list.Items {
		n := &list.Items[i]
		orig := n.DeepCopy()
		var keep []corev1.Taint
		for _, t := range n.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady {
				keep = append(keep, t)
			}
		}
		n.Spec.Taints = keep
		// A merge patch: kwok writes the nodes too.
		if err := k8sClient.Patch(ctx, n, client.MergeFrom(orig)); err != nil {
			return fmt.Errorf("removing the not-ready taint of %s: %w", n.Name, err)
		}
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func requireEnv(tb testing.TB) {
	tb.Helper()
	if testEnv == nil {
		if k8stest.Assets() == "" {
			tb.Skip(k8stest.SkipReason)
		}
		tb.Skip(k8stest.KnativeSkipReason)
	}
}

// newNamespace creates a namespace for one test.
func newNamespace(tb testing.TB) string {
	tb.Helper()
	name := strings.ToLower(tb.Name())
	name = strings.NewReplacer("/", "-", "_", "-").Replace(name)
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("%s-%04d", strings.Trim(name, "-"), rand.IntN(10000))
	if err := k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		tb.Fatalf("creating namespace: %v", err)
	}
	return name
}
