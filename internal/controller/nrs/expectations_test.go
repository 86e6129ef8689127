package nrs

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
)

func TestExpectations(t *testing.T) {
	now := t0
	e := NewExpectations(time.Minute, func() time.Time { return now })
	key := types.NamespacedName{Namespace: "ns", Name: "x"}
	other := types.NamespacedName{Namespace: "ns", Name: "y"}

	if ok, _ := e.Satisfied(key); !ok {
		t.Fatal("empty expectations not satisfied")
	}
	e.ExpectCreate(key, "p1")
	e.ExpectCreate(key, "p2")
	e.ExpectDelete(key, "u1")
	if ok, wait := e.Satisfied(key); ok || wait != time.Minute {
		t.Fatalf("Satisfied() = %v, %v; want false, 1m", ok, wait)
	}
	if ok, _ := e.Satisfied(other); !ok {
		t.Fatal("expectations leak between keys")
	}
	e.CreationObserved(key, "p1")
	e.CreationObserved(key, "p1") // twice is harmless
	e.DeletionObserved(key, "u1")
	if c, d := e.Pending(key); c != 1 || d != 0 {
		t.Fatalf("Pending() = %d, %d; want 1, 0", c, d)
	}
	now = now.Add(30 * time.Second)
	if ok, wait := e.Satisfied(key); ok || wait != 30*time.Second {
		t.Fatalf("Satisfied() = %v, %v; want false, 30s", ok, wait)
	}
	e.CreationObserved(key, "p2")
	if ok, _ := e.Satisfied(key); !ok {
		t.Fatal("not satisfied after all observed")
	}

	// The TTL counts from the first pending write of a batch.
	e.ExpectCreate(key, "p3")
	now = now.Add(time.Minute)
	if ok, _ := e.Satisfied(key); !ok {
		t.Fatal("expired expectations still block")
	}
	if c, d := e.Pending(key); c != 0 || d != 0 {
		t.Fatalf("expired expectations kept: %d, %d", c, d)
	}
	e.ExpectDelete(key, "u2")
	e.Forget(key)
	if ok, _ := e.Satisfied(key); !ok {
		t.Fatal("Forget did not clear")
	}
	// Observations for unknown keys are ignored.
	e.CreationObserved(other, "zz")
	e.DeletionObserved(other, "zz")
}

func TestExpectations_Uncertain(t *testing.T) {
	now := t0
	e := NewExpectations(time.Minute, func() time.Time { return now })
	key := types.NamespacedName{Namespace: "ns", Name: "x"}

	e.ExpectCreate(key, "p1")
	e.ExpectCreate(key, "p2")
	e.CreateUncertain(key, "p2", Create{Node: "n", Slot: 1})
	if diff := cmp.Diff(map[string]Create{"p2": {Node: "n", Slot: 1}}, e.Uncertain(key)); diff != "" {
		t.Errorf("Uncertain (-want,+got):\n%s", diff)
	}

	// The TTL drops certain writes only: the uncertain create may have
	// stored a pod, and only a retry or the cache can tell.
	now = now.Add(time.Minute)
	if ok, wait := e.Satisfied(key); ok || wait != time.Minute {
		t.Fatalf("Satisfied() = %v, %v; want false, 1m", ok, wait)
	}
	if c, _ := e.Pending(key); c != 1 {
		t.Fatalf("pending creates = %d, want 1 (the uncertain one)", c)
	}

	// A retry that finds the pod makes it certain: it waits for the cache.
	e.CreateConfirmed(key, "p2")
	if got := e.Uncertain(key); len(got) != 0 {
		t.Errorf("Uncertain after confirm = %v", got)
	}
	if ok, _ := e.Satisfied(key); ok {
		t.Fatal("confirmed create no longer pending")
	}
	e.CreationObserved(key, "p2")
	if ok, _ := e.Satisfied(key); !ok {
		t.Fatal("not satisfied after the cache showed the pod")
	}
	// Confirming a create already observed does not bring it back.
	e.CreateConfirmed(key, "p2")
	if ok, _ := e.Satisfied(key); !ok {
		t.Fatal("confirm after observe made the create pending again")
	}
}
