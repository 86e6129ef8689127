package nrs_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/controller/nrs"
	"kantai.dev/kantai/internal/k8stest"
)

func mergePatch(tb testing.TB, ns, name, patch string) {
	tb.Helper()
	s := &kantaiv1alpha1.NodeReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8sClient.Patch(context.Background(), s, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		tb.Fatalf("patch %s: %v", patch, err)
	}
}

func condition(s *kantaiv1alpha1.NodeReplicaSet, t string) *metav1.Condition {
	return meta.FindStatusCondition(s.Status.Conditions, t)
}

func TestScaleUpAndDownPerNode(t *testing.T) {
	requireEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	createNodes(t, ns+"-a", ns+"-b", ns+"-c")
	a, b, c := ns+"-a", ns+"-b", ns+"-c"
	kubelet := k8stest.StartKubelet(ctx, k8sClient, ns)

	set := newSet(ns, "web", map[string]int32{a: 1, b: 2, c: 3})
	if err := k8sClient.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	got := waitReady(t, ns, "web", "1-2-3/1-2-3", 30*time.Second)
	if got.Status.NodeNames != strings.Join([]string{a, b, c}, ",") {
		t.Errorf("nodeNames = %q", got.Status.NodeNames)
	}
	if cond := condition(got, kantaiv1alpha1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("Ready condition = %+v", cond)
	}
	if diff := cmp.Diff(map[string]int{a: 1, b: 2, c: 3}, countsOf(livePods(t, ns))); diff != "" {
		t.Errorf("pods per node (-want,+got):\n%s", diff)
	}
	for node, pods := range livePods(t, ns) {
		for _, p := range pods {
			if !strings.HasPrefix(p.Name, "web-"+node+"-") || len(p.Name) != len("web-"+node+"-")+5 {
				t.Errorf("pod name %q, want web-%s-<5 chars>", p.Name, node)
			}
			if p.Spec.NodeName != node {
				t.Errorf("pod %s bound to %q, want %q", p.Name, p.Spec.NodeName, node)
			}
			if p.Labels["app"] != "web" || p.Labels[kantaiv1alpha1.LabelNode] != node {
				t.Errorf("pod %s labels %v", p.Name, p.Labels)
			}
			ref := metav1.GetControllerOf(&p)
			if ref == nil || ref.UID != got.UID {
				t.Errorf("pod %s controller %+v", p.Name, ref)
			}
		}
	}

	// Scale one node up with the merge patch users run with kubectl.
	mergePatch(t, ns, "web", fmt.Sprintf(`{"spec":{"replicas":{%q:3}}}`, b))
	waitReady(t, ns, "web", "1-3-3/1-3-3", 30*time.Second)

	// Scale down: the unready pod goes first, then the newest.
	pods := livePods(t, ns)[c]
	oldest := pods[0]
	for _, p := range pods {
		if p.CreationTimestamp.Before(&oldest.CreationTimestamp) {
			oldest = p
		}
	}
	kubelet.SetUnready(oldest.Name)
	waitReady(t, ns, "web", "1-3-2/1-3-3", 30*time.Second)
	mergePatch(t, ns, "web", fmt.Sprintf(`{"spec":{"replicas":{%q:2}}}`, c))
	waitReady(t, ns, "web", "1-3-2/1-3-2", 30*time.Second)
	for _, p := range livePods(t, ns)[c] {
		if p.Name == oldest.Name {
			t.Errorf("scale down kept the unready pod %s", p.Name)
		}
	}

	// Remove a node from the map and zero another.
	mergePatch(t, ns, "web", fmt.Sprintf(`{"spec":{"replicas":{%q:null,%q:0}}}`, a, c))
	waitReady(t, ns, "web", "3-0/3-0", 30*time.Second)
	waitCounts(t, ns, map[string]int{b: 3})

	// Events were recorded.
	err := k8stest.Eventually(ctx, 10*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		var evs eventsv1.EventList
		if err := k8sClient.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for _, e := range evs.Items {
			if e.Regarding.Name == "web" {
				seen[e.Reason] = true
			}
		}
		return seen[nrs.ReasonSuccessfulCreate] && seen[nrs.ReasonSuccessfulDelete], nil
	})
	if err != nil {
		t.Errorf("events: %v", err)
	}
}

// waitCounts waits until the live pods per node are exactly want.
func waitCounts(tb testing.TB, ns string, want map[string]int) {
	tb.Helper()
	var got map[string]int
	err := k8stest.Eventually(context.Background(), 30*time.Second, 50*time.Millisecond, func(context.Context) (bool, error) {
		got = countsOf(livePods(tb, ns))
		return maps.Equal(got, want), nil
	})
	if err != nil {
		tb.Fatalf("pods per node = %v, want %v: %v", got, want, err)
	}
}

