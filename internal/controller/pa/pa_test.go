package pa

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/control"
	"kantai.dev/kantai/internal/demand"
)

func readySKS(ready bool) *netv1alpha1.ServerlessService {
	s := &netv1alpha1.ServerlessService{ObjectMeta: metav1.ObjectMeta{Name: "r", Generation: 1}}
	s.Status.ObservedGeneration = 1
	s.Status.ServiceName, s.Status.PrivateServiceName = "r", "r-private"
	if ready {
		s.Status.MarkEndpointsReady()
	} else {
		s.Status.MarkEndpointsNotReady("NoHealthyBackends")
	}
	return s
}

func condStatuses(pa *asv1alpha1.PodAutoscaler) map[apis.ConditionType]string {
	out := map[apis.ConditionType]string{}
	for _, c := range pa.Status.Conditions {
		out[c.Type] = string(c.Status)
		if c.Reason != "" {
			out[c.Type] += " " + c.Reason
		}
	}
	return out
}

func TestSetStatus(t *testing.T) {
	const (
		T = "True"
		U = "Unknown"
		F = "False"
	)
	tests := []struct {
		name        string
		initialized bool // ScaleTargetInitialized already True
		o           Observed
		want        map[apis.ConditionType]string
	}{
		{"no SKS yet", false, Observed{Threshold: 1, Desired: 1},
			map[apis.ConditionType]string{"Active": U + " " + ReasonQueued, "Ready": U + " " + ReasonQueued,
				"SKSReady": U + " NotReady", "ScaleTargetInitialized": U}},
		{"pods not ready", false, Observed{SKS: readySKS(false), Threshold: 1, Desired: 1},
			map[apis.ConditionType]string{"Active": U + " " + ReasonQueued, "Ready": U + " " + ReasonQueued,
				"SKSReady": U + " NotReady", "ScaleTargetInitialized": U}},
		{"initial scale reached", false, Observed{SKS: readySKS(true), Threshold: 1, Desired: 1, Ready: 1},
			map[apis.ConditionType]string{"Active": T, "Ready": T, "SKSReady": T, "ScaleTargetInitialized": T}},
		{"below min-scale threshold", false, Observed{SKS: readySKS(true), Threshold: 4, Desired: 4, Ready: 3},
			map[apis.ConditionType]string{"Active": U + " " + ReasonQueued, "Ready": U + " " + ReasonQueued,
				"SKSReady": T, "ScaleTargetInitialized": U}},
		{"initial scale 0: initialized and inactive together", false, Observed{SKS: readySKS(false), Threshold: 0},
			map[apis.ConditionType]string{"Active": F + " " + ReasonNoTraffic, "Ready": F + " " + ReasonNoTraffic,
				"SKSReady": U + " NotReady", "ScaleTargetInitialized": T}},
		{"at zero after serving", true, Observed{SKS: readySKS(false), Threshold: 1},
			map[apis.ConditionType]string{"Active": F + " " + ReasonNoTraffic, "Ready": F + " " + ReasonNoTraffic,
				"SKSReady": U + " NotReady", "ScaleTargetInitialized": T}},
		{"scaling from zero", true, Observed{SKS: readySKS(false), Threshold: 1, Desired: 1},
			map[apis.ConditionType]string{"Active": U + " " + ReasonQueued, "Ready": U + " " + ReasonQueued,
				"SKSReady": U + " NotReady", "ScaleTargetInitialized": T}},
		{"bad annotation", false, Observed{SKS: readySKS(false), SpecError: errors.New(`annotations["autoscaling.knative.dev/metric"]: bad`)},
			map[apis.ConditionType]string{"Active": F + " " + ReasonInvalidSpec, "Ready": F + " " + ReasonInvalidSpec,
				"SKSReady": U + " NotReady", "ScaleTargetInitialized": U}},
		{"SKS not owned", false, Observed{NotOwned: "ServerlessService"},
			map[apis.ConditionType]string{"Active": F + " NotOwned", "Ready": F + " NotOwned",
				"SKSReady": U + " NotReady", "ScaleTargetInitialized": U}},
		{"no deployment", false, Observed{SKS: readySKS(true), NoTarget: true},
			map[apis.ConditionType]string{"Active": U + " " + ReasonNoDeployment, "Ready": U + " " + ReasonNoDeployment,
				"SKSReady": T, "ScaleTargetInitialized": U}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pa := &asv1alpha1.PodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "r", Generation: 3}}
			if tt.initialized {
				pa.Status.MarkScaleTargetInitialized()
			}
			SetStatus(pa, tt.o)
			if diff := cmp.Diff(tt.want, condStatuses(pa)); diff != "" {
				t.Errorf("conditions (-want,+got):\n%s", diff)
			}
			if pa.Status.ServiceName != "r" || pa.Status.MetricsServiceName != "r-private" || pa.Status.ObservedGeneration != 3 {
				t.Errorf("serviceName %q metricsServiceName %q observedGeneration %d", pa.Status.ServiceName,
					pa.Status.MetricsServiceName, pa.Status.ObservedGeneration)
			}
			ready := pa.Status.GetCondition(apis.ConditionReady)
			if ready.IsFalse() && !pa.Status.IsScaleTargetInitialized() && tt.o.SpecError == nil && tt.o.NotOwned == "" {
				t.Errorf("Ready False before ScaleTargetInitialized")
			}
		})
	}
}

