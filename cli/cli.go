// Package cli implements the synchronizer's command line: serve and the
// client subcommands that talk to a running synchronizer over its socket.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/openstack-synchronizer/synchronizer/buildinfo"
	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/sidecar"

	// Collector and listener types register themselves.
	_ "github.com/openstack-synchronizer/synchronizer/collectors"
	_ "github.com/openstack-synchronizer/synchronizer/listeners"
)

// Env is what the command line needs from main.
type Env struct {
	Schema        string
	DefaultConfig []byte
	Stdout        io.Writer
	Stderr        io.Writer
}

// command is one subcommand: its synopsis (after the command name), what
// it does, and the function that runs it. help, -h and --help print these.
type command struct {
	name, synopsis, short, long string
	run                         func(args []string, env Env) error
}

// commands in the order of the usage text (set in init: the help of a
// command refers back to the list).
var commands []command

func init() {
	commands = []command{
		{"serve", "[--config FILE] [--socket PATH] [--database PATH] [--log-level LEVEL]", "run the synchronizer",
			"Run the synchronizer in the foreground until SIGTERM or SIGINT. SIGHUP, or an edit of the\n" +
				"config or of a file it names, reloads the configuration (log.level included).", serve},
		{"get-all", "[--type T]... [-o json|table]", "print every entity (of the given types)", "", getAll},
		{"watch", "[--type T]... [--since N] | --stream URL NAME [--since N]", "print changes as they happen, one JSON object per line",
			"Survives a restart of the synchronizer: it reconnects and continues after the last seq it\n" +
				"printed. With --stream it reads the RabbitMQ stream NAME that an amqp-stream publisher\n" +
				"feeds, from any host: from the first message, or after seq --since.", watch},
		{"changes", "--since N [--type T]... [--limit L] [-o json|table]", "print the changes after seq N", "", changes},
		{"status", "[-o json|table]", "print collectors, listeners, change log, version", "", status},
		{"collect", "NAME [--force]", "poll a collector now", "", collect},
		{"check-config", "FILE", "validate a config file",
			"Validate FILE the way serve would, and check what the first poll would fail on: referenced\n" +
				"files exist and parse, plugin programs can be run, the socket and database paths are\n" +
				"usable. Exit 0 when serve would start (warnings, such as an empty config, go to stderr),\n" +
				"1 when it would not, 2 on a usage error.", checkConfigCmd},
		{"backup", "[--config FILE | --database PATH] FILE", "copy the database, online, to FILE",
			"Write a consistent copy of the database to FILE while the synchronizer runs: mode 0600,\n" +
				"integrity-checked; an existing FILE is refused. Run it as the synchronizer's user or root.", backup},
		{"restore", "[--config FILE | --database PATH] BACKUP", "replace the database with a backup (stopped)",
			"Replace the database with BACKUP while the synchronizer is stopped. The replaced database\n" +
				"is moved aside, not deleted. Seqs continue above every seq it handed out, so each\n" +
				"consumer gets -32001 on reconnect and resynchronizes with get_all.", restore},
		{"version", "", "print the version (also --version)", "", version},
		{"help", "[COMMAND]", "print this, or a command's usage and flags", "", nil},
	}
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func usageText() string {
	var b strings.Builder
	b.WriteString("usage: synchronizer <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		line := c.name
		if c.synopsis != "" {
			line += " " + c.synopsis
		}
		if len(line) > 44 {
			fmt.Fprintf(&b, "  %s\n  %-44s %s\n", line, "", c.short)
			continue
		}
		fmt.Fprintf(&b, "  %-44s %s\n", line, c.short)
	}
	b.WriteString("\nclient commands take --socket PATH, or read it from --config (default config.yaml).\n" +
		"'synchronizer help COMMAND' or 'synchronizer COMMAND -h' prints a command's flags.\n" +
		"exit status: 0 ok, 1 runtime error, 2 usage error.\n")
	return b.String()
}

// Main runs the command line and returns the exit code: 0 ok, 1 runtime
// error, 2 usage error (as Prometheus, Alertmanager and Litestream do).
func Main(args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usageText())
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "--version", "-version":
		name = "version"
	case "-h", "--help", "-help":
		name = "help"
	}
	if name == "help" {
		switch {
		case len(rest) == 0:
			fmt.Fprint(env.Stdout, usageText())
			return 0
		case len(rest) > 1:
			fmt.Fprintf(env.Stderr, "synchronizer help: takes one command, not %q\n", rest)
			return 2
		case lookup(rest[0]) == nil || rest[0] == "help":
			if rest[0] == "help" {
				fmt.Fprint(env.Stdout, usageText())
				return 0
			}
			fmt.Fprintf(env.Stderr, "synchronizer help: unknown command %q\n\n%s", rest[0], usageText())
			return 2
		}
		name, rest = rest[0], []string{"-h"}
	}
	cmd := lookup(name)
	if cmd == nil {
		fmt.Fprintf(env.Stderr, "synchronizer: unknown command %q\n\n%s", name, usageText())
		return 2
	}
	err := cmd.run(rest, env)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "synchronizer %s: %v\n", name, err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(env.Stderr, "run 'synchronizer help %s' for usage\n", name)
			return 2
		}
		return 1
	}
	return 0
}

