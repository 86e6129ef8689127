package pa

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/control"
	"kantai.dev/kantai/internal/demand"
	"kantai.dev/kantai/internal/placement"
)

// DefaultTick is how often a PodAutoscaler's control step runs when
// nothing else triggers it: the autoscaler's windows move with time.
const DefaultTick = time.Second

// Reconciler reconciles PodAutoscalers of the class autoscaling.kantai.dev.
type Reconciler struct {
	client.Client
	// Clock is the time source; the real clock when nil.
	Clock clock.PassiveClock
	// Namespace holds config-kantai (default kantai-system);
	// KnativeNamespace holds config-autoscaler (default knative-serving).
	Namespace, KnativeNamespace string
	// Tick is how often each PodAutoscaler is stepped; DefaultTick when 0.
	Tick time.Duration
	// Gateways, when set, feeds each step the demand and service the node
	// gateways measured, and the RTT between nodes, and takes its
	// processing estimates; without it every step sees zero demand.
	Gateways Gateways
	// Triggers, when set, are events naming PodAutoscalers to reconcile at
	// once (a revision with waiting requests must not wait for its tick).
	Triggers <-chan event.GenericEvent

	mu      sync.Mutex
	started time.Time // first reconcile of this process (it leads from then)
	states  map[types.UID]*revState
}

// Gateways is what the reconciler learns from, and tells, the node
// gateways (package gateways polls them on the leader).
type Gateways interface {
	// Take returns the revision's demand and service windows since its
	// previous Take, and marks them consumed: each window feeds exactly
	// one step.
	Take(revision string) demand.Windows
	// RTT is the measured round-trip time between two nodes.
	RTT(from, to string) (time.Duration, bool)
	// SetProcessing hands over a step's processing estimates per node, to
	// push to every gateway; it does not wait.
	SetProcessing(revision string, perNode map[string]time.Duration)
}

// revState is one PodAutoscaler's control state across reconciles.
type revState struct {
	rev *control.Revision
	key string // the spec and placement it was made for
	// resumedAt is when this process took the revision over from an
	// earlier one (zero when it saw it from creation); kept when the
	// state is made anew, so the no-scale-down window still holds.
	resumedAt time.Time
}

// +kubebuilder:rbac:groups=autoscaling.internal.knative.dev,resources=podautoscalers,verbs=get;list;watch
// +kubebuilder:rbac:groups=autoscaling.internal.knative.dev,resources=podautoscalers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=autoscaling.internal.knative.dev,resources=podautoscalers/finalizers,verbs=update
// +kubebuilder:rbac:groups=networking.internal.knative.dev,resources=serverlessservices,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments/scale,verbs=get;update;patch
// +kubebuilder:rbac:groups=kantai.dev,resources=nodereplicasets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch,namespace=knative-serving
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch,namespace=kantai-system

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	pa := &asv1alpha1.PodAutoscaler{}
	if err := r.Get(ctx, req.NamespacedName, pa); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil // its state goes with the next restart; UIDs are never reused
		}
		return ctrl.Result{}, fmt.Errorf("get podautoscaler: %w", err)
	}
	// The watch filters by class already; a PA whose class changed since
	// the event was queued is left alone here too.
	if pa.Annotations[autoscale.AnnotationClass] != Class {
		r.forget(pa.UID)
		return ctrl.Result{}, nil
	}
	if pa.DeletionTimestamp != nil {
		r.forget(pa.UID)
		return ctrl.Result{}, nil // the garbage collector deletes the children
	}
	now := r.now()

	var errs []error
	obs := Observed{}
	settings, cfg, cfgErr := r.configs(ctx)
	spec, warns, specErr := autoscale.FromAnnotations(pa.Annotations, int(pa.Spec.ContainerConcurrency), settings)
	obs.SpecError = errors.Join(cfgErr, specErr)
	for _, w := range warns {
		log.V(1).Info("Annotation has no effect", "warning", w.String())
	}

	sks, notOwned, err := r.reconcileSKS(ctx, pa)
	if err != nil {
		errs = append(errs, err)
	}
	obs.SKS, obs.NotOwned = sks, notOwned

	deploy, err := r.reconcileDeployment(ctx, pa)
	if err != nil {
		errs = append(errs, err)
	}
	obs.NoTarget = deploy == nil && err == nil

	if obs.NotOwned == "" && obs.SpecError == nil && deploy != nil {
		set, notOwned, err := r.reconcileNodeReplicaSet(ctx, pa, deploy, holdInitialScale(pa, spec), cfg, now)
		switch {
		case err != nil:
			errs = append(errs, err)
		case notOwned != "":
			obs.NotOwned = notOwned
		default:
			for _, n := range set.Spec.Replicas {
				obs.Desired += int(n)
			}
			obs.Ready = int(set.Status.ReadyReplicas)
		}
		minScale := spec.MinScale
		if pa.Spec.Reachability == asv1alpha1.ReachabilityUnreachable {
			minScale = 0
		}
		obs.Threshold = max(minScale, spec.InitialScale)
	}

	if len(errs) > 0 {
		// What was observed is incomplete: a status from it could flip
		// conditions for a moment. Retry with backoff instead.
		return ctrl.Result{}, errors.Join(errs...)
	}
	if err := r.writeStatus(ctx, pa, obs); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.tick()}, nil
}

