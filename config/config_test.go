package config

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInvalid loads one file per validation rule from testdata/invalid and
// checks the exact message, which starts with the file's path and names the
// line. The expected message is the file's leading "# want:" comment (with
// "#   " continuation lines).
func TestInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want := wantOf(t, b)
			abs, _ := filepath.Abs(f)
			_, err = Load(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if got := err.Error(); got != abs+": "+want {
				t.Errorf("error\n got: %s\nwant: %s: %s", got, abs, want)
			}
		})
	}
}

func wantOf(t *testing.T, b []byte) string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(b))
	var lines []string
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "# want: "):
			lines = append(lines, strings.TrimPrefix(l, "# want: "))
		case strings.HasPrefix(l, "#   ") && len(lines) > 0:
			lines = append(lines, strings.TrimPrefix(l, "#   "))
		default:
			if len(lines) == 0 {
				t.Fatal("file does not start with a # want: comment")
			}
			return strings.Join(lines, "\n")
		}
	}
	return strings.Join(lines, "\n")
}

func TestDefaultsAndRelativePaths(t *testing.T) {
	c, err := Parse([]byte(`
collectors:
  - {name: topo, type: static, path: t.yaml, interval: 20s}
  - {name: fast, type: static, path: t.yaml, interval: 2s}
metrics: {listen: "[::1]:9464"}
`), "/etc/sync/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Collectors[0].Common
	// 9/10 of the interval, never under MinDefaultTimeout.
	if fast := c.Collectors[1].Common; fast.Timeout.D() != MinDefaultTimeout {
		t.Errorf("timeout at interval 2s: %s, want %s", fast.Timeout.D(), MinDefaultTimeout)
	}
	if cc.Timeout.D() != 18*time.Second || *cc.MaxDeleteRatio != DefaultMaxDeleteRatio || cc.MaxBackoff.D() != DefaultMaxBackoff {
		t.Errorf("collector defaults %+v", cc)
	}
	if c.Abs(c.Database) != "/etc/sync/var/synchronizer.db" || c.Abs("/x") != "/x" {
		t.Errorf("Abs: %s", c.Abs(c.Database))
	}
	if c.RemovedCollector != "keep" || c.Log.Level != "info" || c.Log.Format != "text" {
		t.Errorf("defaults %+v", c)
	}
	if len(c.Hash) != 64 {
		t.Errorf("hash %q", c.Hash)
	}
	if c.MaxConnections != DefaultMaxConnections || c.IdleTimeout.D() != DefaultIdleTimeout || c.MaxSubscriptions != DefaultMaxSubscriptions ||
		c.SubscriberMemory != DefaultSubscriberMemory || c.RequestMemory != DefaultRequestMemory || c.GetAllTimeout.D() != DefaultGetAllTimeout {
		t.Errorf("socket limit defaults %+v", c)
	}
}

func TestLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9464": true, "localhost:9464": true, "[::1]:9464": true, "127.1.2.3:80": true,
		"0.0.0.0:9464": false, ":9464": false, "10.0.0.1:9464": false, "example.com:9464": false, "127.0.0.1": false,
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

// TestSocketGroup: socket_group takes a group name or a gid, and makes the
// socket 0660 unless socket_mode says otherwise.
func TestSocketGroup(t *testing.T) {
	for _, tc := range []struct {
		yaml, mode string
		gid        int
	}{
		{"", "0600", -1},
		{"socket_group: root", "0660", 0},
		{"socket_group: \"0\"", "0660", 0},
		{"socket_group: \"4242\"", "0660", 4242}, // a gid need not have a name
		{"socket_group: root\nsocket_mode: \"0640\"", "0640", 0},
	} {
		c, err := Parse([]byte(tc.yaml+"\n"), "/etc/sync/config.yaml")
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		gid, err := c.SocketGID()
		if err != nil || gid != tc.gid || c.SocketMode != tc.mode {
			t.Errorf("%q: gid %d (%v), mode %s; want gid %d, mode %s", tc.yaml, gid, err, c.SocketMode, tc.gid, tc.mode)
		}
	}
}
