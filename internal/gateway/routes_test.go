package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// echo is a replica stand-in answering "<name> <Host> <path> <headers>",
// the headers being those the test asks about.
func echo(t *testing.T, name string, show ...string) ReplicaInfo {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var hs []string
		for _, h := range show {
			hs = append(hs, h+"="+r.Header.Get(h))
		}
		fmt.Fprintf(w, "%s %s %s %s", name, r.Host, r.URL.Path, strings.Join(hs, ","))
	}))
	t.Cleanup(srv.Close)
	return ReplicaInfo{Name: name, Node: "node3", Address: strings.TrimPrefix(srv.URL, "http://")}
}

// ingressFixture is a gateway with revisions ns/a, ns/b and ns/c, each
// served by one replica that echoes the Host and X-Extra, X-Who.
func ingressFixture(t *testing.T, e engine, routes []Route) *Gateway {
	fx := newEngineFixture(t, e, nil)
	for _, name := range []string{"a", "b", "c"} {
		fx.gw.SetRevision(RevisionConfig{Namespace: "ns", Name: name, Service: name})
		fx.gw.SetReplicas("ns/"+name, []ReplicaInfo{echo(t, name, "X-Extra", "X-Who")})
	}
	if err := fx.gw.SetRoutes(routes); err != nil {
		t.Fatal(err)
	}
	return fx.gw
}

func to(rev string) []Target { return []Target{{Revision: rev, Percent: 100}} }

type call struct {
	name     string
	external bool
	host     string
	target   string // path and query
	headers  map[string]string
	code     int
	body     string // prefix of the body
	location string
}

func (c call) run(t *testing.T, e engine, gw *Gateway) {
	t.Helper()
	var code int
	var body, location string
	if e == engineFast {
		code, body, location = c.runFast(t, gw)
	} else {
		req := httptest.NewRequest("GET", "http://"+c.host+c.target, nil)
		for k, v := range c.headers {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		if c.external {
			gw.External().ServeHTTP(rec, req)
		} else {
			gw.ServeHTTP(rec, req)
		}
		code, body, location = rec.Code, rec.Body.String(), rec.Header().Get("Location")
	}
	if code != c.code || !strings.HasPrefix(body, c.body) {
		t.Errorf("%s: %d %q, want %d %q…", c.name, code, body, c.code, c.body)
	}
	if location != c.location {
		t.Errorf("%s: Location %q, want %q", c.name, location, c.location)
	}
}

// runFast makes the call through the fasthttp engine's handler, with no
// server: the request context is built in memory.
func (c call) runFast(t *testing.T, gw *Gateway) (code int, body, location string) {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI(c.target)
	ctx.Request.Header.SetHost(c.host)
	for k, v := range c.headers {
		ctx.Request.Header.Set(k, v)
	}
	h := gw.FastHandler()
	if c.external {
		h = gw.FastExternal()
	}
	h(&ctx)
	resp := &ctx.Response
	if s := resp.BodyStream(); s != nil {
		b, err := io.ReadAll(s)
		if err != nil {
			t.Errorf("%s: reading the body: %v", c.name, err)
		}
		body = string(b)
		_ = resp.CloseBodyStream()
	} else {
		body = string(resp.Body())
	}
	return resp.StatusCode(), body, string(resp.Header.Peek("Location"))
}

// Paths are tried in order and the first that matches wins, as Knative's
// HTTPIngressRuleValue says: a prefix is a plain string prefix, every
// header must match exactly, and a host none of whose paths match is a
// 404 that says so.
func TestGateway_pathsInOrder(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		gw := ingressFixture(t, e, []Route{{
			Hosts: []string{"h.example.com"},
			Paths: []Path{
				{Prefix: "/api", Headers: map[string]string{"x-canary": "yes", "X-Zone": "z1"}, Targets: to("ns/c")},
				{Prefix: "/api", Targets: to("ns/a"), AppendHeaders: map[string]string{"X-Extra": "path"}},
				{Prefix: "/apiv2", Targets: to("ns/b")}, // never reached: /api takes it first
				{Prefix: "/", Headers: map[string]string{"Knative-Serving-Tag": "t1"}, Targets: to("ns/b")},
				{Prefix: "/static/", Targets: []Target{{Revision: "ns/c", Percent: 100, AppendHeaders: map[string]string{"X-Extra": "target"}}},
					AppendHeaders: map[string]string{"X-Extra": "path", "X-Who": "static"}},
			},
		}})
		for _, c := range []call{
			{name: "prefix", host: "h.example.com", target: "/api/x?q=1", code: 200, body: "a h.example.com /api/x X-Extra=path"},
			{name: "prefix is a string prefix", host: "h.example.com", target: "/apiary", code: 200, body: "a "},
			{name: "earlier prefix shadows a longer one", host: "h.example.com", target: "/apiv2/x", code: 200, body: "a "},
			{name: "all headers match", host: "h.example.com", target: "/api", headers: map[string]string{"X-Canary": "yes", "x-zone": "z1"}, code: 200, body: "c "},
			{name: "one header differs", host: "h.example.com", target: "/api", headers: map[string]string{"X-Canary": "yes", "X-Zone": "z2"}, code: 200, body: "a "},
			{name: "header value is exact", host: "h.example.com", target: "/api", headers: map[string]string{"X-Canary": "Yes", "X-Zone": "z1"}, code: 200, body: "a "},
			{name: "header on a catch-all", host: "h.example.com", target: "/other", headers: map[string]string{"Knative-Serving-Tag": "t1"}, code: 200, body: "b "},
			{name: "target headers win over the path's", host: "h.example.com", target: "/static/x", code: 200, body: "c h.example.com /static/x X-Extra=target,X-Who=static"},
			{name: "static without slash", host: "h.example.com", target: "/static", code: 404, body: `kantai: no path of host "h.example.com" matches "/static"`},
			{name: "no path matches", host: "h.example.com", target: "/", code: 404, body: `kantai: no path of host "h.example.com" matches "/"`},
			{name: "unknown host", host: "nope.example.com", target: "/api", code: 404, body: `kantai: no function serves host "nope.example.com"`},
		} {
			c.run(t, e, gw)
		}
	})
}

