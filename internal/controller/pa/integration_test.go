package pa_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/pkg/apis"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/controller/pa"
	"kantai.dev/kantai/internal/k8stest"
)

// Generous bounds: the machine is shared and has two cores.
const (
	long  = 90 * time.Second
	short = 30 * time.Second
)

// Condition types of a PodAutoscaler, in Knative's order (its condition
// manager keeps them sorted by type).
var paConditionTypes = []apis.ConditionType{
	asv1alpha1.PodAutoscalerConditionActive,
	apis.ConditionReady,
	asv1alpha1.PodAutoscalerConditionSKSReady,
	asv1alpha1.PodAutoscalerConditionScaleTargetInitialized,
}

// TestInitialScaleOne: a Knative Service with the default initial scale
// (1), min-scale 0 and a 20 s window gets one pod through a NodeReplicaSet;
// the PodAutoscaler's conditions go from Unknown to Ready without ever
// being Ready=False before ScaleTargetInitialized; the Revision becomes
// Ready; with no demand the revision then scales to zero (Active False
// NoTraffic, ScaleTargetInitialized stays True, the Revision stays Ready);
// deleting the Service removes everything.
func TestInitialScaleOne(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	rec := recordPAs(t, ns)
	// The window leaves the pod time to become ready on a busy machine
	// before the initial scale's hold ends.
	rev := createService(t, ns, "hello", map[string]string{autoscale.AnnotationWindow: "20s"})
	sets := recordSets(t, ns, rev)

	rec.waitFor(t, "Ready True with 1 ready pod", func(st asv1alpha1.PodAutoscalerStatus) bool {
		return st.GetCondition(apis.ConditionReady).IsTrue() && st.GetActualScale() == 1 && st.GetDesiredScale() == 1
	})
	if !sets.saw(1, 1) {
		t.Errorf("NodeReplicaSet never asked for and had 1 ready pod: %v", sets.snapshot())
	}
	waitRevisionReady(t, ns, rev)

	// No demand reaches the revision: once initialized and one window
	// after creation, it scales to zero.
	p := waitPA(t, ns, rev, long, "Active False NoTraffic", func(p *asv1alpha1.PodAutoscaler) bool {
		c := p.Status.GetCondition(asv1alpha1.PodAutoscalerConditionActive)
		return c != nil && c.IsFalse() && c.Reason == pa.ReasonNoTraffic
	})
	checkServiceNames(t, p)
	checkConditionOrder(t, p)
	if !p.Status.IsScaleTargetInitialized() {
		t.Errorf("ScaleTargetInitialized reset at zero")
	}
	set := waitNodeReplicaSet(t, ns, rev, "0 replicas", func(s *kantaiv1alpha1.NodeReplicaSet) bool {
		return total(s) == 0 && s.Status.Replicas == 0
	})
	checkOwnedCopy(t, ns, rev, p, set)
	checkDeploymentAtZero(t, ns, rev)
	waitRevisionReady(t, ns, rev)
	rec.checkNeverFailedBeforeInitialized(t)
	rec.checkInitializedAt(t, 1)

	deleteService(t, ns, "hello", rev)
}

// TestInitialScaleZero: with config-autoscaler allow-zero-initial-scale
// and initial-scale 0, the revision is initialized with no pod at all:
// ScaleTargetInitialized True (and only then Active False NoTraffic), no
// pod created, the Revision Ready.
func TestInitialScaleZero(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	rec := recordPAs(t, ns)
	rev := createService(t, ns, "zero", map[string]string{autoscale.AnnotationInitialScale: "0"})

	p := waitPA(t, ns, rev, long, "ScaleTargetInitialized True", func(p *asv1alpha1.PodAutoscaler) bool {
		return p.Status.IsScaleTargetInitialized()
	})
	checkServiceNames(t, p)
	c := p.Status.GetCondition(asv1alpha1.PodAutoscalerConditionActive)
	if c == nil || !c.IsFalse() || c.Reason != pa.ReasonNoTraffic {
		t.Errorf("Active = %+v, want False NoTraffic", c)
	}
	if p.Status.GetDesiredScale() != 0 || p.Status.GetActualScale() != 0 {
		t.Errorf("desired/actual scale = %d/%d, want 0/0", p.Status.GetDesiredScale(), p.Status.GetActualScale())
	}
	checkConditionOrder(t, p)
	checkNodeReplicaSet(t, ns, rev, p, 0)
	checkDeploymentAtZero(t, ns, rev)
	waitRevisionReady(t, ns, rev)
	var pods corev1.PodList
	if err := k8sClient.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d pods exist, want none", len(pods.Items))
	}
	rec.checkNeverFailedBeforeInitialized(t)
	rec.checkInitializedAt(t, 0)
	deleteService(t, ns, "zero", rev)
}

