package k8stest

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kantai.dev/kantai/internal/linkemu"
)

// Runner starts what a pod runs, listening on ip (a loopback address of
// its own, where the pod's virtual address leads), and returns once it
// serves; stop ends it and returns once it
// has let go of the address.
type Runner func(ctx context.Context, pod *corev1.Pod, ip string) (stop func(), err error)

// ProcessKubelet is the kubelet of a set of nodes that nothing else
// manages (no kwok annotation): for every pod bound to one of them it
// gives the pod a loopback address of its own, runs it with the Runner,
// and reports it Running and Ready with the virtual address that leads
// there (see linkemu.AddressMap: the API server refuses loopback
// addresses in Endpoints), so Services and EndpointSlices list it and a
// client dialling through the map reaches a real listener.
// A pod whose Runner fails is reported Failed with the error. A deleted
// pod keeps running for DrainDelay (at most its termination grace period),
// as a Knative pod's queue-proxy keeps serving while the endpoints that
// list it are updated, and is then stopped and removed.
type ProcessKubelet struct {
	c     client.Client
	addrs linkemu.AddressMap
	nodes map[string]int // node → index in the address plan
	run   Runner
	log   *slog.Logger

	mu          sync.Mutex
	running     map[types.UID]*runningPod
	used        map[string]bool // addresses in use
	terminating map[types.UID]bool
}

// DrainDelay is how long a deleted pod keeps running.
const DrainDelay = 3 * time.Second

type runningPod struct {
	ip   string
	stop func()
	err  error
}

// ProcessNode creates a Node that ProcessKubelet can run pods on: Ready,
// schedulable, with room for 110 pods, labelled kubernetes.io/hostname.
func ProcessNode(ctx context.Context, c client.Client, name string, labels map[string]string) error {
	l := map[string]string{"kubernetes.io/hostname": name}
	for k, v := range labels {
		l[k] = v
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
	if err := c.Create(ctx, n); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	now := metav1.Now()
	n.Status = corev1.NodeStatus{
		Capacity: corev1.ResourceList{
			corev1.ResourcePods:   resource.MustParse("110"),
			corev1.ResourceCPU:    resource.MustParse("32"),
			corev1.ResourceMemory: resource.MustParse("64Gi"),
		},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
	}
	n.Status.Allocatable = n.Status.Capacity
	if err := c.Status().Update(ctx, n); err != nil {
		return fmt.Errorf("marking node %s ready: %w", name, err)
	}
	// The API server taints new nodes not-ready; the node lifecycle
	// controller, which the harness does not run, would lift it.
	orig := n.DeepCopy()
	var keep []corev1.Taint
	for _, t := range n.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady {
			keep = append(keep, t)
		}
	}
	n.Spec.Taints = keep
	if err := c.Patch(ctx, n, client.MergeFrom(orig)); err != nil {
		return fmt.Errorf("removing the not-ready taint of %s: %w", name, err)
	}
	return nil
}

// StartProcessKubelet manages the pods of the named nodes until ctx ends.
// Node i's pods get the addresses x.y.<i+1>.<1..254> of the map's /16
// ranges.
func StartProcessKubelet(ctx context.Context, c client.Client, addrs linkemu.AddressMap, nodes []string, run Runner, log *slog.Logger) (*ProcessKubelet, error) {
	if addrs.Loopback.Bits() != 16 || len(nodes) > 254 {
		return nil, fmt.Errorf("process kubelet: want /16 address ranges and at most 254 nodes, have %s and %d", addrs, len(nodes))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &ProcessKubelet{c: c, addrs: addrs, nodes: map[string]int{}, run: run, log: log,
		running: map[types.UID]*runningPod{}, used: map[string]bool{}, terminating: map[types.UID]bool{}}
	for i, n := range nodes {
		k.nodes[n] = i
	}
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			k.sync(ctx)
			select {
			case <-ctx.Done():
				k.stopAll()
				return
			case <-t.C:
			}
		}
	}()
	return k, nil
}

// IP returns the loopback address the pod runs at, if it runs.
func (k *ProcessKubelet) IP(uid types.UID) (string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, ok := k.running[uid]
	if !ok || r.err != nil {
		return "", false
	}
	return r.ip, true
}

func (k *ProcessKubelet) sync(ctx context.Context) {
	var pods corev1.PodList
	if err := k.c.List(ctx, &pods); err != nil {
		return
	}
	seen := map[types.UID]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		idx, ours := k.nodes[p.Spec.NodeName]
		if !ours {
			continue
		}
		seen[p.UID] = true
		if p.DeletionTimestamp != nil {
			k.terminate(ctx, p)
			continue
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		r := k.start(ctx, p, idx)
		k.report(ctx, p, r)
	}
	// Pods deleted without a grace period never show as terminating.
	k.mu.Lock()
	var gone []types.UID
	for uid := range k.running {
		if !seen[uid] {
			gone = append(gone, uid)
		}
	}
	k.mu.Unlock()
	for _, uid := range gone {
		k.stop(uid)
	}
}

