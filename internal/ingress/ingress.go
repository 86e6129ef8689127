// Package ingress turns Knative Ingresses of kantai's class into the route
// table every gateway serves, and says what an Ingress's status is once
// the gateways report what they serve. It does no I/O: the gateway daemon
// feeds it from informers, the controller writes the status it returns.
package ingress

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"knative.dev/networking/pkg/apis/networking"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"

	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/nodeapi"
)

// Class is the ingress class kantai implements (config-network
// "ingress-class", or the networking.knative.dev/ingress.class annotation).
const Class = "kantai.ingress.networking.knative.dev"

// Ours reports whether an Ingress belongs to kantai's class.
func Ours(ing *netv1alpha1.Ingress) bool {
	return ing.Annotations[networking.IngressClassAnnotationKey] == Class
}

// Reasons an Ingress is left out of the table (nodeapi.Problem.Reason).
const (
	// ReasonDomainConflict: a host is served by an older Ingress.
	ReasonDomainConflict = "DomainConflict"
	// ReasonTLSNotSupported: spec.tls is set, or a split names the
	// revision's https port; kantai's gateways do not speak TLS yet.
	ReasonTLSNotSupported = "TLSNotSupported"
	// ReasonH2CNotSupported: a split names the revision's h2c port (81).
	ReasonH2CNotSupported = "H2CNotSupported"
	// ReasonInvalidSpec: anything else malformed; the message names the
	// field.
	ReasonInvalidSpec = "InvalidSpec"
)

// Table is the route table built from every Ingress of the class.
type Table struct {
	// Internal holds every rule of every Ingress served (cluster-local
	// and external), each with its visibility: it is the whole table, for
	// gateway.Gateway.SetRoutes. The gateway itself serves all of it (the
	// in-cluster listener); its External handler serves the routes of
	// External visibility alone (see the method External).
	Internal []gateway.Route
	// Backends maps each revision key the routes send traffic to
	// ("namespace/name") to the Service a split named, so the home can
	// find its endpoints.
	Backends map[string]Backend
	// Generations maps "namespace/name" of each Ingress in the table to
	// the generation it was built from.
	Generations map[string]int64
	// Problems maps "namespace/name" of each Ingress left out to why.
	Problems map[string]nodeapi.Problem
}

// External returns the routes the external listener serves: those of
// Internal with External visibility.
func (t Table) External() []gateway.Route {
	var out []gateway.Route
	for _, r := range t.Internal {
		if r.Visibility == gateway.External {
			out = append(out, r)
		}
	}
	return out
}

// Backend is the Service a split named.
type Backend struct {
	Namespace, Service string
	Port               string
}

// Translate builds the table from ings (any order; Ingresses of other
// classes and those being deleted are ignored). An Ingress that cannot be
// served whole is left out whole, with a Problem; the others are not
// affected. When two Ingresses claim a host, the older (by
// creationTimestamp, then namespace/name) keeps it.
func Translate(ings []*netv1alpha1.Ingress) Table {
	t := Table{Backends: map[string]Backend{}, Generations: map[string]int64{}, Problems: map[string]nodeapi.Problem{}}
	var sorted []*netv1alpha1.Ingress
	for _, ing := range ings {
		if ing != nil && Ours(ing) && ing.DeletionTimestamp == nil {
			sorted = append(sorted, ing)
		}
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i].CreationTimestamp, sorted[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return key(sorted[i]) < key(sorted[j])
	})
	owner := map[string]string{} // host → Ingress serving it
	for _, ing := range sorted {
		k := key(ing)
		tr, err := translate(ing)
		if err == nil {
			for _, h := range tr.hosts {
				if o, taken := owner[h]; taken {
					err = &problem{ReasonDomainConflict, fmt.Sprintf("host %q is already served by Ingress %s", h, o)}
					break
				}
			}
		}
		if err != nil {
			t.Problems[k] = nodeapi.Problem{Reason: err.reason, Message: err.message, Generation: ing.Generation}
			continue
		}
		for _, h := range tr.hosts {
			owner[h] = k
		}
		t.Internal = append(t.Internal, tr.routes...)
		for rev, b := range tr.backends {
			if _, seen := t.Backends[rev]; !seen {
				t.Backends[rev] = b
			}
		}
		t.Generations[k] = ing.Generation
	}
	return t
}

func key(ing *netv1alpha1.Ingress) string { return ing.Namespace + "/" + ing.Name }

type problem struct{ reason, message string }