// Cluster-local routes are served by the gateway itself (the in-cluster
// listener) and not by External; external routes by both, with the same
// revisions.
func TestGateway_visibility(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		gw := ingressFixture(t, e, []Route{
			{Hosts: []string{"h.ns", "h.ns.svc", "h.ns.svc.cluster.local"}, Visibility: ClusterLocal, Targets: to("ns/a")},
			{Hosts: []string{"h.ns.example.com"}, Targets: to("ns/b")},
		})
		for _, c := range []call{
			{name: "local in cluster", host: "h.ns.svc.cluster.local", target: "/", code: 200, body: "a "},
			{name: "local short form", host: "h.ns:80", target: "/", code: 200, body: "a "},
			{name: "local from outside", external: true, host: "h.ns.svc.cluster.local", target: "/", code: 404, body: "kantai: no function serves host"},
			{name: "external in cluster", host: "h.ns.example.com", target: "/", code: 200, body: "b "},
			{name: "external from outside", external: true, host: "h.ns.example.com", target: "/", code: 200, body: "b "},
		} {
			c.run(t, e, gw)
		}
	})
}

// A route that redirects answers plain HTTP on the external listener with
// 301 to https, keeping the path and query; TLS terminated in front of
// the gateway and the in-cluster listener are served.
func TestGateway_redirect(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		gw := ingressFixture(t, e, []Route{
			{Hosts: []string{"h.ns.example.com"}, Targets: to("ns/a"), RedirectHTTP: true},
			{Hosts: []string{"h.ns.svc"}, Visibility: ClusterLocal, Targets: to("ns/a"), RedirectHTTP: true},
			{Hosts: []string{"plain.ns.example.com"}, Targets: to("ns/b")},
		})
		for _, c := range []call{
			{name: "plain HTTP", external: true, host: "H.ns.example.com:8080", target: "/p/q?x=1&y=2", code: 301, body: "", location: "https://h.ns.example.com/p/q?x=1&y=2"},
			{name: "behind a TLS proxy", external: true, host: "h.ns.example.com", target: "/p", headers: map[string]string{"X-Forwarded-Proto": "https"}, code: 200, body: "a "},
			{name: "in cluster", host: "h.ns.example.com", target: "/p", code: 200, body: "a "},
			{name: "cluster-local in cluster", host: "h.ns.svc", target: "/p", code: 200, body: "a "},
			{name: "route without redirect", external: true, host: "plain.ns.example.com", target: "/", code: 200, body: "b "},
		} {
			c.run(t, e, gw)
		}
	})
}

