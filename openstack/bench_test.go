package openstack

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/openstack/openstacktest"
)

// BenchmarkUnchangedPoll serves 10,000 servers in pages of 1,000 and runs a
// full poll of nova.instance: HTTP (the fake cloud runs in the same process
// and is counted), decoding, mapping. Hashing and comparing are the
// engine's and measured there. It reports entities/s.
func BenchmarkUnchangedPoll(b *testing.B) {
	f := newFixture(b, openstacktest.Options{PageSize: 1000}, func(o *Options) { o.Types = []string{TypeInstance} })
	f.srv.AddServers(9999)
	poll := func() {
		snap, err := f.c.Collect(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Entities) != 10000 {
			b.Fatalf("%d servers", len(snap.Entities))
		}
	}
	poll()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		poll()
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "entities/s")
}

// BenchmarkDeltaVsFull is the figure: 10,000 servers in pages of
// 1,000, 1% of them changed per 60 s interval (in the middle of it, so that
// the watermark's overlap does not see them twice). Each iteration runs a
// delta poll and then a full listing of the same cloud state, and reports
// the bytes and requests of each, per poll, and the ratio of the delta's
// bytes to the full listing's. The same for 10,000 Neutron ports (changes
// plus the fields=id listing that tells deletes) and Cinder volumes
// (changes plus the summary list).
func BenchmarkDeltaVsFull(b *testing.B) {
	for _, tc := range []struct {
		name, typ, coll string
		refuse          bool // Neutron refuses changed_since: by revisions
		change          func(srv *openstacktest.Server, id string, i int)
	}{
		{TypeInstance, TypeInstance, openstacktest.Servers, false, func(srv *openstacktest.Server, id string, i int) {
			srv.SetServerStatus(id, []string{"ACTIVE", "SHUTOFF"}[i%2])
		}},
		{TypePort, TypePort, openstacktest.Ports, false, func(srv *openstacktest.Server, id string, i int) {
			srv.Update(openstacktest.Ports, id, func(o map[string]any) { o["status"] = []string{"ACTIVE", "DOWN"}[i%2] })
		}},
		{TypePort + "-by-revisions", TypePort, openstacktest.Ports, true, func(srv *openstacktest.Server, id string, i int) {
			srv.Update(openstacktest.Ports, id, func(o map[string]any) { o["status"] = []string{"ACTIVE", "DOWN"}[i%2] })
		}},
		{TypeVolume, TypeVolume, openstacktest.Volumes, false, func(srv *openstacktest.Server, id string, i int) {
			srv.Update(openstacktest.Volumes, id, func(o map[string]any) { o["status"] = []string{"available", "in-use"}[i%2] })
		}},
	} {
		b.Run(tc.name, func(b *testing.B) { benchDeltaVsFull(b, tc.typ, tc.coll, tc.refuse, tc.change) })
	}
}

func benchDeltaVsFull(b *testing.B, typ, coll string, refuse bool, change func(*openstacktest.Server, string, int)) {
	const n, changed = 10000, 100
	f := newFixture(b, openstacktest.Options{PageSize: 1000, NeutronChangedSince: !refuse}, func(o *Options) { o.Types = []string{typ} })
	ids := f.srv.IDs(coll)
	ids = append(ids, f.srv.Add(coll, n-len(ids))...)
	f.srv.Advance(time.Minute)
	f.applied(b) // the first, full listing
	if refuse {
		f.applied(b) // refused, listed in full: by revisions from now on
	}
	var (
		deltaBytes, fullBytes, deltaReqs, fullReqs int64
		deltaTime, fullTime                        time.Duration
		polls                                      int
	)
	for b.Loop() {
		f.srv.Advance(30 * time.Second)
		for i := 0; i < changed; i++ {
			change(f.srv, ids[rand.IntN(n)], polls)
		}
		f.srv.Advance(30 * time.Second)

		start := time.Now()
		snap := f.applied(b)
		deltaTime += time.Since(start)
		st := typeStatus(f.c, typ)
		if st.Mode != modeDelta || len(snap.Entities) == 0 || len(snap.Entities) > changed {
			b.Fatalf("delta poll: mode %s, %d entities", st.Mode, len(snap.Entities))
		}
		deltaBytes, deltaReqs = deltaBytes+st.Bytes, deltaReqs+st.Requests

		f.c.reset(typ)
		start = time.Now()
		snap = f.applied(b)
		fullTime += time.Since(start)
		st = typeStatus(f.c, typ)
		if st.Mode != modeFull || len(snap.Entities) != n {
			b.Fatalf("full poll: mode %s, %d entities", st.Mode, len(snap.Entities))
		}
		fullBytes, fullReqs = fullBytes+st.Bytes, fullReqs+st.Requests
		polls++
	}
	p := float64(polls)
	b.ReportMetric(float64(deltaBytes)/p, "delta-bytes/poll")
	b.ReportMetric(float64(fullBytes)/p, "full-bytes/poll")
	b.ReportMetric(float64(deltaReqs)/p, "delta-requests/poll")
	b.ReportMetric(float64(fullReqs)/p, "full-requests/poll")
	b.ReportMetric(100*float64(deltaBytes)/float64(fullBytes), "delta/full-%")
	b.ReportMetric(float64(deltaTime.Microseconds())/1000/p, "delta-ms/poll")
	b.ReportMetric(float64(fullTime.Microseconds())/1000/p, "full-ms/poll")
}
