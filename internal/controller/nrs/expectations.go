package nrs

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// DefaultExpectationsTTL is how long unobserved writes block decisions
// before they are given up on (the ReplicaSet controller uses 5 minutes).
// A write goes unobserved only if its watch event is lost, for example
// when a pod is created and deleted while the watch is being re-listed.
const DefaultExpectationsTTL = 5 * time.Minute

// Expectations remembers, per NodeReplicaSet, the pod creations (by name)
// and deletions (by UID) the controller has asked for but not yet seen
// in its cache. While some are pending, the cache may lag behind the
// controller's own writes, so decisions made from it could create or delete
// too much: the reconciler only acts when [Expectations.Satisfied].
//
// Record an expectation before the API call, so that the watch event cannot
// arrive first, and lower it when the call fails.
type Expectations struct {
	mu   sync.Mutex
	ttl  time.Duration
	now  func() time.Time
	byID map[types.NamespacedName]*pending
}

type pending struct {
	creates map[string]struct{}
	deletes map[types.UID]struct{}
	since   time.Time
}

// NewExpectations returns an empty set; now is the clock (time.Now if nil).
func NewExpectations(ttl time.Duration, now func() time.Time) *Expectations {
	if now == nil {
		now = time.Now
	}
	if ttl <= 0 {
		ttl = DefaultExpectationsTTL
	}
	return &Expectations{ttl: ttl, now: now, byID: map[types.NamespacedName]*pending{}}
}

func (e *Expectations) get(key types.NamespacedName) *pending {
	p := e.byID[key]
	if p == nil {
		p = &pending{creates: map[string]struct{}{}, deletes: map[types.UID]struct{}{}}
		e.byID[key] = p
	}
	if len(p.creates) == 0 && len(p.deletes) == 0 {
		p.since = e.now()
	}
	return p
}

// ExpectCreate records that pod name is about to be created for key.
func (e *Expectations) ExpectCreate(key types.NamespacedName, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key).creates[name] = struct{}{}
}

// ExpectDelete records that the pod with uid is about to be deleted for key.
func (e *Expectations) ExpectDelete(key types.NamespacedName, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key).deletes[uid] = struct{}{}
}

// CreationObserved lowers the expectation for pod name: the cache has
// shown it, or its creation failed.
func (e *Expectations) CreationObserved(key types.NamespacedName, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.byID[key]; p != nil {
		delete(p.creates, name)
	}
}

// DeletionObserved lowers the expectation for the pod with uid: the cache
// has shown it terminating or gone, or its deletion failed.
func (e *Expectations) DeletionObserved(key types.NamespacedName, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.byID[key]; p != nil {
		delete(p.deletes, uid)
	}
}

// Satisfied reports whether nothing is pending for key. Pending writes
// older than the TTL are dropped. When not satisfied, wait is how long
// until they expire.
func (e *Expectations) Satisfied(key types.NamespacedName) (ok bool, wait time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.byID[key]
	if p == nil || len(p.creates) == 0 && len(p.deletes) == 0 {
		return true, 0
	}
	age := e.now().Sub(p.since)
	if age >= e.ttl {
		delete(e.byID, key)
		return true, 0
	}
	return false, e.ttl - age
}

// Pending returns the number of pending creations and deletions for key.
func (e *Expectations) Pending(key types.NamespacedName) (creates, deletes int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.byID[key]; p != nil {
		return len(p.creates), len(p.deletes)
	}
	return 0, 0
}

// Forget drops everything recorded for key.
func (e *Expectations) Forget(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.byID, key)
}
