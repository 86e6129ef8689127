package ingress

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"knative.dev/networking/pkg/apis/networking"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"

	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/nodeapi"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// kingress is an Ingress of kantai's class as Knative's Route makes it for
// Service name in ns: a cluster-local rule and an external one, both to
// revision name-00001, created age minutes after epoch.
func kingress(ns, name string, age int) *netv1alpha1.Ingress {
	return &netv1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, Generation: 1,
			CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute)),
			Annotations:       map[string]string{networking.IngressClassAnnotationKey: Class},
		},
		Spec: netv1alpha1.IngressSpec{
			HTTPOption: netv1alpha1.HTTPOptionEnabled,
			Rules: []netv1alpha1.IngressRule{
				{
					Hosts:      []string{name + "." + ns, name + "." + ns + ".svc", name + "." + ns + ".svc.cluster.local"},
					Visibility: netv1alpha1.IngressVisibilityClusterLocal,
					HTTP:       &netv1alpha1.HTTPIngressRuleValue{Paths: []netv1alpha1.HTTPIngressPath{{Splits: []netv1alpha1.IngressBackendSplit{split(ns, name+"-00001", 100)}}}},
				},
				{
					Hosts:      []string{name + "." + ns + ".example.com"},
					Visibility: netv1alpha1.IngressVisibilityExternalIP,
					HTTP:       &netv1alpha1.HTTPIngressRuleValue{Paths: []netv1alpha1.HTTPIngressPath{{Splits: []netv1alpha1.IngressBackendSplit{split(ns, name+"-00001", 100)}}}},
				},
			},
		},
	}
}

func split(ns, svc string, pct int) netv1alpha1.IngressBackendSplit {
	return netv1alpha1.IngressBackendSplit{
		IngressBackend: netv1alpha1.IngressBackend{ServiceNamespace: ns, ServiceName: svc, ServicePort: intstr.FromInt(80)},
		Percent:        pct,
		AppendHeaders:  map[string]string{"Knative-Serving-Revision": svc, "Knative-Serving-Namespace": ns},
	}
}

func with(ing *netv1alpha1.Ingress, f func(*netv1alpha1.Ingress)) *netv1alpha1.Ingress {
	f(ing)
	return ing
}

func target(rev string, pct int) gateway.Target {
	ns, name, _ := strings.Cut(rev, "/")
	return gateway.Target{Revision: rev, Percent: pct, AppendHeaders: map[string]string{"Knative-Serving-Revision": name, "Knative-Serving-Namespace": ns}}
}