// TestMinScale: min-scale 4 over nodes with capacities 1 (annotation) and
// 3 (config-kantai) and a tainted node: the NodeReplicaSet asks for 1 and 3
// pods and nothing on the tainted node; ScaleTargetInitialized waits for 4
// ready pods.
func TestMinScale(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	rec := recordPAs(t, ns)
	rev := createService(t, ns, "minscale", map[string]string{autoscale.AnnotationMinScale: "4"})

	p := waitPA(t, ns, rev, long, "Ready True", func(p *asv1alpha1.PodAutoscaler) bool {
		return p.IsReady()
	})
	if got := p.Status.GetActualScale(); got != 4 {
		t.Errorf("actualScale = %d, want 4", got)
	}
	set := checkNodeReplicaSet(t, ns, rev, p, 4)
	want := map[string]int32{nodeA: 1, nodeB: 3}
	if !mapsEqual(set.Spec.Replicas, want) {
		t.Errorf("replicas per node = %v, want %v (capacity 1 by annotation, 3 by config-kantai, tainted node excluded)",
			set.Spec.Replicas, want)
	}
	if set.Status.Ready != "1-3/1-3" {
		t.Errorf("NodeReplicaSet ready = %q, want 1-3/1-3", set.Status.Ready)
	}
	rec.checkNeverFailedBeforeInitialized(t)
	rec.checkInitializedAt(t, 4)
	deleteService(t, ns, "minscale", rev)
}

// TestOtherClassUntouched: a PodAutoscaler of Knative's KPA class gets no
// ServerlessService, no NodeReplicaSet, no status and keeps its
// Deployment's replicas, while one of the kantai class, created after it in
// the same namespace, is reconciled to Ready.
func TestOtherClassUntouched(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	other := createService(t, ns, "kpa", map[string]string{autoscale.AnnotationClass: autoscale.ClassKPA})
	waitPA(t, ns, other, long, "exists", func(*asv1alpha1.PodAutoscaler) bool { return true })
	mine := createService(t, ns, "mine", nil)
	waitPA(t, ns, mine, long, "Ready True", func(p *asv1alpha1.PodAutoscaler) bool { return p.IsReady() })

	p := &asv1alpha1.PodAutoscaler{}
	if err := k8sClient.Get(ctx, k8stest.Key(ns, other), p); err != nil {
		t.Fatal(err)
	}
	if len(p.Status.Conditions) != 0 || p.Status.ServiceName != "" || p.Status.ObservedGeneration != 0 {
		t.Errorf("KPA-class PodAutoscaler has a status: %+v", p.Status)
	}
	if err := k8sClient.Get(ctx, k8stest.Key(ns, other), &netv1alpha1.ServerlessService{}); !apierrors.IsNotFound(err) {
		t.Errorf("ServerlessService of the KPA-class revision: err = %v, want NotFound", err)
	}
	if err := k8sClient.Get(ctx, k8stest.Key(ns, other), &kantaiv1alpha1.NodeReplicaSet{}); !apierrors.IsNotFound(err) {
		t.Errorf("NodeReplicaSet of the KPA-class revision: err = %v, want NotFound", err)
	}
	d := &appsv1.Deployment{}
	if err := k8sClient.Get(ctx, k8stest.Key(ns, other+"-deployment"), d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("KPA-class Deployment replicas = %v, want 1 (untouched)", d.Spec.Replicas)
	}
	deleteService(t, ns, "mine", mine)
	deleteService(t, ns, "kpa", other)
}

