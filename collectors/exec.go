package collectors

import (
	"bufio"
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
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

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
// read as the entities. The output is decoded as it arrives, entity by
// entity. A non-zero exit, a time-out, output over max_output or output that
// does not parse is a failed poll. The program's stderr is logged. The
// program runs in a process group of its own, killed whole (SIGKILL) once
// the program has exited, timed out, printed too much or bad output, or
// lingered exitGrace after closing its output: no process outlives a poll.
type execCollector struct {
	argv      []string
	dir       string
	env       []string
	maxOutput int64
	log       *slog.Logger
	// grace is how long a plugin may run on after closing its output
	// (exitGrace; tests shorten it).
	grace time.Duration
}

// exitGrace is how long a plugin may run on after closing its output before
// its group is killed: its exit status still counts within it.
const exitGrace = 2 * time.Second

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
	return &execCollector{argv: c.Command, dir: dir, env: env, maxOutput: c.MaxOutput, log: log, grace: exitGrace}, nil
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

func (x *execCollector) Collect(ctx context.Context) (*entity.Snapshot, error) {
	name := x.argv[0]
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", name, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("exec %s: %w", name, err)
	}
	defer outR.Close()
	defer errR.Close()
	cmd := exec.Command(x.argv[0], x.argv[1:]...)
	cmd.Dir, cmd.Env = x.dir, x.env
	// The plugin and every process it starts form one process group, killed
	// whole after each poll: nothing a plugin leaves behind outlives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return nil, fmt.Errorf("exec %s: %w", name, err)
	}
	pgid := cmd.Process.Pid
	var killedEarly atomic.Bool
	exited := make(chan struct{})
	go func() {
		// Until it is reaped the leader's pid stays its own, so killing
		// its group after this cannot reach another process.
		waitExited(pgid)
		close(exited)
	}()
	killGroup := func() { syscall.Kill(-pgid, syscall.SIGKILL) }

	var stderr limitedBuffer
	stderr.max = 64 << 10
	stderrDone := make(chan struct{})
	go func() { io.Copy(&stderr, errR); close(stderrDone) }()

	// The output is decoded as it arrives, entity by entity, so memory
	// holds the entities rather than the output and copies of it.
	lr := &limitReader{r: outR, n: x.maxOutput}
	type decoded struct {
		snap *entity.Snapshot
		err  error
	}
	dch := make(chan decoded, 1)
	go func() {
		snap, err := decodeExecOutput(lr)
		dch <- decoded{snap, err}
	}()
	var d decoded
	got := false
	select {
	case d = <-dch:
		got = true
		if d.err == nil || errors.Is(d.err, io.ErrUnexpectedEOF) || errors.Is(d.err, errNoOutput) {
			// Stdout is closed: the plugin has said all it will. It
			// normally exits at once; one that lingers is killed, after
			// a moment in which its exit status still counts.
			select {
			case <-exited:
			case <-ctx.Done():
			case <-time.After(x.grace):
				x.log.Warn("plugin still running after closing its output: its process group is killed",
					"command", name, "grace", x.grace)
				killedEarly.Store(true)
				killGroup()
			}
			break
		}
		// Bad or too much output: stop the plugin now rather than wait
		// for it to write the rest.
		select {
		case <-exited:
		default:
			killedEarly.Store(true)
			killGroup()
		}
	case <-exited:
		// The leader is gone: whatever still holds stdout is its group.
	case <-ctx.Done():
	}
	killGroup()
	<-exited
	if !got {
		// The group is gone, so the decoder only has what is left in the
		// pipe, unless a process that left the group (setsid) holds it:
		// the poll's time-out ends that wait.
		select {
		case d = <-dch:
		case <-ctx.Done():
			outR.Close()
			d = <-dch
		}
	}
	werr := cmd.Wait()
	select {
	case <-stderrDone:
	case <-time.After(time.Second):
		errR.Close()
		<-stderrDone
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		x.log.Info("plugin stderr", "command", name, "stderr", s)
	}
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("exec %s: %w", name, ctx.Err())
	case lr.over:
		return nil, fmt.Errorf("exec %s: output exceeds max_output %s", name, sizeString(x.maxOutput))
	case werr != nil && !killedEarly.Load():
		return nil, fmt.Errorf("exec %s: %w", name, werr)
	case d.err != nil:
		return nil, d.err
	}
	return d.snap, nil
}

