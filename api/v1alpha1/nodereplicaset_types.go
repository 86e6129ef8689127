package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels the controller puts on every pod it creates, in addition to the
// labels of the pod template.
const (
	// LabelName holds the name of the owning NodeReplicaSet.
	LabelName = "nodereplicaset.kantai.dev/name"
	// LabelNode holds the name of the node the pod is pinned to.
	LabelNode = "nodereplicaset.kantai.dev/node"
	// LabelSlot holds the pod's slot on its node (a decimal number >= 0).
	// The pod name is derived from the NodeReplicaSet's UID, the node and
	// the slot, so a slot can hold at most one pod at a time.
	LabelSlot = "nodereplicaset.kantai.dev/slot"
)

// Condition types of a NodeReplicaSet.
const (
	// ConditionReady is True when every node named in spec.replicas exists
	// and runs exactly the desired number of pods, all of them ready.
	ConditionReady = "Ready"
	// ConditionProgressing is True while the controller still has pods to
	// create or delete, False once the counts match (reason Complete) or
	// when the last create/delete failed (reason FailedCreate/FailedDelete).
	ConditionProgressing = "Progressing"
	// ConditionNodesMissing is True when spec.replicas names nodes that do
	// not exist in the cluster; its message lists them.
	ConditionNodesMissing = "NodesMissing"
)

// NodeReplicaSetSpec is the desired state of a NodeReplicaSet.
//
// +kubebuilder:validation:XValidation:rule="!has(self.selector.matchLabels) || self.selector.matchLabels.all(k, has(self.template.metadata) && has(self.template.metadata.labels) && k in self.template.metadata.labels && self.template.metadata.labels[k] == self.selector.matchLabels[k])",message="selector.matchLabels must match template.metadata.labels"
// +kubebuilder:validation:XValidation:rule="!has(self.selector.matchExpressions) || self.selector.matchExpressions.all(e, e.operator == 'In' ? (has(self.template.metadata) && has(self.template.metadata.labels) && e.key in self.template.metadata.labels && has(e.values) && self.template.metadata.labels[e.key] in e.values) : e.operator == 'NotIn' ? (!has(self.template.metadata) || !has(self.template.metadata.labels) || !(e.key in self.template.metadata.labels) || !has(e.values) || !(self.template.metadata.labels[e.key] in e.values)) : e.operator == 'Exists' ? (has(self.template.metadata) && has(self.template.metadata.labels) && e.key in self.template.metadata.labels) : e.operator == 'DoesNotExist' ? (!has(self.template.metadata) || !has(self.template.metadata.labels) || !(e.key in self.template.metadata.labels)) : false)",message="selector.matchExpressions must match template.metadata.labels"
type NodeReplicaSetSpec struct {
	// replicas maps a node name to the number of pods wanted on that node.
	// Node names are DNS subdomains of at most 63 characters (so that they
	// fit in a label value); counts are at least 0. A node absent from the
	// map, or mapped to 0, gets no pods.
	//
	// +optional
	// +kubebuilder:validation:MaxProperties=5000
	// +kubebuilder:validation:XValidation:rule="self.all(n, size(n) <= 63)",message="node names must be at most 63 characters"
	// +kubebuilder:validation:XValidation:rule="self.all(n, n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))",message="node names must be lowercase RFC 1123 subdomains"
	// +kubebuilder:validation:XValidation:rule="self.all(n, self[n] >= 0)",message="replica counts must be at least 0"
	Replicas map[string]int32 `json:"replicas,omitempty"`

	// selector is a label query over the pods of this set. It must match
	// the labels of the template and cannot be changed after creation.
	//
	// +required
	// +kubebuilder:validation:XValidation:rule="has(self.matchLabels) && size(self.matchLabels) > 0 || has(self.matchExpressions) && size(self.matchExpressions) > 0",message="selector must not be empty"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="selector is immutable"
	Selector *LabelSelector `json:"selector"`

	// template describes the pods to create. Changes apply to pods created
	// afterwards only; running pods are not replaced.
	//
	// +required
	Template corev1.PodTemplateSpec `json:"template"`
}

