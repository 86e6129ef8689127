package nrs

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
)

// HostnameLabel is the well-known node label the pods' node affinity uses.
const HostnameLabel = "kubernetes.io/hostname"

const (
	suffixLen      = 5
	suffixAlphabet = "bcdfghjklmnpqrstvwxz2456789" // as Kubernetes' generated names
	maxPodName     = 253
)

// MaxSlots is the number of distinct name suffixes (27^5): slots 0 to
// MaxSlots-1 of a node all have different names.
const MaxSlots = 14348907

// PodName returns the name of the pod in slot of node for set:
// "<set>-<node>-<suffix>", the prefix shortened if the whole would exceed
// the 253 characters a pod name may have. The 5-character suffix is derived
// from set's UID, node and slot (see slotSuffix), so the name of a slot is
// always the same: a second create of a slot fails with AlreadyExists
// instead of making a second pod.
func PodName(set *kantaiv1alpha1.NodeReplicaSet, node string, slot int) string {
	return podName(set.Name, set.UID, node, slot)
}

func podName(set string, uid types.UID, node string, slot int) string {
	prefix := set + "-" + node
	if limit := maxPodName - suffixLen - 1; len(prefix) > limit {
		prefix = strings.TrimRight(prefix[:limit], "-.")
	}
	return prefix + "-" + slotSuffix(uid, node, slot)
}

// slotSuffix returns 5 characters of suffixAlphabet for (uid, node, slot).
// A SHA-256 of uid and node gives an offset and a step not divisible by 3;
// the suffix encodes offset + slot*step modulo 27^5 in base 27. As the step
// is coprime with 27^5, slots 0 to MaxSlots-1 of one node get distinct
// suffixes, while they look random and differ between NodeReplicaSets
// (a set deleted and re-created under the same name gets a new UID, so its
// pods do not collide with the old, still terminating ones).
func slotSuffix(uid types.UID, node string, slot int) string {
	h := sha256.Sum256([]byte(string(uid) + "\x00" + node))
	offset := binary.BigEndian.Uint64(h[0:8]) % MaxSlots
	step := 3*(binary.BigEndian.Uint64(h[8:16])%(MaxSlots/3)) + 1 + binary.BigEndian.Uint64(h[16:24])%2
	s := uint64(slot % MaxSlots)
	if slot < 0 {
		s = uint64(slot%MaxSlots + MaxSlots)
	}
	v := (offset + s*step) % MaxSlots
	b := make([]byte, suffixLen)
	for i := suffixLen - 1; i >= 0; i-- {
		b[i] = suffixAlphabet[v%uint64(len(suffixAlphabet))]
		v /= uint64(len(suffixAlphabet))
	}
	return string(b)
}

// newPod builds the pod for slot of node for set. hostname is the value of
// the node's kubernetes.io/hostname label (the node name when the node has
// no such label). The pod:
//   - is named PodName(set, node, slot);
//   - carries the template labels plus LabelName, LabelNode and LabelSlot;
//   - requires, through node affinity, the node whose hostname label is
//     hostname, so the scheduler still checks resources and taints;
//   - is controlled by set, so it is garbage-collected with it.
func newPod(set *kantaiv1alpha1.NodeReplicaSet, node string, slot int, hostname string) *corev1.Pod {
	tmpl := set.Spec.Template.DeepCopy()
	labels := map[string]string{}
	for k, v := range tmpl.Labels {
		labels[k] = v
	}
	labels[kantaiv1alpha1.LabelName] = set.Name
	labels[kantaiv1alpha1.LabelNode] = node
	labels[kantaiv1alpha1.LabelSlot] = strconv.Itoa(slot)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        PodName(set, node, slot),
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
		Slot:        -1,
		Created:     p.CreationTimestamp.Time,
		Terminating: p.DeletionTimestamp != nil,
		Finished:    p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded,
	}
	if v, ok := p.Labels[kantaiv1alpha1.LabelSlot]; ok {
		if slot, err := strconv.Atoi(v); err == nil && slot >= 0 {
			info.Slot = slot
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			info.Ready = true
		}
	}
	return info
}