func invalid(field, format string, args ...any) *problem {
	return &problem{ReasonInvalidSpec, field + ": " + fmt.Sprintf(format, args...)}
}

type translated struct {
	routes   []gateway.Route
	hosts    []string // every host, once
	backends map[string]Backend
}

// translate turns one Ingress into routes, or says why it cannot be
// served.
func translate(ing *netv1alpha1.Ingress) (translated, *problem) {
	tr := translated{backends: map[string]Backend{}}
	spec := &ing.Spec
	if len(spec.TLS) > 0 {
		return tr, &problem{ReasonTLSNotSupported, "spec.tls: kantai's gateways do not terminate TLS yet"}
	}
	redirect := false
	switch spec.HTTPOption {
	case "", netv1alpha1.HTTPOptionEnabled:
	case netv1alpha1.HTTPOptionRedirected:
		redirect = true
	default:
		return tr, invalid("spec.httpOption", "%q is neither Enabled nor Redirected", spec.HTTPOption)
	}
	if len(spec.Rules) == 0 {
		return tr, invalid("spec.rules", "no rules")
	}
	seen := map[string]bool{}
	for i, rule := range spec.Rules {
		field := fmt.Sprintf("spec.rules[%d]", i)
		r := gateway.Route{}
		switch rule.Visibility {
		case "", netv1alpha1.IngressVisibilityExternalIP:
			r.RedirectHTTP = redirect
		case netv1alpha1.IngressVisibilityClusterLocal:
			r.Visibility = gateway.ClusterLocal
		default:
			return tr, invalid(field+".visibility", "%q is neither ExternalIP nor ClusterLocal", rule.Visibility)
		}
		if len(rule.Hosts) == 0 {
			return tr, invalid(field+".hosts", "no hosts (kantai serves no catch-all host)")
		}
		for j, h := range rule.Hosts {
			host, err := normalHost(h)
			if err != "" {
				return tr, invalid(fmt.Sprintf("%s.hosts[%d]", field, j), "%s", err)
			}
			// A host in two rules is served by the first.
			if !seen[host] {
				seen[host] = true
				r.Hosts = append(r.Hosts, host)
			}
		}
		if rule.HTTP == nil || len(rule.HTTP.Paths) == 0 {
			return tr, invalid(field+".http.paths", "no paths")
		}
		for j, p := range rule.HTTP.Paths {
			gp, err := translatePath(ing.Namespace, fmt.Sprintf("%s.http.paths[%d]", field, j), p, tr.backends)
			if err != nil {
				return tr, err
			}
			r.Paths = append(r.Paths, gp)
		}
		if p := r.Paths; len(p) == 1 && (p[0].Prefix == "" || p[0].Prefix == "/") && len(p[0].Headers) == 0 &&
			len(p[0].AppendHeaders) == 0 && p[0].RewriteHost == "" {
			// One path for every request: a route of targets, as a
			// Service's.
			r.Targets, r.Paths = p[0].Targets, nil
		}
		if len(r.Hosts) > 0 {
			tr.hosts = append(tr.hosts, r.Hosts...)
			tr.routes = append(tr.routes, r)
		}
	}
	return tr, nil
}

