package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/openstack-synchronizer/synchronizer/backoff"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/rpc"
)

// clientFlags are the flags every client subcommand takes.
type clientFlags struct {
	socket, config string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.socket, "socket", "", "socket path (default: from the config)")
	fs.StringVar(&c.config, "config", "", "config file to read the socket path from (default config.yaml)")
}

func (c *clientFlags) socketPath(env Env) (string, error) {
	return flagOrConfig(c.socket, c.config, env, func(cfg *config.Config) string { return cfg.Socket })
}

// flagOrConfig is a path flag's value when it is set, else the path pick
// takes from the config file (configFile, or the default one), resolved
// against the config's directory.
func flagOrConfig(flag, configFile string, env Env, pick func(*config.Config) string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	cfg, _, err := loadConfig(configFile, env, configFile != "")
	if err != nil {
		return "", err
	}
	return cfg.Abs(pick(cfg)), nil
}

func (c *clientFlags) dial(ctx context.Context, env Env) (*rpc.Client, error) {
	p, err := c.socketPath(env)
	if err != nil {
		return nil, err
	}
	return rpc.Dial(ctx, p)
}

func newFlags(name string, env Env) (*flag.FlagSet, *clientFlags) {
	fs := newFlagSet(name)
	cf := &clientFlags{}
	cf.register(fs)
	return fs, cf
}

// callAndPrint calls method on the synchronizer and prints its result.
func (c *clientFlags) callAndPrint(env Env, method string, params any) error {
	ctx := context.Background()
	cl, err := c.dial(ctx, env)
	if err != nil {
		return err
	}
	defer cl.Close()
	var raw json.RawMessage
	if err := cl.Call(ctx, method, params, &raw); err != nil {
		return err
	}
	return printRaw(env.Stdout, raw)
}

// printRaw writes a raw JSON result, indented when it is small enough for a
// person to read.
func printRaw(w io.Writer, raw json.RawMessage) error {
	if len(raw) < 1<<20 {
		var buf bytes.Buffer
		if json.Indent(&buf, raw, "", "  ") == nil {
			raw = buf.Bytes()
		}
	}
	_, err := fmt.Fprintf(w, "%s\n", raw)
	return err
}

func getAll(args []string, env Env) error {
	fs, cf := newFlags("get-all", env)
	var types typeList
	fs.Var(&types, "type", "entity type (repeatable, or comma-separated)")
	out := outputFlag(fs)
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return cf.callAndShow(env, "get_all", map[string]any{"types": []string(types)}, types, *out, printEntitiesTable)
}

func changes(args []string, env Env) error {
	fs, cf := newFlags("changes", env)
	var types typeList
	fs.Var(&types, "type", "entity type (repeatable, or comma-separated)")
	since := fs.Int64("since", -1, "print changes after this seq (required)")
	limit := fs.Int("limit", 0, "at most this many changes")
	dbID := fs.String("database-id", "", "the database the seq belongs to (as get-all, changes and watch print it): another one is refused")
	out := outputFlag(fs)
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *since < 0 {
		return usageError{errors.New("--since N is required")}
	}
	p := map[string]any{"since": *since, "types": []string(types), "limit": *limit}
	if *dbID != "" {
		p["database_id"] = *dbID
	}
	return cf.callAndShow(env, "changes", p, types, *out, printChangesTable)
}

func status(args []string, env Env) error {
	fs, cf := newFlags("status", env)
	out := outputFlag(fs)
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return cf.callAndShow(env, "status", struct{}{}, nil, *out, printStatusTable)
}

func collect(args []string, env Env) error {
	fs, cf := newFlags("collect", env)
	force := fs.Bool("force", false, "apply deletes held back by the mass-delete brake")
	// Allow the name before the flags: collect NAME --force.
	var name string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "" {
		return usageError{errors.New("collector NAME is required")}
	}
	if len(rest) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: one collector NAME", rest[0])}
	}
	return cf.callAndPrint(env, "collect", map[string]any{"name": name, "force": *force})
}

// watch prints changes one per line, and survives a restart of the
// synchronizer by reconnecting and registering again with since = the last
// seq it printed and the id of the database that seq came from, so nothing
// is missed or printed twice, and a replaced database or lost changes are
// a resync, never a silent skip.
func watch(args []string, env Env) error {
	fs, cf := newFlags("watch", env)
	var types typeList
	fs.Var(&types, "type", "entity type (repeatable, or comma-separated)")
	since := fs.Int64("since", -1, "start after this seq (default: from now)")
	dbID := fs.String("database-id", "", "the database --since belongs to (watch prints it on stderr when it registers)")
	streamURL := fs.String("stream", "", "read the RabbitMQ stream NAME at this amqp:// URL instead of the socket (stream.go)")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if *streamURL != "" {
		return watchStreamCmd(fs, *streamURL, types, since, env)
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	path, err := cf.socketPath(env)
	if err != nil {
		return err
	}
	if err := checkTypesAt(path, types); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pos := watchPos{last: *since, id: *dbID}
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		err := watchOnce(ctx, path, types, &pos, env)
		if ctx.Err() != nil {
			return nil
		}
		var re *rpc.Error
		if errors.As(err, &re) && re.Code == rpc.CodeResyncNeeded {
			fmt.Fprintf(env.Stderr, "watch: %v: continuing from the current state; use get-all to resynchronize\n", re)
			pos = watchPos{last: -1}
			continue
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "watch: %v; reconnecting\n", err)
		}
		if !backoff.Wait(ctx, retry.Next()) {
			return nil
		}
	}
	return nil
}

// watchPos is the last seq watch printed (-1: none yet) and the database
// it came from.
type watchPos struct {
	last int64
	id   string
}

func watchOnce(ctx context.Context, path string, types []string, pos *watchPos, env Env) error {
	c, err := rpc.Dial(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-c.Done():
		}
	}()
	params := map[string]any{"types": types}
	if pos.last >= 0 {
		params = rpc.Position{DatabaseID: pos.id, Seq: pos.last}.Params(params)
	}
	var reg rpc.RegisterResult
	if err := c.Call(ctx, "register", params, &reg); err != nil {
		return err
	}
	if pos.last < 0 {
		pos.last = reg.Seq
	}
	if pos.id != reg.DatabaseID {
		fmt.Fprintf(env.Stderr, "watch: database %s, after seq %d\n", reg.DatabaseID, pos.last)
	}
	pos.id = reg.DatabaseID
	last := &pos.last
	out := env.Stdout
	for n := range c.Notifications() {
		switch n.Method {
		case "change":
			for _, ch := range n.Change.Changes {
				seq, err := rpc.ChangeSeq(ch)
				if err != nil {
					return fmt.Errorf("bad change notification: %w", err)
				}
				if seq <= *last {
					continue
				}
				out.Write(ch)
				out.Write([]byte{'\n'})
				*last = seq
			}
			if f, ok := out.(*os.File); ok {
				f.Sync()
			}
		case "resync":
			return fmt.Errorf("server asked to resync: %s", n.Params)
		case "shutdown":
			return errors.New("synchronizer is shutting down")
		}
	}
	return c.Err()
}