func TestSetStatus_KeepsTransitionTimes(t *testing.T) {
	pa := &asv1alpha1.PodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "r"}}
	o := Observed{SKS: readySKS(true), Threshold: 1, Desired: 1, Ready: 1}
	SetStatus(pa, o)
	before := pa.Status.DeepCopy()
	SetStatus(pa, o)
	if diff := cmp.Diff(before, &pa.Status); diff != "" {
		t.Errorf("a second SetStatus with the same input changed the status:\n%s", diff)
	}
}

func node(name string, ready bool, mutate func(*corev1.Node)) corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n := corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}},
	}
	if mutate != nil {
		mutate(&n)
	}
	return n
}

func TestControlNodes(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		NodeSelector: map[string]string{"zone": "edge"},
		Tolerations:  []corev1.Toleration{{Key: "edge", Operator: corev1.TolerationOpExists}},
	}}
	edge := func(n *corev1.Node) { n.Labels["zone"] = "edge" }
	nodes := []corev1.Node{
		node("n5-cloud", true, nil),
		node("n1", true, edge),
		node("n2-annotated", true, func(n *corev1.Node) { edge(n); n.Annotations = map[string]string{CapacityAnnotation: "2"} }),
		node("n3-notready", false, edge),
		node("n4-tainted", true, func(n *corev1.Node) {
			edge(n)
			n.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}),
		node("n6-tolerated", true, func(n *corev1.Node) {
			edge(n)
			n.Spec.Taints = []corev1.Taint{{Key: "edge", Value: "x", Effect: corev1.TaintEffectNoSchedule}}
		}),
		node("n7-cordoned", true, func(n *corev1.Node) { edge(n); n.Spec.Unschedulable = true }),
		node("n8-prefer-only", true, func(n *corev1.Node) {
			edge(n)
			n.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectPreferNoSchedule}}
		}),
	}
	got := ControlNodes(nodes, tmpl, 5, map[string]int{"n1": 3})
	want := []control.Node{
		{Name: "n1", Capacity: 5, Used: 3},
		{Name: "n2-annotated", Capacity: 2},
		{Name: "n3-notready"},
		{Name: "n4-tainted"},
		{Name: "n5-cloud"},
		{Name: "n6-tolerated", Capacity: 5},
		{Name: "n7-cordoned"},
		{Name: "n8-prefer-only", Capacity: 5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ControlNodes (-want,+got):\n%s", diff)
	}

	aff := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
		}}},
	}}}}
	for _, n := range nodes[:2] {
		ok, why := Eligible(&n, aff)
		if ok != (n.Name == "n1") {
			t.Errorf("required affinity on n1: Eligible(%s) = %v (%s)", n.Name, ok, why)
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(map[string]string{KeyNodeCapacity: " 7 ", KeyPlacement: "spread", "other": "x"})
	if err != nil || c != (Config{NodeCapacity: 7, Placement: "spread"}) {
		t.Errorf("ParseConfig = %+v, %v", c, err)
	}
	c, err = ParseConfig(map[string]string{KeyNodeCapacity: "-1", KeyPlacement: "best"})
	if err == nil || !strings.Contains(err.Error(), KeyNodeCapacity) || !strings.Contains(err.Error(), KeyPlacement) {
		t.Errorf("error %v does not name both keys", err)
	}
	if c != DefaultConfig() {
		t.Errorf("malformed keys changed the config: %+v", c)
	}
}

func TestReplicas(t *testing.T) {
	created := metav1.NewTime(time.Unix(100, 0))
	set := &kantaiv1alpha1.NodeReplicaSet{
		ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created,
			Annotations: map[string]string{OriginsAnnotation: `{"a":{"":1,"c":1},"b":{"b":5}}`}},
		Spec: kantaiv1alpha1.NodeReplicaSetSpec{Replicas: map[string]int32{"a": 3, "b": 1}},
		Status: kantaiv1alpha1.NodeReplicaSetStatus{Nodes: []kantaiv1alpha1.NodeReplicaStatus{
			{Node: "a", Ready: 2}, {Node: "b", Ready: 0}}},
	}
	want := []control.Replica{
		{Name: "a/0", Node: "a", Origin: "", Ready: true, Created: created.Time},
		{Name: "a/1", Node: "a", Origin: "c", Ready: true, Created: created.Time},
		{Name: "a/2", Node: "a", Origin: "", Created: created.Time},
		{Name: "b/0", Node: "b", Origin: "b", Created: created.Time},
	}
	if diff := cmp.Diff(want, Replicas(set)); diff != "" {
		t.Errorf("Replicas (-want,+got):\n%s", diff)
	}
	if Replicas(nil) != nil {
		t.Error("Replicas(nil) not nil")
	}
}

