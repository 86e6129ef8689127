package placement

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Default is the policy used when none is named.
const Default = "nearest"

// Factory builds a policy.
type Factory func() Policy

var (
	mu sync.RWMutex
	// registry holds the known policies; each policy's file adds itself
	// from init.
	registry = map[string]Factory{}
)

// Register makes a policy available under name. It panics when name is
// empty, already taken or factory is nil, as these are programming errors.
func Register(name string, factory Factory) {
	mu.Lock()
	defer mu.Unlock()
	if name == "" || factory == nil {
		panic("placement: Register needs a name and a factory")
	}
	if _, ok := registry[name]; ok {
		panic(fmt.Sprintf("placement: policy %q registered twice", name))
	}
	registry[name] = factory
}

// New returns the policy registered under name; an empty name means
// Default.
func New(name string) (Policy, error) {
	if name == "" {
		name = Default
	}
	mu.RLock()
	f, ok := registry[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown placement policy %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return f(), nil
}

// Names returns the registered policy names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
