// Package registry holds the factories of one kind of unit (collector
// types, listener types) by the type name a config entry gives: registered
// in init, looked up when the config is built.
package registry

import (
	"fmt"
	"sort"
	"sync"
)

// Registry maps type names to factories F of one kind of unit.
type Registry[F any] struct {
	kind string // "collector", "listener": for messages
	mu   sync.RWMutex
	m    map[string]F
}

// New returns an empty registry of units of kind.
func New[F any](kind string) *Registry[F] {
	return &Registry[F]{kind: kind, m: map[string]F{}}
}

// Register makes a type available under name. It panics when the name is
// taken, as that is a programming error.
func (r *Registry[F]) Register(name string, f F) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic(r.kind + "s: type registered twice: " + name)
	}
	r.m[name] = f
}

// Lookup returns the factory of a type.
func (r *Registry[F]) Lookup(name string) (F, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.m[name]
	return f, ok
}

// Get returns the factory of a type, or an error that names the known
// types.
func (r *Registry[F]) Get(name string) (F, error) {
	f, ok := r.Lookup(name)
	if !ok {
		return f, fmt.Errorf("unknown %s type %q (known: %v)", r.kind, name, r.Types())
	}
	return f, nil
}

// Build builds a unit of a registered type from its settings.
func Build[F ~func(S) (U, error), S, U any](r *Registry[F], typ string, s S) (U, error) {
	f, err := r.Get(typ)
	if err != nil {
		var zero U
		return zero, err
	}
	return f(s)
}

// Types returns the registered type names, sorted.
func (r *Registry[F]) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
