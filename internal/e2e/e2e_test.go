package e2e_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"knative.dev/networking/pkg/apis/networking"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/pkg/apis"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/k8stest"
	"kantai.dev/kantai/internal/nodeapi"
)

const long = 3 * time.Minute

// newNamespace creates a namespace for one test.
func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// createService creates a Knative Service running the built-in function
// with TARGET=target and the given template annotations.
func createService(t testing.TB, ns, name, target string, ann map[string]string) {
	t.Helper()
	svc := k8stest.KnativeService(ns, name, ann, map[string]string{"TARGET": target})
	if err := k8sClient.Create(context.Background(), svc); err != nil {
		t.Fatalf("creating Service %s: %v", name, err)
	}
	// The nodes' capacity is shared by every test: give it back.
	t.Cleanup(func() {
		_ = k8sClient.Delete(context.Background(), svc, client.PropagationPolicy(metav1.DeletePropagationBackground))
	})
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
	// One pod in the end (the control step may move a replica, making
	// the new one before it stops the old one).
	var pods corev1.PodList
	err = k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"serving.knative.dev/revision": "pods-00001"}); err != nil {
			return false, err
		}
		return len(pods.Items) == 1 && pods.Items[0].DeletionTimestamp == nil && pods.Items[0].Status.PodIP != "", nil
	})
	if err != nil {
		t.Fatalf("%d pods, want 1 running: %v", len(pods.Items), err)
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

// gatewayAddr is the loopback address of node's gateway pod (its external
// listener's host).
func gatewayAddr(t testing.TB, node string) string {
	t.Helper()
	addr, ok := lookupGateway(node)
	if !ok {
		t.Fatalf("no running gateway pod on %s", node)
	}
	return addr
}

type answer struct {
	code       int
	body, node string
}

func request(t testing.TB, gw, host string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+gw+":18080/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("request to %s via %s: %v", host, gw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: strings.TrimSpace(string(body)), node: resp.Header.Get("X-Kantai-Node")}
}

// TestServiceThroughGateways is kantai on Kubernetes end to end: a
// Knative Service of kantai's classes, at initial-scale 0, becomes Ready
// through the gateways' reports; a request entering at edge-a's gateway
// is buffered, the leader sees it waiting there and places a replica on
// edge-a, and the request is answered by it. A request entering at
// edge-b is answered too, by a replica within 10 ms.
func TestServiceThroughGateways(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	created := time.Now()
	createService(t, ns, "hello", "Konnichiwa", map[string]string{"autoscaling.knative.dev/initial-scale": "0"})
	svc := &servingv1.Service{}
	err := k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, "hello"), svc); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return svc.IsReady(), nil
	})
	if err != nil {
		t.Fatalf("Service not Ready: %v (conditions %+v)", err, svc.Status.Conditions)
	}
	ready := time.Since(created)
	var set kantaiv1alpha1.NodeReplicaSet
	if err := k8sClient.Get(ctx, k8stest.Key(ns, "hello-00001"), &set); err != nil {
		t.Fatal(err)
	}
	for node, n := range set.Spec.Replicas {
		if n != 0 {
			t.Fatalf("initial-scale 0 but %d replicas on %s", n, node)
		}
	}

	host := "hello." + ns + ".example.com"
	start := time.Now()
	a := request(t, gatewayAddr(t, "edge-a"), host)
	first := time.Since(start)
	if a.code != http.StatusOK || !strings.HasPrefix(a.body, "Konnichiwa from hello-00001") || !strings.HasSuffix(a.body, "in edge-a") {
		t.Fatalf("first request at edge-a: %d %q (node %s), want Konnichiwa from a replica in edge-a", a.code, a.body, a.node)
	}
	t.Logf("Service Ready %v after create (no replica); first request at edge-a answered after %v (scale from zero at the origin)",
		ready.Round(time.Millisecond), first.Round(time.Millisecond))
	if err := k8sClient.Get(ctx, k8stest.Key(ns, "hello-00001"), &set); err != nil {
		t.Fatal(err)
	}
	if set.Spec.Replicas["edge-a"] < 1 {
		t.Errorf("NodeReplicaSet replicas %v, want one on edge-a, where the demand came from", set.Spec.Replicas)
	}

	b := request(t, gatewayAddr(t, "edge-b"), host)
	if b.code != http.StatusOK || !strings.HasPrefix(b.body, "Konnichiwa from") {
		t.Fatalf("request at edge-b: %d %q", b.code, b.body)
	}
	t.Logf("request at edge-b: %q", b.body)
	if strings.HasSuffix(b.body, "in cloud") {
		t.Errorf("request at edge-b served in the cloud (30 ms away) though edge-a's replica is 10 ms away: %q", b.body)
	}
	if u := request(t, gatewayAddr(t, "cloud"), "nobody."+ns+".example.com"); u.code != http.StatusNotFound {
		t.Errorf("unknown host: %d %q, want 404", u.code, u.body)
	}
}

