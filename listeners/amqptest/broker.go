package amqptest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// redact drops the password of a broker URL, for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ctl runs a rabbitmqctl command with a time-out; the shared broker's CLI
// wrapper (/usr/sbin/rabbitmqctl on Debian) finds that broker's cookie.
func ctl(timeout time.Duration, env []string, bin string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return nil
}

// VHost makes a virtual host of the test's own on the shared broker, with
// every permission for guest, and deletes it (with its queues and
// exchanges) after the test. It returns its name and a broker URL on it.
// A test that drops connections (CloseConnections) must run in one, so
// that it never touches another test's connections.
func VHost(t testing.TB) (name, brokerURL string) {
	t.Helper()
	Admin(t) // fails clearly when the broker is not there
	name = "synctest-" + randHex(6)
	for _, args := range [][]string{
		{"add_vhost", name},
		{"set_permissions", "-p", name, "guest", ".*", ".*", ".*"},
	} {
		if err := ctl(60*time.Second, nil, "rabbitmqctl", args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := ctl(60*time.Second, nil, "rabbitmqctl", "delete_vhost", name); err != nil {
			t.Errorf("delete the test's virtual host: %v", err)
		}
	})
	return name, Broker + url.PathEscape(name)
}

// CloseConnections closes every connection of one virtual host of the
// shared broker, as a broker that drops its clients would.
func CloseConnections(vhost, why string) error {
	return ctl(60*time.Second, nil, "rabbitmqctl", "close_all_connections", "--vhost", vhost, "--limit", "10000", why)
}

// Node is a RabbitMQ node of the test's own (own node name, port, data
// directory and Erlang cookie), for what must not happen to the shared
// broker: stopping and restarting it.
type Node struct {
	Name string // node name, e.g. synctest-1a2b3c@localhost
	URL  string // amqp://guest:guest@127.0.0.1:<port>/
	dir  string
	bin  string
}

// rabbitBin finds a RabbitMQ script. Debian's /usr/sbin wrappers switch to
// the rabbitmq user (and its cookie) when run as root and refuse other
// users, so the scripts they wrap are preferred.
func rabbitBin(t testing.TB, name string) string {
	t.Helper()
	if p := filepath.Join("/usr/lib/rabbitmq/bin", name); fileExists(p) {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (scripts/deps.d/rabbitmq.sh installs RabbitMQ): %v", name, err)
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartNode starts a private RabbitMQ node on free ports and waits until it
// takes connections; it is shut down after the test. About 3 s.
func StartNode(t testing.TB) *Node {
	t.Helper()
	dir, err := os.MkdirTemp("", "synctest-rabbit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &Node{Name: "synctest-" + randHex(4) + "@localhost", dir: dir, bin: rabbitBin(t, "rabbitmqctl")}
	port, dist := freePort(t), freePort(t)
	n.URL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)
	files := map[string]string{
		// Its own cookie: the node and its CLI find it through HOME.
		".erlang.cookie": randHex(16),
		// The system's rabbitmq.conf binds :5672: a config of its own.
		"rabbitmq.conf":     fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\n", port),
		"enabled_plugins":   "[].\n",
		"rabbitmq-env.conf": "",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	env := n.env(
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_FLAGS=-kernel inet_dist_use_interface {127,0,0,1}",
	)
	cmd := exec.Command(rabbitBin(t, "rabbitmq-server"), "-detached")
	cmd.Env, cmd.Dir = env, dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start RabbitMQ node %s: %v\n%s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if err := n.Ctl("shutdown"); err != nil {
			t.Errorf("stop the test's RabbitMQ node: %v", err)
		}
	})
	if err := n.Ctl("wait", filepath.Join(dir, "pid"), "--timeout", "60"); err != nil {
		t.Fatalf("RabbitMQ node %s did not start: %v\n%s", n.Name, err, n.logTail())
	}
	return n
}

func (n *Node) env(extra ...string) []string {
	env := []string{"HOME=" + n.dir, "PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8", "RABBITMQ_NODENAME=" + n.Name}
	return append(env, extra...)
}

// Ctl runs rabbitmqctl against the node.
func (n *Node) Ctl(args ...string) error {
	return ctl(90*time.Second, n.env(), n.bin, append([]string{"-n", n.Name}, args...)...)
}

// StopApp stops the broker application (connections drop, non-durable
// queues and their messages are gone) and StartApp starts it again: the
// restart of `rabbitmqctl stop_app` / `start_app`.
func (n *Node) StopApp() error  { return n.Ctl("stop_app") }
func (n *Node) StartApp() error { return n.Ctl("start_app") }

func (n *Node) logTail() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "log", n.Name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
