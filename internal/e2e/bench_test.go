package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kantai.dev/kantai/internal/k8stest"
)

// BenchmarkColdStart measures, per Knative Service of kantai's classes at
// initial-scale 0: the time from create to Ready (no replica: the Route's
// Ingress served by every gateway), and from the first request at edge-b's
// gateway to its answer (scale from zero at the origin: the leader's poll,
// the control step, the NodeReplicaSet, the pod, its EndpointSlice, the
// gateway). Run with
//
//	make bench-e2e
func BenchmarkColdStart(b *testing.B) {
	if testEnv == nil {
		b.Skip(k8stest.SkipReason)
	}
	ctx := context.Background()
	ns := newNamespace(b)
	var ready, answer, total time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("cold%d", i)
		created := time.Now()
		createService(b, ns, name, "Cold", map[string]string{"autoscaling.knative.dev/initial-scale": "0"})
		svc := &servingv1.Service{}
		err := k8stest.Eventually(ctx, long, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
			if err := k8sClient.Get(ctx, k8stest.Key(ns, name), svc); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			return svc.IsReady(), nil
		})
		if err != nil {
			b.Fatalf("%s not Ready: %v", name, err)
		}
		ready += time.Since(created)
		sent := time.Now()
		a := request(b, gatewayAddr(b, "edge-b"), name+"."+ns+".example.com")
		if a.code != http.StatusOK || !strings.HasSuffix(a.body, "in edge-b") {
			b.Fatalf("%s: %d %q, want an answer from edge-b", name, a.code, a.body)
		}
		answer += time.Since(sent)
		total += time.Since(created)
		// Each cold start on an idle cluster: the replica goes with its
		// Service, and frees edge-b's capacity.
		b.StopTimer()
		if err := k8sClient.Delete(ctx, svc, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
			b.Fatal(err)
		}
		err = k8stest.Eventually(ctx, long, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
			var pods corev1.PodList
			if err := k8sClient.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"serving.knative.dev/service": name}); err != nil {
				return false, err
			}
			return len(pods.Items) == 0, nil
		})
		if err != nil {
			b.Fatalf("%s's pods outlived it: %v", name, err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(ready.Seconds()/n, "s-create-to-ready")
	b.ReportMetric(answer.Seconds()/n, "s-scale-from-zero")
	b.ReportMetric(total.Seconds()/n, "s-create-to-first-answer")
}