// rewriteHost sends the request on as if it had the new Host: the paths
// of the route serving that host decide (on any listener), the request
// reaches the revision with the new Host and the rewriting path's headers,
// and a rewrite is followed only once.
func TestGateway_rewriteHost(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		gw := ingressFixture(t, e, []Route{
			{Hosts: []string{"app.example.org"}, Paths: []Path{
				{Prefix: "/old", Targets: to("ns/c")},
				{RewriteHost: "h.ns.svc.cluster.local", AppendHeaders: map[string]string{"X-Extra": "mapped", "X-Who": "dm"}},
			}},
			{Hosts: []string{"h.ns.svc.cluster.local"}, Visibility: ClusterLocal, Paths: []Path{
				{Headers: map[string]string{"Knative-Serving-Tag": "t1"}, Targets: to("ns/b")},
				{Prefix: "/v1", Targets: []Target{{Revision: "ns/a", Percent: 100, AppendHeaders: map[string]string{"X-Who": "route"}}}},
			}},
			{Hosts: []string{"dangling.example.org"}, Paths: []Path{{RewriteHost: "gone.example.org"}}},
			{Hosts: []string{"loop1.example.org"}, Paths: []Path{{RewriteHost: "loop2.example.org"}}},
			{Hosts: []string{"loop2.example.org"}, Paths: []Path{{RewriteHost: "loop1.example.org"}}},
		})
		for _, c := range []call{
			{name: "own path first", external: true, host: "app.example.org", target: "/old", code: 200, body: "c app.example.org /old"},
			{name: "rewritten", external: true, host: "app.example.org", target: "/v1/x", code: 200, body: "a h.ns.svc.cluster.local /v1/x X-Extra=mapped,X-Who=route"},
			{name: "rewritten, header path", host: "app.example.org", target: "/x", headers: map[string]string{"Knative-Serving-Tag": "t1"}, code: 200, body: "b h.ns.svc.cluster.local /x X-Extra=mapped,X-Who=dm"},
			{name: "rewritten, no path matches", external: true, host: "app.example.org", target: "/x", code: 404, body: `kantai: no path of host "h.ns.svc.cluster.local" matches "/x"`},
			{name: "rewritten to nothing", external: true, host: "dangling.example.org", target: "/", code: 404, body: `kantai: host "dangling.example.org" is rewritten to "gone.example.org", which no function serves`},
			{name: "loop not followed", host: "loop1.example.org", target: "/", code: 404, body: `kantai: host "loop1.example.org" is rewritten to "loop2.example.org", which no function serves`},
		} {
			c.run(t, e, gw)
		}
	})
}

// Knative's ingress probe (GET /healthz, K-Network-Probe: probe) is routed
// like any request: the revision answers it.
func TestGateway_knativeProbeIsForwarded(t *testing.T) {
	forEngines(t, func(t *testing.T, e engine) {
		gw := ingressFixture(t, e, []Route{{Hosts: []string{"h.ns.svc"}, Targets: to("ns/a")}})
		call{name: "probe", host: "h.ns.svc", target: "/healthz", headers: map[string]string{"K-Network-Probe": "probe", "User-Agent": "Knative-Ingress-Probe"},
			code: 200, body: "a h.ns.svc /healthz"}.run(t, e, gw)
	})
}

func TestCheckRoutes(t *testing.T) {
	ok := []Target{{Revision: "ns/a", Percent: 100}}
	tests := []struct {
		name   string
		routes []Route
		want   string // "" for accepted
	}{
		{"targets", []Route{{Hosts: []string{"a"}, Targets: ok}}, ""},
		{"paths", []Route{{Hosts: []string{"a"}, Visibility: ClusterLocal, Paths: []Path{{Prefix: "/x", Headers: map[string]string{"X-A": "1"}, Targets: ok}, {RewriteHost: "b"}}}}, ""},
		{"no hosts", []Route{{Targets: ok}}, "route 0: no hosts"},
		{"percents", []Route{{Hosts: []string{"a"}, Targets: []Target{{Revision: "x", Percent: 60}}}}, "route 0 (a): percents add up to 60, want 100"},
		{"both", []Route{{Hosts: []string{"a"}, Targets: ok, Paths: []Path{{Targets: ok}}}}, "route 0 (a): both targets and paths"},
		{"path percents", []Route{{Hosts: []string{"a"}, Paths: []Path{{Targets: ok}, {Targets: []Target{{Revision: "x", Percent: 101}}}}}}, "route 0 (a) path 1: target 0: percent 101 out of 0–100"},
		{"prefix", []Route{{Hosts: []string{"a"}, Paths: []Path{{Prefix: "x", Targets: ok}}}}, `route 0 (a) path 0: prefix "x" does not start with /`},
		{"header name", []Route{{Hosts: []string{"a"}, Paths: []Path{{Headers: map[string]string{"X A": "1"}, Targets: ok}}}}, `route 0 (a) path 0: header match: "X A" is no header name`},
		{"appended header", []Route{{Hosts: []string{"a"}, Paths: []Path{{Targets: []Target{{Revision: "x", Percent: 100, AppendHeaders: map[string]string{"": "1"}}}}}}}, `route 0 (a) path 0: target 0: appended header "" is no header name`},
		{"rewrite and targets", []Route{{Hosts: []string{"a"}, Paths: []Path{{RewriteHost: "b", Targets: ok}}}}, `route 0 (a) path 0: both targets and rewriteHost "b"`},
		{"rewrite host form", []Route{{Hosts: []string{"a"}, Paths: []Path{{RewriteHost: "B:80"}}}}, `route 0 (a) path 0: rewriteHost "B:80" is not in normal form (lower case, no port)`},
		{"visibility", []Route{{Hosts: []string{"a"}, Targets: ok, Visibility: 7}}, "route 0 (a): unknown visibility 7"},
		{"duplicate host", []Route{{Hosts: []string{"a"}, Targets: ok}, {Hosts: []string{"b", "a"}, Visibility: ClusterLocal, Targets: ok}}, `route 1: host "a" already belongs to route 0`},
	}
	for _, tt := range tests {
		err := checkRoutes(tt.routes)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: error %q, want %q", tt.name, got, tt.want)
		}
	}
}

