package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzRouteHost: any Host header a client sends is normalised without
// panicking, to lower case without a port, stable when normalised again;
// a Service's hosts are found whatever their case, port or trailing dot,
// and only a header that contains one of them routes to it.
func FuzzRouteHost(f *testing.F) {
	for _, s := range []string{"hello.default", "Hello.Default.svc.cluster.local.:8080", "[::1]:80", "",
		":", "canary-hello.default.example.com", "hello.default.example.com:", "\x00.", "a:b:c", "HELLO"} {
		f.Add(s)
	}
	table := map[string]bool{}
	for _, r := range ServiceRoutes("hello", "default", "example.com", []ServiceTarget{{Revision: "default/hello-00001", Percent: 100, Tag: "canary"}}) {
		for _, h := range r.Hosts {
			table[h] = true
		}
	}
	if err := checkRoutes(ServiceRoutes("hello", "default", "example.com", []ServiceTarget{{Revision: "default/hello-00001", Percent: 100, Tag: "canary"}})); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host string) {
		h := routeHost(host)
		if !strings.ContainsAny(h, ":") && !strings.HasSuffix(h, ".") && routeHost(h) != h {
			t.Fatalf("routeHost(%q) = %q, which normalises again to %q", host, h, routeHost(h))
		}
		if strings.ContainsAny(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("routeHost(%q) = %q: not lower case", host, h)
		}
		if table[h] {
			// Whatever the client wrote, it names one of the Service's hosts.
			if !strings.Contains(strings.ToLower(host), h) {
				t.Fatalf("host %q routed as %q, which it does not contain", host, h)
			}
		}
		// A known host with any case, port or trailing dot finds its route.
		for known := range table {
			variant := strings.ToUpper(known[:1]) + known[1:] + ".:" + "80"
			if !table[routeHost(variant)] {
				t.Fatalf("variant %q of %q not found", variant, known)
			}
			break
		}
	})
}

// FuzzTableFind: any Host, path and tag header find a target or say why
// without panicking; what the external listener serves, the in-cluster
// one serves the same way; a host the in-cluster listener does not know,
// the external one does not either.
func FuzzTableFind(f *testing.F) {
	for _, s := range [][3]string{{"fn1.ns.example.com", "/", ""}, {"fn2.ns.svc", "/x", "canary"}, {"app.example.org", "/old/x", ""},
		{"app.example.org", "/", "canary"}, {"FN1.ns.example.com.:80", "", "canary"}, {"", "", ""}} {
		f.Add(s[0], s[1], s[2])
	}
	routes := benchTable(4)
	for i := range routes {
		for j := range routes[i].Paths {
			routes[i].Paths[j].Targets = to(routes[i].Paths[j].Targets[0].Revision) // 100%: both listeners pick alike
		}
	}
	routes = append(routes, Route{Hosts: []string{"app.example.org"}, RedirectHTTP: true, Paths: []Path{
		{Prefix: "/old", Targets: to("ns/old")},
		{RewriteHost: "fn2.ns.svc", AppendHeaders: map[string]string{"K-Original-Host": "app.example.org"}},
	}})
	if err := checkRoutes(routes); err != nil {
		f.Fatal(err)
	}
	tb := buildTable(routes, nil)
	f.Fuzz(func(t *testing.T, host, path, tag string) {
		req := &http.Request{Host: host, URL: &url.URL{Path: path}, Header: http.Header{}}
		if tag != "" {
			req.Header["Knative-Serving-Tag"] = []string{tag}
		}
		h := routeHost(host)
		in, inWhy, _ := tb.find(h, req, false)
		ex, exWhy, _ := tb.find(h, req, true)
		if (in == nil) != (inWhy != found) || (ex == nil) != (exWhy != found) {
			t.Fatalf("%q %q: target %v with %d, %v with %d", host, path, in, inWhy, ex, exWhy)
		}
		if inWhy == redirect {
			t.Fatalf("%q: the in-cluster listener redirects", host)
		}
		if ex != nil && (in == nil || in.revision != ex.revision || in.host != ex.host) {
			t.Fatalf("%q %q %q: external serves %v, in-cluster %v", host, path, tag, ex, in)
		}
		if inWhy == noHost && exWhy != noHost {
			t.Fatalf("%q: unknown in cluster but external says %d", host, exWhy)
		}
	})
}
