package nrs_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/controller/nrs"
	"kantai.dev/kantai/internal/k8stest"
)

var (
	scheme  = runtime.NewScheme()
	testEnv *k8stest.Env
	// k8sClient reads and writes the API server directly (no cache).
	k8sClient client.WithWatch
)

func init() {
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := kantaiv1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
}

// TestMain starts kube-apiserver, etcd, kube-scheduler, the garbage
// collector of kube-controller-manager and kwok, plus the controller, when
// KUBEBUILDER_ASSETS is set; otherwise the integration tests skip.
func TestMain(m *testing.M) { k8stest.Main(m, false, func() int { return runWithEnv(m) }) }

func runWithEnv(m *testing.M) int {
	start := time.Now()
	env, err := k8stest.Start(k8stest.Options{
		CRDDirectoryPaths: []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		Scheme:            scheme,
		Scheduler:         true,
		GarbageCollector:  true,
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

	if os.Getenv("NRS_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.UseDevMode(true)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cache.Options{ByObject: nrs.CacheByObject()},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	faults = &faultClient{Client: mgr.GetClient(), byNS: map[string]*faultPlan{}}
	if err := (&nrs.Reconciler{Client: faults}).SetupWithManager(mgr, 4); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	})
	defer func() { cancel(); wg.Wait() }()
	return m.Run()
}

// faults is the controller's client; it injects pod create errors in the
// namespaces a test registers with injectCreateErrors.
var faults *faultClient

// faultClient makes some pod creates fail: "after" creates store the pod
// and then report an error (a client-side time-out or a 504, as when the
// server is slow), "before" creates report a time-out without storing.
type faultClient struct {
	client.Client
	mu   sync.Mutex
	byNS map[string]*faultPlan
}

type faultPlan struct {
	rnd           *rand.Rand
	after, before float64 // probability of each kind of failure
	// Counts of injected failures.
	injectedAfter, injectedBefore int
}

// injectCreateErrors makes pod creates in ns fail with the given
// probabilities (seeded) until the test ends.
func injectCreateErrors(tb testing.TB, ns string, seed uint64, after, before float64) *faultPlan {
	tb.Helper()
	p := &faultPlan{rnd: rand.New(rand.NewPCG(seed, seed)), after: after, before: before}
	faults.mu.Lock()
	faults.byNS[ns] = p
	faults.mu.Unlock()
	tb.Cleanup(func() {
		faults.mu.Lock()
		delete(faults.byNS, ns)
		faults.mu.Unlock()
	})
	return p
}

// injected returns the counts of injected failures so far: creates that
// stored the pod and reported an error, and creates that stored nothing.
func (p *faultPlan) injected() (after, before int) {
	faults.mu.Lock()
	defer faults.mu.Unlock()
	return p.injectedAfter, p.injectedBefore
}

func (c *faultClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if _, isPod := obj.(*corev1.Pod); !isPod {
		return c.Client.Create(ctx, obj, opts...)
	}
	c.mu.Lock()
	var after, before, deadline bool
	p := c.byNS[obj.GetNamespace()]
	if p != nil {
		x := p.rnd.Float64()
		after, before = x < p.after, x >= p.after && x < p.after+p.before
		deadline = p.rnd.IntN(2) == 0
		if before {
			p.injectedBefore++
		}
	}
	c.mu.Unlock()
	if before {
		return apierrors.NewTimeoutError("injected: no answer, pod not stored", 1)
	}
	if err := c.Client.Create(ctx, obj, opts...); err != nil || !after {
		return err
	}
	c.mu.Lock()
	p.injectedAfter++
	c.mu.Unlock()
	if deadline {
		return fmt.Errorf("injected after the pod was stored: %w", context.DeadlineExceeded)
	}
	return apierrors.NewTimeoutError("injected after the pod was stored", 1)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func requireEnv(tb testing.TB) {
	tb.Helper()
	if testEnv == nil {
		tb.Skip(k8stest.SkipReason)
	}
}

// newNamespace creates a namespace for one test.
func newNamespace(tb testing.TB) string {
	tb.Helper()
	name := strings.ToLower(tb.Name())
	name = strings.NewReplacer("/", "-", "_", "-").Replace(name)
	if len(name) > 50 {
		name = name[:50]
	}
	name = fmt.Sprintf("%s-%04d", strings.Trim(name, "-"), rand.IntN(10000))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		tb.Fatalf("creating namespace: %v", err)
	}
	return name
}

// createNodes creates plain Node objects (no kubelet; the test kubelet
// places pods on them).
func createNodes(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := k8sClient.Create(context.Background(), node); err != nil {
			tb.Fatalf("creating node %s: %v", n, err)
		}
		tb.Cleanup(func() { _ = k8sClient.Delete(context.Background(), node) })
	}
}

