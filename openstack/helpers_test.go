package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/entity"
	"github.com/openstack-synchronizer/synchronizer/logbuf"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

const testPassword = "Sup3r-S3cret-Passw0rd"

// fixture is a fake cloud, a collector on it and the collector's log.
type fixture struct {
	srv *openstacktest.Server
	c   *Collector
	log *logbuf.Buffer
}

// newFixture starts a fake cloud and a collector with fast time-outs.
// tweak may change the options before the collector is built.
func newFixture(t testing.TB, so openstacktest.Options, tweak func(*Options)) *fixture {
	t.Helper()
	so.Password = testPassword
	srv, err := openstacktest.New(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "clouds.yaml"), []byte(srv.CloudsYAML("test", testPassword)), 0o600); err != nil {
		t.Fatal(err)
	}
	retries := 1
	o := Options{
		Cloud:          "test",
		CloudsFile:     "clouds.yaml",
		RequestTimeout: config.Duration(2 * time.Second),
		Retries:        &retries,
		RetryBackoff:   config.Duration(10 * time.Millisecond),
	}
	if tweak != nil {
		tweak(&o)
	}
	buf := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(o, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &fixture{srv: srv, c: c, log: buf}
}

func (f *fixture) collect(t testing.TB) *entity.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := f.c.Collect(ctx)
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	return snap
}

func byKey(snap *entity.Snapshot) map[string]entity.Entity {
	m := map[string]entity.Entity{}
	for _, e := range snap.Entities {
		m[entity.MakeKey(e.Type, e.ID)] = e
	}
	return m
}

func ofType(snap *entity.Snapshot, typ string) []entity.Entity {
	var out []entity.Entity
	for _, e := range snap.Entities {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// diff compares two complete snapshots the way the engine does for the types
// both listed: keys new or with different content are creates and updates,
// missing ones deletes.
func diff(t testing.TB, before, after *entity.Snapshot) (creates, updates, deletes []string) {
	t.Helper()
	enc := func(e entity.Entity) string {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	b, a := byKey(before), byKey(after)
	for k, e := range a {
		old, ok := b[k]
		switch {
		case !ok:
			creates = append(creates, k)
		case enc(old) != enc(e):
			updates = append(updates, k)
		}
	}
	for k, e := range b {
		if _, ok := a[k]; !ok && slices.Contains(after.Types, e.Type) {
			deletes = append(deletes, k)
		}
	}
	sort.Strings(creates)
	sort.Strings(updates)
	sort.Strings(deletes)
	return creates, updates, deletes
}

func typeStatus(c *Collector, typ string) TypeStatus {
	return c.Status()["types"].(map[string]TypeStatus)[typ]
}

func without(types []string, drop ...string) []string {
	var out []string
	for _, t := range types {
		if !slices.Contains(drop, t) {
			out = append(out, t)
		}
	}
	return out
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func asHTTP(err error, he **HTTPError) bool { return errors.As(err, he) }
