package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/controller/gateways"
	"kantai.dev/kantai/internal/controller/ingress"
	"kantai.dev/kantai/internal/controller/nrs"
	"kantai.dev/kantai/internal/controller/pa"
	"kantai.dev/kantai/internal/gateway"
	kingress "kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/k8stest"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/nodeapi"
)

const (
	kantaiNamespace = "kantai-system"
	serviceAccount  = "system:serviceaccount:" + kantaiNamespace + ":kantai-controller"
	token           = "e2e-node-token"
	// The kwok nodes, and the fake gateways on them. Placement that
	// ignored demand would take nodeX first.
	nodeX, nodeY = "kwok-x", "kwok-y"
)

var (
	scheme    = runtime.NewScheme()
	testEnv   *k8stest.Env
	k8sClient client.Client
	// fakes are the gateways by node.
	fakes = map[string]*fakeGateway{}
	// dialMap maps the gateways' addresses in the EndpointSlices to their
	// loopback listeners; written before the controllers start.
	dialMap = map[string]string{}
)

// nodeAPI is the poller's client: it dials only the fake gateways, on
// loopback, whatever address an EndpointSlice names.
func nodeAPI() *nodeapi.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		real, ok := dialMap[addr]
		if !ok {
			return nil, fmt.Errorf("no fake gateway at %s", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, real)
	}
	return &nodeapi.Client{Token: token, HTTP: &http.Client{Timeout: gateways.DefaultTimeout,
		Transport: &http.Transport{DialContext: dial}}}
}

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, kantaiv1alpha1.AddToScheme, asv1alpha1.AddToScheme, netv1alpha1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
}

// TestMain starts the control plane with kwok nodes and Knative Serving
// (PodAutoscaler class and ingress class kantai's), the fake gateways, and
// the controllers as in cmd/kantai-controller with --pod-autoscaler and
// --ingress; without KUBEBUILDER_ASSETS and KNATIVE_ASSETS the tests skip.
func TestMain(m *testing.M) { k8stest.Main(m, true, func() int { return runWithEnv(m) }) }

