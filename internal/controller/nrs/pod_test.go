package nrs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
)

func TestPodName(t *testing.T) {
	long := strings.Repeat("a", 240) + ".b"
	tests := []struct {
		name       string
		set        string
		uid        types.UID
		node       string
		slot       int
		wantPrefix string
		wantLen    int
	}{
		{name: "short", set: "web", uid: "u1", node: "node-1", slot: 0, wantPrefix: "web-node-1-", wantLen: len("web-node-1-") + 5},
		{name: "high slot", set: "web", uid: "u1", node: "node-1", slot: MaxSlots - 1, wantPrefix: "web-node-1-", wantLen: len("web-node-1-") + 5},
		{name: "dotted names", set: "a.b", uid: "u1", node: "n.example.com", slot: 3, wantPrefix: "a.b-n.example.com-", wantLen: len("a.b-n.example.com-") + 5},
		{name: "longest names: prefix cut", set: long, uid: "u1", node: strings.Repeat("n", 63), slot: 7, wantPrefix: (long + "-" + strings.Repeat("n", 63))[:247] + "-", wantLen: 253},
		// A cut that ends on a dot must not leave ".-".
		{name: "cut on a dot", set: strings.Repeat("a", 246) + ".bbbbbb", uid: "u1", node: "n", slot: 1, wantPrefix: strings.Repeat("a", 246) + "-", wantLen: 252},
		{name: "cut on a dash", set: strings.Repeat("a", 246) + "-bbbbbb", uid: "u1", node: "n", slot: 1, wantPrefix: strings.Repeat("a", 246) + "-", wantLen: 252},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := podName(tc.set, tc.uid, tc.node, tc.slot)
			if !strings.HasPrefix(got, tc.wantPrefix) || len(got) != tc.wantLen {
				t.Errorf("podName = %q (%d chars), want prefix %q and %d chars", got, len(got), tc.wantPrefix, tc.wantLen)
			}
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Errorf("podName %q invalid: %v", got, errs)
			}
			suffix := got[len(got)-suffixLen:]
			if strings.Trim(suffix, suffixAlphabet) != "" {
				t.Errorf("suffix %q has characters outside %q", suffix, suffixAlphabet)
			}
			if again := podName(tc.set, tc.uid, tc.node, tc.slot); again != got {
				t.Errorf("podName not stable: %q then %q", got, again)
			}
		})
	}
}

func TestPodName_FixedValues(t *testing.T) {
	// Names must not change between versions of the controller: a pod
	// created by an older version would otherwise not block its slot's
	// name. These values pin the derivation.
	set := &kantaiv1alpha1.NodeReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web", UID: "6b1e1c1e-0000-4000-8000-000000000001"}}
	got := []string{PodName(set, "node-1", 0), PodName(set, "node-1", 1), PodName(set, "node-2", 0)}
	want := []string{"web-node-1-tnpgt", "web-node-1-r4snk", "web-node-2-dr2t9"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PodName (-want,+got):\n%s", diff)
	}
}

func TestPodName_UniquePerSlot(t *testing.T) {
	// Slots of one node never share a name, whatever the UID and node.
	for _, tc := range []struct {
		uid  types.UID
		node string
	}{{"u1", "n1"}, {"u1", "n2"}, {"u2", "n1"}, {"3f0e4b1c-9d1f-4b7e-8a51-0c7d6b0f2a11", "worker-17.example.com"}} {
		seen := map[string]int{}
		for slot := range 20000 {
			name := podName("web", tc.uid, tc.node, slot)
			if prev, ok := seen[name]; ok {
				t.Fatalf("uid %s node %s: slots %d and %d both named %q", tc.uid, tc.node, prev, slot, name)
			}
			seen[name] = slot
		}
	}
	// Different UIDs (a set re-created under the same name) or nodes give
	// different names for the same slot.
	if podName("web", "u1", "n1", 0) == podName("web", "u2", "n1", 0) {
		t.Error("same name for two UIDs")
	}
	if slotSuffix("u1", "n1", 0) == slotSuffix("u1", "n2", 0) {
		t.Error("same suffix for two nodes")
	}
}

func TestSlotSuffix_Bijective(t *testing.T) {
	// Over the whole slot range, suffixes are distinct: the derivation is a
	// permutation of the 27^5 suffixes.
	if testing.Short() {
		t.Skip("visits all 27^5 suffixes")
	}
	seen := make([]bool, MaxSlots)
	for slot := range MaxSlots {
		s := slotSuffix("u", "n", slot)
		v := 0
		for i := range len(s) {
			v = v*len(suffixAlphabet) + strings.IndexByte(suffixAlphabet, s[i])
		}
		if seen[v] {
			t.Fatalf("slot %d repeats suffix %q", slot, s)
		}
		seen[v] = true
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
	p := newPod(set, "n1", 4, "host-n1")
	if p.Labels["app"] != "web" || p.Labels[kantaiv1alpha1.LabelNode] != "n1" || p.Labels[kantaiv1alpha1.LabelName] != "web" ||
		p.Labels[kantaiv1alpha1.LabelSlot] != "4" {
		t.Errorf("labels = %v", p.Labels)
	}
	if want := PodName(set, "n1", 4); p.Name != want {
		t.Errorf("name = %q, want %q", p.Name, want)
	}
	if info := podInfo(p); info.Slot != 4 || info.Node != "n1" {
		t.Errorf("podInfo of the new pod = %+v", info)
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
	p = newPod(bare, "n2", 0, "n2")
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
	if !got.Terminating || !got.Finished || !got.Ready || got.Node != "n" || got.Slot != -1 {
		t.Errorf("podInfo = %+v", got)
	}
	for value, want := range map[string]int{"0": 0, "12": 12, "-1": -1, "x": -1, "": -1} {
		p.Labels[kantaiv1alpha1.LabelSlot] = value
		if got := podInfo(p).Slot; got != want {
			t.Errorf("slot label %q: Slot = %d, want %d", value, got, want)
		}
	}
}
