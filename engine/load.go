package engine

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/openstack-synchronizer/synchronizer/store"
)

// Load reads the baseline index. Until it returns, applies and Locked wait;
// readers of the store (get_all, changes) do not need it.
func (e *Engine) Load(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.st.CountBaseline(ctx)
	if err != nil {
		return err
	}
	// Sized once: growing a map of a million entries doubles it several
	// times and leaves every old table as garbage.
	e.idx = make(map[string]rec, n)
	if err := e.load(ctx); err != nil {
		return fmt.Errorf("engine: load baseline: %w", err)
	}
	counts := make(map[[2]uint16]int)
	for _, r := range e.idx {
		counts[[2]uint16{r.source, r.typ}]++
	}
	e.cmu.Lock()
	e.counts, e.n, e.loaded = counts, len(e.idx), true
	e.cnames = append([]string(nil), e.names...)
	e.cmu.Unlock()
	return nil
}

type loaded struct {
	key string
	r   rec
}

// load reads the baseline into the index. Reading rows (SQLite) and
// inserting them into the map run on two goroutines: at a million entities
// start-up time is the sum of both otherwise. Caller holds e.mu (Engine:
// Locking): the goroutine that fills idx does it on the caller's behalf.
func (e *Engine) load(ctx context.Context) error {
	// The load allocates a million keys that all stay live: collecting
	// while they accumulate only re-scans them.
	batches := make(chan []loaded, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range batches {
			for _, l := range b {
				e.idx[l.key] = l.r
			}
		}
	}()
	batch := make([]loaded, 0, 4096)
	err := e.st.ScanBaseline(ctx, func(b *store.BaselineRow) error {
		var r rec
		if _, err := hex.Decode(r.hash[:], b.Hash); err != nil {
			return fmt.Errorf("%s: bad hash: %w", b.Key, err)
		}
		// A row without core hash (hand-edited) simply never matches one.
		hex.Decode(r.core[:], b.CoreHash)
		t, err := parseTime(b.ObservedAt)
		if err != nil {
			return fmt.Errorf("%s: bad observed_at: %w", b.Key, err)
		}
		r.observed = t
		r.source = e.internBytes(b.Source)
		r.typ = e.internBytes(b.Type)
		batch = append(batch, loaded{string(b.Key), r})
		if len(batch) == cap(batch) {
			batches <- batch
			batch = make([]loaded, 0, 4096)
		}
		return nil
	})
	batches <- batch
	close(batches)
	<-done
	return err
}

// parseTime parses the store's fixed time format
// (2006-01-02T15:04:05.000000000Z) without time.Parse's generality, and
// anything else as RFC 3339. It returns unix nanoseconds.
func parseTime(b []byte) (int64, error) {
	if len(b) == 30 && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' && b[19] == '.' && b[29] == 'Z' {
		num := func(lo, hi int) (int, bool) {
			n := 0
			for _, c := range b[lo:hi] {
				if c < '0' || c > '9' {
					return 0, false
				}
				n = n*10 + int(c-'0')
			}
			return n, true
		}
		y, ok1 := num(0, 4)
		mo, ok2 := num(5, 7)
		d, ok3 := num(8, 10)
		h, ok4 := num(11, 13)
		mi, ok5 := num(14, 16)
		sec, ok6 := num(17, 19)
		ns, ok7 := num(20, 29)
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 {
			return time.Date(y, time.Month(mo), d, h, mi, sec, ns, time.UTC).UnixNano(), nil
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, err
	}
	return t.UnixNano(), nil
}