func runWithEnv(m *testing.M) int {
	start := time.Now()
	env, err := k8stest.Start(k8stest.Options{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		Scheme:            scheme,
		Scheduler:         true,
		GarbageCollector:  true,
		Endpoints:         true,
		Kwok:              true,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	defer env.Stop()
	fmt.Printf("control plane up in %v (logs in %s)\n", time.Since(start).Round(time.Millisecond), env.Dir)
	testEnv = env
	k8sClient, err = client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if _, err := env.StartKnative(ctx, k8sClient, k8stest.KnativeOptions{
		Webhook: true,
		Config: map[string]map[string]string{
			"config-autoscaler": {"pod-autoscaler-class": pa.Class, "allow-zero-initial-scale": "true"},
			"config-network":    {"ingress-class": kingress.Class},
		},
	}); err != nil {
		fmt.Fprintln(os.Stderr, "starting Knative:", err)
		return 1
	}
	if err := setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "setting up:", err)
		return 1
	}
	if os.Getenv("PA_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	stop, err := startControllers()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the controllers:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// setup makes the controller's namespace and RBAC, the nodes, and the
// fake gateways with the EndpointSlices that list them.
func setup(ctx context.Context) error {
	if err := k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kantaiNamespace}}); err != nil {
		return err
	}
	if err := k8stest.SetConfig(ctx, k8sClient, kantaiNamespace, pa.ConfigMapName, map[string]string{pa.KeyNodeCapacity: "3"}); err != nil {
		return err
	}
	root := filepath.Join("..", "..", "..", "config")
	if err := k8stest.ApplyFiles(ctx, k8sClient, nil,
		filepath.Join(root, "rbac", "service_account.yaml"), filepath.Join(root, "rbac", "role.yaml"),
		filepath.Join(root, "rbac", "role_binding.yaml"),
		filepath.Join(root, "knative", "rbac", "role.yaml"), filepath.Join(root, "knative", "rbac", "role_binding.yaml"),
	); err != nil {
		return fmt.Errorf("installing RBAC: %w", err)
	}
	if err := createNodes(ctx, nodeX, nodeY); err != nil {
		return fmt.Errorf("creating nodes: %w", err)
	}
	// The headless Service of the gateways; its EndpointSlices are
	// written here, as the EndpointSlice controller would for the
	// DaemonSet's pods.
	peers := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: kantaiNamespace, Name: gateways.DefaultService},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone,
			Ports: []corev1.ServicePort{{Name: gateways.DefaultPortName, Port: nodeapi.DefaultPort}}}}
	if err := k8sClient.Create(ctx, peers); err != nil {
		return err
	}
	rtt := map[string]latency.Row{
		nodeX: {nodeY: {RTT: 0.03, Samples: 10}},
		nodeY: {nodeX: {RTT: 0.03, Samples: 10}},
	}
	for i, node := range []string{nodeX, nodeY} {
		f := newFakeGateway(node, rtt[node])
		srv := httptest.NewServer(nodeapi.Handler(f, token))
		fakes[node] = f
		_, p, err := net.SplitHostPort(srv.Listener.Addr().String())
		if err != nil {
			return err
		}
		port, _ := strconv.Atoi(p)
		// The API server refuses loopback addresses in EndpointSlices: the
		// slice names a documentation address (RFC 5737) that the
		// poller's dialer maps to the fake's loopback listener.
		host := fmt.Sprintf("192.0.2.%d", i+1)
		dialMap[net.JoinHostPort(host, p)] = srv.Listener.Addr().String()
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: kantaiNamespace, Name: gateways.DefaultService + "-" + node,
				Labels: map[string]string{discoveryv1.LabelServiceName: gateways.DefaultService}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(gateways.DefaultPortName), Port: ptr.To(int32(port))}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}, NodeName: ptr.To(node),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}
		if err := k8sClient.Create(ctx, slice); err != nil {
			return fmt.Errorf("endpointslice of %s: %w", node, err)
		}
	}
	return nil
}

// startControllers runs, as the controller's ServiceAccount, one manager
// with the NodeReplicaSet controller, the gateway poller, the
// PodAutoscaler reconciler and the Ingress status reconciler, wired as
// cmd/kantai-controller does.
func startControllers() (stop func(), err error) {
	saConfig := rest.CopyConfig(testEnv.Config)
	saConfig.Impersonate = rest.ImpersonationConfig{UserName: serviceAccount}
	byObject := nrs.CacheByObject()
	maps.Copy(byObject, pa.CacheByObject(kantaiNamespace, k8stest.KnativeNamespace))
	maps.Copy(byObject, gateways.CacheByObject(kantaiNamespace, ""))
	mgr, err := ctrl.NewManager(saConfig, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cache.Options{ByObject: byObject},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, err
	}
	if err := (&nrs.Reconciler{}).SetupWithManager(mgr, 4); err != nil {
		return nil, err
	}
	poller := &gateways.Poller{Client: mgr.GetClient(), Namespace: kantaiNamespace,
		API: nodeAPI(), Interval: 500 * time.Millisecond}
	if err := mgr.Add(poller); err != nil {
		return nil, err
	}
	// No periodic step within a test: a revision at zero can only scale
	// up on the poller's trigger.
	r := &pa.Reconciler{Namespace: kantaiNamespace, KnativeNamespace: k8stest.KnativeNamespace, Tick: time.Hour,
		Gateways: poller, Triggers: poller.RevisionEvents()}
	if err := r.SetupWithManager(mgr, 4); err != nil {
		return nil, err
	}
	ir := &ingress.Reconciler{Gateways: poller, Changes: poller.ViewEvents(), LoadBalancer: kingress.ServiceLoadBalancer(kantaiNamespace, "cluster.local")}
	if err := ir.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// createNodes creates kwok nodes, waits until they are Ready and removes
// the not-ready taint (the node lifecycle controller does not run).
func createNodes(ctx context.Context, names ...string) error {
	for _, name := range names {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{k8stest.KwokNodeAnnotation: "fake"},
				Labels: map[string]string{"kubernetes.io/hostname": name, "type": "kwok"}},
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
	return k8stest.Eventually(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		var list corev1.NodeList
		if err := k8sClient.List(ctx, &list); err != nil {
			return false, err
		}
		for i := range list.Items {
			n := &list.Items[i]
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
			}
			if !ready {
				return false, nil
			}
			var keep []corev1.Taint
			for _, t := range n.Spec.Taints {
				if t.Key != corev1.TaintNodeNotReady {
					keep = append(keep, t)
				}
			}
			if len(keep) != len(n.Spec.Taints) {
				orig := n.DeepCopy()
				n.Spec.Taints = keep
				if err := k8sClient.Patch(ctx, n, client.MergeFrom(orig)); err != nil {
					return false, err
				}
			}
		}
		return len(list.Items) == len(names), nil
	})
}

