package ingress

import (
	"fmt"
	"sort"
	"strings"

	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"

	"kantai.dev/kantai/internal/nodeapi"
)

// LoadBalancer names the gateway Services an Ingress's status points at:
// Knative's Route makes its placeholder Service an ExternalName to the
// private one (the public one when there is no private one).
type LoadBalancer struct {
	// Public is the cluster DNS name of the external gateway Service (the
	// gateways' External listener), Private that of the internal one.
	Public, Private string
}

// DefaultLoadBalancer is the Services kantai's manifests install, in
// namespace kantai-system of a cluster with domain cluster.local.
var DefaultLoadBalancer = ServiceLoadBalancer("kantai-system", "cluster.local")

// ServiceLoadBalancer names the gateway Services kantai-gateway and
// kantai-gateway-internal in namespace of a cluster with clusterDomain.
func ServiceLoadBalancer(namespace, clusterDomain string) LoadBalancer {
	suffix := "." + namespace + ".svc." + clusterDomain
	return LoadBalancer{Public: "kantai-gateway" + suffix, Private: "kantai-gateway-internal" + suffix}
}

// Report is what one node's gateway says about the Ingresses it serves
// (see nodeapi.State), and whether the gateway is ready to take traffic
// (its pod is among the gateway Service's ready endpoints).
type Report struct {
	Node      string
	Ready     bool
	Ingresses map[string]int64
	Problems  map[string]nodeapi.Problem
}

// ReportOf is the Report of a node's State.
func ReportOf(s nodeapi.State, ready bool) Report {
	return Report{Node: s.Node, Ready: ready, Ingresses: s.Ingresses, Problems: s.Problems}
}

// ReadyReports are the Reports of the States of gateways known to be
// ready.
func ReadyReports(states []nodeapi.State) []Report {
	out := make([]Report, len(states))
	for i, s := range states {
		out[i] = ReportOf(s, true)
	}
	return out
}

// Reasons of LoadBalancerReady besides those of the problems.
const (
	// ReasonNoGateway: no gateway is ready, so none can serve the Ingress.
	ReasonNoGateway = "NoGateway"
	// ReasonProgramming: some ready gateway does not serve the Ingress's
	// generation yet.
	ReasonProgramming = "Programming"
)

// Status is the status of ing once the gateways have reported: the
// generation observed, NetworkConfigured True, LoadBalancerReady True once
// every ready gateway serves this generation, False when a gateway refused
// it (the reason and message of the problem, from the first node by
// name), Unknown while there is no ready gateway or some ready gateway has
// not caught up (a gateway that already serves a later generation, seen
// before ing was, counts as serving it). The load balancers are always one public and one private
// entry, lb's. Conditions that do not change keep their transition time
// from ing's current status.
func Status(ing *netv1alpha1.Ingress, reports []Report, lb LoadBalancer) netv1alpha1.IngressStatus {
	st := ing.Status.DeepCopy()
	st.InitializeConditions()
	st.ObservedGeneration = ing.Generation
	st.MarkNetworkConfigured()
	public := []netv1alpha1.LoadBalancerIngressStatus{{DomainInternal: lb.Public}}
	private := []netv1alpha1.LoadBalancerIngressStatus{{DomainInternal: lb.Private}}
	st.PublicLoadBalancer = &netv1alpha1.LoadBalancerStatus{Ingress: public}
	st.PrivateLoadBalancer = &netv1alpha1.LoadBalancerStatus{Ingress: private}

	k := key(ing)
	ready := make([]Report, 0, len(reports))
	for _, r := range reports {
		if r.Ready {
			ready = append(ready, r)
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Node < ready[j].Node })
	cond := ing.GetConditionSet().Manage(st)
	if len(ready) == 0 {
		cond.MarkUnknown(netv1alpha1.IngressConditionLoadBalancerReady, ReasonNoGateway,
			fmt.Sprintf("no gateway is ready to serve the Ingress (%d known)", len(reports)))
		return *st
	}
	var behind []string
	for _, r := range ready {
		if p, refused := r.Problems[k]; refused && (p.Generation == ing.Generation || p.Generation == 0) {
			st.MarkLoadBalancerFailed(p.Reason, "node "+r.Node+": "+p.Message)
			return *st
		}
		if g, ok := r.Ingresses[k]; !ok || g < ing.Generation {
			behind = append(behind, r.Node)
		}
	}
	if len(behind) > 0 {
		cond.MarkUnknown(netv1alpha1.IngressConditionLoadBalancerReady, ReasonProgramming,
			fmt.Sprintf("%d of %d ready gateways do not serve generation %d yet: %s",
				len(behind), len(ready), ing.Generation, listSome(behind, 3)))
		return *st
	}
	st.MarkLoadBalancerReady(public, private)
	return *st
}

// listSome lists the first n names and counts the rest.
func listSome(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}
