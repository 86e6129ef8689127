package nrs

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
)

// ControllerName names the controller, its events and its field manager.
const ControllerName = "nodereplicaset-controller"

const (
	// podOwnerIndex indexes pods by the name of their controlling
	// NodeReplicaSet.
	podOwnerIndex = "kantai.dev/nrs-owner"
	// nrsNodeIndex indexes NodeReplicaSets by each node of spec.replicas.
	nrsNodeIndex = "kantai.dev/nrs-node"
)

// CacheByObject restricts the manager's pod cache to the pods this
// controller creates (those with the LabelName label). Pass it as
// cache.Options.ByObject.
func CacheByObject() map[client.Object]cache.ByObject {
	req, err := labels.NewRequirement(kantaiv1alpha1.LabelName, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key; cannot fail
	}
	return map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Label: labels.NewSelector().Add(*req)},
	}
}

// SetupWithManager registers the field indexes and the controller.
// maxConcurrent is the number of NodeReplicaSets reconciled at once.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrent int) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder(ControllerName)
	}
	if r.Expectations == nil {
		r.Expectations = NewExpectations(DefaultExpectationsTTL, nil)
	}
	if r.BurstReplicas <= 0 {
		r.BurstReplicas = DefaultBurstReplicas
	}
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &corev1.Pod{}, podOwnerIndex, podOwnerIndexValue); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &kantaiv1alpha1.NodeReplicaSet{}, nrsNodeIndex, func(o client.Object) []string {
		set, ok := o.(*kantaiv1alpha1.NodeReplicaSet)
		if !ok {
			return nil
		}
		return sortedKeys(set.Spec.Replicas)
	}); err != nil {
		return err
	}

	return ctrl.NewControllerManagedBy(mgr).
		Named("nodereplicaset").
		For(&kantaiv1alpha1.NodeReplicaSet{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&corev1.Pod{}, &podHandler{exp: r.Expectations}).
		WatchesMetadata(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.setsForNode),
			builder.WithPredicates(nodePredicate())).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(maxConcurrent, 1)}).
		Complete(r)
}

// podOwnerIndexValue is the podOwnerIndex value of a pod.
func podOwnerIndexValue(o client.Object) []string {
	if name, ok := ownerName(o); ok {
		return []string{name}
	}
	return nil
}

// ownerName returns the name of the NodeReplicaSet controlling o.
func ownerName(o metav1.Object) (string, bool) {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != "NodeReplicaSet" || ref.APIVersion != kantaiv1alpha1.GroupVersion.String() {
		return "", false
	}
	return ref.Name, true
}

func ownerKey(o metav1.Object) (types.NamespacedName, bool) {
	name, ok := ownerName(o)
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: name}, ok
}

// setsForNode maps a node to the NodeReplicaSets that name it.
func (r *Reconciler) setsForNode(ctx context.Context, node client.Object) []reconcile.Request {
	list := &kantaiv1alpha1.NodeReplicaSetList{}
	if err := r.Client.List(ctx, list, client.MatchingFields{nrsNodeIndex: node.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing NodeReplicaSets for node", "node", node.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i, s := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)}
	}
	return reqs
}

// nodePredicate passes node creations and deletions, and updates that
// change the hostname label; heartbeats and status updates are dropped.
func nodePredicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetLabels()[HostnameLabel] != e.ObjectNew.GetLabels()[HostnameLabel]
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// podHandler records what the cache has observed in the expectations and
// enqueues the controlling NodeReplicaSet. The informer updates its store
// before calling handlers, so an observed write is visible to the next
// List of the reconciler.
//
// A pending create is settled by name, so only an add or update of a pod
// that is not terminating settles it. Pod names are reused per slot: a late
// event of an earlier pod of the slot, deleted before the create, carries
// the same name, and it is a delete or shows the pod terminating (events of
// one pod arrive in order, and a pod never stops terminating). Letting it
// settle the create, uncertain ones included, would let the next plan act
// before the cache shows the new pod.
type podHandler struct {
	exp *Expectations
}

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

func (h *podHandler) Create(_ context.Context, e event.CreateEvent, q queue) {
	key, ok := ownerKey(e.Object)
	if !ok {
		return
	}
	h.observe(key, e.Object)
	q.Add(reconcile.Request{NamespacedName: key})
}

// observe lowers the expectation that pod, as the cache now shows it,
// fulfils: its creation if it is live, its deletion if it is terminating.
func (h *podHandler) observe(key types.NamespacedName, pod client.Object) {
	if pod.GetDeletionTimestamp() == nil {
		h.exp.CreationObserved(key, pod.GetName())
	} else {
		h.exp.DeletionObserved(key, pod.GetUID())
	}
}

func (h *podHandler) Update(_ context.Context, e event.UpdateEvent, q queue) {
	if e.ObjectNew.GetResourceVersion() == e.ObjectOld.GetResourceVersion() {
		return // periodic resync
	}
	if key, ok := ownerKey(e.ObjectNew); ok {
		h.observe(key, e.ObjectNew)
		q.Add(reconcile.Request{NamespacedName: key})
	}
	if oldKey, ok := ownerKey(e.ObjectOld); ok {
		if newKey, _ := ownerKey(e.ObjectNew); newKey != oldKey {
			q.Add(reconcile.Request{NamespacedName: oldKey})
		}
	}
}

func (h *podHandler) Delete(_ context.Context, e event.DeleteEvent, q queue) {
	key, ok := ownerKey(e.Object)
	if !ok {
		return
	}
	// The pod is gone: never its creation (see podHandler).
	h.exp.DeletionObserved(key, e.Object.GetUID())
	q.Add(reconcile.Request{NamespacedName: key})
}

func (h *podHandler) Generic(_ context.Context, e event.GenericEvent, q queue) {
	if key, ok := ownerKey(e.Object); ok {
		q.Add(reconcile.Request{NamespacedName: key})
	}
}
