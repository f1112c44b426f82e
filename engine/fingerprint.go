package engine

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// Canonical hashing walks every map of an entity and sorts its keys: the
// main cost of comparing a large unchanged listing. A collector that builds
// an entity from one source object and nothing else can say which bytes it
// came from (entity.Fingerprint); an entity whose fingerprint is the one it
// had last time hashes as it did last time, so the engine keeps the hashes
// per key with the fingerprint and the volatile fields they were computed
// with, and reuses them. The cache only holds what the hashing function
// would compute again: it is in memory, never written, and wrong entries
// cannot exist (an entry is replaced whenever its fingerprint differs).

type fpEntry struct {
	fp         [16]byte
	volatile   uint64 // volatileSig of the fields dropped before hashing
	full, core [16]byte
}

type fpCache struct {
	mu sync.Mutex // taken last (Engine: Locking)
	m  map[string]fpEntry
	// batch is the size of the largest listing being prepared: the cache
	// must hold a whole one even before the baseline has it.
	batch int

	checks, broken atomic.Int64 // hits verified by hashing; mismatches
}

// expect makes room for a listing of n entities.
func (c *fpCache) expect(n int) {
	c.mu.Lock()
	c.batch = max(c.batch, n)
	c.mu.Unlock()
}

var volatileSeed = maphash.MakeSeed()

// volatileSig identifies a list of volatile fields.
func volatileSig(fields []string) uint64 {
	return maphash.String(volatileSeed, strings.Join(fields, "\x00"))
}

// lookup returns the cached hashes of key for fingerprint fp.
func (c *fpCache) lookup(key string, fp [16]byte, vol uint64) (full, core [16]byte, ok bool) {
	c.mu.Lock()
	en, found := c.m[key]
	c.mu.Unlock()
	if !found || en.fp != fp || en.volatile != vol {
		return full, core, false
	}
	return en.full, en.core, true
}

// store remembers the hashes of key for fingerprint fp. The cache is
// dropped when it outgrows limit (keys that came and went): it refills
// from the next listings.
func (c *fpCache) store(key string, fp [16]byte, vol uint64, full, core [16]byte, limit int) {
	c.mu.Lock()
	if c.m == nil || len(c.m) > max(limit, 2*c.batch) {
		c.m = make(map[string]fpEntry)
	}
	c.m[key] = fpEntry{fp: fp, volatile: vol, full: full, core: core}
	c.mu.Unlock()
}

// hashPrepared sets p's hashes: from the cache when p's entity has the
// fingerprint it had when they were computed, else by hashing it.
func (e *Engine) hashPrepared(p *prepared, volatile []string) {
	en := p.ent
	if en.Fingerprint == ([16]byte{}) {
		p.hash, p.core = hashes(en)
		return
	}
	vol := volatileSig(volatile)
	if full, core, ok := e.fps.lookup(en.Key, en.Fingerprint, vol); ok {
		p.hash, p.core = full, core
		// One hit in checkEvery is hashed anyway: a collector that breaks
		// the fingerprint's promise (an entity enriched from another
		// request) is caught and its entity still compared right.
		if e.fps.checks.Add(1)%checkEvery != 0 {
			return
		}
		if p.hash, p.core = hashes(en); p.hash == full && p.core == core {
			return
		}
		if n := e.fps.broken.Add(1); n == 1 || n%1000 == 0 {
			e.log.Error("engine: an entity's fingerprint did not cover its content: its source must leave Fingerprint zero",
				"key", en.Key, "source", en.Source, "seen", n)
		}
	} else {
		p.hash, p.core = hashes(en)
	}
	e.fps.store(en.Key, en.Fingerprint, vol, p.hash, p.core, 2*e.Len()+1024)
}

// checkEvery: one fingerprint hit in this many is verified.
const checkEvery = 64
