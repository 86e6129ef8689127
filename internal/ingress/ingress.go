// Package ingress turns Knative Ingresses of kantai's class into the route
// table every gateway serves, and says what an Ingress's status is once
// the gateways report what they serve. It does no I/O: the gateway daemon
// feeds it from informers, the controller writes the status it returns.
package ingress

import (
	"fmt"
	"sort"

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

// Table is the route table built from every Ingress of the class.
type Table struct {
	// External holds the rules reachable from outside the cluster;
	// Internal holds every rule (cluster-local and external).
	External, Internal []gateway.Route
	// Backends maps each revision key the routes name ("namespace/name")
	// to the Service a split named, so the home can find its endpoints.
	Backends map[string]Backend
	// Generations maps "namespace/name" of each Ingress in the table to
	// the generation it was built from.
	Generations map[string]int64
	// Problems maps "namespace/name" of each Ingress left out to why.
	Problems map[string]nodeapi.Problem
}

// Backend is the Service a split named.
type Backend struct {
	Namespace, Service string
	Port               string
}

// Translate builds the table from ings (any order; Ingresses of other
// classes are ignored).
func Translate(ings []*netv1alpha1.Ingress) Table {
	t := Table{Backends: map[string]Backend{}, Generations: map[string]int64{}, Problems: map[string]nodeapi.Problem{}}
	sorted := append([]*netv1alpha1.Ingress(nil), ings...)
	sort.Slice(sorted, func(i, j int) bool { return key(sorted[i]) < key(sorted[j]) })
	for _, ing := range sorted {
		if !Ours(ing) || ing.DeletionTimestamp != nil {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			r := gateway.Route{Hosts: rule.Hosts}
			for _, p := range rule.HTTP.Paths {
				for _, s := range p.Splits {
					rev := s.ServiceNamespace + "/" + s.ServiceName
					t.Backends[rev] = Backend{Namespace: s.ServiceNamespace, Service: s.ServiceName, Port: s.ServicePort.String()}
					pct := s.Percent
					if len(p.Splits) == 1 && pct == 0 {
						pct = 100
					}
					r.Targets = append(r.Targets, gateway.Target{Revision: rev, Percent: pct, AppendHeaders: s.AppendHeaders})
				}
			}
			t.Internal = append(t.Internal, r)
			if rule.Visibility != netv1alpha1.IngressVisibilityClusterLocal {
				t.External = append(t.External, r)
			}
		}
		t.Generations[key(ing)] = ing.Generation
	}
	return t
}

func key(ing *netv1alpha1.Ingress) string { return fmt.Sprintf("%s/%s", ing.Namespace, ing.Name) }
