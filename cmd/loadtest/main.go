// Command loadtest measures the synchronizer end to end with the real
// binary (built by make bench into bin/synchronizer):
//
//   - start-up: a database with -startup-n entities (default 1,000,000) is
//     written, the sidecar is started on it, and the time until it answers
//     status and its resident memory are reported (targets: <= 5 s, < 400 MB);
//   - subscribers: -n changes (default 100,000) are produced by an exec
//     collector, then a Go subscriber and the stdlib Python client replay
//     them with register since=0 (targets: >= 200k and >= 100k changes/s).
//
// Everything runs in a temporary directory on 127.0.0.1 only and stops by
// itself.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite"

	"github.com/openstack-synchronizer/synchronizer/rpc"
)

func main() {
	bin := flag.String("bin", "bin/synchronizer", "synchronizer binary")
	n := flag.Int("n", 100000, "changes for the subscriber test")
	startupN := flag.Int("startup-n", 1000000, "entities for the start-up test (0 skips it)")
	keep := flag.String("keep", "", "work in this directory and keep it (default: a temporary one, removed)")
	flag.Parse()
	if err := run(*bin, *n, *startupN, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(bin string, n, startupN int, keep string) error {
	bin, _ = filepath.Abs(bin)
	dir := keep
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "synchronizer-load"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	if n > 0 {
		if err := subscribers(bin, dir, n); err != nil {
			return err
		}
	}
	if startupN > 0 {
		return startup(bin, dir, startupN)
	}
	return nil
}

type proc struct {
	cmd    *exec.Cmd
	socket string
}

func start(bin, dir, config string) (*proc, error) {
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	log, _ := os.Create(filepath.Join(dir, "log"))
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, socket: filepath.Join(dir, "s.sock")}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := rpc.Dial(context.Background(), p.socket); err == nil {
			err = c.Call(context.Background(), "status", nil, nil)
			c.Close()
			if err == nil {
				return p, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.stop()
	b, _ := os.ReadFile(filepath.Join(dir, "log"))
	return nil, fmt.Errorf("synchronizer did not answer within 60s:\n%s", b)
}

func (p *proc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
	}
}

func rssMB(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

func subscribers(bin, root string, n int) error {
	dir := filepath.Join(root, "sub")
	os.MkdirAll(dir, 0o755)
	wd, _ := os.Getwd()
	gen := filepath.Join(wd, "testdata/gen.py")
	p, err := start(bin, dir, fmt.Sprintf(`socket: s.sock
database: s.db
sync: normal
collectors:
  - {name: gen, type: exec, command: ["/usr/bin/python3", %q, "%d"], interval: 1h, timeout: 10m}
`, gen, n))
	if err != nil {
		return err
	}
	defer p.stop()
	c, err := rpc.Dial(context.Background(), p.socket)
	if err != nil {
		return err
	}
	defer c.Close()
	t0 := time.Now()
	var st struct {
		ChangeLog struct {
			LastSeq int64 `json:"last_seq"`
		} `json:"change_log"`
	}
	for {
		if err := c.Call(context.Background(), "status", nil, &st); err != nil {
			return err
		}
		if st.ChangeLog.LastSeq >= int64(n) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("apply: %d new entities (exec collector, ~1 KB each) in %.1fs including the plugin run\n", n, time.Since(t0).Seconds())

	// Go subscriber: replay from seq 0.
	t0 = time.Now()
	if err := c.Call(context.Background(), "register", map[string]any{"since": 0}, nil); err != nil {
		return err
	}
	got := 0
	for got < n {
		nt, ok := <-c.Notifications()
		if !ok {
			return fmt.Errorf("go subscriber: connection closed: %v", c.Err())
		}
		if nt.Change != nil {
			got += len(nt.Change.Changes)
		}
	}
	el := time.Since(t0)
	fmt.Printf("go subscriber: %d changes in %.2fs = %.0f changes/s (target >= 200000)\n", got, el.Seconds(), float64(got)/el.Seconds())

	// Python subscriber, stdlib only.
	script := `
import json, socket, sys, time
n = int(sys.argv[2]); s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rb")
t0 = time.time()
s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"register","params":{"since":0}}\n')
got = 0
for line in f:
    m = json.loads(line)
    if m.get("method") == "change":
        got += len(m["params"]["changes"])
        if got >= n:
            break
el = time.time() - t0
print("%d %.3f" % (got, el))
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, p.socket, strconv.Itoa(n)).Output()
	if err != nil {
		return fmt.Errorf("python subscriber: %w", err)
	}
	var pgot int
	var pel float64
	fmt.Sscanf(string(out), "%d %f", &pgot, &pel)
	fmt.Printf("python subscriber: %d changes in %.2fs = %.0f changes/s (target >= 100000)\n", pgot, pel, float64(pgot)/pel)
	return nil
}

// startup writes a database of n entities straight through SQL (the
// start-up cost is reading the baseline, not how it was written), starts
// the sidecar on it and reports readiness time and memory.
func startup(bin, root string, n int) error {
	dir := filepath.Join(root, "startup")
	os.MkdirAll(dir, 0o755)
	schema, err := os.ReadFile("schema.sql")
	if err != nil {
		return err
	}
	t0 := time.Now()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "s.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(string(schema)); err != nil {
		return err
	}
	db.Exec(`INSERT INTO meta VALUES ('schema_version','1'), ('last_seq', ?)`, strconv.Itoa(n))
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z")
	for lo := 0; lo < n; lo += 50000 {
		tx, _ := db.Begin()
		b, _ := tx.Prepare(`INSERT INTO baseline(key, source, type, hash, observed_at, core_hash) VALUES (?, 'cloud', 'nova.instance', ?, ?, ?)`)
		e, _ := tx.Prepare(`INSERT INTO entities(key, type, entity) VALUES (?, 'nova.instance', ?)`)
		for i := lo; i < min(lo+50000, n); i++ {
			id := fmt.Sprintf("%08x-cd40-4630-b43f-%012x", i, i)
			key := "nova.instance:" + id
			h := fmt.Sprintf("%032x", i)
			if _, err := b.Exec(key, h, now, h); err != nil {
				return err
			}
			if _, err := e.Exec(key, `{"key":"`+key+`","type":"nova.instance","id":"`+id+`","name":"vm","parent_key":"","state":"ACTIVE","project":"","timestamp":"`+now+`","source":"cloud","data":{}}`); err != nil {
				return err
			}
		}
		b.Close()
		e.Close()
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	db.Close()
	fmt.Printf("start-up: wrote %d entities in %.1fs\n", n, time.Since(t0).Seconds())
	t0 = time.Now()
	p, err := start(bin, dir, "socket: s.sock\ndatabase: s.db\n")
	if err != nil {
		return err
	}
	ready := time.Since(t0)
	rss := rssMB(p.cmd.Process.Pid)
	// A consumer's first get_all of everything, from the same process.
	c, err := rpc.Dial(context.Background(), p.socket)
	if err != nil {
		return err
	}
	t0 = time.Now()
	var raw json.RawMessage
	if err := c.Call(context.Background(), "get_all", nil, &raw); err != nil {
		return err
	}
	ga := time.Since(t0)
	c.Close()
	rssAfter := rssMB(p.cmd.Process.Pid)
	p.stop()
	fmt.Printf("start-up: %d entities in the baseline, ready in %.2fs (target <= 5s), RSS %.0f MB (target < 400 MB)\n", n, ready.Seconds(), rss)
	fmt.Printf("start-up: get_all of %d entities (%d MB) in %.2fs, RSS after %.0f MB\n", n, len(raw)>>20, ga.Seconds(), rssAfter)
	return nil
}
