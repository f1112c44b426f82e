// Package sdnotify tells systemd how the service is doing (sd_notify(3)):
// READY=1, RELOADING=1, STOPPING=1, STATUS= and WATCHDOG=1, as datagrams to
// the socket systemd names in $NOTIFY_SOCKET. It needs no library: the
// protocol is one datagram of newline-separated assignments.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Notifier sends to one notification socket. The zero value, and a nil
// *Notifier, send nothing: a process not started by systemd (Type=notify)
// has no $NOTIFY_SOCKET.
type Notifier struct {
	mu   sync.Mutex
	addr *net.UnixAddr
}

// FromEnv returns the notifier of $NOTIFY_SOCKET (nil when unset). A name
// starting with '@' is an abstract socket; Go's net package maps the '@' to
// the leading NUL byte of the kernel's address.
func FromEnv() *Notifier {
	s := os.Getenv("NOTIFY_SOCKET")
	if s == "" {
		return nil
	}
	return &Notifier{addr: &net.UnixAddr{Name: s, Net: "unixgram"}}
}

// Enabled says whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Send sends the assignments ("READY=1", "STATUS=...") in one datagram, so
// that systemd sees them at once (RELOADING=1 with its MONOTONIC_USEC).
func (n *Notifier) Send(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// A connection per message: systemd may be restarted (daemon-reexec)
	// and the socket recreated between two of them.
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("sdnotify: %s: %w", n.addr.Name, err)
	}
	return nil
}

// Status is a STATUS= line; newlines would end the assignment, so they
// become spaces.
func Status(format string, a ...any) string {
	return "STATUS=" + strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", " ")
}

// Reloading is RELOADING=1 with the MONOTONIC_USEC systemd wants beside it
// (CLOCK_MONOTONIC, the clock systemd compares it with).
func Reloading() []string {
	return []string{"RELOADING=1", "MONOTONIC_USEC=" + strconv.FormatInt(monotonicUsec(), 10)}
}

// monotonicUsec reads CLOCK_MONOTONIC (1 on Linux) with the raw system
// call: the syscall package has no wrapper, and Go's own monotonic reading
// is not exposed.
func monotonicUsec() int64 {
	const clockMonotonic = 1
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}

// WatchdogInterval is $WATCHDOG_USEC (0: no watchdog). When systemd also
// sets $WATCHDOG_PID, the watchdog is ours only if that is our pid (a
// child started with our environment must not ping for us).
func WatchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}
