package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// Route sends the requests for a set of hosts to revisions, split by
// percent: one rule of the route table, as a Knative Ingress rule has it.
type Route struct {
	// Hosts are the Host header values the route answers, lower case,
	// without port.
	Hosts   []string
	Targets []Target
}

// Target is one share of a route.
type Target struct {
	// Revision is the revision's key, "namespace/name".
	Revision string
	// Percent is the share, 0–100; the targets of a route add up to 100.
	Percent int
	// AppendHeaders are set on the requests sent to this target.
	AppendHeaders map[string]string
}

// TagHeader tells a revision which tag a request came in by, as Knative's
// ingresses do.
const TagHeader = "Knative-Serving-Tag"

// HostNames lists every Host a Service (or a tag of it: name is then
// "<tag>-<service>") answers to, in Knative's cluster-local and external
// forms.
func HostNames(name, namespace, domain string) []string {
	base := name + "." + namespace
	keys := []string{base, base + ".svc", base + ".svc.cluster.local"}
	if domain != "" {
		keys = append(keys, base+"."+domain)
	}
	return keys
}

// ServiceTarget is one entry of a Service's traffic block, resolved to a
// revision.
type ServiceTarget struct {
	Revision string // "namespace/name"
	Percent  int
	Tag      string
}

// ServiceRoutes builds the route table of one Service: its hosts split by
// the targets' percents, and every tag's hosts to its revision alone.
func ServiceRoutes(name, namespace, domain string, targets []ServiceTarget) []Route {
	main := Route{Hosts: HostNames(name, namespace, domain)}
	var tagged []Route
	for _, t := range targets {
		if t.Percent > 0 {
			main.Targets = append(main.Targets, Target{Revision: t.Revision, Percent: t.Percent})
		}
		if t.Tag != "" {
			tagged = append(tagged, Route{
				Hosts:   HostNames(t.Tag+"-"+name, namespace, domain),
				Targets: []Target{{Revision: t.Revision, Percent: 100, AppendHeaders: map[string]string{TagHeader: t.Tag}}},
			})
		}
	}
	return append([]Route{main}, tagged...)
}

// routeHost normalises a Host header for lookup: no port, no trailing dot,
// lower case. It allocates only when the header needs lower-casing.
func routeHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// checkRoutes reports the first malformed route: no hosts, percents that
// do not add up to 100, a host in two routes.
func checkRoutes(routes []Route) error {
	seen := map[string]int{}
	for i, r := range routes {
		if len(r.Hosts) == 0 {
			return fmt.Errorf("route %d: no hosts", i)
		}
		total := 0
		for j, t := range r.Targets {
			if t.Percent < 0 || t.Percent > 100 {
				return fmt.Errorf("route %d target %d: percent %d out of 0–100", i, j, t.Percent)
			}
			if t.Revision == "" {
				return fmt.Errorf("route %d target %d: no revision", i, j)
			}
			total += t.Percent
		}
		if total != 100 {
			return fmt.Errorf("route %d (%s): percents add up to %d, want 100", i, r.Hosts[0], total)
		}
		for _, h := range r.Hosts {
			if h != routeHost(h) {
				return fmt.Errorf("route %d: host %q is not in normal form (lower case, no port)", i, h)
			}
			if k, dup := seen[h]; dup {
				return fmt.Errorf("route %d: host %q already belongs to route %d", i, h, k)
			}
			seen[h] = i
		}
	}
	return nil
}

// route is a Route resolved for the request path.
type route struct {
	targets []target
	// slots spreads 100 consecutive requests over the targets by percent,
	// interleaved, so any window of 100 requests splits exactly.
	slots [100]uint8
	next  atomic.Uint32
}

type target struct {
	revision string
	rev      *revision // nil while the gateway does not know the revision
	headers  http.Header
}

func newRoute(r Route, revs map[string]*revision) *route {
	rt := &route{}
	weights := make([]int, 0, len(r.Targets))
	for _, t := range r.Targets {
		if t.Percent == 0 {
			continue
		}
		var h http.Header
		if len(t.AppendHeaders) > 0 {
			h = make(http.Header, len(t.AppendHeaders))
			for k, v := range t.AppendHeaders {
				h.Set(k, v)
			}
		}
		rt.targets = append(rt.targets, target{revision: t.Revision, rev: revs[t.Revision], headers: h})
		weights = append(weights, t.Percent)
	}
	// Smooth weighted round robin: each slot goes to the target furthest
	// behind its share.
	credit := make([]int, len(weights))
	for s := range rt.slots {
		best := 0
		for i, w := range weights {
			credit[i] += w
			if credit[i] > credit[best] {
				best = i
			}
		}
		credit[best] -= 100
		rt.slots[s] = uint8(best)
	}
	return rt
}

// pick returns the target for the next request.
func (rt *route) pick() *target {
	if len(rt.targets) == 1 {
		return &rt.targets[0]
	}
	n := rt.next.Add(1) - 1
	return &rt.targets[rt.slots[n%100]]
}
