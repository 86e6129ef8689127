package nrs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
)

// staleReader serves pod lists from a frozen snapshot, as a cache that lags
// behind the API server does; everything else goes to the Client.
type staleReader struct {
	client.Client
	mu   sync.Mutex
	pods []corev1.Pod
}

func (s *staleReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	pl, ok := list.(*corev1.PodList)
	if !ok {
		return s.Client.List(ctx, list, opts...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pl.Items = slices.Clone(s.pods)
	return nil
}

func (s *staleReader) set(pods []corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pods = pods
}

// lyingCreates makes every successful pod create return err instead, after
// the pod was stored (as a client time-out does when the server was slow).
// It counts the create calls.
type lyingCreates struct {
	mu    sync.Mutex
	err   error
	calls int
}

func (l *lyingCreates) funcs() interceptor.Funcs {
	return interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		l.mu.Lock()
		l.calls++
		lie := l.err
		l.mu.Unlock()
		if err := c.Create(ctx, obj, opts...); err != nil {
			return err
		}
		if _, isPod := obj.(*corev1.Pod); isPod && lie != nil {
			return lie
		}
		return nil
	}}
}

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := kantaiv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func testSet(replicas map[string]int32) *kantaiv1alpha1.NodeReplicaSet {
	return &kantaiv1alpha1.NodeReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-web", Generation: 1},
		Spec: kantaiv1alpha1.NodeReplicaSetSpec{
			Replicas: replicas,
			Selector: &kantaiv1alpha1.LabelSelector{MatchLabels: map[string]kantaiv1alpha1.LabelValue{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}},
			},
		},
	}
}

// newFakeEnv returns a fake API server holding set, nodes and objs, whose
// pod creates go through lie.
func newFakeEnv(t *testing.T, lie *lyingCreates, set *kantaiv1alpha1.NodeReplicaSet, objs ...client.Object) client.WithWatch {
	t.Helper()
	for node := range set.Spec.Replicas {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})
	}
	return fake.NewClientBuilder().
		WithScheme(testScheme(t)).
		WithObjects(append(objs, set)...).
		WithStatusSubresource(&kantaiv1alpha1.NodeReplicaSet{}).
		WithIndex(&corev1.Pod{}, podOwnerIndex, podOwnerIndexValue).
		WithInterceptorFuncs(lie.funcs()).
		Build()
}

// livePodSlots lists the pods of the API server that are neither
// terminating nor finished, as "node/slot" (or the name if not ours).
func livePodSlots(t *testing.T, c client.Client, set *kantaiv1alpha1.NodeReplicaSet) []string {
	t.Helper()
	var list corev1.PodList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		info := podInfo(&p)
		if ref := metav1.GetControllerOf(&p); ref == nil || ref.UID != set.UID {
			out = append(out, "foreign:"+p.Name)
			continue
		}
		if p.Name != PodName(set, info.Node, info.Slot) {
			t.Errorf("pod %s in slot %s/%d, want name %s", p.Name, info.Node, info.Slot, PodName(set, info.Node, info.Slot))
		}
		out = append(out, fmt.Sprintf("%s/%d", info.Node, info.Slot))
	}
	slices.Sort(out)
	return out
}

func reconcileN(t *testing.T, r *Reconciler, set *kantaiv1alpha1.NodeReplicaSet, n int) []error {
	t.Helper()
	var errs []error
	for range n {
		_, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(set)})
		errs = append(errs, err)
	}
	return errs
}

// TestReconcile_StaleCacheNoDuplicates: the cache never shows the created
// pods, every create stores its pod and then reports an error that looks
// definite (so its expectation is dropped), and expectations expire at
// once. Deterministic names alone must keep the counts exact.
func TestReconcile_StaleCacheNoDuplicates(t *testing.T) {
	set := testSet(map[string]int32{"n1": 3, "n2": 2})
	lie := &lyingCreates{err: apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New("injected"))}
	api := newFakeEnv(t, lie, set)
	// Lists from both the cache and the API server are stale here, so that
	// only the names can stop a duplicate.
	cache := &staleReader{Client: api}
	r := &Reconciler{
		Client:        cache,
		APIReader:     cache,
		Recorder:      events.NewFakeRecorder(1000),
		Expectations:  NewExpectations(time.Nanosecond, nil),
		BurstReplicas: DefaultBurstReplicas,
	}
	reconcileN(t, r, set, 5)
	want := []string{"n1/0", "n1/1", "n1/2", "n2/0", "n2/1"}
	if diff := cmp.Diff(want, livePodSlots(t, api, set)); diff != "" {
		t.Errorf("live pods (-want,+got):\n%s", diff)
	}
	// Each reconcile after the first repeated creates of existing slots.
	if lie.calls < 10 {
		t.Errorf("%d create calls; the test needs repeated creates of existing slots", lie.calls)
	}
	t.Logf("%d create calls for 5 pods", lie.calls)
}

