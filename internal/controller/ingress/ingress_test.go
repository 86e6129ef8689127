package ingress

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"knative.dev/networking/pkg/apis/networking"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"kantai.dev/kantai/internal/controller/gateways"
	kingress "kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/nodeapi"
)

func ing(gen int64, class string) *netv1alpha1.Ingress {
	return &netv1alpha1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "hello", Generation: gen,
		Annotations: map[string]string{networking.IngressClassAnnotationKey: class}}}
}

func report(node string, gen int64) nodeapi.State {
	return nodeapi.State{Node: node, Ingresses: map[string]int64{"ns/hello": gen}}
}

var lb = kingress.LoadBalancer{Public: "pub.svc", Private: "priv.svc"}

type view []gateways.Gateway

func (v view) Gateways() []gateways.Gateway { return v }

// TestReconcile: the status is written once when it changes, not again
// when nothing changed; Ingresses of another class are untouched; only
// ready gateways count.
func TestReconcile(t *testing.T) {
	s := runtime.NewScheme()
	if err := netv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	patches := 0
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(ing(1, kingress.Class)).
		WithStatusSubresource(&netv1alpha1.Ingress{}).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			patches++
			return c.SubResource(sub).Patch(ctx, o, p, opts...)
		}}).Build()
	gws := view{
		{Node: "a", Ready: true, Known: true, State: report("a", 1)},
		{Node: "b", Ready: false}, // not ready: does not hold the Ingress back
	}
	r := &Reconciler{Client: c, Gateways: gws, LoadBalancer: lb}
	ctx := context.Background()
	req := ctrl.Request{NamespacedName: client.ObjectKey{Namespace: "ns", Name: "hello"}}
	for range 2 {
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if patches != 1 {
		t.Errorf("%d status patches for one change", patches)
	}
	got := &netv1alpha1.Ingress{}
	if err := c.Get(ctx, req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if !got.IsReady() {
		t.Errorf("Ingress not ready: %+v", got.Status)
	}

	// A ready gateway not read yet holds it back.
	r.Gateways = append(gws, gateways.Gateway{Node: "c", Ready: true})
	if _, err := r.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, req.NamespacedName, got); err != nil {
		t.Fatal(err)
	}
	if got.IsReady() {
		t.Errorf("Ingress ready though gateway c reported nothing")
	}

	other := ing(1, "kourier.ingress.networking.knative.dev")
	other.Name = "other"
	if err := c.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	before := patches
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(other)}); err != nil {
		t.Fatal(err)
	}
	if patches != before {
		t.Errorf("status written for an Ingress of another class")
	}
}
