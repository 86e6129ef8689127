package nodegw

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"knative.dev/networking/pkg/apis/networking"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"

	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/nodeapi"
)

type ep struct {
	addr, node, pod string
	ready           *bool
}

func slice(ns, name, svc string, family discoveryv1.AddressType, port string, portNum int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{LabelServiceName: svc}},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(port), Port: ptr.To(portNum)}},
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.node != "" {
			x.NodeName = ptr.To(e.node)
		}
		if e.pod != "" {
			x.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: e.pod}
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

func TestReadyReplicas(t *testing.T) {
	v4, v6 := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6
	tests := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   []gateway.ReplicaInfo
	}{
		{name: "none"},
		{
			name: "ready endpoints with nodes, sorted by pod",
			slices: []*discoveryv1.EndpointSlice{slice("ns", "s1", "r1-private", v4, "http", 8012,
				ep{addr: "10.1.0.2", node: "b", pod: "r1-b"},
				ep{addr: "10.1.0.1", node: "a", pod: "r1-a", ready: ptr.To(true)})},
			want: []gateway.ReplicaInfo{{Name: "r1-a", Node: "a", Address: "10.1.0.1:8012"}, {Name: "r1-b", Node: "b", Address: "10.1.0.2:8012"}},
		},
		{
			name: "not ready, no node: left out; no pod: named by address",
			slices: []*discoveryv1.EndpointSlice{slice("ns", "s1", "r1-private", v4, "http", 8012,
				ep{addr: "10.1.0.1", node: "a", pod: "r1-a", ready: ptr.To(false)},
				ep{addr: "10.1.0.2", pod: "r1-b"},
				ep{addr: "10.1.0.3", node: "c"})},
			want: []gateway.ReplicaInfo{{Name: "10.1.0.3", Node: "c", Address: "10.1.0.3:8012"}},
		},
		{
			name: "no http port: nothing",
			slices: []*discoveryv1.EndpointSlice{slice("ns", "s1", "r1-private", v4, "http2", 8013,
				ep{addr: "10.1.0.1", node: "a", pod: "r1-a"})},
		},
		{
			name: "dual stack: one replica per pod, IPv4",
			slices: []*discoveryv1.EndpointSlice{
				slice("ns", "a6", "r1-private", v6, "http", 8012, ep{addr: "fd00::1", node: "a", pod: "r1-a"}),
				slice("ns", "z4", "r1-private", v4, "http", 8012, ep{addr: "10.1.0.1", node: "a", pod: "r1-a"}),
			},
			want: []gateway.ReplicaInfo{{Name: "r1-a", Node: "a", Address: "10.1.0.1:8012"}},
		},
		{
			name:   "IPv6 only",
			slices: []*discoveryv1.EndpointSlice{slice("ns", "a6", "r1-private", v6, "http", 8012, ep{addr: "fd00::1", node: "a", pod: "r1-a"})},
			want:   []gateway.ReplicaInfo{{Name: "r1-a", Node: "a", Address: "[fd00::1]:8012"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ReadyReplicas(tt.slices)); diff != "" {
				t.Errorf("ReadyReplicas (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestPeers(t *testing.T) {
	v4 := discoveryv1.AddressTypeIPv4
	got := Peers([]*discoveryv1.EndpointSlice{
		slice("kantai-system", "p1", "kantai-gateway-peers", v4, "latency", 9696,
			ep{addr: "10.0.1.9", node: "a"}, ep{addr: "10.0.1.2", node: "a"}, ep{addr: "10.0.1.3", node: "b", ready: ptr.To(false)},
			ep{addr: "10.0.1.4"}, ep{addr: "10.0.1.5", node: "c"}),
		slice("kantai-system", "p2", "kantai-gateway-peers", v4, "node-api", 9697, ep{addr: "10.0.1.6", node: "d"}),
	})
	want := map[string]string{"a": "10.0.1.2:9696", "c": "10.0.1.5:9696"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Peers (-want,+got):\n%s", diff)
	}
}

func TestServiceReplica(t *testing.T) {
	svc := func(ip string, ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r1"}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
	}
	tests := []struct {
		name string
		svc  *corev1.Service
		want []gateway.ReplicaInfo
	}{
		{name: "missing"},
		{name: "no cluster IP yet", svc: svc("")},
		{name: "headless", svc: svc("None")},
		{name: "port named http", svc: svc("10.0.0.7", corev1.ServicePort{Name: "https", Port: 443}, corev1.ServicePort{Name: "http", Port: 80}),
			want: []gateway.ReplicaInfo{{Name: "service/r1", Node: "me", Address: "10.0.0.7:80"}}},
		{name: "default port 80", svc: svc("10.0.0.7", corev1.ServicePort{Name: "http2", Port: 81}),
			want: []gateway.ReplicaInfo{{Name: "service/r1", Node: "me", Address: "10.0.0.7:80"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ServiceReplica(tt.svc, "me")); diff != "" {
				t.Errorf("ServiceReplica (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestRevisionConfig(t *testing.T) {
	rev := &servingv1.Revision{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r1", Labels: map[string]string{"serving.knative.dev/service": "hello"}},
		Spec: servingv1.RevisionSpec{ContainerConcurrency: ptr.To[int64](4), TimeoutSeconds: ptr.To[int64](60),
			ResponseStartTimeoutSeconds: ptr.To[int64](10)},
	}
	tests := []struct {
		name   string
		rev    *servingv1.Revision
		direct bool
		want   gateway.RevisionConfig
	}{
		{name: "not in the cache: defaults", want: gateway.RevisionConfig{Namespace: "ns", Name: "r1"}},
		{name: "kantai's", rev: rev, want: gateway.RevisionConfig{Namespace: "ns", Name: "r1", Service: "hello",
			ContainerConcurrency: 4, Timeout: time.Minute, ResponseStartTimeout: 10 * time.Second}},
		{name: "through the activator: no limit", rev: rev, direct: true, want: gateway.RevisionConfig{Namespace: "ns", Name: "r1",
			Service: "hello", Timeout: time.Minute, ResponseStartTimeout: 10 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, RevisionConfig("ns", "r1", tt.rev, tt.direct)); diff != "" {
				t.Errorf("RevisionConfig (-want,+got):\n%s", diff)
			}
		})
	}
}

func kingress(ns, name, class string, gen int64, host string, revs ...string) *netv1alpha1.Ingress {
	path := netv1alpha1.HTTPIngressPath{}
	for _, r := range revs {
		path.Splits = append(path.Splits, netv1alpha1.IngressBackendSplit{
			IngressBackend: netv1alpha1.IngressBackend{ServiceNamespace: ns, ServiceName: r, ServicePort: intstr.FromInt32(80)},
			Percent:        100 / len(revs),
		})
	}
	return &netv1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: gen,
			Annotations: map[string]string{networking.IngressClassAnnotationKey: class}},
		Spec: netv1alpha1.IngressSpec{Rules: []netv1alpha1.IngressRule{{Hosts: []string{host},
			HTTP: &netv1alpha1.HTTPIngressRuleValue{Paths: []netv1alpha1.HTTPIngressPath{path}}}}},
	}
}

func pa(ns, name, class string) *asv1alpha1.PodAutoscaler {
	p := &asv1alpha1.PodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if class != "" {
		p.Annotations = map[string]string{autoscale.AnnotationClass: class}
	}
	return p
}

func TestPlan(t *testing.T) {
	v4 := discoveryv1.AddressTypeIPv4
	s := Snapshot{
		Node: "me",
		Ingresses: []*netv1alpha1.Ingress{
			kingress("ns", "hello", ingress.Class, 3, "hello.ns.example.com", "mine", "kpa"),
			kingress("ns", "other", "istio.ingress.networking.knative.dev", 1, "other.ns.example.com", "ignored"),
		},
		Revisions: map[string]*servingv1.Revision{
			"ns/mine": {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "mine"}, Spec: servingv1.RevisionSpec{ContainerConcurrency: ptr.To[int64](2)}},
			"ns/kpa":  {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "kpa"}, Spec: servingv1.RevisionSpec{ContainerConcurrency: ptr.To[int64](2)}},
		},
		Autoscalers: map[string]*asv1alpha1.PodAutoscaler{
			"ns/mine": pa("ns", "mine", autoscale.ClassKantai),
			"ns/kpa":  pa("ns", "kpa", ""), // no class: Knative's KPA
		},
		PublicServices: map[string]*corev1.Service{
			"ns/mine": {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "mine"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}},
			"ns/kpa":  {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "kpa"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.2"}},
		},
		Slices: map[string][]*discoveryv1.EndpointSlice{
			"ns/mine-private": {slice("ns", "m", "mine-private", v4, "http", 8012, ep{addr: "10.1.0.1", node: "a", pod: "mine-a"})},
			"ns/kpa-private":  {slice("ns", "k", "kpa-private", v4, "http", 8012, ep{addr: "10.1.0.2", node: "a", pod: "kpa-a"})},
		},
		Nodes: []string{"b", "a"},
	}
	got := Plan(s)
	want := Desired{
		Routes: []gateway.Route{{Hosts: []string{"hello.ns.example.com"}, Targets: []gateway.Target{
			{Revision: "ns/mine", Percent: 50}, {Revision: "ns/kpa", Percent: 50}}}},
		Revisions: map[string]gateway.RevisionConfig{
			"ns/mine": {Namespace: "ns", Name: "mine", ContainerConcurrency: 2},
			"ns/kpa":  {Namespace: "ns", Name: "kpa"},
		},
		Replicas: map[string][]gateway.ReplicaInfo{
			"ns/mine": {{Name: "mine-a", Node: "a", Address: "10.1.0.1:8012"}},
			"ns/kpa":  {{Name: "service/kpa", Node: "me", Address: "10.0.0.2:80"}},
		},
		Nodes:       []string{"a", "b", "me"},
		Generations: map[string]int64{"ns/hello": 3},
		Problems:    map[string]nodeapi.Problem{},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Plan (-want,+got):\n%s", diff)
	}
}

func TestOfKantai(t *testing.T) {
	for _, tt := range []struct {
		name string
		pa   *asv1alpha1.PodAutoscaler
		want bool
	}{
		{"not in the cache yet: its private endpoints", nil, true},
		{"kantai's class", pa("ns", "r", autoscale.ClassKantai), true},
		{"no class: Knative's KPA", pa("ns", "r", ""), false},
		{"HPA", pa("ns", "r", "hpa.autoscaling.knative.dev"), false},
	} {
		if got := OfKantai(tt.pa); got != tt.want {
			t.Errorf("%s: OfKantai = %v, want %v", tt.name, got, tt.want)
		}
	}
}
