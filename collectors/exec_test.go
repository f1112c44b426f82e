package collectors

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func execFrom(t *testing.T, dir, script string) Collector {
	t.Helper()
	p := filepath.Join(dir, "plugin.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	var n yaml.Node
	yaml.Unmarshal([]byte(`{name: p, type: exec, command: ["`+p+`"]}`), &n)
	c, err := New("exec", Settings{Name: "p", Node: n.Content[0], Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExec(t *testing.T) {
	cases := []struct {
		name    string
		script  string
		wantErr string
		wantN   int
		all     bool
	}{
		{"object with types", `echo '{"entities":[{"type":"switch","id":"1","data":{"n":1}}],"types":["switch"]}'`, "", 1, false},
		{"bare array owns everything", `echo '[{"type":"switch","id":"1"},{"type":"switch","id":"2"}]'`, "", 2, true},
		{"empty source", `echo '{"entities":[]}'`, "", 0, true},
		{"non-zero exit", `echo '{"entities":[]}'; echo oops >&2; exit 3`, "exit status 3", 0, false},
		{"not JSON", `echo 'hello'`, "invalid output", 0, false},
		{"truncated JSON", `printf '{"entities":[{"type":"s","id":"1"}'`, "invalid output", 0, false},
		{"trailing garbage", `echo '{"entities":[]} x'`, "trailing data", 0, false},
		{"unknown field", `echo '{"entitys":[]}'`, "invalid output", 0, false},
		{"missing id", `echo '{"entities":[{"type":"s"}]}'`, "type and id are required", 0, false},
		{"nothing printed", `true`, "printed nothing", 0, false},
	}
	dir := t.TempDir()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := execFrom(t, dir, tc.script).Collect(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Entities) != tc.wantN || snap.AllTypes != tc.all {
				t.Fatalf("snapshot %+v", snap)
			}
		})
	}
}

// TestExecTimeoutKillsProcessGroup: a plugin that hangs (and whose child
// keeps stdout open) fails the poll at the time-out.
func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	c := execFrom(t, t.TempDir(), "sleep 30 & sleep 30\n")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Collect(ctx)
	if err == nil {
		t.Fatal("a hanging plugin did not fail the poll")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("time-out took %v", el)
	}
}