// A Route's Ingress: its cluster-local hosts on the in-cluster listener,
// its external host on both; one split defaults to 100; the revision's
// Service becomes the backend.
func TestTranslate_route(t *testing.T) {
	ing := kingress("ns", "hello", 0)
	ing.Spec.Rules[1].HTTP.Paths[0].Splits[0].Percent = 0 // defaulted to 100
	ing.Spec.HTTPOption = netv1alpha1.HTTPOptionRedirected
	other := with(kingress("ns", "other", 0), func(i *netv1alpha1.Ingress) {
		i.Annotations[networking.IngressClassAnnotationKey] = "kourier.ingress.networking.knative.dev"
	})
	tb := Translate([]*netv1alpha1.Ingress{other, ing})
	want := []gateway.Route{
		{Hosts: []string{"hello.ns", "hello.ns.svc", "hello.ns.svc.cluster.local"}, Visibility: gateway.ClusterLocal,
			Targets: []gateway.Target{target("ns/hello-00001", 100)}},
		{Hosts: []string{"hello.ns.example.com"}, RedirectHTTP: true,
			Targets: []gateway.Target{target("ns/hello-00001", 100)}},
	}
	if !reflect.DeepEqual(tb.Internal, want) {
		t.Errorf("routes\n%+v\nwant\n%+v", tb.Internal, want)
	}
	if got := tb.External(); !reflect.DeepEqual(got, want[1:]) {
		t.Errorf("external routes %+v, want the ExternalIP rule alone", got)
	}
	if got, want := tb.Backends, map[string]Backend{"ns/hello-00001": {Namespace: "ns", Service: "hello-00001", Port: "80"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("backends %v, want %v", got, want)
	}
	if got, want := tb.Generations, map[string]int64{"ns/hello": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("generations %v, want %v", got, want)
	}
	if len(tb.Problems) != 0 {
		t.Errorf("problems %v, want none", tb.Problems)
	}
	if err := gateway.CheckRoutes(tb.Internal); err != nil {
		t.Errorf("the gateway refuses the table: %v", err)
	}
}

// Everything a rule can say: paths in order with prefixes and header
// matches, splits by percent (0 % left out), headers appended per path and
// per split, a DomainMapping's rewriteHost with its split's headers, a
// host twice in one Ingress served by its first rule.
func TestTranslate_paths(t *testing.T) {
	ing := kingress("ns", "hello", 0)
	ext := &ing.Spec.Rules[1]
	ext.Hosts = []string{"Hello.NS.example.com", "hello.ns.svc"} // the second is the cluster-local rule's
	ext.HTTP.Paths = []netv1alpha1.HTTPIngressPath{
		{
			Path:          "/api",
			Headers:       map[string]netv1alpha1.HeaderMatch{"Knative-Serving-Tag": {Exact: "canary"}},
			AppendHeaders: map[string]string{"Knative-Serving-Tag": "canary"},
			Splits:        []netv1alpha1.IngressBackendSplit{split("ns", "hello-00002", 100)},
		},
		{
			Splits: []netv1alpha1.IngressBackendSplit{split("ns", "hello-00001", 70), split("ns", "hello-00002", 30), split("ns", "hello-00003", 0)},
		},
	}
	dm := with(kingress("ns", "app.example.org", 1), func(i *netv1alpha1.Ingress) {
		i.Spec.Rules = []netv1alpha1.IngressRule{{
			Hosts: []string{"app.example.org"}, Visibility: netv1alpha1.IngressVisibilityExternalIP,
			HTTP: &netv1alpha1.HTTPIngressRuleValue{Paths: []netv1alpha1.HTTPIngressPath{{
				RewriteHost: "Hello.ns.example.com",
				Splits: []netv1alpha1.IngressBackendSplit{{
					IngressBackend: netv1alpha1.IngressBackend{ServiceNamespace: "ns", ServiceName: "hello", ServicePort: intstr.FromInt(80)},
					Percent:        100, AppendHeaders: map[string]string{"K-Original-Host": "app.example.org"},
				}},
			}}},
		}}
	})
	tb := Translate([]*netv1alpha1.Ingress{dm, ing})
	if len(tb.Problems) != 0 {
		t.Fatalf("problems %v", tb.Problems)
	}
	want := []gateway.Route{
		{Hosts: []string{"hello.ns", "hello.ns.svc", "hello.ns.svc.cluster.local"}, Visibility: gateway.ClusterLocal,
			Targets: []gateway.Target{target("ns/hello-00001", 100)}},
		{Hosts: []string{"hello.ns.example.com"}, Paths: []gateway.Path{
			{Prefix: "/api", Headers: map[string]string{"Knative-Serving-Tag": "canary"}, AppendHeaders: map[string]string{"Knative-Serving-Tag": "canary"},
				Targets: []gateway.Target{target("ns/hello-00002", 100)}},
			{Targets: []gateway.Target{target("ns/hello-00001", 70), target("ns/hello-00002", 30)}},
		}},
		{Hosts: []string{"app.example.org"}, Paths: []gateway.Path{
			{RewriteHost: "hello.ns.example.com", AppendHeaders: map[string]string{"K-Original-Host": "app.example.org"}},
		}},
	}
	if !reflect.DeepEqual(tb.Internal, want) {
		t.Errorf("routes\n%+v\nwant\n%+v", tb.Internal, want)
	}
	if _, ok := tb.Backends["ns/hello-00003"]; ok {
		t.Error("a 0 % split is a backend")
	}
	if _, ok := tb.Backends["ns/hello"]; ok {
		t.Error("the Service behind a rewrite is a backend")
	}
	if len(tb.Backends) != 2 {
		t.Errorf("backends %v, want hello-00001 and hello-00002", tb.Backends)
	}
	if err := gateway.CheckRoutes(tb.Internal); err != nil {
		t.Errorf("the gateway refuses the table: %v", err)
	}
}

// Each Ingress that cannot be served is left out alone, with a reason and
// a message naming the field; a host claimed twice goes to the older
// Ingress, then to the first by namespace/name, whatever the input order.
func TestTranslate_problems(t *testing.T) {
	paths := func(i *netv1alpha1.Ingress) *netv1alpha1.HTTPIngressPath { return &i.Spec.Rules[1].HTTP.Paths[0] }
	tests := []struct {
		name   string
		ing    *netv1alpha1.Ingress
		reason string
		msg    string
	}{
		{"tls", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.TLS = []netv1alpha1.IngressTLS{{Hosts: []string{"x.ns.example.com"}, SecretName: "s", SecretNamespace: "ns"}}
		}), ReasonTLSNotSupported, "spec.tls: "},
		{"h2c", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits[0].ServicePort = intstr.FromInt(81)
		}), ReasonH2CNotSupported, "spec.rules[1].http.paths[0].splits[0].servicePort: 81 "},
		{"h2c by name", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits[0].ServicePort = intstr.FromString("http2")
		}), ReasonH2CNotSupported, "spec.rules[1].http.paths[0].splits[0].servicePort: http2 "},
		{"https backend", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits[0].ServicePort = intstr.FromInt(443)
		}), ReasonTLSNotSupported, "spec.rules[1].http.paths[0].splits[0].servicePort: 443 "},
		{"other port", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits[0].ServicePort = intstr.FromInt(8080)
		}), ReasonInvalidSpec, `spec.rules[1].http.paths[0].splits[0].servicePort: "8080" is not`},
		{"percent", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules[1].HTTP.Paths = append(i.Spec.Rules[1].HTTP.Paths, netv1alpha1.HTTPIngressPath{
				Splits: []netv1alpha1.IngressBackendSplit{split("ns", "a", 50), split("ns", "b", 60), split("ns", "c", 120)}})
		}), ReasonInvalidSpec, "spec.rules[1].http.paths[1].splits[2].percent: 120 is not within 0–100"},
		{"percents", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits = append(paths(i).Splits, split("ns", "b", 10))
		}), ReasonInvalidSpec, "spec.rules[1].http.paths[0].splits: percents add up to 110, want 100"},
		{"namespace", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits[0].ServiceNamespace = "other"
		}), ReasonInvalidSpec, `spec.rules[1].http.paths[0].splits[0].serviceNamespace: "other" is not the Ingress's namespace "ns"`},
		{"no service", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits[0].ServiceName = ""
		}), ReasonInvalidSpec, "spec.rules[1].http.paths[0].splits[0].serviceName: missing"},
		{"no splits", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits = nil
		}), ReasonInvalidSpec, "spec.rules[1].http.paths[0].splits: no splits"},
		{"path", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Path = "api"
		}), ReasonInvalidSpec, `spec.rules[1].http.paths[0].path: "api" does not start with /`},
		{"header", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Headers = map[string]netv1alpha1.HeaderMatch{"Bad Name": {Exact: "x"}}
		}), ReasonInvalidSpec, `spec.rules[1].http.paths[0].headers: "Bad Name" is no header name`},
		{"appended header", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).Splits[0].AppendHeaders = map[string]string{"a:b": "x"}
		}), ReasonInvalidSpec, `spec.rules[1].http.paths[0].splits[0].appendHeaders: "a:b" is no header name`},
		{"no paths", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules[0].HTTP = nil
		}), ReasonInvalidSpec, "spec.rules[0].http.paths: no paths"},
		{"no hosts", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules[1].Hosts = nil
		}), ReasonInvalidSpec, "spec.rules[1].hosts: no hosts"},
		{"host with port", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules[1].Hosts[0] = "x.ns.example.com:80"
		}), ReasonInvalidSpec, `spec.rules[1].hosts[0]: "x.ns.example.com:80" is no host name`},
		{"wildcard", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules[1].Hosts[0] = "*.example.com"
		}), ReasonInvalidSpec, `spec.rules[1].hosts[0]: "*.example.com" is no host name`},
		{"visibility", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules[1].Visibility = "Public"
		}), ReasonInvalidSpec, `spec.rules[1].visibility: "Public" is neither`},
		{"httpOption", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.HTTPOption = "Sometimes"
		}), ReasonInvalidSpec, `spec.httpOption: "Sometimes" is neither Enabled nor Redirected`},
		{"rewrite with two splits", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).RewriteHost = "y.ns.example.com"
			paths(i).Splits = []netv1alpha1.IngressBackendSplit{split("ns", "a", 50), split("ns", "b", 50)}
		}), ReasonInvalidSpec, "spec.rules[1].http.paths[0].splits: a path with rewriteHost takes one split, not 2"},
		{"rewrite host", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			paths(i).RewriteHost = "y.ns.example.com/"
		}), ReasonInvalidSpec, `spec.rules[1].http.paths[0].rewriteHost: "y.ns.example.com/" is no host name`},
		{"no rules", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules = nil
		}), ReasonInvalidSpec, "spec.rules: no rules"},
		{"host of an older Ingress", with(kingress("ns", "x", 5), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules[1].Hosts = append(i.Spec.Rules[1].Hosts, "good.ns.example.com")
		}), ReasonDomainConflict, `host "good.ns.example.com" is already served by Ingress ns/good`},
	}
	for _, tt := range tests {
		good := kingress("ns", "good", 0)
		// The bad one is older than good2 and shares a host with it:
		// being left out, it takes no host from it.
		good2 := with(kingress("ns", "good2", 10), func(i *netv1alpha1.Ingress) {
			i.Spec.Rules[1].Hosts = append(i.Spec.Rules[1].Hosts, "x.ns.example.com")
		})
		if tt.name == "host of an older Ingress" {
			good2 = kingress("ns", "good2", 10)
		}
		tt.ing.Generation = 3
		tb := Translate([]*netv1alpha1.Ingress{good2, tt.ing, good})
		p, ok := tb.Problems["ns/x"]
		if !ok {
			t.Errorf("%s: no problem; routes %+v", tt.name, tb.Internal)
			continue
		}
		if p.Reason != tt.reason || !strings.HasPrefix(p.Message, tt.msg) || p.Generation != 3 {
			t.Errorf("%s: problem %+v, want %s %q… at generation 3", tt.name, p, tt.reason, tt.msg)
		}
		if len(tb.Problems) != 1 {
			t.Errorf("%s: problems %v, want ns/x alone", tt.name, tb.Problems)
		}
		if _, in := tb.Generations["ns/x"]; in || len(tb.Generations) != 2 {
			t.Errorf("%s: generations %v, want good and good2 alone", tt.name, tb.Generations)
		}
		taken := false // by good2, once x left it
		for _, r := range tb.Internal {
			for _, h := range r.Hosts {
				if h == "x.ns.example.com" {
					taken = true
				} else if strings.HasPrefix(h, "x.ns") {
					t.Errorf("%s: host %s of the refused Ingress is routed", tt.name, h)
				}
			}
		}
		if want := tt.name != "host of an older Ingress"; taken != want {
			t.Errorf("%s: x.ns.example.com served %v, want %v", tt.name, taken, want)
		}
		if err := gateway.CheckRoutes(tb.Internal); err != nil {
			t.Errorf("%s: the gateway refuses the table: %v", tt.name, err)
		}
	}
}

