package nodegw_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"knative.dev/networking/pkg/apis/networking"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/k8stest"
	"kantai.dev/kantai/internal/kube/nodegw"
	"kantai.dev/kantai/internal/latency"
	"kantai.dev/kantai/internal/nodeapi"
)

// Generous bounds: the machine is shared and has two cores.
const (
	long = 60 * time.Second
	// activation is the daemon's activation timeout: a request waits that
	// long for a replica, then gets 504.
	activation = 8 * time.Second
)

// Addresses the cluster objects name. The API server refuses loopback
// endpoints, so they name documentation addresses (TEST-NET-1, never
// routed) and the daemon dials them through dialMap, onto loopback.
const (
	podIPA   = "192.0.2.1" // the daemon's pod, on node A
	podIPB   = "192.0.2.2" // the peer gateway's pod, on node B
	replicaA = "192.0.2.10"
)

// dialMap maps the addresses the cluster names to loopback ones; anything
// else fails to dial, so nothing leaves loopback.
type dialMap struct {
	mu sync.Mutex
	m  map[string]string
}

func (d *dialMap) set(from, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[from] = to
}

func (d *dialMap) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	to, ok := d.m[addr]
	d.mu.Unlock()
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("no loopback address for %s", addr)}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}

// backend is a replica: it names itself and echoes the revision header
// the Ingress split appends.
func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s rev=%s", name, r.Header.Get("Knative-Serving-Revision"))
	}))
	t.Cleanup(s.Close)
	return s
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// TestDaemon runs the daemon of node A in process, as the ServiceAccount
// of config/gateway, against the API server, and checks what it serves
// as the cluster's objects come and go.
func TestDaemon(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	ns := fmt.Sprintf("gw-%04d", rand.IntN(10000))
	nodeA, nodeB := "node-a-"+ns, "node-b-"+ns
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeA}})
	create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeB}})

	dm := &dialMap{m: map[string]string{}}
	r1, r2 := backend(t, "r1"), backend(t, "r2")
	dm.set(replicaA+":8012", hostOf(r1))

	// The gateway on node B, as far as latency goes: its agent.
	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := latency.New(latency.Config{Node: nodeB, Listener: peerLn, Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	peerCtx, stopPeer := context.WithCancel(ctx)
	peerDone := make(chan error, 1)
	go func() { peerDone <- peer.Run(peerCtx) }()
	t.Cleanup(func() { stopPeer(); <-peerDone })
	dm.set(podIPB+":9696", peerLn.Addr().String())

	token := "s3cret-" + ns
	d, err := nodegw.New(nodegw.Config{
		Node: nodeA, PodIP: podIPA,
		External: "127.0.0.1:0", Internal: "127.0.0.1:0", Agent: "127.0.0.1:0", NodeAPI: "127.0.0.1:0", Metrics: "127.0.0.1:0",
		Token: token, Namespace: kantaiNamespace, Rest: saConfig,
		ActivationTimeout: activation, LatencyInterval: 200 * time.Millisecond, DrainTimeout: 10 * time.Second,
		Dial: dm.dial, Log: testLog(),
		// The engine under test: KANTAI_GATEWAY_ENGINE=net/http runs the
		// test on the net/http engine (default: gateway.DefaultEngine).
		Engine: os.Getenv(gateway.EnvEngine),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(runCtx) }()
	stopped := false
	shutdown := func() {
		if stopped {
			return
		}
		stopped = true
		stop()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(long):
			t.Errorf("the daemon did not stop within %v", long)
		}
	}
	t.Cleanup(shutdown)
	api := d.Addr(nodegw.ListenerNodeAPI)
	nc := nodeapi.NewClient(token, 10*time.Second)

	// Revision r1 of kantai's class, ready on node A; an Ingress of
	// another class first, then kantai's for r1.
	createRevision(t, ns, "r1", autoscale.ClassKantai)
	create(t, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r1-private", Labels: map[string]string{nodegw.LabelServiceType: nodegw.ServiceTypePrivate}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8012)}}},
	})
	create(t, privateSlice(ns, "r1", "r1-private-1", nodeA))
	createIngress(t, ns, "other", "istio.ingress.networking.knative.dev", "other."+ns+".example.com", "r1")
	hello := createIngress(t, ns, "hello", ingress.Class, "hello."+ns+".example.com", "r1")

	st := waitState(t, nc, api, "the Ingress hello held", func(st nodeapi.State) bool {
		return st.Ingresses[ns+"/hello"] == hello.Generation
	})
	if _, ok := st.Ingresses[ns+"/other"]; ok {
		t.Errorf("an Ingress of another class is held: %v", st.Ingresses)
	}
	if st.Node != nodeA {
		t.Errorf("State.Node = %q, want %q", st.Node, nodeA)
	}

	ext, in := d.Addr(nodegw.ListenerExternal), d.Addr(nodegw.ListenerInternal)
	t.Run("routes by host", func(t *testing.T) {
		resp := eventuallyGet(t, ext, "hello."+ns+".example.com", http.StatusOK)
		if want := "r1 rev=r1"; resp.body != want {
			t.Errorf("body %q, want %q (the replica, with the split's appended header)", resp.body, want)
		}
		if resp.header.Get(gateway.HeaderNode) != nodeA || resp.header.Get(gateway.HeaderReplica) != "r1-pod" {
			t.Errorf("served by %s on %s, want r1-pod on %s", resp.header.Get(gateway.HeaderReplica), resp.header.Get(gateway.HeaderNode), nodeA)
		}
		if r := get(t, in, "HELLO."+ns+".example.com:80"); r.code != http.StatusOK || r.body != "r1 rev=r1" {
			t.Errorf("internal listener: %d %q", r.code, r.body)
		}
		if r := get(t, in, "hello."+ns+".svc.cluster.local"); r.code != http.StatusOK || r.body != "r1 rev=r1" {
			t.Errorf("cluster-local host on the internal listener: %d %q", r.code, r.body)
		}
		if r := get(t, ext, "hello."+ns+".svc.cluster.local"); r.code != http.StatusNotFound {
			t.Errorf("cluster-local host on the external listener: %d %q, want 404", r.code, r.body)
		}
		if r := get(t, ext, "nobody."+ns+".example.com"); r.code != http.StatusNotFound {
			t.Errorf("unknown host: %d %q, want 404", r.code, r.body)
		}
		if r := get(t, ext, "other."+ns+".example.com"); r.code != http.StatusNotFound {
			t.Errorf("host of another class's Ingress: %d %q, want 404", r.code, r.body)
		}
	})

	t.Run("node API", func(t *testing.T) {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x"} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+api+nodeapi.PathState, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("state with Authorization %q: %s, want 401", auth, resp.Status)
			}
		}
		if err := nc.SetProcessing(ctx, api, nodeapi.Processing{Revision: ns + "/nope", PerNode: map[string]float64{nodeA: 0.01}}); err == nil ||
			!strings.Contains(err.Error(), nodeapi.ErrUnknownRevision.Error()) {
			t.Errorf("processing of an unknown revision: err = %v, want %q", err, nodeapi.ErrUnknownRevision)
		}
		if err := nc.SetProcessing(ctx, api, nodeapi.Processing{Revision: ns + "/r1", PerNode: map[string]float64{nodeA: -1}}); err == nil {
			t.Error("a negative processing time was accepted")
		}
		if err := nc.SetProcessing(ctx, api, nodeapi.Processing{Revision: ns + "/r1", PerNode: map[string]float64{nodeA: 0.01}}); err != nil {
			t.Errorf("processing of r1: %v", err)
		}
		st, err := nc.State(ctx, api)
		if err != nil {
			t.Fatal(err)
		}
		if w := stats(st, ns+"/r1"); w == nil || w.Requests == 0 {
			t.Errorf("stats of r1 = %+v, want requests counted", w)
		}
		// Metrics are served without the token.
		resp, err := http.Get("http://" + d.Addr(nodegw.ListenerMetrics) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "kantai_gateway_requests_total") {
			t.Errorf("metrics: %s, kantai_gateway_requests_total present: %v", resp.Status, strings.Contains(string(body), "kantai_gateway_requests_total"))
		}
	})

	t.Run("other autoscaler class through its Service", func(t *testing.T) {
		// A KPA revision goes to its public Service (the activator or its
		// pods, through kube-proxy), never to its private endpoints.
		createRevision(t, ns, "r2", "")
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r2", Labels: map[string]string{nodegw.LabelServiceType: nodegw.ServiceTypePublic}},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8012)}}},
		}
		create(t, svc)
		if svc.Spec.ClusterIP == "" {
			t.Fatal("no ClusterIP allocated")
		}
		dm.set(net.JoinHostPort(svc.Spec.ClusterIP, "80"), hostOf(r2))
		create(t, privateSlice(ns, "r2", "r2-private-1", nodeA)) // would answer "r1"
		createIngress(t, ns, "hello2", ingress.Class, "hello2."+ns+".example.com", "r2")
		resp := eventuallyGet(t, ext, "hello2."+ns+".example.com", http.StatusOK)
		if resp.body != "r2 rev=r2" || resp.header.Get(gateway.HeaderReplica) != "service/r2" {
			t.Errorf("answer %q from %q, want %q from service/r2", resp.body, resp.header.Get(gateway.HeaderReplica), "r2 rev=r2")
		}
	})

	t.Run("latency peers from the headless Service", func(t *testing.T) {
		err := k8sClient.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: kantaiNamespace, Name: nodegw.DefaultPeersService},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{
				{Name: nodegw.PortLatency, Port: 9696}, {Name: nodegw.PortNodeAPI, Port: 9697}}},
		})
		if err != nil && !apierrors.IsAlreadyExists(err) { // -count=n
			t.Fatal(err)
		}
		create(t, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: kantaiNamespace, Name: "peers-" + ns, Labels: map[string]string{nodegw.LabelServiceName: nodegw.DefaultPeersService}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{podIPA}, NodeName: ptr.To(nodeA)},
				{Addresses: []string{podIPB}, NodeName: ptr.To(nodeB)},
			},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To(nodegw.PortLatency), Port: ptr.To[int32](9696)},
				{Name: ptr.To(nodegw.PortNodeAPI), Port: ptr.To[int32](9697)}},
		})
		st := waitState(t, nc, api, "an RTT to node B", func(st nodeapi.State) bool { return st.RTT[nodeB].Samples > 0 })
		if _, ok := st.RTT[nodeA]; ok {
			t.Errorf("the agent probes its own node: %v", st.RTT)
		}
	})

	t.Run("no ready replica: requests wait, then 504", func(t *testing.T) {
		if err := k8sClient.Delete(ctx, &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r1-private-1"}}); err != nil {
			t.Fatal(err)
		}
		res, start := waitBuffered(t, nc, api, ext, "hello."+ns+".example.com", ns+"/r1", nil)
		r := <-res
		if r.code != http.StatusGatewayTimeout {
			t.Errorf("buffered request: %d %q, want 504", r.code, r.body)
		}
		if el := time.Since(start); el < activation {
			t.Errorf("504 after %v, before the activation timeout %v", el, activation)
		}
	})

	t.Run("a replica comes: the waiting request is served", func(t *testing.T) {
		res, _ := waitBuffered(t, nc, api, ext, "hello."+ns+".example.com", ns+"/r1", func() {
			create(t, privateSlice(ns, "r1", "r1-private-2", nodeA))
		})
		if r := <-res; r.code != http.StatusOK || r.body != "r1 rev=r1" {
			t.Errorf("request waiting for a replica: %d %q, want 200 from r1", r.code, r.body)
		}
	})

	// SIGTERM: the daemon drains and stops.
	shutdown()
	if _, err := net.DialTimeout("tcp", ext, time.Second); err == nil {
		t.Error("the external listener still accepts after shutdown")
	}
}

