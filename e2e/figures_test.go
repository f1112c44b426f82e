package e2e

// The figures make bench measures for the docs, each beside a yardstick
// measured in the same run; not make test, as each takes minutes.
//
// Sizing (SYNC_SIZING=1), for docs/operations.md, from the real binary:
// disk per change in the log and memory per entity. Heavy: 100k entities
// of 2 KB through an exec plugin.
//
// On the real test cloud (SYNC_REALCLOUD_FIGURES=1), of the incremental
// polls: nova-api's bytes per poll after the first listing against a full
// listing, read from nova-api's own log, and the time from a server stop
// (or start) to the change at a registered subscriber, with no listener,
// against the time Nova's own API takes to show the new status. Side by
// side with Vitrage: the time from a server stop's 202 to SHUTOFF in
// Vitrage's topology API for our datasources fed by the packaged
// synchronizer and for stock Vitrage reading Nova's notifications, with
// Nova's own API as yardstick, and the CPU each vitrage-graph spent
// meanwhile.

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openstack-synchronizer/synchronizer/openstack/testcloud"
)

func dbBytes(t *testing.T, db string) int64 {
	t.Helper()
	var pages, free, size int64
	fmt.Sscan(sqlite(t, db, "PRAGMA page_count; PRAGMA freelist_count; PRAGMA page_size;"), &pages, &free, &size)
	return (pages - free) * size
}

