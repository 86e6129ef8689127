package k8stest

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FakeKubeletScheduler is the schedulerName of pods that Kubelet places;
// kube-scheduler leaves such pods alone.
const FakeKubeletScheduler = "k8stest-kubelet"

// Kubelet plays scheduler and kubelet for the pods of one namespace that
// use FakeKubeletScheduler: it binds each pod to the node its required node
// affinity names on kubernetes.io/hostname (if that node exists), marks
// bound pods Running and Ready, removes terminating pods at once, and fails
// pods on request.
type Kubelet struct {
	c  client.Client
	ns string

	mu      sync.Mutex
	fail    map[string]string // pod name -> reason
	unready map[string]bool
}

// StartKubelet polls the namespace until ctx ends.
func StartKubelet(ctx context.Context, c client.Client, ns string) *Kubelet {
	k := &Kubelet{c: c, ns: ns, fail: map[string]string{}, unready: map[string]bool{}}
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			k.sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return k
}

// Fail makes the pod Failed with the given reason (e.g. "Evicted").
func (k *Kubelet) Fail(pod, reason string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail[pod] = reason
}

// SetUnready keeps the pod running but not ready.
func (k *Kubelet) SetUnready(pod string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.unready[pod] = true
}

func (k *Kubelet) sync(ctx context.Context) {
	var pods corev1.PodList
	if err := k.c.List(ctx, &pods, client.InNamespace(k.ns)); err != nil {
		return
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.SchedulerName != FakeKubeletScheduler {
			continue
		}
		switch {
		case p.DeletionTimestamp != nil:
			_ = k.c.Delete(ctx, p, client.GracePeriodSeconds(0), client.Preconditions{UID: &p.UID})
		case p.Spec.NodeName == "":
			k.bind(ctx, p)
		default:
			k.setStatus(ctx, p)
		}
	}
}

func (k *Kubelet) bind(ctx context.Context, p *corev1.Pod) {
	host := requiredHostname(p)
	if host == "" {
		return
	}
	var nodes corev1.NodeList
	if err := k.c.List(ctx, &nodes); err != nil {
		return
	}
	for _, n := range nodes.Items {
		h := n.Labels["kubernetes.io/hostname"]
		if h == "" {
			h = n.Name
		}
		if h == host && n.DeletionTimestamp == nil {
			b := &corev1.Binding{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
				Target:     corev1.ObjectReference{Kind: "Node", Name: n.Name},
			}
			_ = k.c.SubResource("binding").Create(ctx, p, b)
			return
		}
	}
}

func requiredHostname(p *corev1.Pod) string {
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, e := range t.MatchExpressions {
			if e.Key == "kubernetes.io/hostname" && e.Operator == corev1.NodeSelectorOpIn && len(e.Values) == 1 {
				return e.Values[0]
			}
		}
	}
	return ""
}

func (k *Kubelet) setStatus(ctx context.Context, p *corev1.Pod) {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return
	}
	k.mu.Lock()
	reason, fail := k.fail[p.Name]
	unready := k.unready[p.Name]
	k.mu.Unlock()

	want := p.DeepCopy()
	now := metav1.Now()
	switch {
	case fail:
		want.Status.Phase = corev1.PodFailed
		want.Status.Reason = reason
		want.Status.Message = "failed by the test kubelet"
		setCond(&want.Status, corev1.PodReady, corev1.ConditionFalse, now)
	default:
		want.Status.Phase = corev1.PodRunning
		if want.Status.StartTime == nil {
			want.Status.StartTime = &now
		}
		ready := corev1.ConditionTrue
		if unready {
			ready = corev1.ConditionFalse
		}
		setCond(&want.Status, corev1.PodReady, ready, now)
	}
	if want.Status.Phase == p.Status.Phase && condStatus(p.Status, corev1.PodReady) == condStatus(want.Status, corev1.PodReady) {
		return
	}
	if err := k.c.Status().Update(ctx, want); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return
	}
}

func setCond(st *corev1.PodStatus, t corev1.PodConditionType, s corev1.ConditionStatus, now metav1.Time) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != s {
				st.Conditions[i].Status = s
				st.Conditions[i].LastTransitionTime = now
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: s, LastTransitionTime: now})
}

func condStatus(st corev1.PodStatus, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

// Key is a shorthand for a namespaced name.
func Key(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}
