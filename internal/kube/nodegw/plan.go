package nodegw

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"

	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/gateway"
	"kantai.dev/kantai/internal/ingress"
	"kantai.dev/kantai/internal/nodeapi"
)

// Labels and names read from objects Knative and Kubernetes write.
const (
	// LabelServiceName names the Service an EndpointSlice belongs to.
	LabelServiceName = discoveryv1.LabelServiceName
	// LabelServiceType is set by Knative's ServerlessService reconciler on
	// a revision's Services (and copied to their EndpointSlices):
	// "Private" on "<rev>-private", which selects the revision's pods,
	// "Public" on "<rev>" (knative.dev/serving pkg/networking,
	// ServiceTypeKey).
	LabelServiceType   = "networking.internal.knative.dev/serviceType"
	ServiceTypePrivate = "Private"
	ServiceTypePublic  = "Public"
	// labelService names a Revision's Knative Service (metrics carry it).
	labelService = "serving.knative.dev/service"

	// PortHTTP is the name of the port of a revision's Services that
	// carries HTTP/1.1: on "<rev>-private" it leads to queue-proxy's 8012,
	// on "<rev>" to the pods or the activator. (h2c revisions name it
	// "http2"; the gateway forwards HTTP/1.1 only and does not serve them.)
	PortHTTP = "http"
	// PortLatency and PortNodeAPI name the ports of the gateways' headless
	// Service.
	PortLatency = "latency"
	PortNodeAPI = "node-api"

	// PrivateSuffix makes the name of a revision's private Service.
	PrivateSuffix = "-private"
)

// Snapshot is what the daemon read from its caches, as the planner needs
// it. Maps are keyed "namespace/name".
type Snapshot struct {
	// Node is this gateway's node.
	Node      string
	Ingresses []*netv1alpha1.Ingress
	Revisions map[string]*servingv1.Revision
	// Autoscalers are the revisions' PodAutoscalers (named after their
	// revision).
	Autoscalers map[string]*asv1alpha1.PodAutoscaler
	// PublicServices are the revisions' public Services "<rev>".
	PublicServices map[string]*corev1.Service
	// Slices are the EndpointSlices of the revisions' private Services,
	// by "namespace/<service name>".
	Slices map[string][]*discoveryv1.EndpointSlice
	// Nodes are the names of the cluster's nodes.
	Nodes []string
}

// Desired is what the gateway should hold.
type Desired struct {
	Routes    []gateway.Route
	Revisions map[string]gateway.RevisionConfig
	Replicas  map[string][]gateway.ReplicaInfo
	Nodes     []string
	// Generations and Problems are the translation's (see ingress.Table).
	Generations map[string]int64
	Problems    map[string]nodeapi.Problem
}

// Plan computes what the gateway of s.Node should hold.
func Plan(s Snapshot) Desired {
	table := ingress.Translate(s.Ingresses)
	d := Desired{
		// Every rule, each with its visibility: the gateway's external
		// view serves only the ExternalIP ones.
		Routes:      table.Internal,
		Revisions:   make(map[string]gateway.RevisionConfig, len(table.Backends)),
		Replicas:    make(map[string][]gateway.ReplicaInfo, len(table.Backends)),
		Nodes:       NodeNames(s.Nodes, s.Node),
		Generations: table.Generations,
		Problems:    table.Problems,
	}
	for key, b := range table.Backends {
		direct := !OfKantai(s.Autoscalers[key])
		d.Revisions[key] = RevisionConfig(b.Namespace, b.Service, s.Revisions[key], direct)
		var reps []gateway.ReplicaInfo
		if direct {
			reps = ServiceReplica(s.PublicServices[key], s.Node)
		} else {
			reps = ReadyReplicas(s.Slices[b.Namespace+"/"+b.Service+PrivateSuffix])
		}
		if len(reps) > 0 {
			d.Replicas[key] = reps
		}
	}
	return d
}

// OfKantai reports whether a revision's replicas are kantai's to route
// to: its PodAutoscaler is of kantai's class, or it is not known yet (the
// private Service's endpoints are the revision's pods whatever the class;
// while there are none, requests wait).
func OfKantai(pa *asv1alpha1.PodAutoscaler) bool {
	return pa == nil || pa.Class() == autoscale.ClassKantai
}

// RevisionConfig is the gateway's configuration of revision ns/name; rev
// may be nil (not in the cache yet: defaults, so requests wait rather than
// fail). A direct revision is served through its public Service as one
// replica without a concurrency limit: Knative's activator enforces
// containerConcurrency in front of its pods.
func RevisionConfig(ns, name string, rev *servingv1.Revision, direct bool) gateway.RevisionConfig {
	c := gateway.RevisionConfig{Namespace: ns, Name: name}
	if rev == nil {
		return c
	}
	c.Service = rev.Labels[labelService]
	if !direct && rev.Spec.ContainerConcurrency != nil {
		c.ContainerConcurrency = int(max(*rev.Spec.ContainerConcurrency, 0))
	}
	c.Timeout = seconds(rev.Spec.TimeoutSeconds)
	c.ResponseStartTimeout = seconds(rev.Spec.ResponseStartTimeoutSeconds)
	return c
}

