package nrs

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestPodHandler_LateEventsOfEarlierPodKeepCreatePending: the slot's
// earlier pod, deleted before the create, has the same name as the pod
// being created. Its late events (terminating, deleted) must not settle
// the create, certain or uncertain; only the new pod, live, does.
func TestPodHandler_LateEventsOfEarlierPodKeepCreatePending(t *testing.T) {
	for _, uncertain := range []bool{true, false} {
		name := "certain"
		if uncertain {
			name = "uncertain"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			set := testSet(map[string]int32{"n1": 1})
			key := client.ObjectKeyFromObject(set)
			exp := NewExpectations(time.Hour, nil)
			h := &podHandler{exp: exp}
			q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
			defer q.ShutDown()

			old := newPod(set, "n1", 0, "n1")
			old.UID = "old"
			old.ResourceVersion = "10"
			terminating := old.DeepCopy()
			terminating.ResourceVersion = "11"
			now := metav1.Now()
			terminating.DeletionTimestamp = &now

			c := Create{Node: "n1", Slot: 0}
			exp.ExpectCreate(key, old.Name)
			if uncertain {
				exp.CreateUncertain(key, old.Name, c)
			}
			pendingCreate := func(when string) {
				t.Helper()
				if creates, _ := exp.Pending(key); creates != 1 {
					t.Fatalf("%s: %d pending creates, want 1", when, creates)
				}
				if got := exp.Uncertain(key); uncertain && got[old.Name] != c {
					t.Fatalf("%s: uncertain creates %v, want %s", when, got, old.Name)
				}
				if ok, _ := exp.Satisfied(key); ok {
					t.Fatalf("%s: expectations satisfied", when)
				}
			}

			h.Update(ctx, event.UpdateEvent{ObjectOld: old, ObjectNew: terminating}, q)
			pendingCreate("after the earlier pod's terminating update")
			h.Create(ctx, event.CreateEvent{Object: terminating}, q)
			pendingCreate("after the earlier pod's terminating add (re-list)")
			h.Delete(ctx, event.DeleteEvent{Object: terminating}, q)
			pendingCreate("after the earlier pod's delete")
			h.Delete(ctx, event.DeleteEvent{Object: old, DeleteStateUnknown: true}, q)
			pendingCreate("after the earlier pod's tombstone")
			if q.Len() != 1 {
				t.Errorf("queue length %d, want 1 (the set)", q.Len())
			}

			created := newPod(set, "n1", 0, "n1")
			created.UID = "new"
			created.ResourceVersion = "20"
			h.Create(ctx, event.CreateEvent{Object: created}, q)
			if creates, deletes := exp.Pending(key); creates != 0 || deletes != 0 {
				t.Fatalf("after the new pod's add: pending %d creates, %d deletes, want none", creates, deletes)
			}
			if ok, _ := exp.Satisfied(key); !ok {
				t.Fatal("after the new pod's add: expectations not satisfied")
			}
		})
	}
}

// TestPodHandler_UpdateSettlesCreateAndDeletion: a live pod's update
// settles its pending create; its terminating update settles its deletion.
func TestPodHandler_UpdateSettlesCreateAndDeletion(t *testing.T) {
	ctx := context.Background()
	set := testSet(map[string]int32{"n1": 1})
	key := client.ObjectKeyFromObject(set)
	exp := NewExpectations(time.Hour, nil)
	h := &podHandler{exp: exp}
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()

	pod := newPod(set, "n1", 0, "n1")
	pod.UID = "p"
	pod.ResourceVersion = "1"
	exp.CreateUncertain(key, pod.Name, Create{Node: "n1", Slot: 0})
	updated := pod.DeepCopy()
	updated.ResourceVersion = "2"
	h.Update(ctx, event.UpdateEvent{ObjectOld: pod, ObjectNew: updated}, q)
	if creates, _ := exp.Pending(key); creates != 0 {
		t.Fatalf("after a live update: %d pending creates, want 0", creates)
	}

	exp.ExpectDelete(key, types.UID("p"))
	terminating := updated.DeepCopy()
	terminating.ResourceVersion = "3"
	now := metav1.Now()
	terminating.DeletionTimestamp = &now
	h.Update(ctx, event.UpdateEvent{ObjectOld: updated, ObjectNew: terminating}, q)
	if ok, _ := exp.Satisfied(key); !ok {
		t.Fatal("after the terminating update: expectations not satisfied")
	}
}
