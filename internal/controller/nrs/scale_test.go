package nrs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kantai.dev/kantai/internal/k8stest"
)

const (
	scaleNodes       = 100
	scalePodsPerNode = 10
)

var (
	scaleNodesOnce sync.Once
	scaleNodeNames []string
)

// BenchmarkConverge100Nodes10PodsEach creates one NodeReplicaSet asking for
// 10 pods on each of 100 kwok nodes; kube-scheduler places the pods and kwok
// makes them ready. It reports the time until all 1000 pods are ready and
// how many pods were created beyond the 1000 (must be 0).
func BenchmarkConverge100Nodes10PodsEach(b *testing.B) {
	requireEnv(b)
	scaleNodesOnce.Do(func() { scaleNodeNames = createKwokNodes(b, "scale", scaleNodes) })
	want := scaleNodes * scalePodsPerNode
	var total, totalCreated time.Duration
	extraPods := 0
	iters := 0
	for i := 0; b.Loop(); i++ {
		iters++
		b.StopTimer()
		ns := newNamespace(b)
		rec := recordPods(b, ns)
		replicas := map[string]int32{}
		for _, n := range scaleNodeNames {
			replicas[n] = scalePodsPerNode
		}
		set := kwokSet(ns, "scale", replicas)
		b.StartTimer()

		start := time.Now()
		if err := k8sClient.Create(context.Background(), set); err != nil {
			b.Fatal(err)
		}
		var allCreated time.Duration
		err := k8stest.Eventually(context.Background(), 10*time.Minute, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
			if allCreated == 0 {
				if created, _ := rec.snapshot(); created >= want {
					allCreated = time.Since(start)
				}
			}
			s := getSet(b, ns, "scale")
			return s.Status.ReadyReplicas == int32(want) && s.Status.Replicas == int32(want), nil
		})
		elapsed := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("not converged: %v", err)
		}
		// Let late duplicates, if any, show up before counting.
		time.Sleep(2 * time.Second)
		created, _ := rec.snapshot()
		extra := created - want
		var pods corev1.PodList
		if err := k8sClient.List(context.Background(), &pods, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		for _, p := range pods.Items {
			if node := p.Labels["nodereplicaset.kantai.dev/node"]; p.Spec.NodeName != node {
				b.Errorf("pod %s on %q, pinned to %q", p.Name, p.Spec.NodeName, node)
			}
		}
		if extra != 0 {
			var evs eventsv1.EventList
			_ = k8sClient.List(context.Background(), &evs, client.InNamespace(ns))
			for _, e := range evs.Items {
				if e.Type != corev1.EventTypeNormal {
					b.Logf("event %s %s: %s", e.Reason, e.Regarding.Name, e.Note)
				}
			}
		}
		if len(pods.Items) != want || extra != 0 {
			b.Errorf("%d pods exist, %d created in total; want %d and 0 extra", len(pods.Items), created, want)
		}
		b.Logf("iteration %d: all %d pods created after %v, all ready after %v; pods created %d, extra %d",
			i, want, allCreated.Round(time.Millisecond), elapsed.Round(time.Millisecond), created, extra)
		total += elapsed
		totalCreated += allCreated
		extraPods += extra

		// Clean up (not timed): the garbage collector deletes the pods and
		// kwok removes them.
		if err := k8sClient.Delete(context.Background(), set); err != nil {
			b.Fatal(err)
		}
		_ = k8stest.Eventually(context.Background(), 5*time.Minute, 500*time.Millisecond, func(ctx context.Context) (bool, error) {
			var l corev1.PodList
			err := k8sClient.List(ctx, &l, client.InNamespace(ns))
			return err == nil && len(l.Items) == 0, err
		})
		b.StartTimer()
	}
	n := float64(iters)
	b.ReportMetric(total.Seconds()/n, "s-to-ready")
	b.ReportMetric(totalCreated.Seconds()/n, "s-to-created")
	b.ReportMetric(float64(extraPods)/n, "extra-pods")
	b.ReportMetric(float64(want)/(total.Seconds()/n), "pods/s")
	b.ReportMetric(0, "ns/op")
}
