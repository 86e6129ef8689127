package nrs

import (
	"math/rand/v2"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
)

// HostnameLabel is the well-known node label the pods' node affinity uses.
const HostnameLabel = "kubernetes.io/hostname"

const (
	suffixLen      = 5
	suffixAlphabet = "bcdfghjklmnpqrstvwxz2456789" // as Kubernetes' generated names
	maxPodName     = 253
)

// podName returns "<nrs>-<node>-<5 random chars>", the prefix shortened if
// the whole would exceed the 253 characters a pod name may have.
func podName(nrs, node string, rnd *rand.Rand) string {
	prefix := nrs + "-" + node
	if limit := maxPodName - suffixLen - 1; len(prefix) > limit {
		prefix = strings.TrimRight(prefix[:limit], "-.")
	}
	b := make([]byte, suffixLen)
	for i := range b {
		b[i] = suffixAlphabet[rnd.IntN(len(suffixAlphabet))]
	}
	return prefix + "-" + string(b)
}

// newPod builds the pod to create on node for set. hostname is the value of
// the node's kubernetes.io/hostname label (the node name when the node has
// no such label). The pod:
//   - carries the template labels plus LabelName and LabelNode;
//   - requires, through node affinity, the node whose hostname label is
//     hostname, so the scheduler still checks resources and taints;
//   - is controlled by set, so it is garbage-collected with it.
func newPod(set *kantaiv1alpha1.NodeReplicaSet, node, hostname, name string) *corev1.Pod {
	tmpl := set.Spec.Template.DeepCopy()
	labels := map[string]string{}
	for k, v := range tmpl.Labels {
		labels[k] = v
	}
	labels[kantaiv1alpha1.LabelName] = set.Name
	labels[kantaiv1alpha1.LabelNode] = node

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   set.Namespace,
			Labels:      labels,
			Annotations: tmpl.Annotations,
			Finalizers:  tmpl.Finalizers,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set,
				kantaiv1alpha1.GroupVersion.WithKind("NodeReplicaSet"))},
		},
		Spec: tmpl.Spec,
	}
	pinToNode(&pod.Spec, hostname)
	return pod
}

// pinToNode adds a required node affinity term on the hostname label. The
// template's own required terms are kept: the hostname requirement is added
// to each of them, since terms are ORed and expressions within a term ANDed.
func pinToNode(spec *corev1.PodSpec, hostname string) {
	req := corev1.NodeSelectorRequirement{
		Key:      HostnameLabel,
		Operator: corev1.NodeSelectorOpIn,
		Values:   []string{hostname},
	}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	sel := na.RequiredDuringSchedulingIgnoredDuringExecution
	if len(sel.NodeSelectorTerms) == 0 {
		sel.NodeSelectorTerms = []corev1.NodeSelectorTerm{{}}
	}
	for i := range sel.NodeSelectorTerms {
		t := &sel.NodeSelectorTerms[i]
		t.MatchExpressions = append(t.MatchExpressions, req)
	}
}

// podInfo extracts what planning needs from a pod.
func podInfo(p *corev1.Pod) PodInfo {
	info := PodInfo{
		Name:        p.Name,
		UID:         p.UID,
		Node:        p.Labels[kantaiv1alpha1.LabelNode],
		Created:     p.CreationTimestamp.Time,
		Terminating: p.DeletionTimestamp != nil,
		Finished:    p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded,
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			info.Ready = true
		}
	}
	return info
}