// terminate stops a deleted pod after its drain delay, then removes it.
func (k *ProcessKubelet) terminate(ctx context.Context, p *corev1.Pod) {
	k.mu.Lock()
	if k.terminating[p.UID] {
		k.mu.Unlock()
		return
	}
	k.terminating[p.UID] = true
	k.mu.Unlock()
	delay := DrainDelay
	if g := p.Spec.TerminationGracePeriodSeconds; g != nil && time.Duration(*g)*time.Second < delay {
		delay = time.Duration(*g) * time.Second
	}
	uid, pod := p.UID, p.DeepCopy()
	go func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		k.stop(uid)
		_ = k.c.Delete(context.WithoutCancel(ctx), pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &uid})
		k.mu.Lock()
		delete(k.terminating, uid)
		k.mu.Unlock()
	}()
}

// start runs the pod once; later calls return how that went.
func (k *ProcessKubelet) start(ctx context.Context, p *corev1.Pod, idx int) *runningPod {
	k.mu.Lock()
	if r, ok := k.running[p.UID]; ok {
		k.mu.Unlock()
		return r
	}
	ip := ""
	b := k.addrs.Loopback.Addr().As4()
	for host := 1; host < 255; host++ {
		a := netip.AddrFrom4([4]byte{b[0], b[1], byte(idx + 1), byte(host)}).String()
		if !k.used[a] {
			ip = a
			break
		}
	}
	r := &runningPod{ip: ip}
	if ip == "" {
		r.err = fmt.Errorf("node %s has no free pod address", p.Spec.NodeName)
		k.running[p.UID] = r
		k.mu.Unlock()
		return r
	}
	k.used[ip] = true
	k.running[p.UID] = r
	k.mu.Unlock()

	stop, err := k.run(ctx, p.DeepCopy(), ip)
	k.mu.Lock()
	r.stop, r.err = stop, err
	k.mu.Unlock()
	if err != nil {
		k.log.Info("pod failed to start", "pod", p.Namespace+"/"+p.Name, "err", err)
	}
	return r
}

func (k *ProcessKubelet) stop(uid types.UID) {
	k.mu.Lock()
	r, ok := k.running[uid]
	delete(k.running, uid)
	k.mu.Unlock()
	if !ok {
		return
	}
	if r.stop != nil {
		r.stop()
	}
	k.mu.Lock()
	delete(k.used, r.ip)
	k.mu.Unlock()
}

func (k *ProcessKubelet) stopAll() {
	k.mu.Lock()
	uids := make([]types.UID, 0, len(k.running))
	for uid := range k.running {
		uids = append(uids, uid)
	}
	k.mu.Unlock()
	for _, uid := range uids {
		k.stop(uid)
	}
}

// report writes the pod's status when it differs from what r says.
func (k *ProcessKubelet) report(ctx context.Context, p *corev1.Pod, r *runningPod) {
	want := p.DeepCopy()
	now := metav1.Now()
	if r.err != nil {
		want.Status.Phase = corev1.PodFailed
		want.Status.Reason = "StartError"
		want.Status.Message = r.err.Error()
		setCond(&want.Status, corev1.PodReady, corev1.ConditionFalse, now)
	} else {
		want.Status.Phase = corev1.PodRunning
		want.Status.PodIP = k.addrs.ToVirtual(netip.MustParseAddr(r.ip)).String()
		want.Status.PodIPs = []corev1.PodIP{{IP: want.Status.PodIP}}
		want.Status.HostIP = "127.0.0.1"
		want.Status.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
		if want.Status.StartTime == nil {
			want.Status.StartTime = &now
		}
		setCond(&want.Status, corev1.PodReady, corev1.ConditionTrue, now)
		setCond(&want.Status, corev1.ContainersReady, corev1.ConditionTrue, now)
		want.Status.ContainerStatuses = nil
		for _, c := range p.Spec.Containers {
			want.Status.ContainerStatuses = append(want.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptrTrue(),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: *want.Status.StartTime}},
			})
		}
	}
	if want.Status.Phase == p.Status.Phase && want.Status.PodIP == p.Status.PodIP &&
		condStatus(p.Status, corev1.PodReady) == condStatus(want.Status, corev1.PodReady) {
		return
	}
	if err := k.c.Status().Update(ctx, want); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		k.log.Info("pod status update failed", "pod", p.Namespace+"/"+p.Name, "err", err)
	}
}

func ptrTrue() *bool { t := true; return &t }
