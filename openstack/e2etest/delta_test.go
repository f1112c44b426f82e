package e2etest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/openstack"
	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// TestDeltaChangesThroughEngine: incremental polls into the real engine
// give exactly one change per change in the cloud, the deletes of Nova's
// DELETED and SOFT_DELETED rows and of ports and volumes gone from the id
// listings, and never a delete by absence from the changes.
func TestDeltaChangesThroughEngine(t *testing.T) {
	r := newRigWith(t, openstacktest.Options{PageSize: 3, NeutronChangedSince: true},
		openstack.Options{Types: []string{openstack.TypeInstance, openstack.TypeNetwork, openstack.TypePort, openstack.TypeVolume}})
	srv := r.srv
	ids := srv.AddServers(9)                  // 10 servers
	vols := srv.Add(openstacktest.Volumes, 4) // 5 volumes
	port := srv.IDs(openstacktest.Ports)[0]
	steps := []struct {
		name                      string
		change                    func()
		created, updated, deleted int
	}{
		{"first poll (full)", func() {}, 10 + 2 + 2 + 5, 0, 0},
		{"unchanged", func() {}, 0, 0, 0},
		{"one server stopped", func() { srv.SetServerStatus(ids[0], "SHUTOFF") }, 0, 1, 0},
		{"one port down, one volume attached", func() {
			srv.Update(openstacktest.Ports, port, func(o map[string]any) { o["status"] = "DOWN" })
			srv.Update(openstacktest.Volumes, vols[0], func(o map[string]any) { o["status"] = "in-use" })
		}, 0, 2, 0},
		{"one server created", func() { srv.AddServers(1) }, 1, 0, 0},
		{"one volume created (null updated_at)", func() { srv.Add(openstacktest.Volumes, 1) }, 1, 0, 0},
		{"one server deleted", func() { srv.Remove(openstacktest.Servers, ids[1]) }, 0, 0, 1},
		{"one server soft-deleted", func() { srv.SoftDelete(ids[2]) }, 0, 0, 1},
		{"a port and a volume deleted", func() {
			srv.Remove(openstacktest.Ports, port)
			srv.Remove(openstacktest.Volumes, vols[1])
		}, 0, 0, 2},
		{"the id listing of volumes fails: nothing deleted", func() {
			srv.Remove(openstacktest.Volumes, vols[2])
			srv.Fail(openstacktest.VolumeSummaries, openstacktest.Failure{Mode: openstacktest.Fail500, Times: 1})
		}, 0, 0, 0},
		{"it recovers", func() {}, 0, 0, 1},
	}
	for i, s := range steps {
		s.change()
		srv.Advance(time.Minute)
		res := r.poll(t)
		if res.Created != s.created || res.Updated != s.updated || res.Deleted != s.deleted || len(res.Held) != 0 {
			t.Errorf("%s: %+v, want created %d updated %d deleted %d", s.name, res, s.created, s.updated, s.deleted)
		}
		if i == 0 {
			continue
		}
		types := r.c.Status()["types"].(map[string]openstack.TypeStatus)
		for _, typ := range []string{openstack.TypeInstance, openstack.TypePort, openstack.TypeVolume} {
			if st := types[typ]; st.Mode != "delta" && !st.Failing {
				t.Errorf("%s: %s listed %q", s.name, typ, st.Mode)
			}
		}
	}
}

// TestUserDataNeverStored: a server booted with user data, polled in full
// and through changes-since, leaves no trace of it in the database files.
func TestUserDataNeverStored(t *testing.T) {
	r := newRigWith(t, openstacktest.Options{PageSize: 5}, openstack.Options{Types: []string{openstack.TypeInstance}})
	const secret = "I2Nsb3VkLWNvbmZpZwpjaHBhc3N3ZDogc2VjcmV0LWNsb3VkLWluaXQK"
	id := r.srv.AddServers(1)[0]
	boot := func(o map[string]any) { o["OS-EXT-SRV-ATTR:user_data"] = secret }
	r.srv.Update(openstacktest.Servers, id, boot)
	r.srv.Advance(time.Minute)
	if res := r.poll(t); res.Created != 2 {
		t.Fatalf("full poll: %+v", res)
	}
	r.srv.Update(openstacktest.Servers, id, func(o map[string]any) { boot(o); o["status"] = "SHUTOFF" })
	r.srv.Advance(time.Minute)
	if res := r.poll(t); res.Updated != 1 {
		t.Fatalf("delta poll: %+v", res)
	}
	if err := r.st.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(r.dir, "s.db*"))
	if len(files) == 0 {
		t.Fatal("no database file")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte("user_data")) {
			t.Errorf("%s holds the user data", f)
		}
	}
}

// BenchmarkEndToEndDeltaVsFull: 10,000 servers in pages of 1,000, 1%
// changed per 60 s interval, one poll through the engine in each mode, the
// same cloud state: the time of a poll from the first request to the
// commit, and the changes it committed (both modes must find the same).
func BenchmarkEndToEndDeltaVsFull(b *testing.B) {
	const n, changed = 10000, 100
	for _, mode := range []string{"delta", "full"} {
		b.Run(mode, func(b *testing.B) {
			incremental := mode == "delta"
			r := newRigWith(b, openstacktest.Options{PageSize: 1000},
				openstack.Options{Types: []string{openstack.TypeInstance}, Incremental: &incremental})
			ids := append(r.srv.IDs(openstacktest.Servers), r.srv.AddServers(n-1)...)
			r.srv.Advance(time.Minute)
			if res := r.poll(b); res.Created != n {
				b.Fatalf("first poll: %+v", res)
			}
			i := 0
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				r.srv.Advance(30 * time.Second)
				for j := 0; j < changed; j++ {
					r.srv.SetServerStatus(ids[(i*changed+j)%n], []string{"SHUTOFF", "ACTIVE"}[(i*changed+j)/n%2])
				}
				r.srv.Advance(30 * time.Second)
				i++
				b.StartTimer()
				if res := r.poll(b); res.Updated != changed || res.Deleted != 0 || res.Created != 0 {
					b.Fatalf("%s poll: %+v", mode, res)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/poll")
		})
	}
}