// holdInitialScale raises min-scale to initial-scale until the scale
// target is initialized, as Knative's KPA scaler does: a revision whose
// pods take longer than one window to become ready is not scaled down
// before it ever served. Once initialized, the spec is the annotations'
// again (and the control state is made anew, not resumed).
func holdInitialScale(pa *asv1alpha1.PodAutoscaler, spec autoscale.Spec) autoscale.Spec {
	if pa.Status.IsScaleTargetInitialized() || spec.InitialScale <= spec.MinScale {
		return spec
	}
	spec.MinScale = spec.InitialScale
	if spec.MaxScale > 0 {
		spec.MinScale = min(spec.MinScale, spec.MaxScale)
	}
	return spec
}

func (r *Reconciler) now() time.Time {
	c := r.Clock
	if c == nil {
		c = clock.RealClock{}
	}
	now := c.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started.IsZero() {
		r.started = now
	}
	return now
}

func (r *Reconciler) tick() time.Duration {
	if r.Tick > 0 {
		return r.Tick
	}
	return DefaultTick
}

// forget drops a PodAutoscaler's control state.
func (r *Reconciler) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.states, uid)
}

// configs reads config-autoscaler and config-kantai; a missing config map
// means the defaults, a malformed key an error naming it (its default
// stays in place).
func (r *Reconciler) configs(ctx context.Context) (autoscale.Settings, Config, error) {
	var errs []error
	settings := autoscale.DefaultSettings()
	cm := &corev1.ConfigMap{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: r.KnativeNamespace, Name: AutoscalerConfigMapName}, cm); {
	case err == nil:
		s, err := autoscale.ParseSettings(cm.Data)
		if err != nil {
			errs = append(errs, err)
		} else {
			settings = s
		}
	case !apierrors.IsNotFound(err):
		errs = append(errs, fmt.Errorf("get %s: %w", AutoscalerConfigMapName, err))
	}
	cfg := DefaultConfig()
	cm = &corev1.ConfigMap{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: ConfigMapName}, cm); {
	case err == nil:
		c, err := ParseConfig(cm.Data)
		if err != nil {
			errs = append(errs, err)
		}
		cfg = c
	case !apierrors.IsNotFound(err):
		errs = append(errs, fmt.Errorf("get %s: %w", ConfigMapName, err))
	}
	return settings, cfg, errors.Join(errs...)
}

// reconcileSKS creates or corrects the ServerlessService. notOwned is
// its kind when one of that name exists that the PodAutoscaler does not
// control.
func (r *Reconciler) reconcileSKS(ctx context.Context, pa *asv1alpha1.PodAutoscaler) (*netv1alpha1.ServerlessService, string, error) {
	want := MakeSKS(pa)
	sks := &netv1alpha1.ServerlessService{}
	err := r.Get(ctx, client.ObjectKeyFromObject(want), sks)
	switch {
	case apierrors.IsNotFound(err):
		if err := r.Create(ctx, want); err != nil {
			return nil, "", fmt.Errorf("create serverlessservice: %w", err)
		}
		return want, "", nil
	case err != nil:
		return nil, "", fmt.Errorf("get serverlessservice: %w", err)
	case !metav1.IsControlledBy(sks, pa):
		return nil, "ServerlessService", nil
	case !equality.Semantic.DeepEqual(sks.Spec, want.Spec):
		sks = sks.DeepCopy()
		sks.Spec = want.Spec
		if err := r.Update(ctx, sks); err != nil {
			return nil, "", fmt.Errorf("update serverlessservice: %w", err)
		}
	}
	return sks, "", nil
}

// reconcileDeployment reads the scale target and holds it at 0 replicas
// through its scale subresource: the NodeReplicaSet runs the pods. It
// returns nil, nil when the Deployment does not exist.
func (r *Reconciler) reconcileDeployment(ctx context.Context, pa *asv1alpha1.PodAutoscaler) (*appsv1.Deployment, error) {
	ref := pa.Spec.ScaleTargetRef
	d := &appsv1.Deployment{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pa.Namespace, Name: ref.Name}, d); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get deployment: %w", err)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 0 {
		scale := &autoscalingv1.Scale{}
		if err := r.SubResource("scale").Get(ctx, d, scale); err != nil {
			return nil, fmt.Errorf("get deployment scale: %w", err)
		}
		scale.Spec.Replicas = 0
		if err := r.SubResource("scale").Update(ctx, d, client.WithSubResourceBody(scale)); err != nil {
			return nil, fmt.Errorf("scale deployment to 0: %w", err)
		}
	}
	return d, nil
}

