package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/entity"
)

// benchN is the number of entities of the benchmarks: SYNC_BENCH_N, or a
// default small enough for a quick run. make bench sets the figures the
// issue names (1,000,000 and 100,000).
func benchN(def int) int {
	if v, err := strconv.Atoi(os.Getenv("SYNC_BENCH_N")); err == nil && v > 0 {
		return v
	}
	return def
}

// servers makes n entities from the real Nova server sample, each parsed
// from JSON as a collector would, with its own id, name and address.
func servers(tb testing.TB, n int) []entity.Entity {
	b, err := os.ReadFile("testdata/servers-details-resp.json")
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Servers []json.RawMessage `json:"servers"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		tb.Fatal(err)
	}
	tmpl := string(doc.Servers[0])
	out := make([]entity.Entity, n)
	for i := range out {
		id := fmt.Sprintf("%08x-cd40-4630-b43f-%012x", i, i)
		var m map[string]any
		if err := json.Unmarshal([]byte(tmpl), &m); err != nil {
			tb.Fatal(err)
		}
		m["id"], m["name"] = id, "server-"+strconv.Itoa(i)
		if n > 200000 {
			// A million full servers would not fit this machine's memory as
			// Go maps (about 10 KB each): keep a realistic subset (~600 B).
			small := map[string]any{}
			for _, k := range []string{"id", "name", "status", "tenant_id", "user_id", "created", "updated",
				"OS-EXT-SRV-ATTR:host", "OS-EXT-AZ:availability_zone", "flavor", "addresses", "metadata", "key_name"} {
				if v, ok := m[k]; ok {
					small[k] = v
				}
			}
			m = small
		}
		out[i] = entity.Entity{Type: "nova.instance", ID: id, Name: m["name"].(string), State: "ACTIVE",
			Project: "6f70656e737461636b20342065766572", ParentKey: "nova.host:compute-" + strconv.Itoa(i%100), Data: m}
	}
	return out
}

// BenchmarkUnchangedSnapshot compares an unchanged snapshot with a baseline
// of the same entities: canonical hashing and comparison, no writes.
// Target: >= 300k entities/s at 1,000,000 entities.
func BenchmarkUnchangedSnapshot(b *testing.B) {
	b.Run("hashed", func(b *testing.B) { benchUnchanged(b, false) })
	// As the openstack collector lists servers: each with the fingerprint
	// of its item's bytes, which saves hashing it again.
	b.Run("fingerprinted", func(b *testing.B) { benchUnchanged(b, true) })
}

func benchUnchanged(b *testing.B, fingerprints bool) {
	n := benchN(100000)
	e, _, st := newEngine(b)
	ents := servers(b, n)
	if fingerprints {
		for i := range ents {
			ents[i].Fingerprint = [16]byte{1, byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)}
		}
	}
	all := []string{"nova.instance"}
	ctx := context.Background()
	if _, err := e.ApplySnapshot(ctx, &entity.Snapshot{Types: all, Entities: ents}, SnapshotOptions{Source: "cloud"}); err != nil {
		b.Fatal(err)
	}
	size := func() int64 { fi, _ := os.Stat(st.Path() + "-wal"); return fi.Size() }
	walBefore := size()
	// Measure the steady state, not the collection of the set-up's garbage.
	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		res, err := e.ApplySnapshot(ctx, &entity.Snapshot{Types: all, Entities: ents}, SnapshotOptions{Source: "cloud"})
		if err != nil {
			b.Fatal(err)
		}
		if res.Unchanged != n {
			b.Fatalf("unchanged %d of %d", res.Unchanged, n)
		}
	}
	el := time.Since(start)
	b.StopTimer()
	if size() != walBefore {
		b.Fatalf("an unchanged snapshot wrote to the database")
	}
	b.ReportMetric(float64(n*b.N)/el.Seconds(), "entities/s")
}

// BenchmarkApplyNew applies n new entities (baseline, entities, change log,
// one transaction per batch) and, in the same run, a plain single-table
// upsert of the same rows. Target: ratio >= 0.5.
func BenchmarkApplyNew(b *testing.B) {
	n := benchN(100000)
	ents := servers(b, n)
	ctx := context.Background()
	var engRate, plainRate float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e, _, _ := newEngine(b)
		runtime.GC()
		b.StartTimer()
		start := time.Now()
		res, err := e.ApplySnapshot(ctx, &entity.Snapshot{Types: []string{"nova.instance"}, Entities: ents}, SnapshotOptions{Source: "cloud"})
		if err != nil {
			b.Fatal(err)
		}
		if res.Created != n {
			b.Fatalf("created %d", res.Created)
		}
		engRate = float64(n) / time.Since(start).Seconds()
		b.StopTimer()
		plainRate = plainUpsert(b, ents)
		b.StartTimer()
	}
	b.ReportMetric(engRate, "entities/s")
	b.ReportMetric(plainRate, "plain-rows/s")
	b.ReportMetric(engRate/plainRate, "ratio")
}

// plainUpsert is the yardstick: the same rows (key and the entity's JSON)
// upserted into one table, same pragmas and batch size as the store.
func plainUpsert(b *testing.B, ents []entity.Entity) float64 {
	dir := b.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "plain.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-65536)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE t (key TEXT PRIMARY KEY, value TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	rows := make([][2]string, len(ents))
	for i := range ents {
		j, _ := json.Marshal(&ents[i])
		rows[i] = [2]string{"nova.instance:" + ents[i].ID, string(j)}
	}
	start := time.Now()
	for lo := 0; lo < len(rows); lo += 5000 {
		tx, _ := db.Begin()
		st, _ := tx.Prepare(`INSERT INTO t(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`)
		for _, r := range rows[lo:min(lo+5000, len(rows))] {
			if _, err := st.Exec(r[0], r[1]); err != nil {
				b.Fatal(err)
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return float64(len(rows)) / time.Since(start).Seconds()
}

// BenchmarkHash is the canonical hash of one Nova server.
func BenchmarkHash(b *testing.B) {
	ents := servers(b, 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Hashes(&ents[0])
	}
}