// Two Ingresses created at the same time claim a host: the first by
// namespace/name keeps it, in any input order; ones being deleted or of
// another class claim nothing.
func TestTranslate_conflictOrder(t *testing.T) {
	a := with(kingress("a", "svc", 0), func(i *netv1alpha1.Ingress) { i.Spec.Rules[1].Hosts = []string{"shared.example.com"} })
	b := with(kingress("b", "svc", 0), func(i *netv1alpha1.Ingress) { i.Spec.Rules[1].Hosts = []string{"shared.example.com"} })
	gone := with(kingress("0", "svc", -5), func(i *netv1alpha1.Ingress) {
		i.Spec.Rules[1].Hosts = []string{"shared.example.com"}
		now := metav1.NewTime(epoch)
		i.DeletionTimestamp = &now
	})
	for _, order := range [][]*netv1alpha1.Ingress{{a, b, gone}, {gone, b, a}} {
		tb := Translate(order)
		if p := tb.Problems["b/svc"]; p.Reason != ReasonDomainConflict || p.Message != `host "shared.example.com" is already served by Ingress a/svc` {
			t.Errorf("b/svc: %+v, want a DomainConflict with a/svc", p)
		}
		if _, ok := tb.Generations["a/svc"]; !ok || len(tb.Problems) != 1 {
			t.Errorf("a/svc not served alone: %v %v", tb.Generations, tb.Problems)
		}
	}
}

