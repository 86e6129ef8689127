package gateway

import "strings"

// hostKeys lists every Host a function answers to, the way Knative's
// cluster-local and external domains name it.
func hostKeys(name, namespace, domain string) []string {
	base := name + "." + namespace
	keys := []string{base, base + ".svc", base + ".svc.cluster.local"}
	if domain != "" {
		keys = append(keys, base+"."+domain)
	}
	return keys
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
