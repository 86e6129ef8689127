package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// Route sends the requests for a set of hosts to revisions: one rule of
// the route table, as a Knative Ingress rule has it. A route either splits
// every request by Targets (a Service's route) or has Paths, tried in
// order.
type Route struct {
	// Hosts are the Host header values the route answers, lower case,
	// without port.
	Hosts   []string
	Targets []Target
	// Paths are tried in order; the first that matches a request serves
	// it. A request that matches none gets 404. Empty: Targets serve every
	// request.
	Paths []Path
	// Visibility says which of the gateway's listeners serve the route.
	Visibility Visibility
	// RedirectHTTP answers requests that came over plain HTTP to the
	// External handler with 301 to the same URL over https.
	RedirectHTTP bool
}

// Visibility says which listeners serve a route: the gateway itself (its
// ServeHTTP, the in-cluster listener) serves every route, the handler
// External returns only the External ones.
type Visibility uint8

// Visibilities of a route, as a Knative Ingress rule has them.
const (
	External Visibility = iota
	ClusterLocal
)

func (v Visibility) String() string {
	if v == ClusterLocal {
		return "ClusterLocal"
	}
	return "External"
}

// Path is one path rule of a route.
type Path struct {
	// Prefix the request's path must start with; empty matches every path.
	Prefix string
	// Headers the request must carry, each with exactly this value (one of
	// its values, when it has several). Names in any case.
	Headers map[string]string
	// Targets split the requests the path matches, by percent.
	Targets []Target
	// AppendHeaders are set on every request the path matches; a target's
	// own AppendHeaders win over them.
	AppendHeaders map[string]string
	// RewriteHost, instead of Targets, sends the request on as if its Host
	// were this: the paths of the route that serves that host (on any
	// listener) are tried, once (a rewrite there is not followed), and the
	// request is forwarded with that Host and with AppendHeaders added.
	RewriteHost string
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

// CheckRoutes reports the first malformed route, as SetRoutes would: no
// hosts, percents that do not add up to 100, a path that is not one, a
// host in two routes.
func CheckRoutes(routes []Route) error { return checkRoutes(routes) }

func checkRoutes(routes []Route) error {
	seen := map[string]int{}
	for i, r := range routes {
		if len(r.Hosts) == 0 {
			return fmt.Errorf("route %d: no hosts", i)
		}
		if r.Visibility > ClusterLocal {
			return fmt.Errorf("route %d (%s): unknown visibility %d", i, r.Hosts[0], r.Visibility)
		}
		if len(r.Paths) == 0 {
			if err := checkTargets(r.Targets); err != nil {
				return fmt.Errorf("route %d (%s): %w", i, r.Hosts[0], err)
			}
		} else if len(r.Targets) > 0 {
			return fmt.Errorf("route %d (%s): both targets and paths", i, r.Hosts[0])
		}
		for j, p := range r.Paths {
			if err := checkPath(p); err != nil {
				return fmt.Errorf("route %d (%s) path %d: %w", i, r.Hosts[0], j, err)
			}
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

func checkPath(p Path) error {
	if p.Prefix != "" && p.Prefix[0] != '/' {
		return fmt.Errorf("prefix %q does not start with /", p.Prefix)
	}
	for name := range p.Headers {
		if !validHeaderName(name) {
			return fmt.Errorf("header match: %q is no header name", name)
		}
	}
	for name := range p.AppendHeaders {
		if !validHeaderName(name) {
			return fmt.Errorf("appended header %q is no header name", name)
		}
	}
	if p.RewriteHost != "" {
		if len(p.Targets) > 0 {
			return fmt.Errorf("both targets and rewriteHost %q", p.RewriteHost)
		}
		if p.RewriteHost != routeHost(p.RewriteHost) {
			return fmt.Errorf("rewriteHost %q is not in normal form (lower case, no port)", p.RewriteHost)
		}
		return nil
	}
	return checkTargets(p.Targets)
}

func checkTargets(targets []Target) error {
	total := 0
	for j, t := range targets {
		if t.Percent < 0 || t.Percent > 100 {
			return fmt.Errorf("target %d: percent %d out of 0–100", j, t.Percent)
		}
		if t.Revision == "" {
			return fmt.Errorf("target %d: no revision", j)
		}
		for name := range t.AppendHeaders {
			if !validHeaderName(name) {
				return fmt.Errorf("target %d: appended header %q is no header name", j, name)
			}
		}
		total += t.Percent
	}
	if total != 100 {
		return fmt.Errorf("percents add up to %d, want 100", total)
	}
	return nil
}

// validHeaderName reports an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// table is one immutable snapshot of the route table, as the request path
// reads it: every host (the in-cluster listener) and the external hosts.
// Both maps share their vhosts, so a route's split counters are the same
// whichever listener a request came by.
type table struct {
	all, external map[string]*vhost
}

// vhost is a route resolved for the request path.
type vhost struct {
	paths    []pathRule
	redirect bool
	// only is the split of a host whose one path matches every request
	// (a Service's route), found without trying paths.
	only *route
}

type pathRule struct {
	prefix  string
	headers []headerMatch
	route   *route // nil for a rewrite
	// rewrite holds, for a RewriteHost path, the paths of the host it
	// names, their targets carrying this path's headers and the new Host;
	// rewriteHost is the host, for messages.
	rewrite     []pathRule
	rewriteHost string
}

type headerMatch struct{ name, value string } // name canonical

// buildTable resolves a checked route list against the known revisions.
func buildTable(routes []Route, revs map[string]*revision) *table {
	tb := &table{all: make(map[string]*vhost, 4*len(routes)), external: make(map[string]*vhost, 4*len(routes))}
	byHost := make(map[string]*Route, 4*len(routes))
	for i := range routes {
		r := &routes[i]
		for _, h := range r.Hosts {
			byHost[h] = r
		}
	}
	for i := range routes {
		r := &routes[i]
		vh := &vhost{redirect: r.RedirectHTTP}
		for _, p := range routePaths(r) {
			pr := newPathRule(p, nil, "", revs)
			if p.RewriteHost != "" {
				pr.rewriteHost = p.RewriteHost
				// The destination's own rewrites are not followed: no loops.
				if dest := byHost[p.RewriteHost]; dest != nil {
					for _, dp := range routePaths(dest) {
						if dp.RewriteHost == "" {
							pr.rewrite = append(pr.rewrite, newPathRule(dp, p.AppendHeaders, p.RewriteHost, revs))
						}
					}
				}
			}
			vh.paths = append(vh.paths, pr)
		}
		if p := vh.paths; len(p) == 1 && p[0].prefix == "" && len(p[0].headers) == 0 {
			vh.only = p[0].route // nil for a rewrite
		}
		for _, h := range r.Hosts {
			tb.all[h] = vh
			if r.Visibility == External {
				tb.external[h] = vh
			}
		}
	}
	return tb
}

// routePaths is a route's paths; a route of Targets alone has one that
// matches every request.
func routePaths(r *Route) []Path {
	if len(r.Paths) == 0 {
		return []Path{{Targets: r.Targets}}
	}
	return r.Paths
}

// newPathRule resolves p; base headers (a rewrite's) come before p's own,
// and host, when set, replaces the request's Host.
func newPathRule(p Path, base map[string]string, host string, revs map[string]*revision) pathRule {
	pr := pathRule{prefix: p.Prefix}
	if pr.prefix == "/" {
		pr.prefix = ""
	}
	for name, v := range p.Headers {
		pr.headers = append(pr.headers, headerMatch{name: http.CanonicalHeaderKey(name), value: v})
	}
	slices.SortFunc(pr.headers, func(a, b headerMatch) int { return strings.Compare(a.name, b.name) })
	if p.RewriteHost == "" {
		pr.route = newRoute(p.Targets, base, p.AppendHeaders, host, revs)
	}
	return pr
}

// requestView is what route lookup reads of a request, whichever engine
// received it.
type requestView interface {
	hasPathPrefix(prefix string) bool
	// hasHeader reports whether one of the request's values of the header
	// with the canonical name is exactly value.
	hasHeader(name, value string) bool
	// overTLS reports a request that reached the gateway over TLS, or
	// through a proxy that terminated TLS and says so (the last
	// X-Forwarded-Proto is https).
	overTLS() bool
}

// matches reports whether a request's path and headers satisfy the rule.
func matches[V requestView](p *pathRule, v V) bool {
	if !v.hasPathPrefix(p.prefix) {
		return false
	}
	for _, m := range p.headers {
		if !v.hasHeader(m.name, m.value) {
			return false
		}
	}
	return true
}

// miss says why a request found no target.
type miss uint8

const (
	found     miss = iota
	noHost         // no route serves the Host
	noPath         // the route has no path matching the request
	redirect       // plain HTTP to a route that redirects to https
	noRewrite      // a path rewrites the Host to one no route serves
)

// find returns the target for a request to host (normalised) by the
// external listener or the in-cluster one, or why there is none; for
// noRewrite, the rewritten host. It neither allocates nor locks.
func (tb *table) find(host string, r *http.Request, external bool) (*target, miss, string) {
	return find(tb, host, httpExchange{r: r}, external)
}

// find is table.find for a request of either engine.
func find[V requestView](tb *table, host string, r V, external bool) (*target, miss, string) {
	m := tb.all
	if external {
		m = tb.external
	}
	vh := m[host]
	if vh == nil {
		return nil, noHost, ""
	}
	if external && vh.redirect && !r.overTLS() {
		return nil, redirect, ""
	}
	if vh.only != nil {
		return vh.only.pick(), found, ""
	}
	p := firstMatch(vh.paths, r)
	if p == nil {
		return nil, noPath, ""
	}
	if p.route == nil {
		dest := firstMatch(p.rewrite, r)
		if dest == nil {
			if len(p.rewrite) == 0 {
				return nil, noRewrite, p.rewriteHost
			}
			return nil, noPath, p.rewriteHost
		}
		p = dest
	}
	return p.route.pick(), found, ""
}

func firstMatch[V requestView](paths []pathRule, r V) *pathRule {
	for i := range paths {
		if matches(&paths[i], r) {
			return &paths[i]
		}
	}
	return nil
}

// unrouted answers a request that found no target.
func unrouted[X exchange](g *Gateway, x X, why miss, host, detail string) {
	code := http.StatusNotFound
	switch why {
	case redirect:
		code = http.StatusMovedPermanently
		x.redirect("https://"+host+x.requestURI(), code)
	case noPath:
		if detail != "" {
			host = detail
		}
		x.reply(code, "kantai: no path of host "+strconv.Quote(host)+" matches "+strconv.Quote(x.path()), false)
	case noRewrite:
		x.reply(code, "kantai: host "+strconv.Quote(x.rawHost())+" is rewritten to "+strconv.Quote(detail)+", which no function serves", false)
	default:
		x.reply(code, "kantai: no function serves host "+strconv.Quote(x.rawHost()), false)
	}
	g.cfg.Metrics.requests.WithLabelValues("", "", g.cfg.Node, "none", strconv.Itoa(code)).Inc()
}

// External returns the handler of the gateway's external listener: the
// same gateway (revisions, replicas, buffers, stats), serving only the
// routes of External visibility, with their https redirects. The gateway
// itself is the in-cluster listener's handler: every route, no redirect.
func (g *Gateway) External() http.Handler { return externalListener{g} }

type externalListener struct{ g *Gateway }

func (l externalListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(l.g, httpExchange{w: w, r: r}, true)
}

// route is a split of targets resolved for the request path.
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
	host     string // replaces the request's Host when set (a rewrite)
}

// newRoute resolves targets; each target's headers are base, then path,
// then its own, later ones winning.
func newRoute(targets []Target, base, path map[string]string, host string, revs map[string]*revision) *route {
	rt := &route{}
	weights := make([]int, 0, len(targets))
	for _, t := range targets {
		if t.Percent == 0 {
			continue
		}
		var h http.Header
		if n := len(base) + len(path) + len(t.AppendHeaders); n > 0 {
			h = make(http.Header, n)
			for _, m := range []map[string]string{base, path, t.AppendHeaders} {
				for k, v := range m {
					h.Set(k, v)
				}
			}
		}
		rt.targets = append(rt.targets, target{revision: t.Revision, rev: revs[t.Revision], headers: h, host: host})
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

// firstRoute is the split of a host's first path, a rewrite followed; nil
// when a rewrite leads nowhere.
func (vh *vhost) firstRoute() *route {
	if len(vh.paths) == 0 {
		return nil
	}
	p := &vh.paths[0]
	if p.route == nil {
		if len(p.rewrite) == 0 {
			return nil
		}
		p = &p.rewrite[0]
	}
	return p.route
}