func TestExactCountsUnderRapidSpecChanges(t *testing.T) {
	requireEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	nodes := []string{ns + "-a", ns + "-b", ns + "-c"}
	createNodes(t, nodes...)
	k8stest.StartKubelet(ctx, k8sClient, ns)
	rec := recordPods(t, ns)

	rnd := rand.New(rand.NewPCG(42, 7))
	replicas := map[string]int32{}
	maxAsked := map[string]int{}
	for _, n := range nodes {
		replicas[n] = 2
		maxAsked[n] = 2
	}
	if err := k8sClient.Create(ctx, newSet(ns, "rapid", maps.Clone(replicas))); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		n := nodes[rnd.IntN(len(nodes))]
		replicas[n] = int32(rnd.IntN(6))
		maxAsked[n] = max(maxAsked[n], int(replicas[n]))
		mergePatch(t, ns, "rapid", fmt.Sprintf(`{"spec":{"replicas":{%q:%d}}}`, n, replicas[n]))
		if i%4 == 3 {
			time.Sleep(time.Duration(rnd.IntN(150)) * time.Millisecond)
		}
	}
	want := map[string]int{}
	for n, c := range replicas {
		if c > 0 {
			want[n] = int(c)
		}
	}
	waitCounts(t, ns, want)
	// Stays exact.
	time.Sleep(2 * time.Second)
	if got := countsOf(livePods(t, ns)); !maps.Equal(got, want) {
		t.Fatalf("after settling: pods per node %v, want %v", got, want)
	}
	created, maxLive := rec.snapshot()
	for n, m := range maxLive {
		if m > maxAsked[n] {
			t.Errorf("node %s had %d live pods at once; never asked for more than %d", n, m, maxAsked[n])
		}
	}
	t.Logf("final %v; pods created over 20 changes: %d; most live at once per node %v (most asked %v)",
		want, created, maxLive, maxAsked)
}

// TestExactCountsWithCreateErrors injects pod create errors: 30% of the
// creates store the pod and then report a time-out, 10% report a time-out
// without storing. Meanwhile the spec changes quickly and pods are deleted
// (their replacements are created while they terminate). No node may ever
// have more live pods than the most asked for it, and the counts must end
// exact.
func TestExactCountsWithCreateErrors(t *testing.T) {
	requireEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	nodes := []string{ns + "-a", ns + "-b", ns + "-c", ns + "-d"}
	createNodes(t, nodes...)
	k8stest.StartKubelet(ctx, k8sClient, ns)
	rec := recordPods(t, ns)
	faultPlan := injectCreateErrors(t, ns, 7, 0.3, 0.1)

	rnd := rand.New(rand.NewPCG(7, 11))
	replicas := map[string]int32{}
	maxAsked := map[string]int{}
	for _, n := range nodes {
		replicas[n] = 3
		maxAsked[n] = 3
	}
	if err := k8sClient.Create(ctx, newSet(ns, "faulty", maps.Clone(replicas))); err != nil {
		t.Fatal(err)
	}
	deletedPods := 0
	for i := range 30 {
		if i%3 == 2 {
			// Delete a live pod: it is replaced while it terminates.
			var live []corev1.Pod
			for _, pods := range livePods(t, ns) {
				live = append(live, pods...)
			}
			if len(live) > 0 {
				victim := live[rnd.IntN(len(live))]
				if err := k8sClient.Delete(ctx, &victim); err == nil {
					deletedPods++
				}
			}
		} else {
			n := nodes[rnd.IntN(len(nodes))]
			replicas[n] = int32(rnd.IntN(6))
			maxAsked[n] = max(maxAsked[n], int(replicas[n]))
			mergePatch(t, ns, "faulty", fmt.Sprintf(`{"spec":{"replicas":{%q:%d}}}`, n, replicas[n]))
		}
		time.Sleep(time.Duration(rnd.IntN(100)) * time.Millisecond)
	}
	want := map[string]int{}
	for n, c := range replicas {
		if c > 0 {
			want[n] = int(c)
		}
	}
	waitCounts(t, ns, want)
	time.Sleep(2 * time.Second)
	if got := countsOf(livePods(t, ns)); !maps.Equal(got, want) {
		t.Fatalf("after settling: pods per node %v, want %v", got, want)
	}
	created, maxLive := rec.snapshot()
	for n, m := range maxLive {
		if m > maxAsked[n] {
			t.Errorf("node %s had %d live pods at once; never asked for more than %d", n, m, maxAsked[n])
		}
	}
	set := getSet(t, ns, "faulty")
	for node, pods := range livePods(t, ns) {
		for _, p := range pods {
			slot, err := strconv.Atoi(p.Labels[kantaiv1alpha1.LabelSlot])
			if err != nil {
				t.Errorf("pod %s: slot label %q", p.Name, p.Labels[kantaiv1alpha1.LabelSlot])
				continue
			}
			if want := nrs.PodName(set, node, slot); p.Name != want {
				t.Errorf("pod %s in slot %s/%d, want name %s", p.Name, node, slot, want)
			}
		}
	}
	after, before := faultPlan.injected()
	if after == 0 || before == 0 {
		t.Errorf("injected %d errors after storing and %d before; the test needs both", after, before)
	}
	t.Logf("final %v; %d pods deleted by the test; pods created: %d; injected errors: %d after storing, %d without storing; most live at once per node %v (most asked %v)",
		want, deletedPods, created, after, before, maxLive, maxAsked)
}

