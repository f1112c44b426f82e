package e2e

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is the datagram socket systemd would pass as $NOTIFY_SOCKET.
type notifySocket struct {
	t    *testing.T
	path string
	c    *net.UnixConn
	msgs chan string
}

// newNotifySocket listens on dir/notify until the test ends.
func newNotifySocket(t *testing.T, dir string) *notifySocket {
	t.Helper()
	n := &notifySocket{t: t, path: filepath.Join(dir, "notify"), msgs: make(chan string, 1000)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n.c = c
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next returns the next datagram holding want (skipping STATUS= and
// WATCHDOG=1 ones that do not), and every datagram seen meanwhile.
func (n *notifySocket) next(want string, timeout time.Duration) (string, []string) {
	n.t.Helper()
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				n.t.Fatalf("notify socket closed waiting for %q; seen %q", want, seen)
			}
			seen = append(seen, m)
			for _, l := range strings.Split(m, "\n") {
				if l == want {
					return m, seen
				}
			}
		case <-deadline:
			n.t.Fatalf("no %q within %s; seen %q", want, timeout, seen)
		}
	}
}

// TestSystemdNotify runs the binary as systemd runs a Type=notify service:
// READY=1 only once every collector has finished its first poll,
// RELOADING=1 with MONOTONIC_USEC then READY=1 around a config edit,
// WATCHDOG=1 every half WATCHDOG_USEC, STOPPING=1 at SIGTERM.
func TestSystemdNotify(t *testing.T) {
	ns := newNotifySocket(t, t.TempDir())
	dir := t.TempDir()
	copyFile(t, "examples/topology.yaml", filepath.Join(dir, "topology.yaml"))
	// A plugin whose first listing takes a second: READY=1 must wait for it.
	plugin := `["sh", "-c", "sleep 1; echo '{\"entities\": []}'"]`
	cfg := "socket: s.sock\ndatabase: s.db\nsync: normal\ncollectors:\n" +
		"  - {name: topology, type: static, path: topology.yaml, interval: 1h}\n" +
		"  - {name: slow, type: exec, command: " + plugin + ", interval: 1h, timeout: 30s}\n"
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &sidecar{t: t, dir: dir, config: cfgPath, socket: filepath.Join(dir, "s.sock"), db: filepath.Join(dir, "s.db")}
	t.Setenv("NOTIFY_SOCKET", ns.path)
	t.Setenv("WATCHDOG_USEC", "400000") // a ping every 200ms
	t0 := time.Now()
	s.start()

	ready, seen := ns.next("READY=1", 20*time.Second)
	if d := time.Since(t0); d < time.Second {
		t.Errorf("READY=1 after %s, before the slow plugin's first poll (1s) could finish", d)
	}
	st := statusOf(t, s)
	for _, c := range st.Collectors {
		if c.Polls < 1 {
			t.Errorf("READY=1 sent before collector %s polled: %+v", c.Name, c)
		}
	}
	if !strings.Contains(ready, "STATUS=serving 11 entities; 2 collectors (0 failing), 0 listeners") {
		t.Errorf("READY=1 datagram %q lacks the serving STATUS=", ready)
	}
	if !strings.Contains(strings.Join(seen, ""), "STATUS=waiting for the first polls: ") {
		t.Errorf("no STATUS= while waiting for the first polls: %q", seen)
	}

	// The watchdog: a ping every 200ms, about 10 in 2s. The bounds are
	// wide for a loaded machine; they fail when pings stop or flood.
	pings := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if m, _ := ns.next("WATCHDOG=1", 2*time.Second); m != "" {
			pings++
		}
	}
	if pings < 3 || pings > 15 {
		t.Errorf("%d watchdog pings in 2s with WATCHDOG_USEC=400000, want about 10", pings)
	}

	// A config edit is a reload: RELOADING=1 (with the monotonic clock)
	// before, READY=1 after.
	if err := os.WriteFile(cfgPath, []byte(cfg+"log: {level: info}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reloading, _ := ns.next("RELOADING=1", 10*time.Second)
	if !strings.Contains(reloading, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", reloading)
	}
	ns.next("READY=1", 10*time.Second)

	// SIGHUP (ExecReload=kill -HUP $MAINPID) is the same.
	s.cmd.Process.Signal(syscall.SIGHUP)
	ns.next("RELOADING=1", 10*time.Second)
	ns.next("READY=1", 10*time.Second)

	s.cmd.Process.Signal(syscall.SIGTERM)
	ns.next("STOPPING=1", 10*time.Second)
	if err := s.stop(); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, s.log)
	}
}