// waitExited blocks until the process pid has exited, without reaping it
// (waitid with WNOWAIT): cmd.Wait reaps it later.
func waitExited(pid int) {
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, 1 /* P_PID */, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if e != syscall.EINTR {
			return
		}
	}
}

// sizeString prints a byte count as the config would take it, with MiB or
// GiB for round figures.
func sizeString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// decodeExecOutput reads the plugin's JSON value from r as a stream: the
// object {"entities": [...], "types": [...]} (no other keys) or a bare
// array of entities, and nothing after it.
func decodeExecOutput(r io.Reader) (*entity.Snapshot, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := firstByte(br)
	if errors.Is(err, io.EOF) {
		return nil, errNoOutput
	}
	if err != nil {
		return nil, fmt.Errorf("exec: read output: %w", err)
	}
	dec := json.NewDecoder(br)
	dec.UseNumber()
	invalid := func(err error) error {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("exec: invalid output: %w", err)
	}
	snap := &entity.Snapshot{AllTypes: true}
	switch first {
	case '[':
		if err := decodeEntities(dec, snap); err != nil {
			return nil, invalid(err)
		}
	case '{':
		dec.DisallowUnknownFields()
		if _, err := dec.Token(); err != nil {
			return nil, invalid(err)
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, invalid(err)
			}
			switch key, _ := tok.(string); key {
			case "entities":
				if err := decodeEntities(dec, snap); err != nil {
					return nil, invalid(err)
				}
			case "types":
				var types *[]string
				if err := dec.Decode(&types); err != nil {
					return nil, invalid(fmt.Errorf("types: %w", err))
				}
				if types != nil {
					snap.AllTypes, snap.Types = false, *types
				}
			default:
				return nil, invalid(fmt.Errorf("json: unknown field %q", key))
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, invalid(err)
		}
	default:
		return nil, invalid(fmt.Errorf("output starts with %q, want a JSON object or array", first))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil || !isReadError(err) {
			return nil, errors.New("exec: invalid output: trailing data after the JSON value")
		}
		return nil, invalid(err)
	}
	for i, e := range snap.Entities {
		if e.Type == "" || (e.ID == "" && e.Key == "") {
			return nil, fmt.Errorf("exec: invalid output: entities[%d]: type and id are required", i)
		}
	}
	return snap, nil
}

// errNoOutput is an output closed before anything was printed: the
// plugin's exit status, if not zero, tells more.
var errNoOutput = errors.New("exec: plugin printed nothing (print {\"entities\": []} for an empty source)")

// isReadError reports whether err came from reading the pipe rather than
// from JSON syntax.
func isReadError(err error) bool {
	var se *json.SyntaxError
	return !errors.As(err, &se)
}

// decodeEntities decodes a JSON array of entities one by one into snap.
func decodeEntities(dec *json.Decoder, snap *entity.Snapshot) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil // "entities": null
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("entities: want an array, got %v", tok)
	}
	for dec.More() {
		snap.Entities = append(snap.Entities, entity.Entity{})
		if err := dec.Decode(&snap.Entities[len(snap.Entities)-1]); err != nil {
			return fmt.Errorf("entities[%d]: %w", len(snap.Entities)-1, err)
		}
	}
	_, err = dec.Token()
	return err
}

// firstByte returns the first byte of r that is not JSON white space,
// leaving it unread.
func firstByte(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b, br.UnreadByte()
	}
}

// limitReader reads at most n bytes; past them it fails and sets over.
type limitReader struct {
	r    io.Reader
	n    int64
	over bool
}

var errOverLimit = errors.New("output limit exceeded")

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// One byte more tells a full stop at the limit from more output.
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			l.over = true
			return 0, errOverLimit
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
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
