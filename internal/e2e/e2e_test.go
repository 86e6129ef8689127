package e2e_test

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kantai.dev/kantai/internal/k8stest"
)

const long = 3 * time.Minute

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// createService creates a Knative Service running the built-in function
// with TARGET=target and the given template annotations.
func createService(t *testing.T, ns, name, target string, ann map[string]string) {
	t.Helper()
	svc := &unstructured.Unstructured{}
	svc.SetAPIVersion("serving.knative.dev/v1")
	svc.SetKind("Service")
	svc.SetNamespace(ns)
	svc.SetName(name)
	a := map[string]any{}
	for k, v := range ann {
		a[k] = v
	}
	svc.Object["spec"] = map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": a},
		"spec": map[string]any{"containers": []any{map[string]any{
			"image": "example.local/hello:v1",
			"env":   []any{map[string]any{"name": "TARGET", "value": target}},
		}}},
	}}
	if err := k8sClient.Create(context.Background(), svc); err != nil {
		t.Fatalf("creating Service %s: %v", name, err)
	}
}

// TestRevisionPodsRun checks the harness itself: a revision of kantai's
// class at min-scale 1 gets a pod that the process kubelet runs on a
// loopback address, the revision becomes Ready through Knative's own
// controllers, and the pod answers where Knative's private Service points.
func TestRevisionPodsRun(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createService(t, ns, "pods", "Ohayo", map[string]string{"autoscaling.knative.dev/min-scale": "1"})
	rev := &servingv1.Revision{}
	err := k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, "pods-00001"), rev); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return rev.IsReady(), nil
	})
	if err != nil {
		t.Fatalf("revision not Ready: %v (conditions %+v)", err, rev.Status.Conditions)
	}
	var pods corev1.PodList
	if err := k8sClient.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"serving.knative.dev/revision": "pods-00001"}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("%d pods, want 1", len(pods.Items))
	}
	p := pods.Items[0]
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil || !addrs.Virtual.Contains(ip) {
		t.Fatalf("pod IP %q is not in the virtual range %s", p.Status.PodIP, addrs.Virtual)
	}
	// Knative's private Service lists the pod (Endpoints refuse loopback
	// addresses: hence the virtual ones).
	err = k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		var ep corev1.Endpoints
		if err := k8sClient.Get(ctx, k8stest.Key(ns, "pods-00001-private"), &ep); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, s := range ep.Subsets {
			for _, a := range s.Addresses {
				if a.IP == p.Status.PodIP {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the private Service's Endpoints never listed the pod: %v", err)
	}
	resp, err := http.Get("http://" + addrs.ToLoopback(ip).String() + ":8012/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "Ohayo from " + p.Name + " in " + p.Spec.NodeName; !strings.Contains(string(body), want) {
		t.Fatalf("pod answered %q, want %q", body, want)
	}
}