func TestSizingFigures(t *testing.T) {
	if os.Getenv("SYNC_SIZING") == "" {
		t.Skip("set SYNC_SIZING=1 (make bench) for the sizing figures")
	}
	plugin, _ := filepath.Abs("testdata/sizing/plugin.py")
	entities := func(s *sidecar) int { return statusOf(t, s).Entities }

	// Disk: 10k instances, then 4 polls updating all of them.
	const n = 10000
	dir := t.TempDir()
	s := startSidecar(t, dir, fmt.Sprintf("collectors:\n  - {name: cloud, type: exec, command: [%s, \"%d\"], interval: 1h, timeout: 10m, max_output: 1073741824}\n", plugin, n))
	waitFor(t, "first poll", 5*time.Minute, func() bool { return entities(s) == n })
	first := dbBytes(t, s.db)
	for i := 0; i < 4; i++ {
		time.Sleep(2 * time.Millisecond) // another state and "updated"
		if out, err := s.cli("collect", "cloud"); err != nil || !strings.Contains(out, fmt.Sprintf(`"updated": %d`, n)) {
			t.Fatalf("collect: %v\n%s", err, out)
		}
	}
	after := dbBytes(t, s.db)
	var jsonBytes float64
	fmt.Sscan(sqlite(t, s.db, "SELECT avg(length(entity)) FROM changes"), &jsonBytes)
	perChange := float64(after-first) / (4 * n)
	t.Logf("disk: %.0f bytes per change in the log; the change's entity JSON is %.0f bytes (ratio %.2f); the database held %d MB at 10k entities and 50k changes",
		perChange, jsonBytes, perChange/jsonBytes, after>>20)
	s.stop()

	// Memory: an empty synchronizer, the yardstick.
	empty := startSidecar(t, t.TempDir(), "")
	time.Sleep(time.Second)
	rss0 := procKB(empty.cmd.Process.Pid, "VmRSS")
	empty.stop()

	// 100k instances: RSS while polling them, then after a restart that
	// only loads them (no collector), which is the steady state.
	const big = 100000
	dir = t.TempDir()
	s = startSidecar(t, dir, fmt.Sprintf("collectors:\n  - {name: cloud, type: exec, command: [%s, \"%d\"], interval: 1h, timeout: 20m, max_output: 1073741824}\n", plugin, big))
	waitFor(t, "100k entities", 20*time.Minute, func() bool { return entities(s) == big })
	time.Sleep(time.Second)
	rssPoll, hwmPoll := procKB(s.cmd.Process.Pid, "VmRSS"), procKB(s.cmd.Process.Pid, "VmHWM")
	s.stop()
	os.WriteFile(s.config, []byte("socket: s.sock\ndatabase: s.db\nsync: normal\n"), 0o644)
	s.start()
	waitFor(t, "100k loaded", 5*time.Minute, func() bool { return entities(s) == big })
	time.Sleep(2 * time.Second)
	rssLoaded := procKB(s.cmd.Process.Pid, "VmRSS")
	t.Logf("memory: empty synchronizer %d MB RSS (yardstick); 100k instances loaded %d MB (%.1fx, %.1f KB per entity above the yardstick); "+
		"after a first poll of them %d MB (peak %d MB, %.1fx the yardstick)",
		rss0>>10, rssLoaded>>10, float64(rssLoaded)/float64(rss0), float64(rssLoaded-rss0)/big,
		rssPoll>>10, hwmPoll>>10, float64(hwmPoll)/float64(rss0))
	t.Logf("disk at 100k entities and 100k changes: %d MB", dbBytes(t, s.db)>>20)

	// Backup of that database while it runs, beside a plain copy of the
	// file (the yardstick; not consistent while it is written).
	t0 := time.Now()
	if out, err := exec.Command(binary, "backup", "--database", s.db, filepath.Join(dir, "backup.db")).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	backup := time.Since(t0)
	t0 = time.Now()
	if out, err := exec.Command("cp", s.db, filepath.Join(dir, "copy.db")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	cp := time.Since(t0)
	t.Logf("backup of the 100k database: %s; cp of the file: %s (ratio %.1f)", backup.Round(time.Millisecond), cp.Round(time.Millisecond), backup.Seconds()/cp.Seconds())
}

// needRealCloudFigures skips a real-cloud figures test unless make bench
// asked for them.
func needRealCloudFigures(t *testing.T) {
	t.Helper()
	if os.Getenv("SYNC_REALCLOUD_FIGURES") == "" {
		t.Skip("set SYNC_REALCLOUD_FIGURES=1 (make bench) for the real-cloud figures: several minutes on the test cloud")
	}
}

// TestRealCloudFigures measures, in one run on the real test cloud with 24
// servers of its own (Nova pages by 20) besides whatever other tests hold:
//   - at interval 10s: nova-api bytes of each delta poll of the sidecar
//     (one stop or start between polls) against the first, full listing;
//   - at interval 10s and 2s: from a stop's 202 (then a start's) to the
//     change at the subscriber, beside the time Nova's API took to show
//     SHUTOFF (ACTIVE) as polled every 100 ms by the test itself.
//
// The sidecar signs in as a Keystone user of its own (tc-<pid>-figs, admin
// on the admin project) so that its requests are told apart in nova-api's
// log from those of the test and of other tests using the cloud.
func TestRealCloudFigures(t *testing.T) {
	needRealCloudFigures(t)
	c := testcloud.Start(t)
	user, password := figuresUser(t, c)
	const n = 24
	ids := c.CreateServers(t, testcloud.Name("figs"), n, "")
	defer deleteFleet(t, c, ids)
	waitFleetActive(t, c, ids)
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average at start: %s", strings.TrimSpace(string(load)))

	logPath := filepath.Join(c.LogDir, "nova-api.log")
	var rows []string
	for _, interval := range []time.Duration{10 * time.Second, 2 * time.Second} {
		off := fileSize(t, logPath)
		s := startFiguresSidecar(t, c, user.name, password, interval)
		sub := subscribe(t, s.socket, "nova.instance")
		total := cloudStatus(t, s).Details.Types["nova.instance"].Count
		const rounds = 10
		var stopSub, stopNova, startSub, startNova []time.Duration
		for i := range rounds {
			id := ids[i%n]
			ds, dn := timeAction(t, c, s, sub, id, "os-stop", "SHUTOFF")
			stopSub, stopNova = append(stopSub, ds), append(stopNova, dn)
			ds, dn = timeAction(t, c, s, sub, id, "os-start", "ACTIVE")
			startSub, startNova = append(startSub, ds), append(startNova, dn)
		}
		// Let the last change's poll end before the log is read.
		time.Sleep(interval + 2*time.Second)
		// A poll that outlives its timeout (by default 9/10 of the
		// interval, at least 10 s) fails and the next waits its
		// back-off: the count explains an outlier.
		st := cloudStatus(t, s)
		t.Logf("interval %s: %d polls, %d failed (last error %q), poll duration avg %d ms, max %d ms; %d tokens",
			interval, st.Polls, st.Failures, st.LastError, st.AvgDurationMs, st.MaxDurationMs, st.Details.Tokens)
		// From 2.88 on, os-hypervisors/detail makes nova-api ask every
		// nova-compute for its uptime: hosts are listed at 2.87.
		t.Logf("nova microversion %s, hypervisors listed at %s", st.Details.NovaMicroversion, st.Details.HypervisorsVersion)
		if st.Details.HypervisorsVersion != "2.87" {
			t.Errorf("hypervisors listed at %q, want 2.87 (Nova at %s)", st.Details.HypervisorsVersion, st.Details.NovaMicroversion)
		}
		s.stop()
		rows = append(rows,
			latencyRow(interval, "stop → SHUTOFF", stopSub, stopNova),
			latencyRow(interval, "start → ACTIVE", startSub, startNova))
		if interval != 10*time.Second {
			continue
		}
		polls := novaPolls(t, logPath, off, user.id, 3*time.Second)
		if len(polls) < 2*rounds {
			t.Fatalf("%d polls of the sidecar in nova-api's log, want ≥ %d", len(polls), 2*rounds)
		}
		full := polls[0]
		if full.serversDelta || full.serverPages < 2 {
			t.Fatalf("the first poll is not a paged full listing: %+v", full)
		}
		var dServers, dAll []float64
		for _, p := range polls[1:] {
			if !p.serversDelta {
				t.Fatalf("a poll after the first listed the servers in full: %+v", p)
			}
			dServers = append(dServers, float64(p.serverBytes))
			dAll = append(dAll, float64(p.allBytes))
		}
		slices.Sort(dServers)
		slices.Sort(dAll)
		t.Logf("bytes figure: %d servers in the cloud, %d polls after the first", total, len(polls)-1)
		t.Logf("| nova-api bytes per poll, interval %s | full listing (first poll) | delta poll p50 | delta poll max | p50 / full |", interval)
		t.Logf("|---|---|---|---|---|")
		t.Logf("| `servers/detail` | %d pages, %d B | 1 request, %.0f B | %.0f B | **%.1f%%** |",
			full.serverPages, full.serverBytes, median(dServers), dServers[len(dServers)-1], 100*median(dServers)/float64(full.serverBytes))
		t.Logf("| every nova-api request (+ services, hypervisors, zones) | %d requests, %d B | %d requests, %.0f B | %.0f B | %.1f%% |",
			full.requests, full.allBytes, polls[1].requests, median(dAll), dAll[len(dAll)-1], 100*median(dAll)/float64(full.allBytes))
	}
	t.Logf("| interval | action | to the subscriber p50 | max | Nova's API shows it (yardstick) p50 | max | subscriber after Nova p50 | max |")
	t.Logf("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		t.Log(r)
	}
	load, _ = os.ReadFile("/proc/loadavg")
	t.Logf("load average at end: %s", strings.TrimSpace(string(load)))
}

type figUser struct{ id, name string }

// figuresUser creates a Keystone user with the admin role on the admin
// project, deleted when the test ends.
func figuresUser(t *testing.T, c *testcloud.Cloud) (figUser, string) {
	t.Helper()
	name := testcloud.Name("figs")
	password := fmt.Sprintf("tc-%d-%d", os.Getpid(), time.Now().UnixNano())
	var u struct {
		User struct{ ID string } `json:"user"`
	}
	c.Must(t, http.MethodPost, c.AuthURL+"/users", map[string]any{"user": map[string]any{
		"name": name, "password": password, "domain_id": "default"}}, &u)
	t.Cleanup(func() { _ = c.Do(http.MethodDelete, c.AuthURL+"/users/"+u.User.ID, nil, nil) })
	var roles struct {
		Roles []struct{ ID string } `json:"roles"`
	}
	c.Must(t, http.MethodGet, c.AuthURL+"/roles?name=admin", nil, &roles)
	if len(roles.Roles) != 1 {
		t.Fatalf("%d roles named admin", len(roles.Roles))
	}
	c.Must(t, http.MethodPut, c.AuthURL+"/projects/"+c.ProjectID(t)+"/users/"+u.User.ID+"/roles/"+roles.Roles[0].ID, nil, nil)
	return figUser{id: u.User.ID, name: name}, password
}

// startFiguresSidecar starts the binary with the default configuration of
// the openstack collector but the interval, signed in as the given user.
func startFiguresSidecar(t *testing.T, c *testcloud.Cloud, user, password string, interval time.Duration) *sidecar {
	t.Helper()
	return startCloudSidecarWith(t, c.CloudsYAMLAs(user, password), cloudCollector(interval.String()))
}

// timeAction posts the action and returns the time from its answer to the
// first change of the server with status want at the subscriber, and to
// Nova's API first showing want (polled every 100 ms).
func timeAction(t *testing.T, c *testcloud.Cloud, s *sidecar, sub *busSub, id, action, want string) (toSub, toNova time.Duration) {
	t.Helper()
	mark := sub.count()
	c.ServerAction(t, id, action)
	t0 := time.Now()
	nova := make(chan time.Duration, 1)
	go func() {
		for time.Since(t0) < 2*time.Minute {
			if s, err := c.Server(id); err == nil && s["status"] == want {
				nova <- time.Since(t0)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		nova <- -1
	}()
	key := "nova.instance:" + id
	var at time.Time
	for at.IsZero() {
		if time.Since(t0) > 2*time.Minute {
			// The collector's status says why (failed polls, back-off).
			out, _ := s.cli("status")
			t.Fatalf("%s %s not at the subscriber after 2 min; status:\n%s", key, want, out)
		}
		time.Sleep(20 * time.Millisecond)
		chs, _ := sub.got()
		for _, ch := range chs[mark:] {
			if ch.Key == key && ch.State == want {
				at = ch.at
				break
			}
		}
	}
	toNova = <-nova
	if toNova < 0 {
		t.Fatalf("Nova did not show %s %s", id, want)
	}
	// The next action must find the server settled (no task running).
	c.WaitServer(t, id, want)
	return at.Sub(t0), toNova
}

// novaPoll is what one poll of the sidecar cost nova-api.
type novaPoll struct {
	start        time.Time
	requests     int
	allBytes     int64
	serverPages  int
	serverBytes  int64
	serversDelta bool // the servers were listed by changes-since
}

// novaLine is one request line of nova-api's log: time, user, path, len.
var novaLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \d+ INFO nova\.osapi_compute\.wsgi\.server \[\S+ req-\S+ (\w+) \S+ .*\] \S+ "GET (\S+) HTTP/1\.1" status: 200 len: (\d+)`)

// novaPolls reads nova-api's log from off and groups the GETs of user into
// polls: requests less than gap apart belong to the same poll.
func novaPolls(t *testing.T, path string, off int64, user string, gap time.Duration) []novaPoll {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		t.Fatal(err)
	}
	var polls []novaPoll
	var last time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := novaLine.FindStringSubmatch(sc.Text())
		if m == nil || m[2] != user {
			continue
		}
		at, err := time.Parse("2006-01-02 15:04:05.000", m[1])
		if err != nil {
			t.Fatalf("nova-api log time %q: %v", m[1], err)
		}
		n, _ := strconv.ParseInt(m[4], 10, 64)
		if len(polls) == 0 || at.Sub(last) > gap {
			polls = append(polls, novaPoll{start: at})
		}
		last = at
		p := &polls[len(polls)-1]
		p.requests++
		p.allBytes += n
		if strings.HasPrefix(m[3], "/v2.1/servers/detail") {
			p.serverPages++
			p.serverBytes += n
			if strings.Contains(m[3], "changes-since") {
				p.serversDelta = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return polls
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return xs[len(xs)/2]
}

func latencyRow(interval time.Duration, what string, toSub, toNova []time.Duration) string {
	after := make([]time.Duration, len(toSub))
	for i := range toSub {
		after[i] = toSub[i] - toNova[i]
	}
	p := func(ds []time.Duration) (time.Duration, time.Duration) {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2].Round(10 * time.Millisecond), s[len(s)-1].Round(10 * time.Millisecond)
	}
	s50, smax := p(toSub)
	n50, nmax := p(toNova)
	a50, amax := p(after)
	return fmt.Sprintf("| %s | %s (%d) | %s | %s | %s | %s | %s | %s |", interval, what, len(toSub), s50, smax, n50, nmax, a50, amax)
}

// TestRealCloudVitrageFigures stops (and starts again) one server 20
// times. Three Vitrages watch the same cloud: ours as packaged, ours with
// the old pull cadence (get_changes every 10 s, no wait), and stock
// Vitrage with its own nova.zone, nova.host and nova.instance drivers.
func TestRealCloudVitrageFigures(t *testing.T) {
	needRealCloudFigures(t)
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