func TestUnknownNodeAndNodeDeletion(t *testing.T) {
	requireEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	a, ghost := ns+"-a", ns+"-ghost"
	createNodes(t, a)
	k8stest.StartKubelet(ctx, k8sClient, ns)

	if err := k8sClient.Create(ctx, newSet(ns, "edge", map[string]int32{a: 2, ghost: 2})); err != nil {
		t.Fatal(err)
	}
	s := waitReady(t, ns, "edge", "2-0/2-2", 30*time.Second)
	cond := condition(s, kantaiv1alpha1.ConditionNodesMissing)
	if cond == nil || cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, ghost) {
		t.Errorf("NodesMissing = %+v", cond)
	}
	if cond := condition(s, kantaiv1alpha1.ConditionReady); cond == nil || cond.Status != metav1.ConditionFalse {
		t.Errorf("Ready = %+v", cond)
	}
	time.Sleep(time.Second)
	if got := countsOf(livePods(t, ns)); !maps.Equal(got, map[string]int{a: 2}) {
		t.Errorf("pods %v; nothing may be created on a missing node", got)
	}

	// The node appears: its pods follow.
	createNodes(t, ghost)
	s = waitReady(t, ns, "edge", "2-2/2-2", 30*time.Second)
	if cond := condition(s, kantaiv1alpha1.ConditionNodesMissing); cond == nil || cond.Status != metav1.ConditionFalse {
		t.Errorf("NodesMissing after node creation = %+v", cond)
	}

	// The node disappears: its pods are no longer counted, nothing is
	// created in their place, and the condition says so.
	if err := k8sClient.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a}}); err != nil {
		t.Fatal(err)
	}
	s = waitReady(t, ns, "edge", "0-2/2-2", 30*time.Second)
	cond = condition(s, kantaiv1alpha1.ConditionNodesMissing)
	if cond == nil || cond.Status != metav1.ConditionTrue || !strings.Contains(cond.Message, a) {
		t.Errorf("NodesMissing after node deletion = %+v", cond)
	}
	for _, n := range s.Status.Nodes {
		if n.Node == a && (n.Current != 0 || n.Desired != 2) {
			t.Errorf("status of deleted node = %+v", n)
		}
	}
	time.Sleep(time.Second)
	var list corev1.PodList
	if err := k8sClient.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 4 {
		t.Errorf("%d pods in namespace, want 4: no pod may be created for the deleted node", len(list.Items))
	}
}

func TestFailedPodIsReplaced(t *testing.T) {
	requireEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	a := ns + "-a"
	createNodes(t, a)
	kubelet := k8stest.StartKubelet(ctx, k8sClient, ns)
	if err := k8sClient.Create(ctx, newSet(ns, "svc", map[string]int32{a: 2})); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "svc", "2/2", 30*time.Second)
	victim := livePods(t, ns)[a][0]
	kubelet.Fail(victim.Name, "Evicted")

	err := k8stest.Eventually(ctx, 30*time.Second, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		var p corev1.Pod
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(&victim), &p)
		gone := apierrors.IsNotFound(err) || err == nil && p.UID != victim.UID
		pods := livePods(t, ns)[a]
		return gone && len(pods) == 2, nil
	})
	if err != nil {
		t.Fatalf("evicted pod not deleted and replaced: %v", err)
	}
	waitReady(t, ns, "svc", "2/2", 30*time.Second)
}

func TestGarbageCollection(t *testing.T) {
	requireEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := newNamespace(t)
	a := ns + "-a"
	createNodes(t, a)
	k8stest.StartKubelet(ctx, k8sClient, ns)
	set := newSet(ns, "gc", map[string]int32{a: 3})
	if err := k8sClient.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "gc", "3/3", 30*time.Second)
	if err := k8sClient.Delete(ctx, set); err != nil {
		t.Fatal(err)
	}
	err := k8stest.Eventually(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		var list corev1.PodList
		err := k8sClient.List(ctx, &list, client.InNamespace(ns))
		return err == nil && len(list.Items) == 0, err
	})
	if err != nil {
		t.Fatalf("pods not garbage-collected with their NodeReplicaSet (kube-controller-manager log: %s): %v",
			testEnv.LogPath("kube-controller-manager"), err)
	}
}