func testLog() *slog.Logger {
	if os.Getenv("NODEGW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func create(t *testing.T, o client.Object) {
	t.Helper()
	if err := k8sClient.Create(context.Background(), o); err != nil {
		t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
	}
}

// createRevision creates a Revision and its PodAutoscaler of the given
// class ("" for none: Knative's KPA).
func createRevision(t *testing.T, ns, name, class string) {
	t.Helper()
	create(t, &servingv1.Revision{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"serving.knative.dev/service": "hello"}},
		Spec: servingv1.RevisionSpec{
			PodSpec:        corev1.PodSpec{Containers: []corev1.Container{{Image: "example.local/hello:v1"}}},
			TimeoutSeconds: ptr.To[int64](30),
		},
	})
	pa := &asv1alpha1.PodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: asv1alpha1.PodAutoscalerSpec{ProtocolType: networking.ProtocolHTTP1,
			ScaleTargetRef: corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name + "-deployment"}},
	}
	if class != "" {
		pa.Annotations = map[string]string{autoscale.AnnotationClass: class}
	}
	create(t, pa)
}

func createIngress(t *testing.T, ns, name, class, host, rev string) *netv1alpha1.Ingress {
	t.Helper()
	ing := &netv1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{networking.IngressClassAnnotationKey: class}},
		Spec: netv1alpha1.IngressSpec{Rules: []netv1alpha1.IngressRule{
			{Hosts: []string{host}, Visibility: netv1alpha1.IngressVisibilityExternalIP, HTTP: split(ns, rev)},
			// As Knative's Route writes it: the in-cluster names of the
			// Service, answered by the internal listener only.
			{Hosts: []string{name + "." + ns, name + "." + ns + ".svc.cluster.local"}, Visibility: netv1alpha1.IngressVisibilityClusterLocal, HTTP: split(ns, rev)},
		}},
	}
	create(t, ing)
	if ing.Generation == 0 {
		t.Fatalf("Ingress %s has no generation", name)
	}
	return ing
}