// newFlagSet returns a flag set that reports errors to the caller instead
// of printing them, so that -h prints help on stdout (exit 0) and a bad
// flag is a usage error (exit 2).
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args; -h and --help print the command's help to stdout
// and return flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string, env Env) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(env.Stdout, fs)
			return flag.ErrHelp
		}
		return usageError{err}
	}
	return nil
}

// noArgs refuses the arguments left after the flags.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (flags go before it; see -h)", fs.Arg(0))}
	}
	return nil
}

func printHelp(w io.Writer, fs *flag.FlagSet) {
	c := lookup(fs.Name())
	if c == nil {
		return
	}
	text := c.long
	if text == "" {
		text = strings.ToUpper(c.short[:1]) + c.short[1:] + "."
	}
	fmt.Fprintf(w, "usage: synchronizer %s %s\n\n%s\n", c.name, c.synopsis, text)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func version(args []string, env Env) error {
	fs := newFlagSet("version")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, buildinfo.Get())
	return nil
}

type usageError struct{ error }

// loadConfig reads the config file, or the embedded default when path is
// empty and config.yaml does not exist in the working directory.
func loadConfig(path string, env Env, explicit bool) (*config.Config, string, error) {
	if path == "" {
		path = "config.yaml"
	}
	if _, err := os.Stat(path); err != nil {
		if explicit || !errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("config: %w", err)
		}
		wd, _ := os.Getwd()
		cfg, err := config.Parse(env.DefaultConfig, filepath.Join(wd, "config.yaml (embedded default)"))
		if err != nil {
			return nil, "", err
		}
		cfg.Dir = wd
		return cfg, "", nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, "", err
	}
	return cfg, cfg.Path, nil
}

// newLogger logs at level, which a reload may change (sidecar sets it).
func newLogger(cfg *config.Config, level *slog.LevelVar, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, env Env) error {
	fs := newFlagSet("serve")
	cfgPath := fs.String("config", "", "config file (default: config.yaml, else the embedded default)")
	socket := fs.String("socket", "", "socket path (overrides the config)")
	db := fs.String("database", "", "database path (overrides the config)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (overrides the config's log.level, also on reload)")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	level := new(slog.LevelVar)
	if *logLevel != "" {
		if err := level.UnmarshalText([]byte(*logLevel)); err != nil || !validLevel(*logLevel) {
			return usageError{fmt.Errorf("--log-level: %q is not debug, info, warn or error", *logLevel)}
		}
	}
	cfg, watched, err := loadConfig(*cfgPath, env, *cfgPath != "")
	if err != nil {
		return err
	}
	if *logLevel == "" {
		level.UnmarshalText([]byte(cfg.Log.Level))
	}
	sock, dbPath := cfg.Abs(cfg.Socket), cfg.Abs(cfg.Database)
	if *socket != "" {
		sock = *socket
	}
	if *db != "" {
		dbPath = *db
	}
	if err := checkPaths(sock, dbPath); err != nil {
		return err
	}
	log := newLogger(cfg, level, env.Stderr)
	slog.SetDefault(log)
	if len(cfg.Collectors) == 0 && len(cfg.Listeners) == 0 {
		log.Warn("no collectors and no listeners: the synchronizer serves an empty baseline until a reload adds some", "config", cfg.Path)
	}
	if addr := os.Getenv("SYNCHRONIZER_PPROF"); addr != "" {
		// Profiling for performance work, on loopback only.
		if err := startPprof(addr); err != nil {
			return err
		}
		log.Info("pprof listening", "addr", addr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return sidecar.Run(ctx, sidecar.Options{
		Config: cfg, ConfigPath: watched, Schema: env.Schema,
		Socket: *socket, Database: *db, Logger: log, Reload: reload,
		LogLevel: level, LogLevelFixed: *logLevel != "",
	})
}

func validLevel(s string) bool {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

// typeList is a repeatable --type flag.
type typeList []string

func (t *typeList) String() string { return strings.Join(*t, ",") }
func (t *typeList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*t = append(*t, s)
		}
	}
	return nil
}