// fixture is one kantai-class revision with its Deployment, a Ready SKS,
// a NodeReplicaSet holding two ready pods on n1, and one Ready node, as a
// reconciler finds them after a restart.
func fixture(created time.Time) []client.Object {
	ref := corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "r-deployment"}
	p := &asv1alpha1.PodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns", UID: "pa-uid", Generation: 1,
			CreationTimestamp: metav1.NewTime(created),
			Annotations: map[string]string{autoscale.AnnotationClass: Class, autoscale.AnnotationWindow: "10s",
				autoscale.AnnotationInitialScale: "2"}},
		Spec: asv1alpha1.PodAutoscalerSpec{ScaleTargetRef: ref, ProtocolType: "http1"},
	}
	p.Status.MarkScaleTargetInitialized()
	zero := int32(0)
	labels := map[string]string{"serving.knative.dev/revisionUID": "rev-uid"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "r-deployment", Namespace: "ns", Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "user", Image: "example.local/x"}}}}},
	}
	sks := MakeSKS(p)
	sks.Status = netv1alpha1.ServerlessServiceStatus{Status: duckv1.Status{}, ServiceName: "r", PrivateServiceName: "r-private"}
	sks.Status.MarkEndpointsReady()
	set, err := MakeNodeReplicaSet(p, d, control.Output{Desired: map[string]int{"n1": 2}, Origins: map[string]map[string]int{"n1": {"": 2}}})
	if err != nil {
		panic(err)
	}
	set.CreationTimestamp = metav1.NewTime(created)
	set.Status = kantaiv1alpha1.NodeReplicaSetStatus{ReadyReplicas: 2, Replicas: 2,
		Nodes: []kantaiv1alpha1.NodeReplicaStatus{{Node: "n1", Desired: 2, Current: 2, Ready: 2}}}
	n := node("n1", true, nil)
	return []client.Object{p, d, sks, set, &n}
}

