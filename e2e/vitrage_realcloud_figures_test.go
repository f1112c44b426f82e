package e2e

// The side-by-side figure (make bench): on the real test cloud, in one
// run, the time from a server stop's 202 to SHUTOFF in Vitrage's topology
// API for our datasources fed by the packaged synchronizer and for stock
// Vitrage reading Nova's notifications, with Nova's own API as yardstick,
// and the CPU each vitrage-graph spent meanwhile.

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/openstack/testcloud"
)

// TestRealCloudVitrageFigures stops (and starts again) one server 20
// times. Three Vitrages watch the same cloud: ours as packaged, ours with
// the old pull cadence (get_changes every 10 s, no wait), and stock
// Vitrage with its own nova.zone, nova.host and nova.instance drivers.
func TestRealCloudVitrageFigures(t *testing.T) {
	if os.Getenv("SYNC_REALCLOUD_FIGURES") == "" {
		t.Skip("set SYNC_REALCLOUD_FIGURES=1 (make bench) for the real-cloud figures: several minutes on the test cloud")
	}
	liveCheckDeps(t)
	c := testcloud.Start(t)
	sc := startPackagedSidecar(t, c)
	vs := []*realVitrage{
		startRealVitrage(t, c, "ours", sc.socket),
		startRealVitrage(t, c, "ours-poll", sc.socket),
		startRealVitrage(t, c, "stock", ""),
	}
	srv := c.CreateServer(t, testcloud.Name("vfigs"), "")
	t.Cleanup(func() { _ = c.Do("DELETE", "compute:/servers/"+srv, nil, nil) })
	c.WaitServer(t, srv, "ACTIVE")
	settle := func(status string) {
		t.Helper()
		for _, v := range vs {
			v.wait(t, v.name+": server "+status, 120*time.Second, func(g liveGraph) bool {
				return shows(g, srv, status)
			})
		}
	}
	settle("ACTIVE")
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average at start: %s", strings.TrimSpace(string(load)))

	// A quiet minute first: what each costs when nothing changes (the
	// test reads no topology meanwhile).
	const idle = 60 * time.Second
	cpu0 := make([]graphCPU, len(vs))
	for i, v := range vs {
		cpu0[i] = groupCPU(t, v.graph.cmd.Process.Pid)
	}
	time.Sleep(idle)
	idleCPU := make([]graphCPU, len(vs))
	for i, v := range vs {
		cpu := groupCPU(t, v.graph.cmd.Process.Pid)
		idleCPU[i], cpu0[i] = cpu.sub(cpu0[i]), cpu
	}

	const rounds = 20
	began := time.Now()
	times := make([][]time.Duration, len(vs)+1) // the Vitrages, then Nova's API
	for range rounds {
		c.ServerAction(t, srv, "os-stop")
		t0 := time.Now()
		var wg sync.WaitGroup
		got := make([]time.Duration, len(vs)+1)
		watch := func(i int, seen func() bool) {
			defer wg.Done()
			for time.Since(t0) < 2*time.Minute {
				if seen() {
					got[i] = time.Since(t0)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			got[i] = -1
		}
		for i, v := range vs {
			wg.Add(1)
			go watch(i, func() bool {
				g, err := getTopology(v.url)
				return err == nil && shows(g, srv, "SHUTOFF")
			})
		}
		wg.Add(1)
		go watch(len(vs), func() bool {
			s, err := c.Server(srv)
			return err == nil && s["status"] == "SHUTOFF"
		})
		wg.Wait()
		for i, d := range got {
			if d < 0 {
				name := "Nova's API"
				if i < len(vs) {
					name = vs[i].name
				}
				t.Fatalf("%s: no SHUTOFF within 2 min of the stop", name)
			}
			times[i] = append(times[i], d)
		}
		c.WaitServer(t, srv, "SHUTOFF")
		c.ServerAction(t, srv, "os-start")
		c.WaitServer(t, srv, "ACTIVE")
		settle("ACTIVE")
	}
	run := time.Since(began)
	load, _ = os.ReadFile("/proc/loadavg")
	t.Logf("load average at end: %s", strings.TrimSpace(string(load)))
	p := func(ds []time.Duration) (time.Duration, time.Duration) {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2].Round(10 * time.Millisecond), s[len(s)-1].Round(10 * time.Millisecond)
	}
	n50, nmax := p(times[len(vs)])
	s50, _ := p(times[len(vs)-1])
	t.Logf("%d stops in %s (each followed by a start, settled everywhere before the next stop)", rounds, run.Round(time.Second))
	t.Logf("vitrage-graph CPU: master process / whole group (with the API worker answering the test's topology reads every 100 ms while it waits)")
	t.Logf("| from `server stop`'s 202 to SHUTOFF in | p50 | max | p50 / stock | vitrage-graph CPU over the %d stops (%s) | idle, %s, no reads |", rounds, run.Round(time.Second), idle)
	t.Logf("|---|---|---|---|---|---|")
	for i, v := range vs {
		p50, max := p(times[i])
		cpu := groupCPU(t, v.graph.cmd.Process.Pid).sub(cpu0[i])
		t.Logf("| Vitrage's topology API, %s | %s | %s | %.2f | %s | %s |", realFigureName(v.name), p50, max,
			float64(p50)/float64(s50), cpu, idleCPU[i])
	}
	t.Logf("| Nova's own API (yardstick) | %s | %s | %.2f | | |", n50, nmax, float64(n50)/float64(s50))
}

// shows reports whether the graph shows the server in the status: the API's
// status (ours, and stock Vitrage's snapshots) or the vm_state a Nova
// notification carries (stock Vitrage after one: "stopped", "active").
func shows(g liveGraph, id, status string) bool {
	n := g.node("nova.instance", id)
	if n == nil {
		return false
	}
	st := n.str("state")
	return strings.EqualFold(st, status) || (status == "SHUTOFF" && strings.EqualFold(st, "stopped"))
}

func realFigureName(kind string) string {
	switch kind {
	case "ours":
		return "ours (packaged synchronizer + our datasources, defaults)"
	case "ours-poll":
		return "ours, get_changes every 10 s without wait (before)"
	default:
		return "stock Vitrage (nova.instance on notifications)"
	}
}

// graphCPU is the user+system CPU time of vitrage-graph's master process
// (the datasources, the processor and the entity graph run there) and of
// its whole process group (with the API and evaluator workers it forks,
// which serve the test's topology reads too), from /proc.
type graphCPU struct{ master, group time.Duration }

func (a graphCPU) sub(b graphCPU) graphCPU {
	return graphCPU{a.master - b.master, a.group - b.group}
}

func (a graphCPU) String() string {
	return fmt.Sprintf("%.1f s / %.1f s", a.master.Seconds(), a.group.Seconds())
}

func groupCPU(t *testing.T, pgid int) graphCPU {
	t.Helper()
	var c graphCPU
	master := time.Duration(-1)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// After the command's closing parenthesis: state ppid pgrp ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		if pg, _ := strconv.Atoi(f[2]); pg != pgid {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		// USER_HZ is 100 on Linux.
		d := time.Duration(u+s) * time.Second / 100
		c.group += d
		if e.Name() == strconv.Itoa(pgid) {
			master = d
		}
	}
	if master < 0 {
		t.Fatalf("vitrage-graph (pid %d) is gone", pgid)
	}
	c.master = master
	return c
}
