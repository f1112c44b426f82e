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

const usage = `usage: synchronizer <command> [flags]

commands:
  serve [--config FILE]               run the synchronizer
  get-all [--type T]...               print every entity (of the given types)
  watch [--type T]... [--since N]     print changes, one JSON object per line
  changes --since N [--type T]...     print the changes after seq N
  status                              print collectors, listeners, change log
  collect NAME [--force]              poll a collector now
  check-config FILE                   validate a config file
  version                             print the version (also --version)

client commands take --socket PATH, or read it from --config (default config.yaml)
`

// Main runs the command line and returns the exit code.
func Main(args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serve(rest, env)
	case "get-all":
		err = getAll(rest, env)
	case "watch":
		err = watch(rest, env)
	case "changes":
		err = changes(rest, env)
	case "status":
		err = status(rest, env)
	case "collect":
		err = collect(rest, env)
	case "check-config":
		return checkConfig(rest, env)
	case "version", "--version", "-version":
		if len(rest) > 0 {
			fmt.Fprintf(env.Stderr, "synchronizer version: takes no arguments\n")
			return 2
		}
		fmt.Fprintln(env.Stdout, buildinfo.Get())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return 0
	default:
		fmt.Fprintf(env.Stderr, "synchronizer: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(env.Stderr, "synchronizer %s: %v\n", cmd, err)
			return 2
		}
		fmt.Fprintf(env.Stderr, "synchronizer %s: %v\n", cmd, err)
		return 1
	}
	return 0
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

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, env Env) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfgPath := fs.String("config", "", "config file (default: config.yaml, else the embedded default)")
	socket := fs.String("socket", "", "socket path (overrides the config)")
	db := fs.String("database", "", "database path (overrides the config)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, watched, err := loadConfig(*cfgPath, env, *cfgPath != "")
	if err != nil {
		return err
	}
	log := newLogger(cfg, env.Stderr)
	slog.SetDefault(log)
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
	})
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
