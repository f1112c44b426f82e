package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bigDB builds (once per run, under STORE_BENCH_DIR or a temp dir) a
// database of n entities of about 800 bytes, each with its change.
func bigDB(b *testing.B, n int) string {
	b.Helper()
	dir := os.Getenv("STORE_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	p := filepath.Join(dir, fmt.Sprintf("big-%d.db", n))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	s := openAt(b, p+".tmp", Options{Synchronous: "normal"})
	pad := strings.Repeat("x", 700)
	at := time.Now().UTC().Format(TimeFormat)
	for lo := 1; lo <= n; lo += 10000 {
		var rs []Row
		for i := lo; i < lo+10000 && i <= n; i++ {
			k := fmt.Sprintf("nova.instance:%08d", i)
			rs = append(rs, Row{Seq: int64(i), Key: k, Type: "nova.instance", Action: "create", Source: "x", At: at,
				Hash: "00", ObservedAt: at, Entity: []byte(fmt.Sprintf(`{"key":%q,"state":"ACTIVE","data":{"pad":%q}}`, k, pad))})
		}
		if err := s.Commit(context.Background(), rs, nil); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	for _, suf := range []string{"", ".seq"} {
		if err := os.Rename(p+".tmp"+suf, p+suf); err != nil {
			b.Fatal(err)
		}
	}
	os.Remove(p + ".tmp.lock")
	return p
}

const benchEntities = 1000000

// benchBig times op over the database of benchEntities, opened once.
func benchBig(b *testing.B, op func(s *Store) error) {
	b.Helper()
	p := bigDB(b, benchEntities)
	s := openAt(b, p, Options{})
	defer s.Close()
	b.ResetTimer()
	for range b.N {
		if err := op(s); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: ResetTimer deletes metrics reported before it.
	fi, _ := os.Stat(p)
	b.ReportMetric(float64(fi.Size())/(1<<20), "db-MB")
}

// BenchmarkQuickCheck1M: PRAGMA quick_check over a database of a million
// entities (and their million changes). Yardstick: reading every entity
// once (get_all's verification pass).
func BenchmarkQuickCheck1M(b *testing.B) {
	benchBig(b, func(s *Store) error { return s.QuickCheck(context.Background()) })
}

// BenchmarkGetAll1M: All over a million entities, with the verification
// pass, to a sink that only counts bytes.
func BenchmarkGetAll1M(b *testing.B) {
	benchBig(b, func(s *Store) error {
		var n int
		_, err := s.All(context.Background(), nil, func(e []byte) error { n += len(e); return nil })
		return err
	})
}

// BenchmarkVerifyPass1M: the verification pass alone, the cost the
// pre-read adds to a get_all of everything.
func BenchmarkVerifyPass1M(b *testing.B) {
	benchBig(b, func(s *Store) error {
		var n int64
		return s.r.QueryRow(`SELECT sum(length(CAST(entity AS BLOB))) FROM entities`).Scan(&n)
	})
}

// BenchmarkScanOnly1M: the yardstick for BenchmarkGetAll1M, the same scan
// of every entity without the verification pass.
func BenchmarkScanOnly1M(b *testing.B) {
	benchBig(b, func(s *Store) error {
		rows, err := s.r.Query(`SELECT entity FROM entities ORDER BY key`)
		if err != nil {
			return err
		}
		defer rows.Close()
		var n int
		var e sql.RawBytes
		for rows.Next() {
			if err := rows.Scan(&e); err != nil {
				return err
			}
			n += len(e)
		}
		return rows.Err()
	})
}
