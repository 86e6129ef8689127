package nrs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kantaiv1alpha1 "kantai.dev/kantai/api/v1alpha1"
)

// Event reasons.
const (
	ReasonSuccessfulCreate = "SuccessfulCreate"
	ReasonSuccessfulDelete = "SuccessfulDelete"
	ReasonFailedCreate     = "FailedCreate"
	ReasonFailedDelete     = "FailedDelete"
	ReasonNodesMissing     = "NodesMissing"
)

// Condition reasons.
const (
	reasonScaling         = "Scaling"
	reasonComplete        = "Complete"
	reasonAllReady        = "AllReplicasReady"
	reasonNotReady        = "ReplicasNotReady"
	reasonNodesNotFound   = "NodesNotFound"
	reasonAllNodesPresent = "AllNodesPresent"
)

// DefaultBurstReplicas caps the creations, and separately the deletions,
// of one reconcile, as the ReplicaSet controller's burstReplicas does.
const DefaultBurstReplicas = 500

// Reconciler reconciles NodeReplicaSets.
type Reconciler struct {
	Client client.Client
	// APIReader reads from the API server, bypassing the cache; it checks
	// who holds a pod name when a create finds it taken. Defaults to the
	// manager's API reader (to Client if that is nil too).
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Expectations defaults to NewExpectations(DefaultExpectationsTTL, nil).
	Expectations *Expectations
	// BurstReplicas defaults to DefaultBurstReplicas.
	BurstReplicas int

	// blocked remembers pod names held by pods the set does not control.
	blocked blockedNames
}

// errNameTaken: a pod name of the set is held by a pod it does not control.
var errNameTaken = errors.New("pod name taken by a pod not controlled by this NodeReplicaSet")

// +kubebuilder:rbac:groups=kantai.dev,resources=nodereplicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=kantai.dev,resources=nodereplicasets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the pods of one NodeReplicaSet to the counts of its spec.
// An error means "retry with backoff".
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	set := &kantaiv1alpha1.NodeReplicaSet{}
	if err := r.Client.Get(ctx, req.NamespacedName, set); err != nil {
		if apierrors.IsNotFound(err) {
			r.Expectations.Forget(req.NamespacedName)
			r.blocked.forget(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("getting NodeReplicaSet: %w", err)
	}
	if set.DeletionTimestamp != nil {
		// The garbage collector removes the pods.
		return reconcile.Result{}, nil
	}

	pods, err := r.ownedPods(ctx, set)
	if err != nil {
		return reconcile.Result{}, err
	}
	hostnames, err := r.nodeHostnames(ctx, set, pods)
	if err != nil {
		return reconcile.Result{}, err
	}
	blocked := r.blocked.get(req.NamespacedName)
	plan := func(pods []corev1.Pod) Decision {
		infos := make([]PodInfo, len(pods))
		names := make(map[string]bool, len(pods))
		for i := range pods {
			infos[i] = podInfo(&pods[i])
			names[pods[i].Name] = true
		}
		nameTaken := func(node string, slot int) bool {
			name := PodName(set, node, slot)
			return names[name] || blocked[name]
		}
		return Plan(set.Spec.Replicas, func(n string) bool { _, ok := hostnames[n]; return ok }, infos, nameTaken)
	}
	decision := plan(pods)

	// Settle creates whose outcome is unknown by repeating them: the name
	// is the same, so a pod stored by the first call makes this one fail
	// with AlreadyExists.
	actErr := r.retryUncertain(ctx, set, hostnames)

	// Act only when the cache reflects all our previous writes; otherwise
	// the plan may be based on a stale view and cause churn. Exactness does
	// not rest on this: see ownedPodsFromAPIServer.
	satisfied, wait := r.Expectations.Satisfied(req.NamespacedName)
	acted := false
	if satisfied && len(decision.Creates) > 0 {
		fresh, err := r.ownedPodsFromAPIServer(ctx, set)
		if err != nil {
			actErr = errors.Join(actErr, err)
			satisfied = false
		} else {
			decision = plan(fresh)
		}
	}
	if satisfied {
		acted = len(decision.Creates) > 0 || len(decision.Deletes) > 0
		actErr = errors.Join(actErr,
			r.deletePods(ctx, set, decision.Deletes),
			r.createPods(ctx, set, decision.Creates, hostnames),
		)
	} else {
		logger.V(4).Info("waiting for the cache to show earlier writes", "expireIn", wait)
	}

	conflict, err := r.updateStatus(ctx, set, decision, !satisfied || acted, actErr)
	if err != nil {
		actErr = errors.Join(actErr, err)
	}
	if actErr != nil {
		return reconcile.Result{}, actErr
	}
	if conflict {
		// Our copy was stale; the fresh one may not trigger a reconcile
		// (status-only changes are filtered), so come back soon.
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	if !satisfied {
		// Events normally arrive well before; this covers lost ones.
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	return reconcile.Result{}, nil
}

// ownedPods lists the pods controlled by set, from the cache.
func (r *Reconciler) ownedPods(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := r.Client.List(ctx, list, client.InNamespace(set.Namespace), client.MatchingFields{podOwnerIndex: set.Name}); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	out := list.Items[:0]
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == set.UID {
			out = append(out, p)
		}
	}
	return out, nil
}

// ownedPodsFromAPIServer lists the pods controlled by set with a
// consistent read of the API server, bypassing the cache.
//
// Why creates are decided on it: deterministic names make a repeated create
// of a slot fail, but planning from a stale view could choose a different
// slot than an earlier create whose pod the view lacks. Example: desired 1,
// the pod in slot 0 terminating, its replacement created in slot 1; a cache
// that has seen slot 0 go but not slot 1 arrive would fill slot 0 again. A
// consistent read shows every pod whose create call succeeded. A create
// whose call failed without a definite answer may still be stored later;
// it is kept as uncertain and blocks decisions until a retry of the same
// name settles it (see createPod). Only reconciles that create pay for this
// read.
func (r *Reconciler) ownedPodsFromAPIServer(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet) ([]corev1.Pod, error) {
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	list := &corev1.PodList{}
	if err := reader.List(ctx, list, client.InNamespace(set.Namespace),
		client.MatchingLabels{kantaiv1alpha1.LabelName: set.Name}); err != nil {
		return nil, fmt.Errorf("listing pods from the API server: %w", err)
	}
	out := list.Items[:0]
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == set.UID {
			out = append(out, p)
		}
	}
	return out, nil
}

// nodeHostnames returns, for each node of spec.replicas that exists, the
// value of its hostname label (its name if it has none).
func (r *Reconciler) nodeHostnames(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet, _ []corev1.Pod) (map[string]string, error) {
	out := map[string]string{}
	for node := range set.Spec.Replicas {
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
		err := r.Client.Get(ctx, types.NamespacedName{Name: node}, meta)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("getting node %q: %w", node, err)
		}
		if h := meta.Labels[HostnameLabel]; h != "" {
			out[node] = h
		} else {
			out[node] = node
		}
	}
	return out, nil
}

