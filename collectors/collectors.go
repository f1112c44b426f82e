// Package collectors holds the registry of collector types and the poll loop
// that runs each configured collector. A collector type is one file in this
// package (or a file here that wraps a package of its own) that registers a
// Factory in init.
package collectors

import (
	"context"
	"fmt"
	"log/slog"

	"gopkg.in/yaml.v3"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/registry"
)

// Collector lists the current state of one source.
//
// Collect returns a snapshot or an error. An error, or a context that ends
// before Collect returns, means a failed poll: the engine changes nothing.
// Collect must honour ctx (the poll time-out) and must be safe to call again
// after it failed.
type Collector interface {
	Collect(ctx context.Context) (*entity.Snapshot, error)
}

// Closer is implemented by collectors that hold resources (connections,
// child processes) to release when the collector is stopped.
type Closer interface {
	Close() error
}

// StatusReporter is implemented by collectors with details worth showing in
// `status` beyond what the poll loop records (per-type figures, held-back
// deletes). The result must be JSON-encodable and must not contain secrets.
type StatusReporter interface {
	Status() map[string]any
}

// FileReader is implemented by collectors that read files when they are
// built (credentials, certificates, mappings): the sidecar watches them, and
// an edit rebuilds the collector as a change of its settings would. (Data
// files read at every poll are another matter: a static topology's Path is
// polled again when it changes.)
type FileReader interface {
	Files() []string
}

// Checker is implemented by collectors that can tell, without contacting a
// remote source, what their first poll would fail on: a file that is
// missing or does not parse, a program that cannot be run. check-config
// calls it after building the collector; serve does not, as a file may
// appear before the first poll (and a failed poll changes nothing).
type Checker interface {
	Check() error
}

// ReferenceSource is implemented by collectors whose entries may stand for
// entities other sources own (a static topology naming the hosts its
// switches attach to). Their snapshots are applied as references: an entry
// of a key another source owns links but never overwrites or takes over
// that entity (engine.SnapshotOptions.Reference, README "Ownership").
type ReferenceSource interface {
	References() bool
}

// IsReference reports whether c is a reference source.
func IsReference(c Collector) bool {
	r, ok := c.(ReferenceSource)
	return ok && r.References()
}

// TrafficReporter is implemented by collectors that talk to an API: the
// requests they made and the response body bytes they read since they were
// built (the metrics' counters).
type TrafficReporter interface {
	Traffic() (requests, bytes int64)
}

// Settings is what a factory gets: the collector's name, the YAML node of its
// whole config entry (decode the type-specific keys from it with Decode) and
// the directory that relative paths are relative to.
type Settings struct {
	Name string
	Node *yaml.Node
	// Dir is the directory of the config file; relative paths in the
	// collector's settings are relative to it.
	Dir    string
	Logger *slog.Logger
}

// Factory builds a collector from its settings. It validates them and returns
// an error naming the bad field; it must not contact the source (check-config
// calls factories).
type Factory func(s Settings) (Collector, error)

var factories = registry.New[Factory]("collector")

// Register makes a collector type available under name. It panics when the
// name is taken, as that is a programming error.
func Register(name string, f Factory) { factories.Register(name, f) }

// registerDecoded registers a type whose entries decode strictly into a T
// (config.Common inline, and the type's own keys) that build makes the
// collector from; errors name the type and the collector.
func registerDecoded[T any](typ string, build func(s Settings, st *T) (Collector, error)) {
	Register(typ, func(s Settings) (Collector, error) {
		var st T
		if err := config.DecodeStrict(s.Node, &st); err != nil {
			return nil, fmt.Errorf("%s collector %q: %w", typ, s.Name, err)
		}
		c, err := build(s, &st)
		if err != nil {
			return nil, fmt.Errorf("%s collector %q: %w", typ, s.Name, err)
		}
		return c, nil
	})
}

// Lookup returns the factory of a collector type.
func Lookup(name string) (Factory, bool) { return factories.Lookup(name) }

// Types returns the registered collector types, sorted.
func Types() []string { return factories.Types() }

// New builds a collector of a registered type.
func New(typ string, s Settings) (Collector, error) { return registry.Build(factories, typ, s) }