func seconds(s *int64) time.Duration {
	if s == nil || *s <= 0 {
		return 0
	}
	return time.Duration(*s) * time.Second
}

// ReadyReplicas lists the ready endpoints of a private Service's
// EndpointSlices as replicas: named after their pod, on their node, at
// their first address and the port named PortHTTP. Endpoints without a
// node or without that port are left out; a pod in two slices (dual
// stack) counts once, IPv4 first. Sorted by name.
func ReadyReplicas(in []*discoveryv1.EndpointSlice) []gateway.ReplicaInfo {
	var out []gateway.ReplicaInfo
	seen := map[string]bool{}
	for _, s := range sortedSlices(in) {
		port, ok := slicePort(s, PortHTTP)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			if !ready(ep) || ep.NodeName == nil || *ep.NodeName == "" || len(ep.Addresses) == 0 {
				continue
			}
			name := ep.Addresses[0]
			if ep.TargetRef != nil && ep.TargetRef.Name != "" {
				name = ep.TargetRef.Name
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			out = append(out, gateway.ReplicaInfo{Name: name, Node: *ep.NodeName,
				Address: net.JoinHostPort(ep.Addresses[0], strconv.Itoa(port))})
		}
	}
	slices.SortFunc(out, func(a, b gateway.ReplicaInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ServiceReplica is a revision's public Service as the one replica of a
// revision whose PodAutoscaler is of another class (Knative's KPA or
// HPA): its ClusterIP and HTTP port, through which kube-proxy reaches the
// activator while the revision is scaled to zero (the activator buffers
// and tells the KPA about demand) and the pods once it serves. The
// replica is placed on this gateway's node: the path to the ClusterIP
// starts here. Nil without a usable ClusterIP.
func ServiceReplica(svc *corev1.Service, node string) []gateway.ReplicaInfo {
	if svc == nil || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil
	}
	port := int32(80)
	for _, p := range svc.Spec.Ports {
		if p.Name == PortHTTP {
			port = p.Port
		}
	}
	return []gateway.ReplicaInfo{{Name: "service/" + svc.Name, Node: node,
		Address: net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(port)))}}
}

// Peers maps the node of each ready endpoint of the gateways' headless
// Service to its agent's address (the port named PortLatency). A node
// with two endpoints (a gateway being replaced) keeps the first by
// address.
func Peers(in []*discoveryv1.EndpointSlice) map[string]string {
	out := map[string]string{}
	for _, s := range sortedSlices(in) {
		port, ok := slicePort(s, PortLatency)
		if !ok {
			continue
		}
		eps := slices.Clone(s.Endpoints)
		slices.SortFunc(eps, func(a, b discoveryv1.Endpoint) int {
			return cmp.Compare(strings.Join(a.Addresses, ","), strings.Join(b.Addresses, ","))
		})
		for _, ep := range eps {
			if !ready(ep) || ep.NodeName == nil || *ep.NodeName == "" || len(ep.Addresses) == 0 {
				continue
			}
			if _, dup := out[*ep.NodeName]; !dup {
				out[*ep.NodeName] = net.JoinHostPort(ep.Addresses[0], strconv.Itoa(port))
			}
		}
	}
	return out
}

// NodeNames is the sorted set of nodes, self included (a gateway is on
// its node even before the node's object is in the cache).
func NodeNames(nodes []string, self string) []string {
	out := append(slices.Clone(nodes), self)
	slices.Sort(out)
	return slices.Compact(out)
}

// ready follows the EndpointSlice API: a nil condition means ready.
func ready(ep discoveryv1.Endpoint) bool {
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

func slicePort(s *discoveryv1.EndpointSlice, name string) (int, bool) {
	for _, p := range s.Ports {
		if p.Name != nil && *p.Name == name && p.Port != nil {
			return int(*p.Port), true
		}
	}
	return 0, false
}

// sortedSlices orders slices IPv4 before IPv6 (FQDN slices are dropped),
// then by name, so the outcome does not depend on the cache's order.
func sortedSlices(in []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	out := make([]*discoveryv1.EndpointSlice, 0, len(in))
	for _, s := range in {
		if s.AddressType == discoveryv1.AddressTypeIPv4 || s.AddressType == discoveryv1.AddressTypeIPv6 {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *discoveryv1.EndpointSlice) int {
		return cmp.Or(cmp.Compare(a.AddressType, b.AddressType), cmp.Compare(a.Name, b.Name))
	})
	return out
}
