package pa

import (
	"context"
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/autoscale"
)

// Knative's label keys read here.
const (
	labelRevision    = "serving.knative.dev/revision"
	labelRevisionUID = "serving.knative.dev/revisionUID"
)

// DefaultNamespace is the controller's namespace, which holds
// config-kantai, unless told otherwise.
const DefaultNamespace = "kantai-system"

// DefaultKnativeNamespace is Knative Serving's system namespace, which
// holds config-autoscaler.
const DefaultKnativeNamespace = "knative-serving"

// CacheByObject restricts the manager's caches to what this reconciler
// reads: Deployments of Knative revisions, and ConfigMaps of the two
// namespaces. Merge it into cache.Options.ByObject.
func CacheByObject(namespace, knativeNamespace string) map[client.Object]cache.ByObject {
	req, err := labels.NewRequirement(labelRevisionUID, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key; cannot fail
	}
	return map[client.Object]cache.ByObject{
		&appsv1.Deployment{}: {Label: labels.NewSelector().Add(*req)},
		&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{
			namespace: {}, knativeNamespace: {},
		}},
	}
}

// OfClass passes PodAutoscalers of the kantai class.
func OfClass(o client.Object) bool {
	return o.GetAnnotations()[autoscale.AnnotationClass] == Class
}

// SetupWithManager registers the controller. maxConcurrent is the number
// of PodAutoscalers reconciled at once.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrent int) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.KnativeNamespace == "" {
		r.KnativeNamespace = DefaultKnativeNamespace
	}
	if r.Namespace == "" {
		r.Namespace = DefaultNamespace
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("podautoscaler").
		For(&asv1alpha1.PodAutoscaler{}, builder.WithPredicates(predicate.NewPredicateFuncs(OfClass))).
		Owns(&netv1alpha1.ServerlessService{}).
		Owns(&kantaiv1alpha1.NodeReplicaSet{}).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(paForDeployment)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.allOfClass), builder.WithPredicates(nodeChanged())).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.allOfClass),
			builder.WithPredicates(predicate.NewPredicateFuncs(r.isConfig))).
		WithOptions(controllerOptions(maxConcurrent))
	if r.Triggers != nil {
		// The events name the PodAutoscaler (namespace and name of its
		// revision); Reconcile checks the class.
		b = b.WatchesRawSource(source.Channel(r.Triggers, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}

// paForDeployment maps a revision's Deployment to its PodAutoscaler,
// which has the revision's name.
func paForDeployment(_ context.Context, o client.Object) []reconcile.Request {
	rev := o.GetLabels()[labelRevision]
	if rev == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: rev}}}
}

// allOfClass enqueues every PodAutoscaler of the kantai class.
func (r *Reconciler) allOfClass(ctx context.Context, _ client.Object) []reconcile.Request {
	var list asv1alpha1.PodAutoscalerList
	if err := r.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing PodAutoscalers")
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if OfClass(&list.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return out
}

func (r *Reconciler) isConfig(o client.Object) bool {
	return (o.GetNamespace() == r.KnativeNamespace && o.GetName() == AutoscalerConfigMapName) ||
		(o.GetNamespace() == r.Namespace && o.GetName() == ConfigMapName)
}

// nodeChanged passes node creations and deletions, and updates that can
// change where revisions may run: readiness, schedulability, taints,
// labels and the capacity annotation. Heartbeats are dropped.
func nodeChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			a, aok := e.ObjectOld.(*corev1.Node)
			b, bok := e.ObjectNew.(*corev1.Node)
			if !aok || !bok {
				return true
			}
			return nodeReady(a) != nodeReady(b) || a.Spec.Unschedulable != b.Spec.Unschedulable ||
				!equality.Semantic.DeepEqual(a.Spec.Taints, b.Spec.Taints) || !maps.Equal(a.Labels, b.Labels) ||
				a.Annotations[CapacityAnnotation] != b.Annotations[CapacityAnnotation] ||
				(a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

func controllerOptions(maxConcurrent int) controller.Options {
	return controller.Options{MaxConcurrentReconciles: max(maxConcurrent, 1)}
}
