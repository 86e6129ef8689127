package pa

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	netv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/pkg/kmeta"
	asv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
	"kantai.dev/kantai/internal/autoscale"
	"kantai.dev/kantai/internal/control"
)

// Class is the PodAutoscaler class this package reconciles.
const Class = autoscale.ClassKantai

// OriginsAnnotation on a NodeReplicaSet records whom its replicas serve:
// a JSON object node → origin node → count ("" for replicas that serve no
// origin in particular, e.g. those kept for min-scale).
const OriginsAnnotation = "kantai.dev/origins"

// paGVK is the PodAutoscaler's group, version and kind, for owner
// references.
var paGVK = asv1alpha1.SchemeGroupVersion.WithKind("PodAutoscaler")

// ServiceNames are the names Knative's SKS reconciler gives the Services
// of the PodAutoscaler's ServerlessService (the SKS has the PA's name):
// the public one, and the private one that selects the pods.
func ServiceNames(pa *asv1alpha1.PodAutoscaler) (public, private string) {
	return pa.Name, kmeta.ChildName(pa.Name, "-private")
}

// MakeSKS is the ServerlessService of a PodAutoscaler: Serve mode (the
// revision's pods serve, Knative's activator stays out of the path), the
// PodAutoscaler's labels, owned by it. This is what Knative's HPA class
// creates.
func MakeSKS(pa *asv1alpha1.PodAutoscaler) *netv1alpha1.ServerlessService {
	var ann map[string]string
	if m, ok := pa.Annotations[autoscale.AnnotationMetric]; ok {
		ann = map[string]string{autoscale.AnnotationMetric: m}
	}
	return &netv1alpha1.ServerlessService{
		ObjectMeta: metav1.ObjectMeta{
			Name:            pa.Name,
			Namespace:       pa.Namespace,
			Labels:          maps.Clone(pa.Labels),
			Annotations:     ann,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(pa, paGVK)},
		},
		Spec: netv1alpha1.ServerlessServiceSpec{
			Mode:         netv1alpha1.SKSOperationModeServe,
			ObjectRef:    pa.Spec.ScaleTargetRef,
			ProtocolType: pa.Spec.ProtocolType,
		},
	}
}

// MakeNodeReplicaSet is the NodeReplicaSet of a PodAutoscaler: the
// Deployment's selector and pod template, the counts and origins of the
// control step's output, the PodAutoscaler's labels, owned by it.
func MakeNodeReplicaSet(pa *asv1alpha1.PodAutoscaler, d *appsv1.Deployment, out control.Output) (*kantaiv1alpha1.NodeReplicaSet, error) {
	if d.Spec.Selector == nil {
		return nil, fmt.Errorf("deployment %s has no selector", d.Name)
	}
	sel := &kantaiv1alpha1.LabelSelector{}
	if len(d.Spec.Selector.MatchLabels) > 0 {
		sel.MatchLabels = map[string]kantaiv1alpha1.LabelValue{}
		for k, v := range d.Spec.Selector.MatchLabels {
			sel.MatchLabels[k] = kantaiv1alpha1.LabelValue(v)
		}
	}
	for _, e := range d.Spec.Selector.MatchExpressions {
		r := kantaiv1alpha1.LabelSelectorRequirement{Key: e.Key, Operator: e.Operator}
		for _, v := range e.Values {
			r.Values = append(r.Values, kantaiv1alpha1.LabelValue(v))
		}
		sel.MatchExpressions = append(sel.MatchExpressions, r)
	}
	replicas := map[string]int32{}
	for node, n := range out.Desired {
		if n > 0 {
			replicas[node] = int32(n)
		}
	}
	origins, err := json.Marshal(out.Origins)
	if err != nil {
		return nil, err
	}
	return &kantaiv1alpha1.NodeReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            pa.Name,
			Namespace:       pa.Namespace,
			Labels:          maps.Clone(pa.Labels),
			Annotations:     map[string]string{OriginsAnnotation: string(origins)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(pa, paGVK)},
		},
		Spec: kantaiv1alpha1.NodeReplicaSetSpec{
			Replicas: replicas,
			Selector: sel,
			Template: *d.Spec.Template.DeepCopy(),
		},
	}, nil
}

// Replicas turns a NodeReplicaSet into the control step's replicas: one
// per pod its spec asks for (pods not created or not ready yet count as
// starting), the first ready ones of each node as its status reports,
// each attributed to an origin by OriginsAnnotation (origins in name
// order; pods the annotation does not cover serve no origin). Names are
// <node>/<index>, stable from step to step.
func Replicas(set *kantaiv1alpha1.NodeReplicaSet) []control.Replica {
	if set == nil {
		return nil
	}
	var origins map[string]map[string]int
	_ = json.Unmarshal([]byte(set.Annotations[OriginsAnnotation]), &origins) // malformed: no origins
	ready := map[string]int{}
	for _, n := range set.Status.Nodes {
		ready[n.Node] = int(n.Ready)
	}
	var out []control.Replica
	for _, node := range slices.Sorted(maps.Keys(set.Spec.Replicas)) {
		count := int(set.Spec.Replicas[node])
		var serve []string
		for _, o := range slices.Sorted(maps.Keys(origins[node])) {
			for range origins[node][o] {
				serve = append(serve, o)
			}
		}
		for i := range count {
			origin := autoscale.Unattributed
			if i < len(serve) {
				origin = serve[i]
			}
			out = append(out, control.Replica{
				Name:    fmt.Sprintf("%s/%d", node, i),
				Node:    node,
				Origin:  origin,
				Ready:   i < ready[node],
				Created: set.CreationTimestamp.Time,
			})
		}
	}
	return out
}