func translatePath(namespace, field string, p netv1alpha1.HTTPIngressPath, backends map[string]Backend) (gateway.Path, *problem) {
	gp := gateway.Path{Prefix: p.Path}
	if gp.Prefix != "" && gp.Prefix[0] != '/' {
		return gp, invalid(field+".path", "%q does not start with /", p.Path)
	}
	for name, m := range p.Headers {
		if !validHeaderName(name) {
			return gp, invalid(field+".headers", "%q is no header name", name)
		}
		if gp.Headers == nil {
			gp.Headers = map[string]string{}
		}
		gp.Headers[name] = m.Exact
	}
	if err := checkHeaders(field+".appendHeaders", p.AppendHeaders); err != nil {
		return gp, err
	}
	if len(p.Splits) == 0 {
		return gp, invalid(field+".splits", "no splits")
	}
	total := 0
	for k, s := range p.Splits {
		sf := fmt.Sprintf("%s.splits[%d]", field, k)
		if err := checkBackend(namespace, sf, s.IngressBackend); err != nil {
			return gp, err
		}
		if s.Percent < 0 || s.Percent > 100 {
			return gp, invalid(sf+".percent", "%d is not within 0–100", s.Percent)
		}
		if err := checkHeaders(sf+".appendHeaders", s.AppendHeaders); err != nil {
			return gp, err
		}
		total += s.Percent
	}
	single := len(p.Splits) == 1
	if single && total == 0 {
		total = 100 // Knative's default for a single split
	}
	if total != 100 {
		return gp, invalid(field+".splits", "percents add up to %d, want 100", total)
	}
	if p.RewriteHost != "" {
		// The request goes on to the route of the new host, carrying the
		// headers of the path and of its split (K-Original-Host for a
		// DomainMapping); the split's Service is not called.
		host, err := normalHost(p.RewriteHost)
		if err != "" {
			return gp, invalid(field+".rewriteHost", "%s", err)
		}
		if !single {
			return gp, invalid(field+".splits", "a path with rewriteHost takes one split, not %d", len(p.Splits))
		}
		gp.RewriteHost = host
		gp.AppendHeaders = merge(p.AppendHeaders, p.Splits[0].AppendHeaders)
		return gp, nil
	}
	gp.AppendHeaders = p.AppendHeaders
	for _, s := range p.Splits {
		pct := s.Percent
		if single {
			pct = 100
		}
		if pct == 0 {
			continue // no traffic: the gateway need not know the revision
		}
		rev := s.ServiceNamespace + "/" + s.ServiceName
		if _, seen := backends[rev]; !seen {
			backends[rev] = Backend{Namespace: s.ServiceNamespace, Service: s.ServiceName, Port: s.ServicePort.String()}
		}
		gp.Targets = append(gp.Targets, gateway.Target{Revision: rev, Percent: pct, AppendHeaders: s.AppendHeaders})
	}
	return gp, nil
}

// checkBackend accepts a Service of the Ingress's namespace on the
// revision's plain HTTP port (Knative's Route names the revision's public
// Service, port 80 "http" for HTTP/1, 81 "http2" for h2c, 443 "https"
// with system-internal TLS).
func checkBackend(namespace, field string, b netv1alpha1.IngressBackend) *problem {
	switch {
	case b.ServiceNamespace == "":
		return invalid(field+".serviceNamespace", "missing")
	case b.ServiceNamespace != namespace:
		return invalid(field+".serviceNamespace", "%q is not the Ingress's namespace %q", b.ServiceNamespace, namespace)
	case b.ServiceName == "":
		return invalid(field+".serviceName", "missing")
	case strings.Contains(b.ServiceName, "/"):
		return invalid(field+".serviceName", "%q is no Service name", b.ServiceName)
	}
	port := b.ServicePort
	switch {
	case port == intstr.FromInt(networking.ServiceHTTPPort) || port == intstr.FromString(networking.ServicePortNameHTTP1):
		return nil
	case port == intstr.FromInt(networking.ServiceHTTP2Port) || port == intstr.FromString(networking.ServicePortNameH2C) || port == intstr.FromString("h2c"):
		return &problem{ReasonH2CNotSupported, field + ".servicePort: " + port.String() + " is the revision's h2c port; kantai's gateways forward HTTP/1.1 only"}
	case port == intstr.FromInt(networking.ServiceHTTPSPort) || port == intstr.FromString(networking.ServicePortNameHTTPS):
		return &problem{ReasonTLSNotSupported, field + ".servicePort: " + port.String() + " is the revision's https port; kantai's gateways do not speak TLS to revisions yet"}
	case port.Type == intstr.Int && port.IntVal == 0 || port.Type == intstr.String && port.StrVal == "":
		return invalid(field+".servicePort", "missing")
	}
	return invalid(field+".servicePort", "%s is not the revision's HTTP port (80 or \"http\")", strconv.Quote(port.String()))
}

func checkHeaders(field string, h map[string]string) *problem {
	for name := range h {
		if !validHeaderName(name) {
			return invalid(field, "%q is no header name", name)
		}
	}
	return nil
}

// normalHost lower-cases a rule's host and says what is wrong with it:
// kantai matches whole host names, without port or wildcard.
func normalHost(h string) (string, string) {
	host := strings.ToLower(h)
	switch {
	case host == "":
		return "", "empty"
	case strings.ContainsAny(host, ":/*@ \t"):
		return "", strconv.Quote(h) + " is no host name (no port, path or wildcard)"
	case strings.HasSuffix(host, ".") || strings.HasPrefix(host, "."):
		return "", strconv.Quote(h) + " begins or ends with a dot"
	}
	return host, ""
}

// validHeaderName reports an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// merge returns a's entries with b's over them; nil when both are empty.
func merge(a, b map[string]string) map[string]string {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