// reconcileNodeReplicaSet steps the control state and writes its counts
// to the NodeReplicaSet.
func (r *Reconciler) reconcileNodeReplicaSet(ctx context.Context, pa *asv1alpha1.PodAutoscaler, d *appsv1.Deployment,
	spec autoscale.Spec, cfg Config, now time.Time) (*kantaiv1alpha1.NodeReplicaSet, string, error) {
	set := &kantaiv1alpha1.NodeReplicaSet{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: pa.Namespace, Name: pa.Name}, set); {
	case apierrors.IsNotFound(err):
		set = nil
	case err != nil:
		return nil, "", fmt.Errorf("get nodereplicaset: %w", err)
	case !metav1.IsControlledBy(set, pa):
		return nil, "NodeReplicaSet", nil
	}

	var nodes corev1.NodeList
	if err := r.List(ctx, &nodes); err != nil {
		return nil, "", fmt.Errorf("list nodes: %w", err)
	}
	var sets kantaiv1alpha1.NodeReplicaSetList
	if err := r.List(ctx, &sets); err != nil {
		return nil, "", fmt.Errorf("list nodereplicasets: %w", err)
	}
	used := map[string]int{}
	for _, s := range sets.Items {
		for node, n := range s.Spec.Replicas {
			used[node] += int(n)
		}
	}

	rev, err := r.state(pa, spec, cfg, now)
	if err != nil {
		return nil, "", err
	}
	in := control.Input{
		Now:         now,
		Nodes:       ControlNodes(nodes.Items, &d.Spec.Template, cfg.NodeCapacity, used),
		Replicas:    Replicas(set),
		Unreachable: pa.Spec.Reachability == asv1alpha1.ReachabilityUnreachable,
	}
	revKey := pa.Namespace + "/" + pa.Name // the revision's key at the gateways
	if r.Gateways != nil {
		// Taken just before the step that consumes it: a reconcile that
		// fails earlier leaves the windows to the next one.
		w := r.Gateways.Take(revKey)
		in.Demand, in.Service, in.RTT = w.Demand, w.Service, r.Gateways.RTT
	}
	out := rev.Step(in)
	if r.Gateways != nil {
		r.Gateways.SetProcessing(revKey, out.Processing)
	}
	if out.Unplaced > 0 {
		ctrl.LoggerFrom(ctx).Info("Replicas without a node", "unplaced", out.Unplaced, "nodes", describeNodes(nodes.Items, &d.Spec.Template, cfg.NodeCapacity, used))
	}
	want, err := MakeNodeReplicaSet(pa, d, out)
	if err != nil {
		return nil, "", err
	}
	if set == nil {
		if err := r.Create(ctx, want); err != nil {
			return nil, "", fmt.Errorf("create nodereplicaset: %w", err)
		}
		ctrl.LoggerFrom(ctx).Info("Created NodeReplicaSet", "replicas", want.Spec.Replicas, "reason", out.Reason)
		return want, "", nil
	}
	if equality.Semantic.DeepEqual(set.Spec, want.Spec) && maps.Equal(set.Labels, want.Labels) &&
		set.Annotations[OriginsAnnotation] == want.Annotations[OriginsAnnotation] {
		return set, "", nil
	}
	upd := set.DeepCopy()
	upd.Spec = want.Spec
	upd.Labels = want.Labels
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[OriginsAnnotation] = want.Annotations[OriginsAnnotation]
	if err := r.Update(ctx, upd); err != nil {
		return nil, "", fmt.Errorf("update nodereplicaset: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("Updated NodeReplicaSet", "replicas", upd.Spec.Replicas, "reason", out.Reason)
	return upd, "", nil
}

// state returns the PodAutoscaler's control state, made anew when the
// spec or the placement policy changed (the windows start empty then). A
// revision this process meets for the first time that was created before
// it started leading (a restart, a new leader) gets Resumed: nothing
// scales down for one stable window, since the windows it would decide
// from are empty.
func (r *Reconciler) state(pa *asv1alpha1.PodAutoscaler, spec autoscale.Spec, cfg Config, now time.Time) (*control.Revision, error) {
	key := fmt.Sprintf("%+v|%s", spec, cfg.Placement)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.states == nil {
		r.states = map[types.UID]*revState{}
	}
	st := r.states[pa.UID]
	if st != nil && st.key == key {
		return st.rev, nil
	}
	policy, err := placement.New(cfg.Placement)
	if err != nil {
		return nil, err
	}
	created := pa.CreationTimestamp.Time
	var resumedAt time.Time
	switch {
	case st != nil:
		resumedAt = st.resumedAt
	case created.Before(r.started.Truncate(time.Second)):
		resumedAt = now
	}
	rev := control.New(control.Config{Spec: spec, Placement: policy, Created: created,
		Resumed: !resumedAt.IsZero(), Started: resumedAt})
	r.states[pa.UID] = &revState{rev: rev, key: key, resumedAt: resumedAt}
	return rev, nil
}

// writeStatus sets the status from what was observed and patches /status
// when it changed.
func (r *Reconciler) writeStatus(ctx context.Context, pa *asv1alpha1.PodAutoscaler, o Observed) error {
	orig := pa.DeepCopy()
	SetStatus(pa, o)
	if equality.Semantic.DeepEqual(orig.Status, pa.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, pa, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("patch podautoscaler status: %w", err)
	}
	return nil
}