// TestReconcile_ReplacementWhileTerminating: slot 0 holds a terminating
// pod, so its replacement goes to slot 1, whose create stores the pod and
// then times out. The old pod goes; the cache shows it gone but not the new
// one. Slot 0 must not be filled as well.
func TestReconcile_ReplacementWhileTerminating(t *testing.T) {
	set := testSet(map[string]int32{"n1": 1})
	old := newPod(set, "n1", 0, "n1")
	now := metav1.Now()
	old.DeletionTimestamp = &now
	old.Finalizers = []string{"test/hold"}
	lie := &lyingCreates{err: apierrors.NewTimeoutError("injected", 1)}
	api := newFakeEnv(t, lie, set, old)
	cache := &staleReader{Client: api, pods: []corev1.Pod{*old}}
	r := &Reconciler{
		Client:        cache,
		APIReader:     api,
		Recorder:      events.NewFakeRecorder(1000),
		Expectations:  NewExpectations(time.Nanosecond, nil), // no help from the TTL'd expectations
		BurstReplicas: DefaultBurstReplicas,
	}
	errs := reconcileN(t, r, set, 1)
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "injected") {
		t.Fatalf("first reconcile error = %v, want the injected time-out", errs[0])
	}
	if diff := cmp.Diff([]string{"n1/1"}, livePodSlots(t, api, set)); diff != "" {
		t.Fatalf("after the first reconcile (-want,+got):\n%s", diff)
	}
	if got := r.Expectations.Uncertain(client.ObjectKeyFromObject(set)); len(got) != 1 {
		t.Fatalf("uncertain creates = %v, want the slot-1 pod", got)
	}

	// The old pod goes away; the cache has seen that, not the new pod.
	var cur corev1.Pod
	if err := api.Get(context.Background(), client.ObjectKeyFromObject(old), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Finalizers = nil
	if err := api.Update(context.Background(), &cur); err != nil {
		t.Fatal(err)
	}
	cache.set(nil)
	lie.err = nil
	for i, err := range reconcileN(t, r, set, 5) {
		if err != nil {
			t.Errorf("reconcile %d: %v", i+2, err)
		}
	}
	if diff := cmp.Diff([]string{"n1/1"}, livePodSlots(t, api, set)); diff != "" {
		t.Errorf("live pods (-want,+got):\n%s", diff)
	}
}

// TestReconcile_NameTakenByForeignPod: a pod the set does not control
// holds the name of slot 0. The controller reports it once and uses slot 1;
// it does not retry the taken name.
func TestReconcile_NameTakenByForeignPod(t *testing.T) {
	set := testSet(map[string]int32{"n1": 1})
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: PodName(set, "n1", 0)}}
	lie := &lyingCreates{}
	api := newFakeEnv(t, lie, set, foreign)
	rec := events.NewFakeRecorder(1000)
	r := &Reconciler{
		Client:        api,
		APIReader:     api,
		Recorder:      rec,
		Expectations:  NewExpectations(time.Nanosecond, nil),
		BurstReplicas: DefaultBurstReplicas,
	}
	errs := reconcileN(t, r, set, 4)
	if !errors.Is(errs[0], errNameTaken) {
		t.Errorf("first reconcile error = %v, want errNameTaken", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Errorf("reconcile %d: %v", i+2, err)
		}
	}
	want := []string{"foreign:" + foreign.Name, "n1/1"}
	if diff := cmp.Diff(want, livePodSlots(t, api, set)); diff != "" {
		t.Errorf("pods (-want,+got):\n%s", diff)
	}
	if lie.calls != 2 {
		t.Errorf("%d create calls, want 2 (the taken name once, then slot 1)", lie.calls)
	}
	var taken int
	for len(rec.Events) > 0 {
		if e := <-rec.Events; strings.Contains(e, ReasonFailedCreate) && strings.Contains(e, "does not control") {
			taken++
		}
	}
	if taken != 1 {
		t.Errorf("%d FailedCreate events about the taken name, want 1", taken)
	}
	s := &kantaiv1alpha1.NodeReplicaSet{}
	if err := api.Get(context.Background(), client.ObjectKeyFromObject(set), s); err != nil {
		t.Fatal(err)
	}
	if s.Status.Ready != "0/1" || s.Status.Replicas != 1 {
		t.Errorf("status ready %q replicas %d, want 0/1 and 1", s.Status.Ready, s.Status.Replicas)
	}
}