func split(ns, rev string) *netv1alpha1.HTTPIngressRuleValue {
	return &netv1alpha1.HTTPIngressRuleValue{Paths: []netv1alpha1.HTTPIngressPath{{Splits: []netv1alpha1.IngressBackendSplit{{
		IngressBackend: netv1alpha1.IngressBackend{ServiceNamespace: ns, ServiceName: rev, ServicePort: intstr.FromInt32(80)},
		Percent:        100,
		AppendHeaders:  map[string]string{"Knative-Serving-Revision": rev},
	}}}}}
}

// privateSlice is the EndpointSlice of rev's private Service with one
// ready pod on node, at replicaA.
func privateSlice(ns, rev, name, node string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			nodegw.LabelServiceName: rev + nodegw.PrivateSuffix, nodegw.LabelServiceType: nodegw.ServiceTypePrivate}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{replicaA}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: rev + "-pod"},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To(nodegw.PortHTTP), Port: ptr.To[int32](8012)}},
	}
}

func waitState(t *testing.T, nc *nodeapi.Client, api, what string, cond func(nodeapi.State) bool) nodeapi.State {
	t.Helper()
	var st nodeapi.State
	err := k8stest.Eventually(context.Background(), long, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		var err error
		st, err = nc.State(ctx, api)
		if err != nil {
			return false, err
		}
		return cond(st), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last state: ingresses %v, problems %v, rtt %v", what, err, st.Ingresses, st.Problems, st.RTT)
	}
	return st
}