// fakeGateway is a node's gateway as its API shows it: cumulative
// counters on the real clock, driven by the test.
type fakeGateway struct {
	mu    sync.Mutex
	node  string
	epoch uint64
	rtt   latency.Row
	revs  map[string]*fakeRevision
	ings  map[string]int64
	// pushes are the processing estimates received.
	pushes []nodeapi.Processing
}

type fakeRevision struct {
	since   time.Time
	waiting int
	from    time.Time // since when waiting holds
	area    float64   // up to from
	dest    []gateway.DestStats
}

func newFakeGateway(node string, rtt latency.Row) *fakeGateway {
	return &fakeGateway{node: node, epoch: uint64(time.Now().UnixNano()), rtt: rtt, revs: map[string]*fakeRevision{}, ings: map[string]int64{}}
}

func (f *fakeGateway) revLocked(key string, now time.Time) *fakeRevision {
	r := f.revs[key]
	if r == nil {
		r = &fakeRevision{since: now, from: now}
		f.revs[key] = r
	}
	return r
}

// setWaiting makes n requests wait for the revision from now on.
func (f *fakeGateway) setWaiting(key string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	r := f.revLocked(key, now)
	r.area += float64(r.waiting) * now.Sub(r.from).Seconds()
	r.waiting, r.from = n, now
}

// served adds responses of the revision served at node, each taking d.
func (f *fakeGateway) served(key, node string, n int, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.revLocked(key, time.Now())
	for i := range r.dest {
		if r.dest[i].Node == node {
			r.dest[i].Responses += uint64(n)
			r.dest[i].Service += float64(n) * d.Seconds()
			return
		}
	}
	r.dest = append(r.dest, gateway.DestStats{Node: node, Responses: uint64(n), Service: float64(n) * d.Seconds()})
}

func (f *fakeGateway) setIngress(key string, gen int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ings[key] = gen
}

func (f *fakeGateway) received() []nodeapi.Processing {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]nodeapi.Processing(nil), f.pushes...)
}

func (f *fakeGateway) State() nodeapi.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	st := nodeapi.State{Node: f.node, RTT: f.rtt, Ingresses: maps.Clone(f.ings),
		Stats: gateway.Stats{Node: f.node, Epoch: f.epoch, At: now}}
	for _, key := range slices.Sorted(maps.Keys(f.revs)) {
		r := f.revs[key]
		st.Stats.Revisions = append(st.Stats.Revisions, gateway.RevisionStats{Revision: key, Since: r.since,
			Area: r.area + float64(r.waiting)*now.Sub(r.from).Seconds(), Waiting: r.waiting,
			Dest: append([]gateway.DestStats(nil), r.dest...)})
	}
	return st
}

func (f *fakeGateway) SetProcessing(p nodeapi.Processing) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pushes = append(f.pushes, p)
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

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