// TestRollout: a new template makes revision 2; once it is Ready the Route
// sends the Service's host to it, through the same Ingress at a new
// generation that every gateway must serve before it is Ready again;
// Knative then marks revision 1 unreachable and kantai takes its
// replicas away, min-scale notwithstanding.
func TestRollout(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	// min-scale 1 on both revisions: only Knative marking revision 1
	// unreachable lets kantai take its last replica away.
	createService(t, ns, "roll", "One", map[string]string{"autoscaling.knative.dev/min-scale": "1"})
	waitServiceReady(t, ns, "roll", "roll-00001")
	host := "roll." + ns + ".example.com"
	if a := request(t, gatewayAddr(t, "edge-b"), host); a.code != http.StatusOK || !strings.HasPrefix(a.body, "One from roll-00001") {
		t.Fatalf("before the rollout: %d %q", a.code, a.body)
	}

	updateService(t, ns, "roll", "Two", nil)
	waitServiceReady(t, ns, "roll", "roll-00002")
	if a := request(t, gatewayAddr(t, "edge-b"), host); a.code != http.StatusOK || !strings.HasPrefix(a.body, "Two from roll-00002") {
		t.Fatalf("after the rollout: %d %q, want Two from a replica of roll-00002", a.code, a.body)
	}
	// Revision 1 is no longer routed: Knative marks its PodAutoscaler
	// unreachable and its replicas go despite min-scale 1; revision 2
	// keeps its one.
	count := func(rev string) (int32, error) {
		var set kantaiv1alpha1.NodeReplicaSet
		if err := k8sClient.Get(ctx, k8stest.Key(ns, rev), &set); err != nil {
			return 0, err
		}
		var n int32
		for _, c := range set.Spec.Replicas {
			n += c
		}
		return n, nil
	}
	pa := &asv1alpha1.PodAutoscaler{}
	err := k8stest.Eventually(ctx, long, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, "roll-00001"), pa); err != nil {
			return false, err
		}
		n, err := count("roll-00001")
		return pa.Spec.Reachability == asv1alpha1.ReachabilityUnreachable && n == 0, client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("revision 1 (reachability %q) kept replicas after it stopped being routed: %v", pa.Spec.Reachability, err)
	}
	if n, err := count("roll-00002"); err != nil || n != 1 {
		t.Errorf("revision 2 has %d replicas (%v), want its min-scale 1", n, err)
	}
}

// updateService gives the Service a new template (image v2, TARGET=target),
// which makes a new revision, and the traffic block when not nil.
func updateService(t *testing.T, ns, name, target string, traffic []any) {
	t.Helper()
	svc := &unstructured.Unstructured{}
	svc.SetAPIVersion("serving.knative.dev/v1")
	svc.SetKind("Service")
	if err := k8sClient.Get(context.Background(), k8stest.Key(ns, name), svc); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedSlice(svc.Object, []any{map[string]any{
		"image": "example.local/hello:v2",
		"env":   []any{map[string]any{"name": "TARGET", "value": target}},
	}}, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	if traffic != nil {
		if err := unstructured.SetNestedSlice(svc.Object, traffic, "spec", "traffic"); err != nil {
			t.Fatal(err)
		}
	}
	if err := k8sClient.Update(context.Background(), svc); err != nil {
		t.Fatalf("updating Service %s: %v", name, err)
	}
}

// waitServiceReady waits until the Service is Ready with rev as its
// latest ready revision.
func waitServiceReady(t *testing.T, ns, name, rev string) {
	t.Helper()
	svc := &servingv1.Service{}
	err := k8stest.Eventually(context.Background(), long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, name), svc); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		return svc.IsReady() && svc.Status.LatestReadyRevisionName == rev && svc.Status.ObservedGeneration == svc.Generation, nil
	})
	if err != nil {
		t.Fatalf("Service %s not Ready at %s: %v (conditions %+v)", name, rev, err, svc.Status.Conditions)
	}
}

