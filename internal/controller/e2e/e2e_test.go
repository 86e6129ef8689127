package e2e

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/autoscale"
	kingress "kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/k8stest"
)

// Generous bounds: the machine is shared and has two cores.
const long = 90 * time.Second

// TestDemandFromZero: a Knative Service of the kantai classes at
// initial-scale 0 keeps no replica until the gateway on node Y reports a
// request waiting for it; then its NodeReplicaSet gets one replica on Y
// (placed by the demand's origin, through the shared control step), the
// step's processing estimates reach every gateway and follow the service
// times the gateways report; its Ingress gets observedGeneration and
// LoadBalancerReady once both gateways report its generation, and the
// Route and the Service become Ready.
func TestDemandFromZero(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := "demand"
	if err := k8sClient.Create(ctx, namespace(ns)); err != nil {
		t.Fatal(err)
	}
	createService(t, ns, "hello", map[string]string{autoscale.AnnotationInitialScale: "0", autoscale.AnnotationWindow: "20s"})
	rev := "hello-00001"
	revKey := ns + "/" + rev

	eventually(t, "PodAutoscaler initialized at zero", func(ctx context.Context) (bool, error) {
		p := &asv1alpha1.PodAutoscaler{}
		if err := k8sClient.Get(ctx, k8stest.Key(ns, rev), p); err != nil {
			return false, err
		}
		return p.Status.IsScaleTargetInitialized() && p.Status.GetDesiredScale() == 0, nil
	})
	set := &kantaiv1alpha1.NodeReplicaSet{}
	if err := k8sClient.Get(ctx, k8stest.Key(ns, rev), set); err != nil {
		t.Fatal(err)
	}
	if n := total(set); n != 0 {
		t.Fatalf("%d replicas before any demand, want 0", n)
	}

	// A request waits at the gateway of node Y.
	fakes[nodeY].setWaiting(revKey, 1)
	eventually(t, "one replica on "+nodeY, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, rev), set); err != nil {
			return false, err
		}
		return total(set) == 1 && set.Spec.Replicas[nodeY] == 1, nil
	})
	if set.Spec.Replicas[nodeX] != 0 {
		t.Errorf("replicas %v: one on %s, where no demand entered", set.Spec.Replicas, nodeX)
	}

	// The replica serves: the gateway on Y reports responses at Y taking
	// 5 ms; the estimates pushed to every gateway follow.
	fakes[nodeY].setWaiting(revKey, 0)
	fakes[nodeY].served(revKey, nodeY, 20, 5*time.Millisecond)
	for _, node := range []string{nodeX, nodeY} {
		eventually(t, "processing estimates of "+rev+" at the gateway of "+node, func(context.Context) (bool, error) {
			for _, p := range fakes[node].received() {
				if p.Revision == revKey && math.Abs(p.PerNode[nodeY]-0.005) < 1e-4 {
					if _, ok := p.PerNode[nodeX]; !ok {
						return false, fmt.Errorf("push %+v lacks %s", p, nodeX)
					}
					return true, nil
				}
			}
			return false, nil
		})
	}

	// Knative's Route made the Ingress, of kantai's class.
	ing := &netv1alpha1.Ingress{}
	eventually(t, "the Route's Ingress", func(ctx context.Context) (bool, error) {
		return k8sClient.Get(ctx, k8stest.Key(ns, "hello"), ing) == nil, nil
	})
	if c := ing.Status.GetCondition(netv1alpha1.IngressConditionLoadBalancerReady); c.IsTrue() {
		t.Fatalf("LoadBalancerReady before any gateway reported the Ingress")
	}
	fakes[nodeX].setIngress(ns+"/hello", ing.Generation)
	eventually(t, "Ingress observed, load balancer not ready while one gateway lacks it", func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, "hello"), ing); err != nil {
			return false, err
		}
		c := ing.Status.GetCondition(netv1alpha1.IngressConditionNetworkConfigured)
		return ing.Status.ObservedGeneration == ing.Generation && c.IsTrue(), nil
	})
	if c := ing.Status.GetCondition(netv1alpha1.IngressConditionLoadBalancerReady); c.IsTrue() {
		t.Errorf("LoadBalancerReady while the gateway of %s does not hold the Ingress", nodeY)
	}
	fakes[nodeY].setIngress(ns+"/hello", ing.Generation)
	eventually(t, "Ingress Ready", func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, "hello"), ing); err != nil {
			return false, err
		}
		return ing.IsReady(), nil
	})
	lbs := kingress.ServiceLoadBalancer(kantaiNamespace, "cluster.local")
	for name, c := range map[string]struct {
		lb   *netv1alpha1.LoadBalancerStatus
		want string
	}{"public": {ing.Status.PublicLoadBalancer, lbs.Public}, "private": {ing.Status.PrivateLoadBalancer, lbs.Private}} {
		lb, want := c.lb, c.want
		if lb == nil || len(lb.Ingress) != 1 || lb.Ingress[0].DomainInternal != want {
			t.Errorf("%s load balancer %+v, want one entry with domainInternal %s", name, lb, want)
		}
	}
	for _, kind := range []string{"Route", "Service"} {
		eventually(t, kind+" Ready", func(ctx context.Context) (bool, error) {
			u := &unstructured.Unstructured{}
			u.SetAPIVersion("serving.knative.dev/v1")
			u.SetKind(kind)
			if err := k8sClient.Get(ctx, k8stest.Key(ns, "hello"), u); err != nil {
				return false, err
			}
			if s := conditionOf(u, "Ready"); s != "True" {
				return false, fmt.Errorf("Ready %q", s)
			}
			return true, nil
		})
	}
}

func eventually(t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := k8stest.Eventually(context.Background(), long, 100*time.Millisecond, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func total(s *kantaiv1alpha1.NodeReplicaSet) int {
	n := 0
	for _, c := range s.Spec.Replicas {
		n += int(c)
	}
	return n
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

// createService creates a Knative Service with the given template
// annotations.
func createService(tb testing.TB, ns, name string, ann map[string]string) {
	tb.Helper()
	svc := k8stest.KnativeService(ns, name, ann, nil)
	if err := k8sClient.Create(context.Background(), svc); err != nil {
		tb.Fatalf("creating Service %s: %v", name, err)
	}
}
