package ingress

import (
	"fmt"
	"slices"
	"strings"

	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"

	"kantai.dev/kantai/internal/nodeapi"
)

// LoadBalancer names the Services an Ingress's traffic enters by, as the
// status's load balancer entries carry them (DNS names inside the
// cluster).
type LoadBalancer struct {
	Public, Private string
}

// DefaultGatewayService is the gateways' ClusterIP Service.
const DefaultGatewayService = "kantai-gateway"

// ServiceDNS is the in-cluster DNS name of a Service.
func ServiceDNS(namespace, name string) string {
	return fmt.Sprintf("%s.%s.svc.cluster.local", name, namespace)
}

// StatusFunc computes an Ingress's status from the reports of the ready
// gateways (one State per ready gateway; a gateway not read yet reports
// nothing but its node) and the load balancer. It must not change its
// arguments.
type StatusFunc func(ing *netv1alpha1.Ingress, reports []nodeapi.State, lb LoadBalancer) netv1alpha1.IngressStatus

// localStatus stands in for ingress.Status of package internal/ingress,
// which replaces it once that package has it (the Reconciler takes either
// through its ComputeStatus field):
//
//	problem reported by a ready gateway  → LoadBalancerReady False (its reason)
//	no ready gateway                     → LoadBalancerReady Unknown
//	a ready gateway lacks the generation → LoadBalancerReady Unknown
//	every ready gateway has it           → LoadBalancerReady True, one public
//	                                       and one private entry
//
// NetworkConfigured is True and observedGeneration the Ingress's in every
// case; transition times of unchanged conditions are kept.
func localStatus(ing *netv1alpha1.Ingress, reports []nodeapi.State, lb LoadBalancer) netv1alpha1.IngressStatus {
	st := *ing.Status.DeepCopy()
	st.ObservedGeneration = ing.Generation
	st.InitializeConditions()
	st.MarkNetworkConfigured()
	key := ing.Namespace + "/" + ing.Name
	sorted := slices.Clone(reports)
	slices.SortFunc(sorted, func(a, b nodeapi.State) int { return strings.Compare(a.Node, b.Node) })
	for _, r := range sorted {
		if p, ok := r.Problems[key]; ok {
			st.MarkLoadBalancerFailed(p.Reason, fmt.Sprintf("node %s: %s", r.Node, p.Message))
			return st
		}
	}
	if len(sorted) == 0 {
		st.MarkLoadBalancerNotReady()
		return st
	}
	var missing []string
	for _, r := range sorted {
		if g, ok := r.Ingresses[key]; !ok || g < ing.Generation {
			missing = append(missing, r.Node)
		}
	}
	if len(missing) > 0 {
		st.MarkLoadBalancerNotReady()
		return st
	}
	st.MarkLoadBalancerReady(
		[]netv1alpha1.LoadBalancerIngressStatus{{DomainInternal: lb.Public}},
		[]netv1alpha1.LoadBalancerIngressStatus{{DomainInternal: lb.Private}})
	return st
}