// TestSchedulerPlacesPodsOnKwokNodes runs the real kube-scheduler against
// kwok nodes: every pod must land on the node it is pinned to, and the
// scheduler still enforces resources.
func TestSchedulerPlacesPodsOnKwokNodes(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	nodes := createKwokNodes(t, ns, 4)
	replicas := map[string]int32{nodes[0]: 1, nodes[1]: 2, nodes[2]: 3, nodes[3]: 0}
	if err := k8sClient.Create(ctx, kwokSet(ns, "sched", replicas)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "sched", "1-2-3-0/1-2-3-0", 60*time.Second)
	for node, pods := range livePods(t, ns) {
		for _, p := range pods {
			if p.Spec.NodeName != node {
				t.Errorf("pod %s scheduled on %q, pinned to %q", p.Name, p.Spec.NodeName, node)
			}
		}
	}

	// Pods asking for more CPU than the node has stay Pending: the pin is
	// an affinity, not a nodeName bypassing the scheduler.
	big := kwokSet(ns, "big", map[string]int32{nodes[3]: 4})
	big.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("12"),
	}
	if err := k8sClient.Create(ctx, big); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "big", "2/4", 60*time.Second)
	time.Sleep(time.Second)
	var list corev1.PodList
	if err := k8sClient.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{"app": "big"}); err != nil {
		t.Fatal(err)
	}
	pending := 0
	for _, p := range list.Items {
		if p.Spec.NodeName == "" {
			pending++
		}
	}
	if len(list.Items) != 4 || pending != 2 {
		t.Errorf("%d pods, %d pending; want 4 pods, 2 pending (node has 32 CPUs, pods ask 12)", len(list.Items), pending)
	}
}

// createKwokNodes creates n nodes that kwok simulates (32 CPUs, 110 pods
// each) and waits until they are Ready.
func createKwokNodes(tb testing.TB, prefix string, n int) []string {
	tb.Helper()
	ctx := context.Background()
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("%s-kwok-%03d", prefix, i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        names[i],
				Annotations: map[string]string{k8stest.KwokNodeAnnotation: "fake"},
				Labels:      map[string]string{"kubernetes.io/hostname": names[i], "type": "kwok"},
			},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{{
				Key: k8stest.KwokNodeAnnotation, Value: "fake", Effect: corev1.TaintEffectNoSchedule,
			}}},
		}
		if err := k8sClient.Create(ctx, node); err != nil {
			tb.Fatalf("creating node: %v", err)
		}
		orig := node.DeepCopy()
		node.Status = corev1.NodeStatus{
			Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"),
				corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110")},
		}
		node.Status.Allocatable = node.Status.Capacity
		// A patch, not an update: kwok may already be writing the status.
		if err := k8sClient.Status().Patch(ctx, node, client.MergeFrom(orig)); err != nil {
			tb.Fatalf("setting node capacity: %v", err)
		}
		tb.Cleanup(func() { _ = k8sClient.Delete(context.Background(), node) })
	}
	err := k8stest.Eventually(ctx, 60*time.Second, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			var node corev1.Node
			if err := k8sClient.Get(ctx, types.NamespacedName{Name: name}, &node); err != nil {
				return false, err
			}
			ready := false
			for _, c := range node.Status.Conditions {
				ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
			}
			if !ready {
				return false, nil
			}
			// kwok's first status write (its default capacity, 1k CPUs)
			// can land after the patch above, from a read made before it:
			// once the node is Ready kwok writes no capacity again, so
			// set it again until it holds.
			if cpu := node.Status.Allocatable[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("32")) != 0 {
				orig := node.DeepCopy()
				node.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"),
					corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110")}
				node.Status.Allocatable = node.Status.Capacity
				if err := k8sClient.Status().Patch(ctx, &node, client.MergeFrom(orig)); err != nil {
					return false, err
				}
				return false, nil
			}
			// The API server taints new nodes not-ready; without the node
			// lifecycle controller of kube-controller-manager, lift it here
			// once kwok reports the node Ready.
			taints := node.Spec.Taints[:0]
			for _, t := range node.Spec.Taints {
				if t.Key != corev1.TaintNodeNotReady {
					taints = append(taints, t)
				}
			}
			if len(taints) != len(node.Spec.Taints) {
				node.Spec.Taints = taints
				if err := k8sClient.Update(ctx, &node); err != nil {
					return false, err
				}
			}
		}
		return true, nil
	})
	if err != nil {
		tb.Fatalf("kwok nodes not Ready (kwok log: %s): %v", testEnv.LogPath("kwok"), err)
	}
	return names
}
