package gateway

import (
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