func stats(st nodeapi.State, rev string) *gateway.RevisionStats {
	for i := range st.Stats.Revisions {
		if st.Stats.Revisions[i].Revision == rev {
			return &st.Stats.Revisions[i]
		}
	}
	return nil
}

type answer struct {
	code   int
	body   string
	header http.Header
	err    error
}

var httpClient = &http.Client{Timeout: long}

func get(t *testing.T, addr, host string) answer {
	t.Helper()
	a := fetch(context.Background(), addr, host)
	if a.err != nil {
		t.Fatalf("GET %s at %s: %v", host, addr, a.err)
	}
	return a
}

func fetch(ctx context.Context, addr, host string) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return answer{err: err}
	}
	req.Host = host
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: string(body), header: resp.Header, err: err}
}

// eventuallyGet asks until the answer has the status code: the route
// table, the revision and its replicas reach the gateway in any order.
func eventuallyGet(t *testing.T, addr, host string, code int) answer {
	t.Helper()
	var a answer
	err := k8stest.Eventually(context.Background(), long, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		a = fetch(ctx, addr, host)
		return a.err == nil && a.code == code, a.err
	})
	if err != nil {
		t.Fatalf("GET %s: want %d: %v; last answer %d %q", host, code, err, a.code, a.body)
	}
	return a
}

