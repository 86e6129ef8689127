package ingress

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/intstr"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"

	"kantai.dev/kantai/internal/gateway"
)

// What Translate makes of a Route's Ingress and a DomainMapping's is
// served by one gateway on its two listeners: the cluster-local hosts in
// the cluster only, the external host on both with the https redirect
// outside, the mapped domain rewritten to the Route's host with
// K-Original-Host.
func TestTranslate_servedByGateway(t *testing.T) {
	route := kingress("ns", "hello", 0)
	route.Spec.HTTPOption = netv1alpha1.HTTPOptionRedirected
	dm := kingress("ns", "app.example.org", 1)
	dm.Spec.HTTPOption = netv1alpha1.HTTPOptionEnabled
	dm.Spec.Rules = []netv1alpha1.IngressRule{{
		Hosts: []string{"app.example.org"}, Visibility: netv1alpha1.IngressVisibilityExternalIP,
		HTTP: &netv1alpha1.HTTPIngressRuleValue{Paths: []netv1alpha1.HTTPIngressPath{{
			RewriteHost: "hello.ns.svc.cluster.local",
			Splits: []netv1alpha1.IngressBackendSplit{{
				IngressBackend: netv1alpha1.IngressBackend{ServiceNamespace: "ns", ServiceName: "hello", ServicePort: intstr.FromInt(80)},
				AppendHeaders:  map[string]string{"K-Original-Host": "app.example.org"},
			}},
		}}},
	}}
	tb := Translate([]*netv1alpha1.Ingress{route, dm})
	if len(tb.Problems) != 0 {
		t.Fatalf("problems: %v", tb.Problems)
	}

	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %s", r.Header.Get("Knative-Serving-Revision"), r.Host, r.URL.Path, r.Header.Get("K-Original-Host"))
	}))
	t.Cleanup(replica.Close)
	gw, err := gateway.New(gateway.Config{
		Node: "n1", Nodes: []string{"n1"}, Policy: "kantai", Transport: &http.Transport{},
		RTT: func(string) (time.Duration, bool) { return 0, false }, Metrics: gateway.NewMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		t.Fatal(err)
	}
	for rev, b := range tb.Backends {
		ns, name, _ := strings.Cut(rev, "/")
		gw.SetRevision(gateway.RevisionConfig{Namespace: ns, Name: name, Service: b.Service})
		gw.SetReplicas(rev, []gateway.ReplicaInfo{{Name: name + "-r", Node: "n1", Address: strings.TrimPrefix(replica.URL, "http://")}})
	}
	if err := gw.SetRoutes(tb.Internal); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		external   bool
		host, path string
		code       int
		body       string
	}{
		{false, "hello.ns.svc.cluster.local", "/a", 200, "hello-00001 hello.ns.svc.cluster.local /a "},
		{false, "hello.ns", "/", 200, "hello-00001 hello.ns / "},
		{true, "hello.ns.svc", "/", 404, "kantai: no function serves host"},
		{false, "hello.ns.example.com", "/", 200, "hello-00001 hello.ns.example.com / "},
		{true, "hello.ns.example.com", "/x?y=1", 301, `<a href="https://hello.ns.example.com/x?y=1">`},
		{true, "app.example.org", "/p", 200, "hello-00001 hello.ns.svc.cluster.local /p app.example.org"},
		{false, "app.example.org", "/p", 200, "hello-00001 hello.ns.svc.cluster.local /p app.example.org"},
	} {
		req := httptest.NewRequest("GET", "http://"+c.host+c.path, nil)
		rec := httptest.NewRecorder()
		h := http.Handler(gw)
		if c.external {
			h = gw.External()
		}
		h.ServeHTTP(rec, req)
		if rec.Code != c.code || !strings.HasPrefix(rec.Body.String(), c.body) {
			t.Errorf("%s%s (external %v): %d %q, want %d %q…", c.host, c.path, c.external, rec.Code, rec.Body.String(), c.code, c.body)
		}
	}
}