func newFakeReconciler(t *testing.T, clk *clocktesting.FakeClock, objs ...client.Object) (*Reconciler, client.Client) {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, kantaiv1alpha1.AddToScheme, asv1alpha1.AddToScheme, netv1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&asv1alpha1.PodAutoscaler{}, &kantaiv1alpha1.NodeReplicaSet{}, &netv1alpha1.ServerlessService{}).
		Build()
	return &Reconciler{Client: c, Clock: clk, Namespace: "kantai-system", KnativeNamespace: DefaultKnativeNamespace}, c
}

func desiredTotal(t *testing.T, c client.Client) int {
	t.Helper()
	set := &kantaiv1alpha1.NodeReplicaSet{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "r"}, set); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range set.Spec.Replicas {
		n += int(v)
	}
	return n
}

// TestReconcile_RestartHoldsReplicas: a reconciler that takes over a
// revision (restart or new leader) after its initial-scale window keeps
// its replicas for one stable window from when it started, then scales to
// zero; a reconciler that followed the revision from creation scales down
// at once at the same moment.
func TestReconcile_RestartHoldsReplicas(t *testing.T) {
	ctx := context.Background()
	created := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	const window = 10 * time.Second
	req := ctrl.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: "r"}}

	start := created.Add(window + 5*time.Second) // the initial scale's window is over
	clk := clocktesting.NewFakeClock(start)
	r, c := newFakeReconciler(t, clk, fixture(created)...)
	for i := 0; clk.Now().Before(start.Add(window)); i++ {
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
		if got := desiredTotal(t, c); got != 2 {
			t.Fatalf("%v after the restart: %d replicas wanted, want 2 (no scale-down within %v)", clk.Now().Sub(start), got, window)
		}
		clk.Step(time.Second)
	}
	for range 5 {
		clk.Step(time.Second)
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if got := desiredTotal(t, c); got != 0 {
		t.Errorf("one window after the restart: %d replicas wanted, want 0", got)
	}

	// The same moment, seen by a reconciler that ran since creation.
	clk2 := clocktesting.NewFakeClock(created)
	r2, c2 := newFakeReconciler(t, clk2, fixture(created)...)
	if _, err := r2.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	clk2.SetTime(start)
	for range 5 {
		if _, err := r2.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
		clk2.Step(time.Second)
	}
	if got := desiredTotal(t, c2); got != 0 {
		t.Errorf("without a restart: %d replicas wanted %v after creation, want 0", got, clk2.Now().Sub(created))
	}
}

// TestReconcile_OtherClassUntouched: a PodAutoscaler of another class
// gets no child and no status.
func TestReconcile_OtherClassUntouched(t *testing.T) {
	ctx := context.Background()
	objs := fixture(time.Now())
	p := objs[0].(*asv1alpha1.PodAutoscaler)
	p.Annotations[autoscale.AnnotationClass] = autoscale.ClassKPA
	p.Status = asv1alpha1.PodAutoscalerStatus{}
	r, c := newFakeReconciler(t, clocktesting.NewFakeClock(time.Now()), p, objs[1])
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)}); err != nil {
		t.Fatal(err)
	}
	got := &asv1alpha1.PodAutoscaler{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Conditions) != 0 {
		t.Errorf("status written: %+v", got.Status)
	}
	var sks netv1alpha1.ServerlessServiceList
	var sets kantaiv1alpha1.NodeReplicaSetList
	if err := c.List(ctx, &sks); err != nil || len(sks.Items) != 0 {
		t.Errorf("ServerlessServices: %d, %v", len(sks.Items), err)
	}
	if err := c.List(ctx, &sets); err != nil || len(sets.Items) != 0 {
		t.Errorf("NodeReplicaSets: %d, %v", len(sets.Items), err)
	}
}

