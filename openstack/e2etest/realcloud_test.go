package e2etest

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/openstack"
	"github.com/openstack-synchronizer/synchronizer/openstack/testcloud"
)

// changeLog records the changes an engine commits, as action and key.
type changeLog struct {
	mu  sync.Mutex
	chs []string
}

func (l *changeLog) Publish(ps []engine.Published) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range ps {
		var c struct{ Action, Key string }
		_ = json.Unmarshal(p.JSON, &c)
		l.chs = append(l.chs, c.Action+" "+c.Key)
	}
}

// of returns, and forgets, the changes of the given keys.
func (l *changeLog) of(keys ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.chs {
		_, key, _ := strings.Cut(c, " ")
		if slices.Contains(keys, key) {
			out = append(out, c)
		}
	}
	l.chs = nil
	return out
}

// realRig is the collector on the real test cloud, into a real engine.
type realRig struct {
	c   *openstack.Collector
	eng *engine.Engine
	log *changeLog
}

func newRealRig(t *testing.T, c *testcloud.Cloud, o openstack.Options) *realRig {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "clouds.yaml"), []byte(c.CloudsYAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	o.Cloud, o.CloudsFile, o.RequestTimeout = "testcloud", "clouds.yaml", config.Duration(60*time.Second)
	col, err := openstack.New(o, dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, eng := openEngine(t, dir)
	l := &changeLog{}
	eng.SetPublisher(l)
	return &realRig{c: col, eng: eng, log: l}
}

func (r *realRig) poll(t *testing.T) {
	t.Helper()
	start := time.Now()
	snap, err := r.c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.ApplySnapshot(context.Background(), snap, engine.SnapshotOptions{Source: "cloud", StartedAt: start}); err != nil {
		t.Fatal(err)
	}
	if snap.Applied != nil {
		snap.Applied()
	}
}

func (r *realRig) status(typ string) openstack.TypeStatus {
	return r.c.Status()["types"].(map[string]openstack.TypeStatus)[typ]
}

// TestRealCloudIncremental: against the real Nova, Neutron and Cinder, the
// change filters do what the collector expects: Nova's changes-since and
// Cinder's updated_at/created_at at 3.60 give deltas, Neutron's default
// filter_validation refuses changed_since and the collector lists Neutron
// in full, then by revision_number; every create, stop, change, tag and
// delete is exactly one change, through deltas.
func TestRealCloudIncremental(t *testing.T) {
	c := testcloud.Start(t)
	types := []string{openstack.TypeInstance, openstack.TypeNetwork, openstack.TypePort, openstack.TypeVolume}
	r := newRealRig(t, c, openstack.Options{Types: types})
	r.poll(t) // full
	r.poll(t)
	for _, typ := range types {
		st := r.status(typ)
		t.Logf("%s: mode %s, %d requests, %d bytes, unavailable %q", typ, st.Mode, st.Requests, st.Bytes, st.DeltaUnavailable)
	}
	if st := r.status(openstack.TypeInstance); st.Mode != "delta" {
		t.Errorf("nova.instance: %+v", st)
	}
	if st := r.status(openstack.TypeVolume); st.Mode != "delta" {
		t.Errorf("cinder.volume: %+v", st)
	}
	if st := r.status(openstack.TypePort); st.Mode != "full" || !strings.Contains(st.DeltaUnavailable, "changed_since") || st.Failing {
		t.Errorf("neutron.port with filter_validation = true: %+v", st)
	}

	srv := c.CreateServer(t, testcloud.Name("delta-srv"), "")
	vol := c.CreateVolume(t, testcloud.Name("delta-vol"))
	nw := c.CreateNetwork(t, testcloud.Name("delta-net"))
	port := c.CreatePort(t, testcloud.Name("delta-port"), nw)
	c.WaitServer(t, srv, "ACTIVE")
	c.WaitVolume(t, vol, "error", "available")
	sk, vk, nk, pk := "nova.instance:"+srv, "cinder.volume:"+vol, "neutron.network:"+nw, "neutron.port:"+port
	r.poll(t)
	if got := r.log.of(sk, vk, nk, pk); !slices.Equal(sortedCopy(got), []string{"create " + vk, "create " + nk, "create " + pk, "create " + sk}) {
		t.Errorf("created: %v", got)
	}
	// Neutron, having refused changed_since, is listed by revisions.
	if st := r.status(openstack.TypePort); st.Mode != "delta" || st.Failing {
		t.Errorf("neutron.port after the refusal: %+v", st)
	}
	c.Must(t, http.MethodPut, "network:/v2.0/ports/"+port, map[string]any{"port": map[string]any{"description": "changed"}}, nil)
	c.Must(t, http.MethodPut, "network:/v2.0/networks/"+nw+"/tags/delta", nil, nil)
	r.poll(t)
	if got := r.log.of(nk, pk); !slices.Equal(sortedCopy(got), []string{"update " + nk, "update " + pk}) {
		t.Errorf("port changed, network tagged: %v", got)
	}
	c.Must(t, http.MethodDelete, "network:/v2.0/ports/"+port, nil, nil)
	c.Must(t, http.MethodDelete, "network:/v2.0/networks/"+nw, nil, nil)
	r.poll(t)
	if got := r.log.of(nk, pk); !slices.Equal(sortedCopy(got), []string{"delete " + nk, "delete " + pk}) {
		t.Errorf("port and network deleted: %v", got)
	}
	c.ServerAction(t, srv, "os-stop")
	c.WaitServer(t, srv, "SHUTOFF")
	r.poll(t)
	if got := r.log.of(sk); !slices.Equal(got, []string{"update " + sk}) {
		t.Errorf("stopped: %v", got)
	}
	if st := r.status(openstack.TypeInstance); st.Mode != "delta" {
		t.Errorf("nova.instance after a stop: %+v", st)
	}
	c.DeleteServer(t, srv)
	c.Must(t, http.MethodDelete, "volume:/volumes/"+vol, nil, nil)
	c.WaitGone(t, "volume:/volumes/"+vol)
	r.poll(t)
	if got := r.log.of(sk, vk); !slices.Equal(sortedCopy(got), []string{"delete " + vk, "delete " + sk}) {
		t.Errorf("deleted: %v", got)
	}

}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