// TestBadAnnotation: an annotation Knative accepts for a foreign class
// but kantai does not support gives Active False InvalidSpec naming it;
// the reconciler keeps working for the other PodAutoscalers.
func TestBadAnnotation(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	rev := createService(t, ns, "rps", map[string]string{autoscale.AnnotationMetric: "rps"})
	p := waitPA(t, ns, rev, long, "Active False InvalidSpec", func(p *asv1alpha1.PodAutoscaler) bool {
		c := p.Status.GetCondition(asv1alpha1.PodAutoscalerConditionActive)
		return c != nil && c.IsFalse() && c.Reason == pa.ReasonInvalidSpec
	})
	c := p.Status.GetCondition(asv1alpha1.PodAutoscalerConditionActive)
	if !strings.Contains(c.Message, autoscale.AnnotationMetric) || !strings.Contains(c.Message, "rps") {
		t.Errorf("message %q does not name the annotation and its value", c.Message)
	}
	checkServiceNames(t, p)
	if p.Status.IsScaleTargetInitialized() {
		t.Errorf("ScaleTargetInitialized True for an invalid spec")
	}
	// Knative copies the reason to the Revision's Active condition.
	r := &unstructured.Unstructured{}
	r.SetAPIVersion("serving.knative.dev/v1")
	r.SetKind("Revision")
	if err := k8stest.Eventually(context.Background(), long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, rev), r); err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(r.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Active" && m["status"] == "False" {
				msg, _ := m["message"].(string)
				return m["reason"] == pa.ReasonInvalidSpec && strings.Contains(msg, autoscale.AnnotationMetric), nil
			}
		}
		return false, nil
	}); err != nil {
		conds, _, _ := unstructured.NestedSlice(r.Object, "status", "conditions")
		t.Errorf("Revision's Active condition does not carry the reason: %v; conditions %v", err, conds)
	}
	if err := k8sClient.Get(context.Background(), k8stest.Key(ns, rev), &kantaiv1alpha1.NodeReplicaSet{}); !apierrors.IsNotFound(err) {
		t.Errorf("NodeReplicaSet for an invalid spec: err = %v, want NotFound", err)
	}
	// Still reconciling others.
	ok := createService(t, ns, "fine", nil)
	waitPA(t, ns, ok, long, "Ready True", func(p *asv1alpha1.PodAutoscaler) bool { return p.IsReady() })
	deleteService(t, ns, "fine", ok)
	deleteService(t, ns, "rps", rev)
}

// TestRestartScalesNothingDown: a revision at initial-scale 2 with
// min-scale 0 and no demand would scale to zero one window (20 s) after
// creation. The controllers are stopped before that and new ones started
// after it (a restart): the new reconciler keeps both replicas until one
// window after it started, then scales to zero.
func TestRestartScalesNothingDown(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	const window = 20 * time.Second
	rev := createService(t, ns, "restart", map[string]string{
		autoscale.AnnotationWindow: "20s", autoscale.AnnotationInitialScale: "2",
	})
	p := waitPA(t, ns, rev, long, "Ready True", func(p *asv1alpha1.PodAutoscaler) bool { return p.IsReady() })
	if p.Status.GetActualScale() != 2 {
		t.Fatalf("actualScale = %d, want 2", p.Status.GetActualScale())
	}

	stopControllers()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := startControllers(); err != nil {
				t.Errorf("restarting the controllers: %v", err)
			}
		}
	})
	// Without the restart the revision would go to zero at creation +
	// window (the initial scale's hold ends); wait past that.
	created := p.CreationTimestamp.Time
	if err := k8stest.Eventually(ctx, long, 100*time.Millisecond, func(context.Context) (bool, error) {
		return time.Now().After(created.Add(window + time.Second)), nil
	}); err != nil {
		t.Fatal(err)
	}
	sets := recordSets(t, ns, rev)
	restartAt := time.Now()
	if err := startControllers(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	waitNodeReplicaSet(t, ns, rev, "0 replicas", func(s *kantaiv1alpha1.NodeReplicaSet) bool { return total(s) == 0 })
	first, ok := sets.firstBelow(2)
	if !ok {
		t.Fatal("recorder saw no scale-down")
	}
	if first.Before(restartAt.Add(window)) {
		t.Errorf("scaled down %v after the restart, within the %v window", first.Sub(restartAt), window)
	}
	t.Logf("scaled down %v after the restart (window %v)", first.Sub(restartAt).Round(10*time.Millisecond), window)
	deleteService(t, ns, "restart", rev)
}

