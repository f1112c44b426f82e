package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func schema(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSecondOpenIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db")
	s := openAt(t, p, Options{})
	_, err := Open(p, schema(t), Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("second open: %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	s.Close()
	s, err = Open(p, schema(t), Options{})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s.Close()
}

func TestNewerSchemaIsRefusedAndUntouched(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db")
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
		INSERT INTO meta VALUES ('schema_version', '99');
		CREATE TABLE future(x);`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(p)
	_, err = Open(p, schema(t), Options{})
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("open: %v, want ErrNewerSchema", err)
	}
	if !strings.Contains(err.Error(), "99") {
		t.Errorf("error %q does not name the version", err)
	}
	db, _ = sql.Open("sqlite", p)
	defer db.Close()
	var n int
	db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name IN ('baseline','changes','entities')`).Scan(&n)
	if n != 0 {
		t.Fatalf("refused database got %d of our tables", n)
	}
	after, _ := os.ReadFile(p)
	if len(after) != len(before) {
		t.Fatalf("refused database changed size %d -> %d", len(before), len(after))
	}
}

func rows(from, to int64, at time.Time) []Row {
	var out []Row
	for s := from; s <= to; s++ {
		k := fmt.Sprintf("t:%d", s)
		out = append(out, Row{Seq: s, Key: k, Type: "t", Action: "create", Source: "x",
			At: at.UTC().Format(TimeFormat), Hash: "00", ObservedAt: at.UTC().Format(TimeFormat), Entity: []byte(`{"key":"` + k + `"}`)})
	}
	return out
}

// openAt opens the store at p on the repository's schema; the caller
// closes it.
func openAt(t testing.TB, p string, o Options) *Store {
	t.Helper()
	s, err := Open(p, schema(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openTemp opens a store in a temporary directory, closed when the test
// ends.
func openTemp(t testing.TB, o Options) *Store {
	t.Helper()
	s := openAt(t, filepath.Join(t.TempDir(), "db"), o)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCommitReadAndPrune(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{})
	old := time.Now().Add(-48 * time.Hour)
	if err := s.Commit(ctx, rows(1, 10, old), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, rows(11, 20, time.Now()), nil); err != nil {
		t.Fatal(err)
	}
	var keys []string
	seq, err := s.All(ctx, []string{"t"}, func(b []byte) error { keys = append(keys, string(b)); return nil })
	if err != nil || seq != 20 || len(keys) != 20 {
		t.Fatalf("All: seq %d, %d entities, err %v", seq, len(keys), err)
	}
	// By count: keep 15.
	if n, err := s.Prune(ctx, 15, 0, time.Now()); err != nil || n != 5 {
		t.Fatalf("prune by count: %d, %v", n, err)
	}
	// By age: the first 10 are two days old.
	if n, err := s.Prune(ctx, 0, 24*time.Hour, time.Now()); err != nil || n != 5 {
		t.Fatalf("prune by age: %d, %v", n, err)
	}
	last, pruned, err := s.LogBounds(ctx)
	if err != nil || last != 20 || pruned != 10 {
		t.Fatalf("bounds: last %d pruned %d err %v", last, pruned, err)
	}
	var got []int64
	if _, err := s.Changes(ctx, 10, nil, 3, func(r LogRow) error { got = append(got, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[11 12 13]" {
		t.Fatalf("changes after 10 limit 3: %v", got)
	}
	// Pruning everything never lets a seq be reused.
	if _, err := s.Prune(ctx, 0, time.Nanosecond, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	last, pruned, _ = s.LogBounds(ctx)
	if last != 20 || pruned != 20 {
		t.Fatalf("after pruning all: last %d pruned %d", last, pruned)
	}
}

// TestCommitChunksKeepOrder: rows written by multi-row statements, with a
// key repeated in one chunk and deletes between chunks, end as if written
// one by one.
func TestCommitChunksKeepOrder(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{})
	at := time.Now().UTC().Format(TimeFormat)
	var batch []Row
	for i := int64(1); i <= 3*chunkRows+5; i++ {
		key := fmt.Sprintf("t:%d", i%20) // keys repeat within chunks
		action := "update"
		if i%17 == 0 {
			action = "delete"
		}
		batch = append(batch, Row{Seq: i, Key: key, Type: "t", Action: action, Source: "x", At: at,
			Hash: fmt.Sprint(i), ObservedAt: at, Entity: []byte(fmt.Sprintf(`{"key":%q,"v":%d}`, key, i))})
	}
	if err := s.Commit(ctx, batch, nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, r := range batch {
		if r.Action == "delete" {
			delete(want, r.Key)
		} else {
			want[r.Key] = string(r.Entity)
		}
	}
	got := map[string]string{}
	if _, err := s.All(ctx, nil, func(b []byte) error {
		var k struct{ Key string }
		json.Unmarshal(b, &k)
		got[k.Key] = string(b)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d entities, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %s, want %s", k, got[k], v)
		}
	}
	var n int
	s.Changes(ctx, 0, nil, 0, func(LogRow) error { n++; return nil })
	if n != len(batch) {
		t.Fatalf("%d changes logged, want %d", n, len(batch))
	}
}