func TestStatus(t *testing.T) {
	lb := ServiceLoadBalancer("kantai-system", "cluster.local")
	ing := kingress("ns", "hello", 0)
	ing.Generation = 4
	at := func(gen int64) map[string]int64 { return map[string]int64{"ns/hello": gen, "ns/other": 1} }
	refused := func(gen int64) map[string]nodeapi.Problem {
		return map[string]nodeapi.Problem{"ns/hello": {Reason: ReasonDomainConflict, Message: "host taken", Generation: gen}}
	}
	tests := []struct {
		name    string
		reports []Report
		status  string // of LoadBalancerReady and Ready
		reason  string
		msg     string
	}{
		{"every ready gateway serves it", []Report{
			{Node: "n1", Ready: true, Ingresses: at(4)}, {Node: "n2", Ready: true, Ingresses: at(4)}, {Node: "n3", Ingresses: at(3)},
		}, "True", "", ""},
		{"no gateway", nil, "Unknown", ReasonNoGateway, "no gateway is ready to serve the Ingress (0 known)"},
		{"no ready gateway", []Report{{Node: "n1", Ingresses: at(4)}}, "Unknown", ReasonNoGateway, "no gateway is ready to serve the Ingress (1 known)"},
		{"one behind", []Report{
			{Node: "n2", Ready: true, Ingresses: at(3)}, {Node: "n1", Ready: true, Ingresses: at(4)},
		}, "Unknown", ReasonProgramming, "1 of 2 ready gateways do not serve generation 4 yet: n2"},
		{"many missing", []Report{
			{Node: "n5", Ready: true}, {Node: "n4", Ready: true}, {Node: "n3", Ready: true}, {Node: "n2", Ready: true}, {Node: "n1", Ready: true, Ingresses: at(4)},
		}, "Unknown", ReasonProgramming, "4 of 5 ready gateways do not serve generation 4 yet: n2, n3, n4 and 1 more"},
		{"refused", []Report{
			{Node: "n2", Ready: true, Problems: refused(4)}, {Node: "n1", Ready: true, Ingresses: at(4)},
		}, "False", ReasonDomainConflict, "node n2: host taken"},
		{"refused without generation", []Report{{Node: "n1", Ready: true, Problems: refused(0)}}, "False", ReasonDomainConflict, "node n1: host taken"},
		{"refused an older generation", []Report{{Node: "n1", Ready: true, Problems: refused(3)}}, "Unknown", ReasonProgramming, "1 of 1 ready gateways do not serve generation 4 yet: n1"},
		{"a gateway already at a later generation", []Report{
			{Node: "n1", Ready: true, Ingresses: at(5)}, {Node: "n2", Ready: true, Ingresses: at(4)},
		}, "True", "", ""},
		{"refused a later generation", []Report{{Node: "n1", Ready: true, Problems: refused(5)}}, "Unknown", ReasonProgramming, "1 of 1 ready gateways do not serve generation 4 yet: n1"},
		{"refused by a gateway not ready", []Report{
			{Node: "n2", Problems: refused(4)}, {Node: "n1", Ready: true, Ingresses: at(4)},
		}, "True", "", ""},
	}
	for _, tt := range tests {
		st := Status(ing, tt.reports, lb)
		if st.ObservedGeneration != 4 {
			t.Errorf("%s: observedGeneration %d, want 4", tt.name, st.ObservedGeneration)
		}
		if c := st.GetCondition(netv1alpha1.IngressConditionNetworkConfigured); c == nil || c.Status != "True" {
			t.Errorf("%s: NetworkConfigured %+v, want True", tt.name, c)
		}
		for _, ct := range []string{string(netv1alpha1.IngressConditionLoadBalancerReady), string(netv1alpha1.IngressConditionReady)} {
			c := st.GetCondition(netv1alpha1.IngressConditionLoadBalancerReady)
			if ct == string(netv1alpha1.IngressConditionReady) {
				c = st.GetCondition(netv1alpha1.IngressConditionReady)
			}
			if c == nil || string(c.Status) != tt.status || c.Reason != tt.reason || c.Message != tt.msg {
				t.Errorf("%s: %s %+v, want %s %q %q", tt.name, ct, c, tt.status, tt.reason, tt.msg)
			}
		}
		wantPublic := &netv1alpha1.LoadBalancerStatus{Ingress: []netv1alpha1.LoadBalancerIngressStatus{{DomainInternal: "kantai-gateway.kantai-system.svc.cluster.local"}}}
		wantPrivate := &netv1alpha1.LoadBalancerStatus{Ingress: []netv1alpha1.LoadBalancerIngressStatus{{DomainInternal: "kantai-gateway-internal.kantai-system.svc.cluster.local"}}}
		if !reflect.DeepEqual(st.PublicLoadBalancer, wantPublic) || !reflect.DeepEqual(st.PrivateLoadBalancer, wantPrivate) {
			t.Errorf("%s: load balancers %+v %+v", tt.name, st.PublicLoadBalancer, st.PrivateLoadBalancer)
		}
		ing2 := ing.DeepCopy()
		ing2.Status = st
		if got, want := ing2.IsReady(), tt.status == "True"; got != want {
			t.Errorf("%s: IsReady %v, want %v", tt.name, got, want)
		}
	}
}

