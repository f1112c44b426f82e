package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a datagram socket as systemd does for $NOTIFY_SOCKET.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSend(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		// systemd's own form since v246 for user managers and in
		// containers: an abstract name.
		{"abstract", "@synchronizer-sdnotify-test-" + strconv.Itoa(os.Getpid())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := listen(t, tc.addr)
			t.Setenv("NOTIFY_SOCKET", tc.addr)
			n := FromEnv()
			if !n.Enabled() {
				t.Fatal("notifier from NOTIFY_SOCKET is disabled")
			}
			if err := n.Send("READY=1", Status("serving\n2 collectors")); err != nil {
				t.Fatal(err)
			}
			if got, want := read(t, c), "READY=1\nSTATUS=serving 2 collectors\n"; got != want {
				t.Errorf("datagram %q, want %q", got, want)
			}
			if err := n.Send(Reloading()...); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(read(t, c)), "\n")
			if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
				t.Fatalf("reloading datagram %q", lines)
			}
			us, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
			if err != nil || us <= 0 {
				t.Errorf("MONOTONIC_USEC %q is not a positive number", lines[1])
			}
			// CLOCK_MONOTONIC never runs ahead of the time since boot
			// (CLOCK_BOOTTIME, /proc/uptime): a wall-clock reading would.
			b, err := os.ReadFile("/proc/uptime")
			if err != nil {
				t.Fatal(err)
			}
			up, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
			if float64(us)/1e6 > up+1 {
				t.Errorf("MONOTONIC_USEC %d is past the uptime %.0fs: not CLOCK_MONOTONIC", us, up)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := FromEnv()
	if n.Enabled() {
		t.Fatal("enabled without NOTIFY_SOCKET")
	}
	if err := n.Send("READY=1"); err != nil {
		t.Errorf("a disabled notifier failed: %v", err)
	}
	// A socket that is gone is an error the caller can log.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing"))
	if err := FromEnv().Send("READY=1"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("send to a missing socket: %v, want an error naming it", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"junk", "", 0},
		{"0", "", 0},
		{"30000000", "", 30 * time.Second},
		{"2000000", me, 2 * time.Second},
		{"2000000", "1", 0}, // another process's watchdog
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		if got := WatchdogInterval(); got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, want %v", tc.usec, tc.pid, got, tc.want)
		}
	}
}