// createPods creates the pods of creates, in batches of doubling size
// (1, 2, 4, ...) so that a systematic failure such as a quota costs one
// call, not hundreds. It stops after the first batch with an error.
func (r *Reconciler) createPods(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet, creates []Create, hostnames map[string]string) error {
	key := client.ObjectKeyFromObject(set)
	if len(creates) > r.BurstReplicas {
		creates = creates[:r.BurstReplicas]
	}
	for batch := 1; len(creates) > 0; batch *= 2 {
		n := min(batch, len(creates))
		pods := make([]*corev1.Pod, n)
		for i, c := range creates[:n] {
			pods[i] = newPod(set, c.Node, c.Slot, hostnames[c.Node])
			r.Expectations.ExpectCreate(key, pods[i].Name)
		}
		batchCreates := creates[:n]
		creates = creates[n:]
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, pod := range pods {
			wg.Go(func() { errs[i] = r.createPod(ctx, set, pod, batchCreates[i]) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

// retryUncertain repeats the creates whose outcome is unknown. A create
// for a node that is no longer wanted or no longer exists is not repeated
// but forgotten: a pod stored there is deleted, or not counted, anyway.
func (r *Reconciler) retryUncertain(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet, hostnames map[string]string) error {
	key := client.ObjectKeyFromObject(set)
	uncertain := r.Expectations.Uncertain(key)
	if len(uncertain) == 0 {
		return nil
	}
	errs := make([]error, 0, len(uncertain))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, c := range uncertain {
		hostname, ok := hostnames[c.Node]
		if !ok || PodName(set, c.Node, c.Slot) != name {
			r.Expectations.CreationObserved(key, name)
			continue
		}
		wg.Go(func() {
			err := r.createPod(ctx, set, newPod(set, c.Node, c.Slot, hostname), c)
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// createPod creates pod, the pod of slot c, and settles its creation
// expectation by the outcome:
//   - created: the expectation waits for the cache;
//   - AlreadyExists: the slot's pod exists (an earlier call stored it, and
//     the cache has not shown it yet) — wait for the cache, never create
//     another; unless a pod the set does not control holds the name, which
//     is reported and remembered so that the next plan skips that slot;
//   - an error that leaves the outcome unknown (time-out, lost connection,
//     server error): the pod may exist, so the create stays pending as
//     uncertain and is repeated, with the same name, by the next reconcile;
//   - any other error: the pod was not stored; the expectation is lowered.
func (r *Reconciler) createPod(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet, pod *corev1.Pod, c Create) error {
	key := client.ObjectKeyFromObject(set)
	err := r.Client.Create(ctx, pod)
	switch {
	case err == nil:
		r.Expectations.CreateConfirmed(key, pod.Name)
		r.Recorder.Eventf(set, pod, corev1.EventTypeNormal, ReasonSuccessfulCreate, "Create",
			"Created pod %s on node %s", pod.Name, c.Node)
		return nil
	case apierrors.IsAlreadyExists(err):
		return r.nameInUse(ctx, set, pod, c)
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		r.Expectations.CreationObserved(key, pod.Name)
		return nil
	case mayHaveBeenStored(err):
		r.Expectations.CreateUncertain(key, pod.Name, c)
		r.Recorder.Eventf(set, nil, corev1.EventTypeWarning, ReasonFailedCreate, "Create",
			"Error creating pod %s on node %s, will retry the same name: %v", pod.Name, c.Node, err)
		return fmt.Errorf("creating pod %s: %w", pod.Name, err)
	default:
		r.Expectations.CreationObserved(key, pod.Name)
		r.Recorder.Eventf(set, nil, corev1.EventTypeWarning, ReasonFailedCreate, "Create",
			"Error creating pod on node %s: %v", c.Node, err)
		return fmt.Errorf("creating pod %s: %w", pod.Name, err)
	}
}

// nameInUse handles an AlreadyExists from creating pod: it reads the pod
// that holds the name from the API server.
func (r *Reconciler) nameInUse(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet, pod *corev1.Pod, c Create) error {
	key := client.ObjectKeyFromObject(set)
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	got := &corev1.Pod{}
	err := reader.Get(ctx, client.ObjectKeyFromObject(pod), got)
	switch {
	case apierrors.IsNotFound(err):
		// Held a moment ago, gone now: no pod to wait for. Come back
		// (with backoff) to create it.
		r.Expectations.CreationObserved(key, pod.Name)
		return fmt.Errorf("creating pod %s: it existed and was deleted meanwhile", pod.Name)
	case err != nil:
		r.Expectations.CreateUncertain(key, pod.Name, c)
		return fmt.Errorf("creating pod %s: reading the existing pod: %w", pod.Name, err)
	}
	if ref := metav1.GetControllerOf(got); ref != nil && ref.UID == set.UID &&
		got.Labels[kantaiv1alpha1.LabelName] == set.Name {
		// Ours: an earlier call stored it. The cache will show it, unless
		// it already has: its event may have come before that call
		// returned its error and marked the create uncertain again.
		cached := &corev1.Pod{}
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(pod), cached); err == nil && cached.UID == got.UID {
			r.Expectations.CreationObserved(key, pod.Name)
		} else {
			r.Expectations.CreateConfirmed(key, pod.Name)
		}
		return nil
	}
	r.Expectations.CreationObserved(key, pod.Name)
	r.blocked.add(key, pod.Name)
	r.Recorder.Eventf(set, nil, corev1.EventTypeWarning, ReasonFailedCreate, "Create",
		"Pod name %s (node %s, slot %d) is taken by a pod this NodeReplicaSet does not control; using another slot",
		pod.Name, c.Node, c.Slot)
	return fmt.Errorf("creating pod %s: %w", pod.Name, errNameTaken)
}

// mayHaveBeenStored reports whether a failed create may nevertheless have
// stored the object: anything but a rejection by the API server (a 4xx
// status other than 408), for example a client-side time-out, a lost
// connection or a 5xx status such as 504 Timeout.
func mayHaveBeenStored(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := status.Status().Code
		return code < 400 || code >= 500 || code == http.StatusRequestTimeout
	}
	return true
}

// blockedNames remembers, per NodeReplicaSet, pod names that are held by
// pods it does not control, so that planning skips their slots. It is
// filled when a create fails with AlreadyExists on such a pod, and so
// rebuilt after a restart at the cost of one failed create per name.
type blockedNames struct {
	mu    sync.Mutex
	byKey map[types.NamespacedName]map[string]bool
}

func (b *blockedNames) add(key types.NamespacedName, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byKey == nil {
		b.byKey = map[types.NamespacedName]map[string]bool{}
	}
	if b.byKey[key] == nil {
		b.byKey[key] = map[string]bool{}
	}
	b.byKey[key][name] = true
}

// get returns a copy of the names blocked for key.
func (b *blockedNames) get(key types.NamespacedName) map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]bool, len(b.byKey[key]))
	for name := range b.byKey[key] {
		out[name] = true
	}
	return out
}

func (b *blockedNames) forget(key types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.byKey, key)
}

// deletePods deletes the given pods in parallel, at most BurstReplicas.
func (r *Reconciler) deletePods(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet, dels []Delete) error {
	key := client.ObjectKeyFromObject(set)
	if len(dels) > r.BurstReplicas {
		dels = dels[:r.BurstReplicas]
	}
	for _, d := range dels {
		r.Expectations.ExpectDelete(key, d.Pod.UID)
	}
	errs := make([]error, len(dels))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, d := range dels {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: set.Namespace, Name: d.Pod.Name}}
			err := r.Client.Delete(ctx, pod, client.Preconditions{UID: &d.Pod.UID})
			switch {
			case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
				// Already gone (a conflict on the UID precondition means a
				// different pod now has that name).
				r.Expectations.DeletionObserved(key, d.Pod.UID)
			case err != nil:
				r.Expectations.DeletionObserved(key, d.Pod.UID)
				r.Recorder.Eventf(set, nil, corev1.EventTypeWarning, ReasonFailedDelete, "Delete",
					"Error deleting pod %s: %v", d.Pod.Name, err)
				errs[i] = fmt.Errorf("deleting pod %s: %w", d.Pod.Name, err)
			default:
				r.Recorder.Eventf(set, nil, corev1.EventTypeNormal, ReasonSuccessfulDelete, "Delete",
					"Deleted pod %s on node %s (%s)", d.Pod.Name, d.Pod.Node, d.Reason)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// updateStatus writes the status computed from decision, only if it
// differs from the stored one.
// It reports a conflict (a stale copy of set) separately from errors.
func (r *Reconciler) updateStatus(ctx context.Context, set *kantaiv1alpha1.NodeReplicaSet, d Decision, progressing bool, actErr error) (conflict bool, err error) {
	st := set.Status.DeepCopy()
	st.ObservedGeneration = set.Generation
	st.Replicas, st.ReadyReplicas = d.Totals()
	st.NodeNames = d.NodeNames()
	st.Ready = d.ReadyString()
	st.Nodes = nil
	allReady := true
	for _, n := range d.Nodes {
		st.Nodes = append(st.Nodes, kantaiv1alpha1.NodeReplicaStatus{
			Node: n.Node, Desired: n.Desired, Current: n.Current, Ready: n.Ready,
		})
		if n.Missing || n.Current != n.Desired || n.Ready != n.Desired {
			allReady = false
		}
	}

	missing := d.Missing()
	gen := set.Generation
	if len(missing) > 0 {
		msg := "Nodes not found in the cluster: " + strings.Join(missing, ", ")
		old := meta.FindStatusCondition(st.Conditions, kantaiv1alpha1.ConditionNodesMissing)
		if old == nil || old.Status != metav1.ConditionTrue || old.Message != msg {
			r.Recorder.Eventf(set, nil, corev1.EventTypeWarning, ReasonNodesMissing, "Reconcile", "%s", msg)
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kantaiv1alpha1.ConditionNodesMissing,
			Status: metav1.ConditionTrue, Reason: reasonNodesNotFound, Message: msg, ObservedGeneration: gen})
	} else {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kantaiv1alpha1.ConditionNodesMissing,
			Status: metav1.ConditionFalse, Reason: reasonAllNodesPresent, Message: "All nodes exist", ObservedGeneration: gen})
	}

	switch {
	case actErr != nil:
		reason := ReasonFailedCreate
		if strings.Contains(actErr.Error(), "deleting pod") {
			reason = ReasonFailedDelete
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kantaiv1alpha1.ConditionProgressing,
			Status: metav1.ConditionFalse, Reason: reason, Message: truncate(actErr.Error(), 1024), ObservedGeneration: gen})
	case progressing:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kantaiv1alpha1.ConditionProgressing,
			Status: metav1.ConditionTrue, Reason: reasonScaling, Message: "Creating or deleting pods", ObservedGeneration: gen})
	default:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kantaiv1alpha1.ConditionProgressing,
			Status: metav1.ConditionFalse, Reason: reasonComplete, Message: "Pod counts match the spec", ObservedGeneration: gen})
	}

	if allReady {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kantaiv1alpha1.ConditionReady,
			Status: metav1.ConditionTrue, Reason: reasonAllReady, Message: "All pods are ready", ObservedGeneration: gen})
	} else {
		msg := fmt.Sprintf("Ready per node/desired per node: %s", st.Ready)
		if len(missing) > 0 {
			msg += "; nodes not found: " + strings.Join(missing, ", ")
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kantaiv1alpha1.ConditionReady,
			Status: metav1.ConditionFalse, Reason: reasonNotReady, Message: msg, ObservedGeneration: gen})
	}

	if equality.Semantic.DeepEqual(*st, set.Status) {
		return false, nil
	}
	patched := set.DeepCopy()
	patched.Status = *st
	if err := r.Client.Status().Update(ctx, patched); err != nil {
		if apierrors.IsConflict(err) {
			return true, nil
		}
		return false, fmt.Errorf("updating status: %w", err)
	}
	return false, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