// A status computed again from the same reports is the same, transition
// times included, so the controller writes nothing when nothing changed;
// a status of an older generation is replaced.
func TestStatus_stable(t *testing.T) {
	ing := kingress("ns", "hello", 0)
	reports := []Report{{Node: "n1", Ready: true, Ingresses: map[string]int64{"ns/hello": 1}}}
	ing.Status = Status(ing, reports, DefaultLoadBalancer)
	if again := Status(ing, reports, DefaultLoadBalancer); !reflect.DeepEqual(again, ing.Status) {
		t.Errorf("status changed when computed again:\n%+v\n%+v", again, ing.Status)
	}
	ing.Generation = 2
	st := Status(ing, reports, DefaultLoadBalancer)
	if st.ObservedGeneration != 2 || st.GetCondition(netv1alpha1.IngressConditionReady).Status != "Unknown" {
		t.Errorf("after a spec change: %+v", st)
	}
}

func TestReportOf(t *testing.T) {
	s := nodeapi.State{Node: "n1", Ingresses: map[string]int64{"a/b": 2}, Problems: map[string]nodeapi.Problem{"c/d": {Reason: "R"}}}
	want := Report{Node: "n1", Ready: true, Ingresses: s.Ingresses, Problems: s.Problems}
	if got := ReportOf(s, true); !reflect.DeepEqual(got, want) {
		t.Errorf("ReportOf = %+v, want %+v", got, want)
	}
	if got := ReadyReports([]nodeapi.State{s}); !reflect.DeepEqual(got, []Report{want}) {
		t.Errorf("ReadyReports = %+v, want %+v", got, []Report{want})
	}
}

// A rule whose one path takes every request as it is becomes a route of
// targets; a path that adds headers or matches stays a path.
func TestTranslate_compactForm(t *testing.T) {
	ing := kingress("ns", "hello", 0)
	ing.Spec.Rules[0].HTTP.Paths[0].Path = "/"
	ing.Spec.Rules[1].HTTP.Paths[0].AppendHeaders = map[string]string{"Knative-Serving-Default-Route": "true"}
	tb := Translate([]*netv1alpha1.Ingress{ing})
	if r := tb.Internal[0]; len(r.Paths) != 0 || len(r.Targets) != 1 {
		t.Errorf("catch-all rule: %+v, want targets alone", r)
	}
	if r := tb.Internal[1]; len(r.Paths) != 1 || len(r.Targets) != 0 || r.Paths[0].AppendHeaders["Knative-Serving-Default-Route"] != "true" {
		t.Errorf("rule with appended headers: %+v, want its path", r)
	}
}