// TestGatewayOnEveryNode: the DaemonSet of config/gateway yields one
// gateway per node, the tainted one included, each answering its node API
// (with the shared token) as its own node, and all three listed as peers.
func TestGatewayOnEveryNode(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	api := nodeapi.NewClient(nodeToken, 5*time.Second)
	api.HTTP.Transport = &http.Transport{DialContext: addrs.Dialer((&net.Dialer{}).DialContext)}
	var pods corev1.PodList
	err := k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.List(ctx, &pods, client.InNamespace(kantaiNamespace),
			client.MatchingLabels{"app.kubernetes.io/name": "kantai-gateway"}); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return len(pods.Items) == len(nodes), nil
	})
	if err != nil {
		t.Fatalf("%d gateway pods, want %d running: %v", len(pods.Items), len(nodes), err)
	}
	seen := map[string]bool{}
	for _, p := range pods.Items {
		seen[p.Spec.NodeName] = true
		st, err := api.State(ctx, net.JoinHostPort(p.Status.PodIP, "9697"))
		if err != nil {
			t.Errorf("node API of the gateway on %s: %v", p.Spec.NodeName, err)
			continue
		}
		if st.Node != p.Spec.NodeName {
			t.Errorf("the gateway on %s says it is on %q", p.Spec.NodeName, st.Node)
		}
	}
	for _, n := range nodes {
		if !seen[n] {
			t.Errorf("no gateway on %s", n)
		}
	}
}

// TestSplit: a Service whose traffic block sends 90 % to revision 1 and
// 10 % to revision 2 splits 100 requests at a gateway exactly so.
func TestSplit(t *testing.T) {
	requireEnv(t)
	ns := newNamespace(t)
	createService(t, ns, "split", "One", map[string]string{"autoscaling.knative.dev/min-scale": "1"})
	waitServiceReady(t, ns, "split", "split-00001")
	updateService(t, ns, "split", "Two", []any{
		map[string]any{"revisionName": "split-00001", "percent": int64(90)},
		map[string]any{"latestRevision": true, "percent": int64(10)},
	})
	waitServiceReady(t, ns, "split", "split-00002")
	gw := gatewayAddr(t, "edge-a")
	host := "split." + ns + ".example.com"
	counts := map[string]int{}
	for range 100 {
		a := request(t, gw, host)
		if a.code != http.StatusOK {
			t.Fatalf("%d %q", a.code, a.body)
		}
		counts[strings.Fields(a.body)[0]]++
	}
	if counts["One"] != 90 || counts["Two"] != 10 {
		t.Errorf("100 requests split %v, want One 90, Two 10", counts)
	}
}

// TestRestartUnderLoad: while clients send requests through edge-a's
// gateway, the revision scales down from three replicas to one and the
// gateway's pod is deleted and replaced by the DaemonSet. Every request
// the gateways accepted is answered 200: scale-down drains, the old
// gateway drains; a client sees only a refused connection (no gateway
// listening between the two pods) or a documented 503 + Retry-After (the
// old gateway draining, the new one not knowing the revision yet).
func TestRestartUnderLoad(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createService(t, ns, "load", "Load", map[string]string{
		"autoscaling.knative.dev/initial-scale": "3", "autoscaling.knative.dev/min-scale": "1",
		"autoscaling.knative.dev/window": "10s",
	})
	waitServiceReady(t, ns, "load", "load-00001")
	host := "load." + ns + ".example.com"

	var (
		mu                       sync.Mutex
		answered, refused, other int
		turned                   int
		lost                     []string
	)
	addr := gatewayAddr(t, "edge-a")
	current := func() string { mu.Lock(); defer mu.Unlock(); return addr }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+current()+":18080/", nil)
				req.Host = host
				resp, err := c.Do(req)
				if err != nil {
					mu.Lock()
					if errors.Is(err, syscall.ECONNREFUSED) {
						refused++
					} else {
						lost = append(lost, err.Error())
					}
					mu.Unlock()
					// The gateway is being replaced: find its new pod.
					if a, ok := lookupGateway("edge-a"); ok {
						mu.Lock()
						addr = a
						mu.Unlock()
					}
					time.Sleep(20 * time.Millisecond) // back off before retrying, as a client would
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusOK:
					answered++
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
					// A documented turn-away (a gateway draining, or one
					// just started that does not know the revision yet):
					// nothing was done, the client may retry.
					turned++
				default:
					other++
					lost = append(lost, resp.Status)
				}
				mu.Unlock()
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// Replace edge-a's gateway while the load runs.
	var pods corev1.PodList
	if err := k8sClient.List(ctx, &pods, client.InNamespace(kantaiNamespace), client.MatchingLabels{"app.kubernetes.io/name": "kantai-gateway"}); err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.Spec.NodeName == "edge-a" {
			if err := k8sClient.Delete(ctx, p); err != nil {
				t.Fatal(err)
			}
			err := k8stest.Eventually(ctx, long, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
				var now corev1.PodList
				if err := k8sClient.List(ctx, &now, client.InNamespace(kantaiNamespace), client.MatchingLabels{"app.kubernetes.io/name": "kantai-gateway"}); err != nil {
					return false, err
				}
				for _, q := range now.Items {
					if q.Spec.NodeName == "edge-a" && q.UID != p.UID && q.Status.PodIP != "" {
						return true, nil
					}
				}
				return false, nil
			})
			if err != nil {
				t.Fatalf("no new gateway on edge-a: %v", err)
			}
		}
	}
	// The revision scales down to its one replica under the same load.
	err := k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := k8sClient.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"serving.knative.dev/revision": "load-00001"}); err != nil {
			return false, err
		}
		mu.Lock()
		n := answered
		mu.Unlock()
		return len(pods.Items) == 1 && n > 100, nil
	})
	if err != nil {
		t.Fatalf("no scale-down to one replica under load: %v", err)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("answered %d; while the gateway was replaced: refused %d, turned away with 503 + Retry-After %d", answered, refused, turned)
	if len(lost) > 0 || other > 0 {
		t.Errorf("%d requests lost or failed after the gateway took them: %v", len(lost), lost)
	}
}