// createService creates a Knative Service with the given template
// annotations and returns the name of its first revision.
func createService(tb testing.TB, ns, name string, ann map[string]string) string {
	tb.Helper()
	svc := &unstructured.Unstructured{}
	svc.SetAPIVersion("serving.knative.dev/v1")
	svc.SetKind("Service")
	svc.SetNamespace(ns)
	svc.SetName(name)
	tmpl := map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"image": "example.local/hello:v1"}}}}
	if len(ann) > 0 {
		a := map[string]any{}
		for k, v := range ann {
			a[k] = v
		}
		tmpl["metadata"] = map[string]any{"annotations": a}
	}
	svc.Object["spec"] = map[string]any{"template": tmpl}
	if err := k8sClient.Create(context.Background(), svc); err != nil {
		tb.Fatalf("creating Service %s: %v", name, err)
	}
	return name + "-00001"
}

// deleteService deletes the Service and waits until the garbage
// collector has removed the revision's PodAutoscaler, ServerlessService,
// NodeReplicaSet and pods.
func deleteService(tb testing.TB, ns, name, rev string) {
	tb.Helper()
	ctx := context.Background()
	svc := &unstructured.Unstructured{}
	svc.SetAPIVersion("serving.knative.dev/v1")
	svc.SetKind("Service")
	svc.SetNamespace(ns)
	svc.SetName(name)
	if err := k8sClient.Delete(ctx, svc, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		tb.Fatalf("deleting Service: %v", err)
	}
	err := k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		for _, o := range []client.Object{&asv1alpha1.PodAutoscaler{}, &netv1alpha1.ServerlessService{}, &kantaiv1alpha1.NodeReplicaSet{}} {
			if err := k8sClient.Get(ctx, k8stest.Key(ns, rev), o); !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("%T still there (err %v)", o, err)
			}
		}
		var pods corev1.PodList
		if err := k8sClient.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"serving.knative.dev/revision": rev}); err != nil {
			return false, err
		}
		if len(pods.Items) > 0 {
			return false, fmt.Errorf("%d pods left", len(pods.Items))
		}
		return true, nil
	})
	if err != nil {
		tb.Fatalf("cleanup after deleting Service %s: %v", name, err)
	}
}

func waitPA(tb testing.TB, ns, name string, timeout time.Duration, what string, cond func(*asv1alpha1.PodAutoscaler) bool) *asv1alpha1.PodAutoscaler {
	tb.Helper()
	p := &asv1alpha1.PodAutoscaler{}
	err := k8stest.Eventually(context.Background(), timeout, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, name), p); err != nil {
			return false, err
		}
		return cond(p), nil
	})
	if err != nil {
		tb.Fatalf("waiting for PodAutoscaler %s: %s: %v\nlast status: %s", name, what, err, describe(p.Status))
	}
	return p
}

func waitNodeReplicaSet(tb testing.TB, ns, name, what string, cond func(*kantaiv1alpha1.NodeReplicaSet) bool) *kantaiv1alpha1.NodeReplicaSet {
	tb.Helper()
	s := &kantaiv1alpha1.NodeReplicaSet{}
	err := k8stest.Eventually(context.Background(), long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, name), s); err != nil {
			return false, err
		}
		return cond(s), nil
	})
	if err != nil {
		tb.Fatalf("waiting for NodeReplicaSet %s: %s: %v (spec %v, ready %q)", name, what, err, s.Spec.Replicas, s.Status.Ready)
	}
	return s
}

