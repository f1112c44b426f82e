package openstack

import (
	"context"
	"testing"

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