// lookupGateway returns the loopback address of node's running gateway
// pod, if there is one.
func lookupGateway(node string) (string, bool) {
	var pods corev1.PodList
	if err := k8sClient.List(context.Background(), &pods, client.InNamespace(kantaiNamespace),
		client.MatchingLabels{"app.kubernetes.io/name": "kantai-gateway"}); err != nil {
		return "", false
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == node && p.Status.PodIP != "" && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			return addrs.ToLoopback(netip.MustParseAddr(p.Status.PodIP)).String(), true
		}
	}
	return "", false
}

// TestUnsupportedIngress: an Ingress of kantai's class asking for TLS,
// which the gateways do not terminate, gets LoadBalancerReady False
// naming why, and is not served; the other Ingresses are unaffected.
func TestUnsupportedIngress(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := newNamespace(t)
	ing := &netv1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secure",
			Annotations: map[string]string{networking.IngressClassAnnotationKey: ingress.Class}},
		Spec: netv1alpha1.IngressSpec{
			TLS: []netv1alpha1.IngressTLS{{Hosts: []string{"secure." + ns + ".example.com"}, SecretName: "cert", SecretNamespace: ns}},
			Rules: []netv1alpha1.IngressRule{{
				Hosts: []string{"secure." + ns + ".example.com"}, Visibility: netv1alpha1.IngressVisibilityExternalIP,
				HTTP: &netv1alpha1.HTTPIngressRuleValue{Paths: []netv1alpha1.HTTPIngressPath{{Splits: []netv1alpha1.IngressBackendSplit{{
					IngressBackend: netv1alpha1.IngressBackend{ServiceNamespace: ns, ServiceName: "secure-00001", ServicePort: intstr.FromInt32(80)},
					Percent:        100,
				}}}}},
			}},
		},
	}
	if err := k8sClient.Create(ctx, ing); err != nil {
		t.Fatal(err)
	}
	var cond *apis.Condition
	err := k8stest.Eventually(ctx, long, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		if err := k8sClient.Get(ctx, k8stest.Key(ns, "secure"), ing); err != nil {
			return false, err
		}
		cond = ing.Status.GetCondition(netv1alpha1.IngressConditionLoadBalancerReady)
		return ing.Status.ObservedGeneration == ing.Generation && cond != nil && cond.IsFalse(), nil
	})
	if err != nil {
		t.Fatalf("no LoadBalancerReady False: %v (status %+v)", err, ing.Status)
	}
	if cond.Reason != "TLSNotSupported" {
		t.Errorf("LoadBalancerReady False %s %q, want reason TLSNotSupported", cond.Reason, cond.Message)
	}
	if a := request(t, gatewayAddr(t, "edge-a"), "secure."+ns+".example.com"); a.code != http.StatusNotFound {
		t.Errorf("the refused Ingress's host: %d %q, want 404", a.code, a.body)
	}
}