func waitRevisionReady(tb testing.TB, ns, name string) {
	tb.Helper()
	r := &unstructured.Unstructured{}
	r.SetAPIVersion("serving.knative.dev/v1")
	r.SetKind("Revision")
	err := k8stest.Eventually(context.Background(), long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, name), r); err != nil {
			return false, err
		}
		return conditionOf(r, "Ready") == "True", nil
	})
	if err != nil {
		conds, _, _ := unstructured.NestedSlice(r.Object, "status", "conditions")
		tb.Fatalf("waiting for Revision %s Ready: %v; conditions %v", name, err, conds)
	}
}

func conditionOf(u *unstructured.Unstructured, t string) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == t {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

func checkServiceNames(tb testing.TB, p *asv1alpha1.PodAutoscaler) {
	tb.Helper()
	if p.Status.ServiceName != p.Name || p.Status.MetricsServiceName != p.Name+"-private" {
		tb.Errorf("serviceName/metricsServiceName = %q/%q, want %q/%q", p.Status.ServiceName, p.Status.MetricsServiceName,
			p.Name, p.Name+"-private")
	}
	if p.Status.ObservedGeneration != p.Generation {
		tb.Errorf("observedGeneration = %d, generation %d", p.Status.ObservedGeneration, p.Generation)
	}
}

func checkConditionOrder(tb testing.TB, p *asv1alpha1.PodAutoscaler) {
	tb.Helper()
	var got []apis.ConditionType
	for _, c := range p.Status.Conditions {
		got = append(got, c.Type)
	}
	if !slices.Equal(got, paConditionTypes) {
		tb.Errorf("conditions %v, want %v", got, paConditionTypes)
	}
}

// checkNodeReplicaSet checks the revision's NodeReplicaSet: owned by the
// PodAutoscaler, the Deployment's selector and template, want pods in
// total, all ready.
func checkNodeReplicaSet(tb testing.TB, ns, name string, p *asv1alpha1.PodAutoscaler, want int) *kantaiv1alpha1.NodeReplicaSet {
	tb.Helper()
	s := waitNodeReplicaSet(tb, ns, name, fmt.Sprintf("%d ready", want), func(s *kantaiv1alpha1.NodeReplicaSet) bool {
		return total(s) == want && int(s.Status.ReadyReplicas) == want && s.Status.ObservedGeneration == s.Generation
	})
	checkOwnedCopy(tb, ns, name, p, s)
	// The private Service selects the pods (the endpoints controller
	// follows the pods' readiness).
	if want > 0 {
		n := 0
		err := k8stest.Eventually(context.Background(), short, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
			ep := &corev1.Endpoints{} //nolint:staticcheck // Knative 1.15 reads Endpoints
			if err := k8sClient.Get(ctx, k8stest.Key(ns, name+"-private"), ep); err != nil {
				return false, err
			}
			n = 0
			for _, ss := range ep.Subsets {
				n += len(ss.Addresses)
			}
			return n == want, nil
		})
		if err != nil {
			tb.Errorf("%s-private has %d ready addresses, want %d: %v", name, n, want, err)
		}
	}
	return s
}

// checkOwnedCopy checks that the NodeReplicaSet is controlled by the
// PodAutoscaler and carries the Deployment's selector and template.
func checkOwnedCopy(tb testing.TB, ns, name string, p *asv1alpha1.PodAutoscaler, s *kantaiv1alpha1.NodeReplicaSet) {
	tb.Helper()
	if !metav1.IsControlledBy(s, p) {
		tb.Errorf("NodeReplicaSet not controlled by the PodAutoscaler: %v", s.OwnerReferences)
	}
	d := &appsv1.Deployment{}
	if err := k8sClient.Get(context.Background(), k8stest.Key(ns, name+"-deployment"), d); err != nil {
		tb.Fatal(err)
	}
	if len(s.Spec.Selector.MatchLabels) != len(d.Spec.Selector.MatchLabels) {
		tb.Errorf("selector %v, Deployment's %v", s.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if string(s.Spec.Selector.MatchLabels[k]) != v {
			tb.Errorf("selector %v, Deployment's %v", s.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
		}
	}
	var names, dnames []string
	for _, c := range s.Spec.Template.Spec.Containers {
		names = append(names, c.Name+"="+c.Image)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		dnames = append(dnames, c.Name+"="+c.Image)
	}
	if !slices.Equal(names, dnames) {
		tb.Errorf("template containers %v, the Deployment's %v", names, dnames)
	}
}

func checkDeploymentAtZero(tb testing.TB, ns, rev string) {
	tb.Helper()
	d := &appsv1.Deployment{}
	err := k8stest.Eventually(context.Background(), short, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, rev+"-deployment"), d); err != nil {
			return false, err
		}
		return d.Spec.Replicas != nil && *d.Spec.Replicas == 0, nil
	})
	if err != nil {
		tb.Errorf("Deployment %s-deployment not held at 0: %v (replicas %v)", rev, err, d.Spec.Replicas)
	}
}