// waitBuffered sends requests for host until one waits at the gateway for
// a replica of rev (Stats says one is waiting), calls then (if not nil),
// and returns the channel its answer will come on and when it was sent.
// Answers that come before it waits (the gateway did not yet see the
// replicas go) are 200s, and a new request is sent.
func waitBuffered(t *testing.T, nc *nodeapi.Client, api, addr, host, rev string, then func()) (<-chan answer, time.Time) {
	t.Helper()
	deadline := time.Now().Add(long)
	for time.Now().Before(deadline) {
		res := make(chan answer, 1)
		start := time.Now()
		go func() { res <- fetch(context.Background(), addr, host) }()
		for {
			st, err := nc.State(context.Background(), api)
			if err != nil {
				t.Fatal(err)
			}
			if w := stats(st, rev); w != nil && w.Waiting > 0 {
				if then != nil {
					then()
				}
				return res, start
			}
			select {
			case a := <-res:
				if a.err != nil || a.code != http.StatusOK {
					t.Fatalf("answer before waiting: %d %q %v", a.code, a.body, a.err)
				}
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
	}
	t.Fatalf("no request for %s waited within %v", host, long)
	return nil, time.Time{}
}

// TestRBACIsReadOnly: the gateway's ServiceAccount reads what the daemon
// watches and can neither write nor read Secrets, so TestDaemon, which
// runs as it, proves the ClusterRole is enough and no more than reading.
func TestRBACIsReadOnly(t *testing.T) {
	requireEnv(t)
	ctx := context.Background()
	c, err := client.New(saConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []client.ObjectList{&netv1alpha1.IngressList{}, &servingv1.RevisionList{}, &asv1alpha1.PodAutoscalerList{},
		&discoveryv1.EndpointSliceList{}, &corev1.NodeList{}, &corev1.ServiceList{}} {
		if err := c.List(ctx, l); err != nil {
			t.Errorf("listing %T as %s: %v", l, serviceAccount, err)
		}
	}
	if err := c.List(ctx, &corev1.SecretList{}, client.InNamespace(kantaiNamespace)); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets: err = %v, want Forbidden", err)
	}
	if err := c.List(ctx, &corev1.PodList{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing Pods: err = %v, want Forbidden", err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: kantaiNamespace, Name: "nope"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if err := c.Create(ctx, svc); !apierrors.IsForbidden(err) {
		t.Errorf("creating a Service: err = %v, want Forbidden", err)
	}
	ing := &netv1alpha1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: kantaiNamespace, Name: "nope"}}
	if err := c.Status().Update(ctx, ing); !apierrors.IsForbidden(err) {
		t.Errorf("writing an Ingress's status: err = %v, want Forbidden", err)
	}
}
