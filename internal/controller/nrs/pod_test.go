package nrs

import (
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
)

func TestPodName(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	got := podName("web", "node-1", rnd)
	if !strings.HasPrefix(got, "web-node-1-") || len(got) != len("web-node-1-")+5 {
		t.Errorf("podName = %q", got)
	}
	long := podName(strings.Repeat("a", 240)+".b", strings.Repeat("n", 63), rnd)
	if len(long) > 253 {
		t.Errorf("len(podName) = %d > 253", len(long))
	}
	if errs := validation.IsDNS1123Subdomain(long); len(errs) > 0 {
		t.Errorf("podName %q invalid: %v", long, errs)
	}
	// A cut that ends on a dot must not leave ".-".
	dotted := podName(strings.Repeat("a", 246)+".bbbbbb", "n", rnd)
	if errs := validation.IsDNS1123Subdomain(dotted); len(errs) > 0 {
		t.Errorf("podName %q invalid: %v", dotted, errs)
	}
}

func TestNewPod(t *testing.T) {
	set := &kantaiv1alpha1.NodeReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "u"},
		Spec: kantaiv1alpha1.NodeReplicaSetSpec{
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "c", Image: "img"}},
					Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
							NodeSelectorTerms: []corev1.NodeSelectorTerm{
								{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"z1"}}}},
								{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"z2"}}}},
							},
						},
					}},
				},
			},
		},
	}
	p := newPod(set, "n1", "host-n1", "web-n1-abcde")
	if p.Labels["app"] != "web" || p.Labels[kantaiv1alpha1.LabelNode] != "n1" || p.Labels[kantaiv1alpha1.LabelName] != "web" {
		t.Errorf("labels = %v", p.Labels)
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.UID != "u" || ref.Kind != "NodeReplicaSet" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("controller ref = %+v", ref)
	}
	terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 2 {
		t.Fatalf("terms = %v", terms)
	}
	for _, term := range terms {
		last := term.MatchExpressions[len(term.MatchExpressions)-1]
		if last.Key != HostnameLabel || last.Values[0] != "host-n1" || len(term.MatchExpressions) != 2 {
			t.Errorf("term = %+v", term)
		}
	}
	// The template is not modified.
	if n := len(set.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions); n != 1 {
		t.Errorf("template modified")
	}
	if p.Spec.NodeName != "" {
		t.Errorf("nodeName set; the scheduler must place the pod")
	}

	bare := set.DeepCopy()
	bare.Spec.Template.Spec.Affinity = nil
	p = newPod(bare, "n2", "n2", "x")
	terms = p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchExpressions) != 1 || terms[0].MatchExpressions[0].Values[0] != "n2" {
		t.Errorf("terms = %+v", terms)
	}
}

func TestPodInfo(t *testing.T) {
	now := metav1.Now()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{kantaiv1alpha1.LabelNode: "n"}, DeletionTimestamp: &now},
		Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	got := podInfo(p)
	if !got.Terminating || !got.Finished || !got.Ready || got.Node != "n" {
		t.Errorf("podInfo = %+v", got)
	}
}