// newSet returns a NodeReplicaSet whose pods the test kubelet handles.
func newSet(ns, name string, replicas map[string]int32) *kantaiv1alpha1.NodeReplicaSet {
	labels := map[string]string{"app": name}
	return &kantaiv1alpha1.NodeReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: kantaiv1alpha1.NodeReplicaSetSpec{
			Replicas: replicas,
			Selector: &kantaiv1alpha1.LabelSelector{MatchLabels: map[string]kantaiv1alpha1.LabelValue{"app": kantaiv1alpha1.LabelValue(name)}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					SchedulerName: k8stest.FakeKubeletScheduler,
					Containers:    []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
				},
			},
		},
	}
}

// kwokSet returns a NodeReplicaSet whose pods kube-scheduler places on
// kwok nodes.
func kwokSet(ns, name string, replicas map[string]int32) *kantaiv1alpha1.NodeReplicaSet {
	s := newSet(ns, name, replicas)
	s.Spec.Template.Spec.SchedulerName = ""
	s.Spec.Template.Spec.Tolerations = []corev1.Toleration{{
		Key: k8stest.KwokNodeAnnotation, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule,
	}}
	return s
}

func getSet(tb testing.TB, ns, name string) *kantaiv1alpha1.NodeReplicaSet {
	tb.Helper()
	s := &kantaiv1alpha1.NodeReplicaSet{}
	if err := k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		tb.Fatalf("getting NodeReplicaSet: %v", err)
	}
	return s
}

// waitReady waits until status.ready is want and the status describes the
// current generation.
func waitReady(tb testing.TB, ns, name, want string, timeout time.Duration) *kantaiv1alpha1.NodeReplicaSet {
	tb.Helper()
	var s kantaiv1alpha1.NodeReplicaSet
	err := k8stest.Eventually(context.Background(), timeout, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
			return false, err
		}
		return s.Status.ObservedGeneration == s.Generation && s.Status.Ready == want, nil
	})
	if err != nil {
		tb.Fatalf("waiting for ready %q (last %q, observed %d/%d): %v", want, s.Status.Ready,
			s.Status.ObservedGeneration, s.Generation, err)
	}
	return &s
}

// livePods returns the pods of the namespace that are neither terminating
// nor finished, by node label.
func livePods(tb testing.TB, ns string) map[string][]corev1.Pod {
	tb.Helper()
	var list corev1.PodList
	if err := k8sClient.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		tb.Fatalf("listing pods: %v", err)
	}
	out := map[string][]corev1.Pod{}
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		out[p.Labels[kantaiv1alpha1.LabelNode]] = append(out[p.Labels[kantaiv1alpha1.LabelNode]], p)
	}
	return out
}

func countsOf(m map[string][]corev1.Pod) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// podRecorder watches the pods of a namespace and remembers every pod ever
// created and the most pods ever live at once on each node.
type podRecorder struct {
	mu      sync.Mutex
	created map[types.UID]string
	live    map[types.UID]string
	maxLive map[string]int
	stop    func()
	done    chan struct{}
}

func recordPods(tb testing.TB, ns string) *podRecorder {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var list corev1.PodList
	if err := k8sClient.List(ctx, &list, client.InNamespace(ns)); err != nil {
		tb.Fatalf("listing pods: %v", err)
	}
	r := &podRecorder{created: map[types.UID]string{}, live: map[types.UID]string{}, maxLive: map[string]int{},
		done: make(chan struct{})}
	r.stop = func() { cancel(); <-r.done }
	// The API server closes watches of slow consumers; resume from the
	// last resourceVersion seen, as a reflector does.
	rv := list.ResourceVersion
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			w, err := k8sClient.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns),
				&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = p.ResourceVersion
				if ev.Type != watch.Bookmark {
					r.observe(ev.Type, p)
				}
			}
			w.Stop()
		}
	}()
	tb.Cleanup(r.stop)
	return r
}

func (r *podRecorder) observe(t watch.EventType, p *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	node := p.Labels[kantaiv1alpha1.LabelNode]
	if _, seen := r.created[p.UID]; !seen && t != watch.Deleted {
		r.created[p.UID] = node
	}
	gone := t == watch.Deleted || p.DeletionTimestamp != nil ||
		p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
	if gone {
		delete(r.live, p.UID)
		return
	}
	r.live[p.UID] = node
	n := 0
	for _, ln := range r.live {
		if ln == node {
			n++
		}
	}
	r.maxLive[node] = max(r.maxLive[node], n)
}

func (r *podRecorder) snapshot() (created int, maxLive map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	maxLive = map[string]int{}
	for k, v := range r.maxLive {
		maxLive[k] = v
	}
	return len(r.created), maxLive
}