func total(s *kantaiv1alpha1.NodeReplicaSet) int {
	n := 0
	for _, c := range s.Spec.Replicas {
		n += int(c)
	}
	return n
}

func mapsEqual(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func describe(st asv1alpha1.PodAutoscalerStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "serviceName=%q desired=%d actual=%d", st.ServiceName, st.GetDesiredScale(), st.GetActualScale())
	for _, c := range st.Conditions {
		fmt.Fprintf(&b, " %s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

// paRecorder watches the PodAutoscalers of a namespace and keeps every
// status it sees, in order.
type paRecorder struct {
	mu   sync.Mutex
	seen []asv1alpha1.PodAutoscalerStatus
}

func recordPAs(tb testing.TB, ns string) *paRecorder {
	tb.Helper()
	r := &paRecorder{}
	watchAll(tb, ns, &asv1alpha1.PodAutoscalerList{}, func(o client.Object) {
		p, ok := o.(*asv1alpha1.PodAutoscaler)
		if !ok || p.Annotations[autoscale.AnnotationClass] != pa.Class {
			return
		}
		r.mu.Lock()
		r.seen = append(r.seen, *p.Status.DeepCopy())
		r.mu.Unlock()
	})
	return r
}

// waitFor waits until a recorded status satisfies cond.
func (r *paRecorder) waitFor(tb testing.TB, what string, cond func(asv1alpha1.PodAutoscalerStatus) bool) {
	tb.Helper()
	err := k8stest.Eventually(context.Background(), long, 50*time.Millisecond, func(context.Context) (bool, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, st := range r.seen {
			if cond(st) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		last := "none"
		if len(r.seen) > 0 {
			last = describe(r.seen[len(r.seen)-1])
		}
		tb.Fatalf("waiting for a PodAutoscaler status %s: %v; last %s", what, err, last)
	}
}

// checkNeverFailedBeforeInitialized: no status had Ready False while
// ScaleTargetInitialized was not True (Knative would mark the Revision
// failed).
func (r *paRecorder) checkNeverFailedBeforeInitialized(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		tb.Error("no PodAutoscaler status recorded")
	}
	for i, st := range r.seen {
		ready := st.GetCondition(apis.ConditionReady)
		if ready != nil && ready.IsFalse() && !st.IsScaleTargetInitialized() {
			tb.Errorf("status %d: Ready False before ScaleTargetInitialized: %s", i, describe(st))
		}
	}
}

// checkInitializedAt: the first status with ScaleTargetInitialized True
// reports at least want ready pods, and earlier ones fewer.
func (r *paRecorder) checkInitializedAt(tb testing.TB, want int32) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.seen {
		if st.IsScaleTargetInitialized() {
			if st.GetActualScale() < want {
				tb.Errorf("ScaleTargetInitialized with %d ready pods, want at least %d: %s", st.GetActualScale(), want, describe(st))
			}
			return
		}
	}
	tb.Error("ScaleTargetInitialized never True in the recorded statuses")
}

// setRecorder remembers when the NodeReplicaSet's total changed.
type setRecorder struct {
	mu      sync.Mutex
	changes []setChange
}

type setChange struct {
	at           time.Time
	total, ready int
}

// saw reports whether some recorded version asked for total pods and
// had ready ready ones.
func (r *setRecorder) saw(total, ready int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.changes {
		if c.total == total && c.ready == ready {
			return true
		}
	}
	return false
}

func (r *setRecorder) snapshot() []setChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

func recordSets(tb testing.TB, ns, name string) *setRecorder {
	tb.Helper()
	r := &setRecorder{}
	watchAll(tb, ns, &kantaiv1alpha1.NodeReplicaSetList{}, func(o client.Object) {
		s, ok := o.(*kantaiv1alpha1.NodeReplicaSet)
		if !ok || s.Name != name {
			return
		}
		r.mu.Lock()
		r.changes = append(r.changes, setChange{time.Now(), total(s), int(s.Status.ReadyReplicas)})
		r.mu.Unlock()
	})
	return r
}

// firstBelow is when the total first fell below n.
func (r *setRecorder) firstBelow(n int) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.changes {
		if c.total < n {
			return c.at, true
		}
	}
	return time.Time{}, false
}

// watchAll calls fn for every object of the list's kind in ns, from the
// current state on, until the test ends; it resumes closed watches.
func watchAll(tb testing.TB, ns string, list client.ObjectList, fn func(client.Object)) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := k8sClient.List(ctx, list, client.InNamespace(ns)); err != nil {
		tb.Fatalf("listing: %v", err)
	}
	rv := list.GetResourceVersion()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w, err := k8sClient.Watch(ctx, list, client.InNamespace(ns),
				&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			for ev := range w.ResultChan() {
				o, ok := ev.Object.(client.Object)
				if !ok {
					continue
				}
				rv = o.GetResourceVersion()
				if ev.Type == watch.Added || ev.Type == watch.Modified {
					fn(o)
				}
			}
			w.Stop()
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
}

// TestKustomizeKnativeOverlay builds config/knative with kubectl's
// kustomize (skipped without kubectl) and applies every object with a
// server-side dry run: the controller, and the gateway DaemonSet with its
// RBAC and Services (config/gateway).
func TestKustomizeKnativeOverlay(t *testing.T) {
	requireEnv(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join("..", "..", "..", "config", "knative")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/knative: %v", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "knative.yaml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	dryRun := func(u *unstructured.Unstructured) { kinds = append(kinds, u.GetKind()+"/"+u.GetName()) }
	if err := k8stest.ApplyFiles(context.Background(), dryRunClient{k8sClient}, dryRun, file); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Deployment/kantai-controller", "ConfigMap/config-kantai", "ClusterRole/kantai-knative",
		"ClusterRole/kantai-nrs", "CustomResourceDefinition/nodereplicasets.kantai.dev",
		"DaemonSet/kantai-gateway", "ServiceAccount/kantai-gateway", "ClusterRole/kantai-gateway",
		"ClusterRoleBinding/kantai-gateway", "Service/kantai-gateway", "Service/kantai-gateway-internal",
		"Service/kantai-gateway-peers"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("overlay lacks %s; has %v", want, kinds)
		}
	}
	if !strings.Contains(string(out), "--pod-autoscaler=true") {
		t.Error("the overlay's Deployment does not enable the PodAutoscaler reconciler")
	}
	t.Logf("%d objects accepted by server-side dry run", len(kinds))
}

// dryRunClient makes every patch a dry run.
type dryRunClient struct{ client.Client }

func (c dryRunClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return c.Client.Patch(ctx, obj, patch, append(opts, client.DryRunAll)...)
}

// TestRBACIsEnforced: the controllers of these tests act as the
// ServiceAccount of config/, whose roles allow what they need and no more:
// reading PodAutoscalers is allowed, reading Secrets or deleting
// Deployments is not (so the other tests do prove the generated RBAC is
// enough).
func TestRBACIsEnforced(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	c, err := client.New(saConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.List(ctx, &asv1alpha1.PodAutoscalerList{}); err != nil {
		t.Errorf("listing PodAutoscalers as %s: %v", serviceAccount, err)
	}
	if err := c.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(k8stest.KnativeNamespace)); err != nil {
		t.Errorf("listing ConfigMaps in %s as %s: %v", k8stest.KnativeNamespace, serviceAccount, err)
	}
	if err := c.List(ctx, &corev1.SecretList{}, client.InNamespace(kantaiNamespace)); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets as %s: err = %v, want Forbidden", serviceAccount, err)
	}
	if err := c.List(ctx, &corev1.ConfigMapList{}, client.InNamespace("default")); !apierrors.IsForbidden(err) {
		t.Errorf("listing ConfigMaps in default as %s: err = %v, want Forbidden", serviceAccount, err)
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x"}}
	if err := c.Delete(ctx, d); !apierrors.IsForbidden(err) {
		t.Errorf("deleting a Deployment as %s: err = %v, want Forbidden", serviceAccount, err)
	}
}

// TestControllerBinary runs cmd/kantai-controller with --pod-autoscaler
// and leader election, in place of the in-process controllers, and checks
// that a Knative Service of the class gets Ready with a pod.
func TestControllerBinary(t *testing.T) {
	requireEnv(t)
	if testing.Short() {
		t.Skip("builds cmd/kantai-controller; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "kantai-controller")
	build := exec.Command("go", "build", "-o", bin, "kantai.dev/kantai/cmd/kantai-controller")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	stopControllers()
	t.Cleanup(func() {
		if err := startControllers(); err != nil {
			t.Errorf("restarting the in-process controllers: %v", err)
		}
	})
	logPath := filepath.Join(t.TempDir(), "controller.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--pod-autoscaler", "--leader-elect", "--leader-election-namespace="+kantaiNamespace,
		"--namespace="+kantaiNamespace, "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--node-token-file="+tokenFile)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+testEnv.Kubeconfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})

	ns := newNamespace(t)
	rev := createService(t, ns, "binary", nil)
	p := waitPA(t, ns, rev, long, "Ready True", func(p *asv1alpha1.PodAutoscaler) bool {
		select {
		case err := <-done:
			done <- err
			out, _ := os.ReadFile(logPath)
			t.Fatalf("kantai-controller exited: %v\n%s", err, out)
		default:
		}
		return p.IsReady()
	})
	checkNodeReplicaSet(t, ns, rev, p, 1)
	lease := &coordinationv1.Lease{}
	if err := k8sClient.Get(context.Background(), k8stest.Key(kantaiNamespace, "controller.kantai.dev"), lease); err != nil {
		t.Errorf("leader election lease: %v", err)
	}
	deleteService(t, ns, "binary", rev)
}

// TestGatewayDaemonSetOnKwok: the gateway DaemonSet of config/gateway
// yields one pod per node, the tainted node included (the gateways
// tolerate every taint, since a node without one drops the traffic that
// internalTrafficPolicy Local sends it).
func TestGatewayDaemonSetOnKwok(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	gw := filepath.Join("..", "..", "..", "config", "gateway")
	if err := k8stest.ApplyFiles(ctx, k8sClient, nil, filepath.Join(gw, "service_account.yaml"), filepath.Join(gw, "daemonset.yaml")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: kantaiNamespace, Name: "kantai-gateway"}}
		_ = k8sClient.Delete(context.Background(), ds, client.PropagationPolicy(metav1.DeletePropagationBackground))
	})
	var pods corev1.PodList
	err := k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.List(ctx, &pods, client.InNamespace(kantaiNamespace), client.MatchingLabels{"app.kubernetes.io/name": "kantai-gateway"}); err != nil {
			return false, err
		}
		nodes := map[string]bool{}
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				nodes[p.Spec.NodeName] = true
			}
		}
		return len(nodes) == 3 && nodes[nodeA] && nodes[nodeB] && nodes[nodeTainted], nil
	})
	if err != nil {
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Name+"@"+p.Spec.NodeName)
		}
		t.Fatalf("gateway pods %v, want one on each of %s, %s, %s: %v", names, nodeA, nodeB, nodeTainted, err)
	}
	if len(pods.Items) != 3 {
		t.Errorf("%d gateway pods for 3 nodes", len(pods.Items))
	}
}