// benchTable is a route table of n Knative Services as their Ingresses
// have them: a cluster-local and an external rule each, the external one
// with a tag path matched by header before the default path.
func benchTable(n int) []Route {
	var routes []Route
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("fn%d", i)
		rev := "ns/" + name + "-00001"
		routes = append(routes,
			Route{Hosts: []string{name + ".ns", name + ".ns.svc", name + ".ns.svc.cluster.local"}, Visibility: ClusterLocal, Targets: to(rev)},
			Route{Hosts: []string{name + ".ns.example.com"}, RedirectHTTP: i%2 == 1, Paths: []Path{
				{Headers: map[string]string{"Knative-Serving-Tag": "canary"}, Targets: to(rev)},
				{Targets: []Target{{Revision: rev, Percent: 90}, {Revision: "ns/" + name + "-00002", Percent: 10}}},
			}})
	}
	return routes
}

// BenchmarkTable_find measures the lookup alone: a Service's route (one
// catch-all path), and an Ingress route whose header path does not match.
func BenchmarkTable_find(b *testing.B) {
	tb := buildTable(append(benchTable(1000), ServiceRoutes("hello", "default", "", []ServiceTarget{{Revision: "default/hello-1", Percent: 100}})...), nil)
	for _, bc := range []struct {
		name, host string
		external   bool
	}{{"service", "hello.default.svc.cluster.local", false}, {"ingress-external", "fn500.ns.example.com", true}} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "http://"+bc.host+"/some/path", nil)
			req.Header.Set("User-Agent", "bench")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if t, _, _ := tb.find(routeHost(req.Host), req, bc.external); t == nil {
					b.Fatal("no target")
				}
			}
		})
	}
}

// The lookup allocates nothing, whatever it finds: a Service's route, a
// header path, a rewrite, a redirect, a miss.
func TestTable_findAllocatesNothing(t *testing.T) {
	routes := append(benchTable(10), Route{Hosts: []string{"app.example.org"}, Paths: []Path{
		{Prefix: "/old", Targets: to("ns/old")},
		{RewriteHost: "fn3.ns.example.com", AppendHeaders: map[string]string{"K-Original-Host": "app.example.org"}},
	}})
	if err := checkRoutes(routes); err != nil {
		t.Fatal(err)
	}
	tb := buildTable(routes, nil)
	for _, c := range []struct {
		host, tag string
		external  bool
		want      miss
	}{
		{"fn1.ns.svc", "", false, found},
		{"fn2.ns.example.com", "canary", true, found},
		{"fn1.ns.example.com", "", true, redirect},
		{"app.example.org", "canary", true, found},
		{"fn1.ns.svc", "", true, noHost},
	} {
		req := httptest.NewRequest("GET", "http://"+c.host+"/x", nil)
		if c.tag != "" {
			req.Header.Set("Knative-Serving-Tag", c.tag)
		}
		var why miss
		if n := testing.AllocsPerRun(100, func() { _, why, _ = tb.find(c.host, req, c.external) }); n != 0 || why != c.want {
			t.Errorf("%s: %v allocations, outcome %d; want 0, %d", c.host, n, why, c.want)
		}
	}
}