// LabelSelector is a label query, with the fields and meaning of
// metav1.LabelSelector, but with bounded sizes so that the schema can check
// it against the template labels at admission.
type LabelSelector struct {
	// matchLabels: each key must have exactly this value.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	MatchLabels map[string]LabelValue `json:"matchLabels,omitempty"`
	// matchExpressions: requirements that must all hold.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelValue is a label value (at most 63 characters).
// +kubebuilder:validation:MaxLength=63
type LabelValue string

// LabelSelectorRequirement is one requirement of a LabelSelector.
type LabelSelectorRequirement struct {
	// key is the label key.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	Key string `json:"key"`
	// operator is In, NotIn, Exists or DoesNotExist.
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
	Operator metav1.LabelSelectorOperator `json:"operator"`
	// values: non-empty for In and NotIn, empty for Exists and DoesNotExist.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Values []LabelValue `json:"values,omitempty"`
}

// AsMetav1 converts s to the standard type, e.g. for
// metav1.LabelSelectorAsSelector.
func (s *LabelSelector) AsMetav1() *metav1.LabelSelector {
	if s == nil {
		return nil
	}
	out := &metav1.LabelSelector{}
	if s.MatchLabels != nil {
		out.MatchLabels = map[string]string{}
		for k, v := range s.MatchLabels {
			out.MatchLabels[k] = string(v)
		}
	}
	for _, e := range s.MatchExpressions {
		r := metav1.LabelSelectorRequirement{Key: e.Key, Operator: e.Operator}
		for _, v := range e.Values {
			r.Values = append(r.Values, string(v))
		}
		out.MatchExpressions = append(out.MatchExpressions, r)
	}
	return out
}

// NodeReplicaStatus is the observed state on one node.
type NodeReplicaStatus struct {
	// node is the node name, as in spec.replicas.
	Node string `json:"node"`
	// desired is the count asked for in spec.replicas.
	Desired int32 `json:"desired"`
	// current is the number of pods on the node that are neither
	// terminating nor finished. It is 0 while the node does not exist.
	Current int32 `json:"current"`
	// ready is how many of those pods are ready.
	Ready int32 `json:"ready"`
}

// NodeReplicaSetStatus is the observed state of a NodeReplicaSet.
type NodeReplicaSetStatus struct {
	// observedGeneration is the metadata.generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// replicas is the total number of current pods over all nodes.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// readyReplicas is the total number of ready pods over all nodes.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// nodeNames lists the nodes of spec.replicas, in name order, separated
	// by commas.
	// +optional
	NodeNames string `json:"nodeNames,omitempty"`

	// ready is "<ready per node>/<desired per node>", each a dash-separated
	// list in the order of nodeNames, for example "1-2-3/1-2-3".
	// +optional
	Ready string `json:"ready,omitempty"`

	// nodes holds the counts per node named in spec.replicas, in name order.
	// +optional
	// +listType=map
	// +listMapKey=node
	Nodes []NodeReplicaStatus `json:"nodes,omitempty"`

	// conditions: Ready, Progressing and NodesMissing.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeReplicaSet keeps a given number of pods, built from a template, on
// each of a set of named nodes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=nrs,categories=kantai
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=`.status.nodeNames`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeReplicaSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NodeReplicaSetSpec   `json:"spec"`
	Status NodeReplicaSetStatus `json:"status,omitempty"`
}

// NodeReplicaSetList is a list of NodeReplicaSets.
//
// +kubebuilder:object:root=true
type NodeReplicaSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeReplicaSet `json:"items"`
}

func init() {
	SchemeBuilder.Register(&NodeReplicaSet{}, &NodeReplicaSetList{})
}
