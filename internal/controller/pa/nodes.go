package pa

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"kantai.dev/kantai/internal/control"
)

// Eligible reports whether pods of the template may run on node: the node
// is Ready, schedulable and not being deleted, the template's nodeSelector
// and required node affinity match it, and its tolerations tolerate every
// NoSchedule and NoExecute taint. When it may not, why says why.
func Eligible(node *corev1.Node, tmpl *corev1.PodTemplateSpec) (ok bool, why string) {
	if node.DeletionTimestamp != nil {
		return false, "being deleted"
	}
	if !nodeReady(node) {
		return false, "not Ready"
	}
	if node.Spec.Unschedulable {
		return false, "unschedulable"
	}
	match, err := nodeaffinity.NewRequiredNodeAffinity(tmpl.Spec.NodeSelector, tmpl.Spec.Affinity).Match(node)
	if err != nil {
		return false, "node affinity: " + err.Error()
	}
	if !match {
		return false, "nodeSelector or required node affinity does not match"
	}
	taint, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, tmpl.Spec.Tolerations,
		func(t *corev1.Taint) bool {
			return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
		}, false)
	if untolerated {
		return false, "taint " + taint.ToString() + " not tolerated"
	}
	return true, ""
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Capacity is the node's CapacityAnnotation, or def when it has none or a
// malformed one.
func Capacity(node *corev1.Node, def int) int {
	v, ok := node.Annotations[CapacityAnnotation]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return def
	}
	return n
}

// ControlNodes turns the cluster's nodes into the control step's, in name
// order: every node, with capacity 0 where the template may not run
// (control.Node's convention), so costs still see it. used counts the
// kantai replicas of all revisions per node.
func ControlNodes(nodes []corev1.Node, tmpl *corev1.PodTemplateSpec, defaultCapacity int, used map[string]int) []control.Node {
	out := make([]control.Node, 0, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		c := 0
		if ok, _ := Eligible(n, tmpl); ok {
			c = Capacity(n, defaultCapacity)
		}
		out = append(out, control.Node{Name: n.Name, Capacity: c, Used: used[n.Name]})
	}
	slices.SortFunc(out, func(a, b control.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// describeNodes says for each node why it takes no replica, or its
// capacity and use, for logs.
func describeNodes(nodes []corev1.Node, tmpl *corev1.PodTemplateSpec, defaultCapacity int, used map[string]int) map[string]string {
	out := make(map[string]string, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		if ok, why := Eligible(n, tmpl); !ok {
			out[n.Name] = why
			continue
		}
		out[n.Name] = fmt.Sprintf("capacity %d, used %d", Capacity(n, defaultCapacity), used[n.Name])
	}
	return out
}
