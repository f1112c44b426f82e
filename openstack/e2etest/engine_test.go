// Package e2etest runs the openstack collector against the fake cloud into
// the real engine and store: the change counts the issue asks for, the
// mass-delete brake, and the end-to-end benchmark. It is a package of its
// own so that the collector's unit tests do not depend on the engine.
package e2etest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/openstack"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
	"github.com/openstack-synchronizer/synchronizer/store"
	"github.com/openstack-synchronizer/synchronizer/store/storetest"
)

type rig struct {
	srv *openstacktest.Server
	c   *openstack.Collector
	eng *engine.Engine
	st  *store.Store
	dir string // holds the database files
}

func newRig(t testing.TB, pageSize int, types ...string) *rig {
	t.Helper()
	full := false
	return newRigWith(t, openstacktest.Options{PageSize: pageSize}, openstack.Options{Types: types, Incremental: &full})
}

// newRigWith starts a fake cloud and a collector with these options
// (cloud, credentials and time-outs are set here).
func newRigWith(t testing.TB, so openstacktest.Options, o openstack.Options) *rig {
	t.Helper()
	so.Password = "pw-e2e-123"
	srv, err := openstacktest.New(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "clouds.yaml"), []byte(srv.CloudsYAML("e2e", "pw-e2e-123")), 0o600); err != nil {
		t.Fatal(err)
	}
	retries := 0
	o.Cloud, o.CloudsFile, o.Retries, o.RequestTimeout = "e2e", "clouds.yaml", &retries, config.Duration(10*time.Second)
	c, err := openstack.New(o, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st, eng := openEngine(t, dir)
	return &rig{srv: srv, c: c, eng: eng, st: st, dir: dir}
}

// openEngine opens a store in dir on the repository's schema and an engine
// on it, as the sidecar does.
func openEngine(t testing.TB, dir string) (*store.Store, *engine.Engine) {
	t.Helper()
	st := storetest.Open(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	eng, err := engine.New(context.Background(), st, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st, eng
}

// poll collects and applies one snapshot, as the poll loop does.
func (r *rig) poll(t testing.TB) engine.Result {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	snap, err := r.c.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.eng.ApplySnapshot(ctx, snap, engine.SnapshotOptions{Source: "cloud", StartedAt: start, MaxDeleteRatio: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Applied != nil {
		snap.Applied()
	}
	return res
}

// TestChangesThroughEngine: full listings (incremental off).
func TestChangesThroughEngine(t *testing.T) {
	r := newRig(t, 3)
	ids := r.srv.AddServers(21) // 22 servers in pages of 3
	steps := []struct {
		name                      string
		change                    func()
		created, updated, deleted int
		held                      int
	}{
		{"first poll", func() {}, 22 + 9, 0, 0, 0},
		{"unchanged", func() {}, 0, 0, 0, 0},
		{"one status", func() { r.srv.SetServerStatus(ids[2], "SHUTOFF") }, 0, 1, 0, 0},
		{"one removed", func() { r.srv.Remove(openstacktest.Servers, ids[3]) }, 0, 0, 1, 0},
		{"page 2 fails", func() {
			r.srv.Fail(openstacktest.Servers, openstacktest.Failure{Mode: openstacktest.Fail500, Page: 2})
			r.srv.Remove(openstacktest.Servers, ids[4])
		}, 0, 0, 0, 0},
		{"neutron down", func() {
			r.srv.ClearFailures()
			r.srv.Fail("network", openstacktest.Failure{Mode: openstacktest.Fail500})
		}, 0, 0, 1, 0}, // the server removed above, now seen; no network or port deleted
		{"90% of instances go", func() {
			r.srv.ClearFailures()
			for _, id := range append([]string{ids[0], ids[1]}, ids[5:]...) {
				r.srv.Remove(openstacktest.Servers, id)
			}
		}, 0, 0, 0, 18}, // 18 of 20: held back by the brake
		{"confirmed", func() {}, 0, 0, 18, 0},
	}
	for _, s := range steps {
		s.change()
		res := r.poll(t)
		held := res.Held[openstack.TypeInstance]
		if res.Created != s.created || res.Updated != s.updated || res.Deleted != s.deleted || held != s.held {
			t.Errorf("%s: %+v, want created %d updated %d deleted %d held %d", s.name, res, s.created, s.updated, s.deleted, s.held)
		}
	}
}

// BenchmarkEndToEndUnchangedPoll is the benchmark: 10,000 servers in
// pages of 1,000, a full unchanged poll through HTTP, decoding, the engine's
// hashing and comparison.
func BenchmarkEndToEndUnchangedPoll(b *testing.B) {
	r := newRig(b, 1000, openstack.TypeInstance)
	r.srv.AddServers(9999)
	if res := r.poll(b); res.Created != 10000 {
		b.Fatalf("first poll: %+v", res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res := r.poll(b); res.Unchanged != 10000 {
			b.Fatalf("unchanged poll: %+v", res)
		}
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "entities/s")
}
