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
// arrive first, and lower it when the call certainly failed. A create whose
// call failed in a way that leaves its outcome unknown (a time-out, a lost
// connection, a server error: the pod may have been stored) is marked
// uncertain with [Expectations.CreateUncertain] instead: it stays pending,
// also past the TTL, until the cache shows the pod or a retry of the same
// create gives a definite answer.
type Expectations struct {
	mu   sync.Mutex
	ttl  time.Duration
	now  func() time.Time
	byID map[types.NamespacedName]*pending
}

type pending struct {
	// creates maps pod names to the slot of an uncertain create; certain
	// creates map to nil.
	creates map[string]*Create
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
		p = &pending{creates: map[string]*Create{}, deletes: map[types.UID]struct{}{}}
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
	e.get(key).creates[name] = nil
}

// CreateUncertain records that the create of pod name, for the slot c,
// failed without saying whether the pod was stored. It stays pending until
// observed or settled by [Expectations.CreateConfirmed] or
// [Expectations.CreationObserved] after a retry; the TTL does not drop it.
func (e *Expectations) CreateUncertain(key types.NamespacedName, name string, c Create) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.get(key).creates[name] = &c
}

// CreateConfirmed records that pod name exists: a retry of its create
// succeeded or found it already there. If the create is still pending, it
// becomes certain and waits for the cache; if it was observed meanwhile,
// nothing changes.
func (e *Expectations) CreateConfirmed(key types.NamespacedName, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.byID[key]; p != nil {
		if _, ok := p.creates[name]; ok {
			p.creates[name] = nil
		}
	}
}

// Uncertain returns the uncertain creates of key by pod name.
func (e *Expectations) Uncertain(key types.NamespacedName) map[string]Create {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]Create{}
	if p := e.byID[key]; p != nil {
		for name, c := range p.creates {
			if c != nil {
				out[name] = *c
			}
		}
	}
	return out
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
// older than the TTL are dropped, except uncertain creates. When not
// satisfied, wait is how long until the pending writes expire (the TTL if
// only uncertain creates remain).
func (e *Expectations) Satisfied(key types.NamespacedName) (ok bool, wait time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.byID[key]
	if p == nil || len(p.creates) == 0 && len(p.deletes) == 0 {
		return true, 0
	}
	age := e.now().Sub(p.since)
	if age < e.ttl {
		return false, e.ttl - age
	}
	clear(p.deletes)
	for name, c := range p.creates {
		if c == nil {
			delete(p.creates, name)
		}
	}
	if len(p.creates) == 0 {
		delete(e.byID, key)
		return true, 0
	}
	p.since = e.now()
	return false, e.ttl
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