// TestSystemdNoWatchdog: without WATCHDOG_USEC there is no ping, and a
// config with no collector is ready at once.
func TestSystemdNoWatchdog(t *testing.T) {
	ns := newNotifySocket(t, t.TempDir())
	t.Setenv("NOTIFY_SOCKET", ns.path)
	t.Setenv("WATCHDOG_USEC", "")
	s := startSidecar(t, "", "collectors: []\n")
	_, seen := ns.next("READY=1", 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	s.cmd.Process.Signal(syscall.SIGTERM)
	_, more := ns.next("STOPPING=1", 10*time.Second)
	for _, m := range append(seen, more...) {
		if strings.Contains(m, "WATCHDOG=1") {
			t.Errorf("watchdog ping without WATCHDOG_USEC: %q", m)
		}
	}
}

// TestHealthEndpoints: /healthz answers while the process serves; /readyz
// only when every collector's last poll succeeded and every listener is
// connected, else 503 naming what is not.
func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyFile(t, "examples/topology.yaml", filepath.Join(dir, "topology.yaml"))
	addr := freeAddr(t)
	// Port 1 on loopback: nothing listens, the listener never connects.
	dead := "amqp://guest:guest@127.0.0.1:1/"
	base := "metrics: {listen: \"" + addr + "\"}\ncollectors:\n" +
		"  - {name: topology, type: static, path: topology.yaml, interval: 300ms}\n" +
		`  - {name: plugin, type: exec, command: ["sh", "-c", "test -e fail && exit 3; echo '{\"entities\": []}'"], interval: 300ms, max_backoff: 300ms}` + "\n"
	s := startSidecar(t, dir, base+"listeners:\n  - {name: bus, type: amqp, urls: [\""+dead+"\"], queue: q-health-"+strconv.Itoa(os.Getpid())+"}\n")

	// The endpoint opens after the socket, once the collectors have
	// started.
	get := func(path string) (int, string) { return httpGet("http://" + addr + path) }
	waitFor(t, "the first polls", 10*time.Second, func() bool {
		code, body := get("/readyz")
		return code != 0 && !strings.Contains(body, "no successful poll yet")
	})
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get("/readyz")
	t.Logf("/readyz: %d\n%s", code, body)
	if code != 503 || !strings.Contains(body, "- listener bus: ") || strings.Contains(body, "collector") {
		t.Errorf("/readyz with a listener that cannot connect: %d\n%s", code, body)
	}
	if strings.Contains(body, "guest:guest") {
		t.Errorf("/readyz shows the broker's credentials:\n%s", body)
	}

	// A failing collector.
	if err := os.WriteFile(filepath.Join(dir, "fail"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the plugin to fail", 10*time.Second, func() bool {
		_, body := get("/readyz")
		return strings.Contains(body, "- collector plugin: last poll failed")
	})
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d while a collector fails: liveness must not depend on sources", code)
	}

	// Everything fine: the plugin recovers and the listener is gone.
	os.Remove(filepath.Join(dir, "fail"))
	if err := os.WriteFile(s.config, []byte("socket: s.sock\ndatabase: s.db\nsync: normal\n"+base), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz 200", 10*time.Second, func() bool {
		code, _ := get("/readyz")
		return code == 200
	})
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz when ready: %d %q", code, body)
	}
}

// TestSocketGroup: socket_group gives the socket to that group, 0660 unless
// socket_mode says otherwise.
func TestSocketGroup(t *testing.T) {
	t.Parallel()
	grp, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Fatalf("Debian's nogroup: %v", err)
	}
	gid, _ := strconv.Atoi(grp.Gid)
	for _, tc := range []struct {
		cfg  string
		mode os.FileMode
	}{
		{"socket_group: nogroup\n", 0o660},
		{"socket_group: \"" + grp.Gid + "\"\nsocket_mode: \"0640\"\n", 0o640},
	} {
		s := startSidecar(t, "", tc.cfg+"collectors: []\n")
		fi, err := os.Stat(s.socket)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid || fi.Mode().Perm() != tc.mode {
			t.Errorf("%q: socket gid %d mode %v, want gid %d mode %v", tc.cfg, st.Gid, fi.Mode().Perm(), gid, tc.mode)
		}
		s.client() // it serves
		s.stop()
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("socket: s.sock\ndatabase: s.db\nsocket_group: no-such-group-here\n"), 0o644)
	out, err := exec.Command(binary, "serve", "--config", filepath.Join(dir, "c.yaml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `line 3: socket_group: "no-such-group-here": group: unknown group no-such-group-here`) {
		t.Errorf("an unknown socket_group: %v\n%s", err, out)
	}
}