// TestReconcile_Unreachable: a revision no route sends traffic to keeps
// no replica, whatever its min-scale (Knative's reachability).
func TestReconcile_Unreachable(t *testing.T) {
	ctx := context.Background()
	created := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	objs := fixture(created)
	p := objs[0].(*asv1alpha1.PodAutoscaler)
	p.Annotations[autoscale.AnnotationMinScale] = "2"
	clk := clocktesting.NewFakeClock(created.Add(time.Second))
	r, c := newFakeReconciler(t, clk, objs...)
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := desiredTotal(t, c); got != 2 {
		t.Fatalf("reachable with min-scale 2: %d replicas wanted, want 2", got)
	}
	if err := c.Get(ctx, req.NamespacedName, p); err != nil {
		t.Fatal(err)
	}
	p.Spec.Reachability = asv1alpha1.ReachabilityUnreachable
	if err := c.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Second)
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := desiredTotal(t, c); got != 0 {
		t.Errorf("unreachable with min-scale 2: %d replicas wanted, want 0", got)
	}
	if err := c.Get(ctx, req.NamespacedName, p); err != nil {
		t.Fatal(err)
	}
	if a := p.Status.GetCondition(asv1alpha1.PodAutoscalerConditionActive); a == nil || !a.IsFalse() || a.Reason != ReasonNoTraffic {
		t.Errorf("Active = %+v, want False NoTraffic", a)
	}
}

// fakeGateways hands out one set of windows per Take and records what the
// steps pushed.
type fakeGateways struct {
	windows   []demand.Windows
	takes     int
	rtt       map[[2]string]time.Duration
	processed map[string]map[string]time.Duration
}

func (f *fakeGateways) Take(rev string) demand.Windows {
	f.takes++
	if len(f.windows) == 0 {
		return demand.Windows{}
	}
	w := f.windows[0]
	f.windows = f.windows[1:]
	return w
}

func (f *fakeGateways) RTT(from, to string) (time.Duration, bool) {
	d, ok := f.rtt[[2]string{from, to}]
	return d, ok
}

func (f *fakeGateways) SetProcessing(rev string, perNode map[string]time.Duration) {
	if f.processed == nil {
		f.processed = map[string]map[string]time.Duration{}
	}
	f.processed[rev] = perNode
}

// TestReconcile_DemandPlacesAtOrigin: a revision at zero whose gateways
// report demand entering at n2 gets a replica on n2 (near its origin),
// not on n1; each reconcile takes the windows once, and the step's
// processing estimates go back to the gateways for every node.
func TestReconcile_DemandPlacesAtOrigin(t *testing.T) {
	ctx := context.Background()
	created := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	objs := fixture(created)
	p := objs[0].(*asv1alpha1.PodAutoscaler)
	set := objs[3].(*kantaiv1alpha1.NodeReplicaSet)
	set.Spec.Replicas = map[string]int32{}
	set.Status = kantaiv1alpha1.NodeReplicaSetStatus{}
	n2 := node("n2", true, nil)
	objs = append(objs, &n2)
	clk := clocktesting.NewFakeClock(created.Add(time.Minute))
	r, c := newFakeReconciler(t, clk, objs...)
	gw := &fakeGateways{
		rtt: map[[2]string]time.Duration{{"n2", "n1"}: 40 * time.Millisecond, {"n1", "n2"}: 40 * time.Millisecond},
		windows: []demand.Windows{{Demand: []control.Demand{{Origin: "n2", Concurrency: 0.4}}, Waiting: 1},
			{Demand: []control.Demand{{Origin: "n2", Concurrency: 1}},
				Service: []control.Service{{Node: "n2", Responses: 3, Mean: 7 * time.Millisecond}}}},
	}
	r.Gateways = gw
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(p)}
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	got := &kantaiv1alpha1.NodeReplicaSet{}
	if err := c.Get(ctx, req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int32{"n2": 1}; !cmp.Equal(got.Spec.Replicas, want) {
		t.Errorf("replicas per node %v, want %v (the demand's origin)", got.Spec.Replicas, want)
	}
	if !strings.Contains(got.Annotations[OriginsAnnotation], "n2") {
		t.Errorf("origins annotation %q does not name n2", got.Annotations[OriginsAnnotation])
	}
	clk.Step(time.Second)
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if gw.takes != 2 {
		t.Errorf("%d Takes for 2 reconciles", gw.takes)
	}
	est := gw.processed["ns/r"]
	if est["n2"] != 7*time.Millisecond {
		t.Errorf("processing estimates %v, want n2 measured at 7ms", est)
	}
	if _, ok := est["n1"]; !ok {
		t.Errorf("processing estimates %v lack n1", est)
	}
}
