package collectors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/entity"
)

func init() { Register("exec", newExec) }

// execCollector runs a plugin program each poll and reads a JSON snapshot
// from its standard output (format in the README):
//
//	{"entities": [{"type": "switch", "id": "sw-1", "name": "...", "state": "...",
//	               "parent_key": "...", "project": "...", "data": {...},
//	               "links": [{"key": "...", "relation": "..."}]}],
//	 "types": ["switch"]}
//
// "types" lists the types listed completely (deletes are limited to them);
// without it the plugin reports everything it owns. A bare JSON array is
// read as the entities. A non-zero exit, a time-out or output that does not
// parse is a failed poll. The program's stderr is logged.
type execCollector struct {
	argv      []string
	dir       string
	env       []string
	maxOutput int64
	log       *slog.Logger
}

type execConfig struct {
	config.Common `yaml:",inline"`
	Command       []string          `yaml:"command"`
	Dir           string            `yaml:"dir"`
	Env           map[string]string `yaml:"env"`
	// MaxOutput bounds stdout in bytes (default 256 MiB).
	MaxOutput int64 `yaml:"max_output"`
}

func newExec(s Settings) (Collector, error) {
	var c execConfig
	if err := config.DecodeStrict(s.Node, &c); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	if len(c.Command) == 0 || c.Command[0] == "" {
		return nil, errors.New("exec: command: required (a list: program and arguments)")
	}
	dir := s.Dir
	if c.Dir != "" {
		dir = c.Dir
		if !strings.HasPrefix(dir, "/") {
			dir = s.Dir + "/" + dir
		}
	}
	env := os.Environ()
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = 256 << 20
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	return &execCollector{argv: c.Command, dir: dir, env: env, maxOutput: c.MaxOutput, log: log}, nil
}

// Check tells whether the plugin can be started: its working directory
// exists, the program exists and is executable (found in PATH when it has
// no '/', else relative to the working directory, as a poll runs it), and
// the interpreter of a "#!" script exists. It does not run the plugin.
func (x *execCollector) Check() error {
	if fi, err := os.Stat(x.dir); err != nil {
		return fmt.Errorf("exec: dir: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("exec: dir: %s is not a directory", x.dir)
	}
	name := x.argv[0]
	if !strings.Contains(name, "/") {
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("exec: command %q: not found in PATH (%s): give its path, or install it", name, os.Getenv("PATH"))
		}
		return nil
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(x.dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return fmt.Errorf("exec: command: %w", err)
	case fi.IsDir():
		return fmt.Errorf("exec: command: %s is a directory", p)
	case fi.Mode()&0o111 == 0 || syscall.Access(p, 1) != nil:
		return fmt.Errorf("exec: command: %s is not executable (chmod +x it, or run it through its interpreter: [INTERPRETER, %s])", p, name)
	}
	return checkInterpreter(p)
}

// checkInterpreter finds the interpreter a "#!" line names, as execve
// would (and env(1) for "#!/usr/bin/env prog").
func checkInterpreter(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("exec: command: %w", err)
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if !bytes.HasPrefix(head, []byte("#!")) {
		return nil
	}
	line, _, _ := bytes.Cut(head[2:], []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return fmt.Errorf("exec: command: %s: empty #! line", p)
	}
	if _, err := os.Stat(fields[0]); err != nil {
		return fmt.Errorf("exec: command: %s: interpreter %s: %w", p, fields[0], err)
	}
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 && !strings.HasPrefix(fields[1], "-") {
		if _, err := exec.LookPath(fields[1]); err != nil {
			return fmt.Errorf("exec: command: %s: interpreter %q not found in PATH", p, fields[1])
		}
	}
	return nil
}

type execOutput struct {
	Entities []entity.Entity `json:"entities"`
	Types    *[]string       `json:"types"`
}

func (x *execCollector) Collect(ctx context.Context) (*entity.Snapshot, error) {
	cmd := exec.CommandContext(ctx, x.argv[0], x.argv[1:]...)
	cmd.Dir, cmd.Env = x.dir, x.env
	// The plugin and its children form one process group, killed whole on
	// time-out, so that no grandchild keeps stdout open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var stdout bytes.Buffer
	var stderr limitedBuffer
	stderr.max = 64 << 10
	cmd.Stdout = &limitWriter{w: &stdout, n: x.maxOutput}
	cmd.Stderr = &stderr
	err := cmd.Run()
	if s := strings.TrimSpace(stderr.String()); s != "" {
		x.log.Info("plugin stderr", "command", x.argv[0], "stderr", s)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("exec %s: %w", x.argv[0], ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", x.argv[0], err)
	}
	if lw := cmd.Stdout.(*limitWriter); lw.over {
		return nil, fmt.Errorf("exec %s: output larger than %d bytes", x.argv[0], x.maxOutput)
	}
	return parseExecOutput(stdout.Bytes())
}

func parseExecOutput(b []byte) (*entity.Snapshot, error) {
	b = bytes.TrimSpace(b)
	var out execOutput
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	switch {
	case len(b) == 0:
		return nil, errors.New("exec: plugin printed nothing (print {\"entities\": []} for an empty source)")
	case b[0] == '[':
		if err := dec.Decode(&out.Entities); err != nil {
			return nil, fmt.Errorf("exec: invalid output: %w", err)
		}
	default:
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("exec: invalid output: %w", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("exec: invalid output: trailing data after the JSON value")
	}
	for i, e := range out.Entities {
		if e.Type == "" || (e.ID == "" && e.Key == "") {
			return nil, fmt.Errorf("exec: invalid output: entities[%d]: type and id are required", i)
		}
	}
	snap := &entity.Snapshot{Entities: out.Entities}
	if out.Types == nil {
		snap.AllTypes = true
	} else {
		snap.Types = *out.Types
	}
	return snap, nil
}

type limitWriter struct {
	w    io.Writer
	n    int64
	over bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		l.over = true
		return 0, errors.New("output limit exceeded")
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// limitedBuffer keeps the first max bytes of stderr.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
