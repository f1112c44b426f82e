package engine

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// ErrInvalidEntity is wrapped by errors about entities that cannot be
// stored (no type, no id, a key that does not start with the type).
var ErrInvalidEntity = errors.New("invalid entity")

// Result counts what an apply did.
type Result struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Deleted   int `json:"deleted"`
	Unchanged int `json:"unchanged"`
	// Ignored counts events older than the baseline and snapshot entities
	// that a newer push event had already updated.
	Ignored int `json:"ignored"`
	// Held maps a type to the number of deletes the brake held back.
	Held map[string]int `json:"held,omitempty"`
	// Seq is the last committed seq after the apply.
	Seq int64 `json:"seq"`
	// Conflicts counts the keys of the listing that another collector
	// owns and keeps (ownership.go); NewConflicts those of them that were
	// not kept from this source at its previous listing.
	Conflicts    int `json:"conflicts,omitempty"`
	NewConflicts int `json:"-"`
	// References counts the reference entries of a reference source that
	// stand for an entity another source owns.
	References int `json:"references,omitempty"`
	// Duplicates counts the listings of a key beyond its first in one
	// snapshot: they are dropped.
	Duplicates int `json:"duplicates,omitempty"`
}

// prepared is an entity ready to compare: normalized in place, hashed.
type prepared struct {
	ent  *entity.Entity
	hash [16]byte
	core [16]byte
}

// pending is one change waiting for commit.
type pending struct {
	action string
	p      *prepared // nil for deletes of entities not in hand
	// prev is, for a delete, the entity as an earlier change of the same
	// apply left it: the store does not have it yet.
	prev   *prepared
	key    string
	typ    string
	source string
	obs    time.Time
	json   []byte
}

// prepareAll normalizes and hashes entities on all cores: canonical hashing
// is the main CPU cost of comparing a large snapshot.
func (e *Engine) prepareAll(ents []entity.Entity, source string, observed time.Time, volatile map[string][]string) ([]prepared, error) {
	out := make([]prepared, len(ents))
	e.fps.expect(len(ents))
	workers := runtime.GOMAXPROCS(0)
	if len(ents) < 256 {
		workers = 1
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	chunk := (len(ents) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(ents))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func(w, lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				if err := e.prepare(&out[i], &ents[i], source, observed, volatile); err != nil {
					errs[w] = fmt.Errorf("entity %d: %w", i, err)
					return
				}
			}
		}(w, lo, hi)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// prepare normalizes src in place (the snapshot is the engine's once handed
// over) and hashes it.
func (e *Engine) prepare(p *prepared, src *entity.Entity, source string, observed time.Time, volatile map[string][]string) error {
	p.ent = src
	en := src
	if en.Type == "" || strings.Contains(en.Type, ":") {
		return fmt.Errorf("%w: type %q (key %q): must be non-empty and contain no ':'", ErrInvalidEntity, en.Type, en.Key)
	}
	if en.Key == "" {
		if en.ID == "" {
			return fmt.Errorf("%w: %s entity %q has neither key nor id", ErrInvalidEntity, en.Type, en.Name)
		}
		en.Key = entity.MakeKey(en.Type, en.ID)
	} else if !strings.HasPrefix(en.Key, en.Type+":") || len(en.Key) == len(en.Type)+1 {
		return fmt.Errorf("%w: key %q must be \"%s:<id>\"", ErrInvalidEntity, en.Key, en.Type)
	}
	if en.ID == "" {
		_, en.ID = entity.SplitKey(en.Key)
	}
	if en.Source == "" {
		en.Source = source
	}
	if en.Timestamp.IsZero() {
		en.Timestamp = observed
	}
	en.Timestamp = en.Timestamp.UTC()
	if en.Data == nil {
		en.Data = map[string]any{}
	}
	for _, f := range volatile[en.Type] {
		entity.DropField(en.Data, f)
	}
	e.hashPrepared(p, volatile[en.Type])
	return nil
}
