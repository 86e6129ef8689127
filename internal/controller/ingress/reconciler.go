package ingress

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"kantai.dev/kantai/internal/controller/gateways"
	kingress "kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/nodeapi"
)

// Gateways is the poller's view of the gateways.
type Gateways interface {
	Gateways() []gateways.Gateway
}

var _ Gateways = (*gateways.Poller)(nil)

// Reconciler writes the status of Ingresses of kantai's class.
type Reconciler struct {
	client.Client
	Gateways Gateways
	// Changes, when set, are events sent when the gateways' view changed:
	// every Ingress of the class is reconciled then.
	Changes <-chan event.GenericEvent
	// LoadBalancer is what the status names; kingress.DefaultLoadBalancer
	// when empty.
	LoadBalancer kingress.LoadBalancer
}

// +kubebuilder:rbac:groups=networking.internal.knative.dev,resources=ingresses,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.internal.knative.dev,resources=ingresses/status,verbs=update;patch

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ing := &netv1alpha1.Ingress{}
	if err := r.Get(ctx, req.NamespacedName, ing); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get ingress: %w", err)
	}
	// The watch filters by class; one whose class changed since the event
	// was queued is left alone here too.
	if !kingress.Ours(ing) || ing.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	want := kingress.Status(ing, Reports(r.Gateways.Gateways()), r.lb())
	if equality.Semantic.DeepEqual(ing.Status, want) {
		return ctrl.Result{}, nil
	}
	orig := ing.DeepCopy()
	ing.Status = want
	if err := r.Status().Patch(ctx, ing, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, fmt.Errorf("patch ingress status: %w", err)
	}
	return ctrl.Result{}, nil
}

// Reports are what the ready gateways say: their last known State, or
// only the node for a gateway not read yet (it serves no Ingress yet, so
// it holds every Ingress back).
func Reports(gws []gateways.Gateway) []kingress.Report {
	var out []kingress.Report
	for _, g := range gws {
		if !g.Ready {
			continue
		}
		st := nodeapi.State{Node: g.Node}
		if g.Known {
			st = g.State
			st.Node = g.Node
		}
		out = append(out, kingress.ReportOf(st, true))
	}
	return out
}

func (r *Reconciler) lb() kingress.LoadBalancer {
	if r.LoadBalancer == (kingress.LoadBalancer{}) {
		return kingress.DefaultLoadBalancer
	}
	return r.LoadBalancer
}

// OfClass passes Ingresses of kantai's class.
func OfClass(o client.Object) bool {
	ing, ok := o.(*netv1alpha1.Ingress)
	return ok && kingress.Ours(ing)
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		r.Client = mgr.GetClient()
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("ingress").
		For(&netv1alpha1.Ingress{}, builder.WithPredicates(predicate.NewPredicateFuncs(OfClass)))
	if r.Changes != nil {
		b = b.WatchesRawSource(source.Channel(r.Changes, handler.EnqueueRequestsFromMapFunc(r.allOfClass)))
	}
	return b.Complete(r)
}

// allOfClass enqueues every Ingress of kantai's class.
func (r *Reconciler) allOfClass(ctx context.Context, _ client.Object) []reconcile.Request {
	var list netv1alpha1.IngressList
	if err := r.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing Ingresses")
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
