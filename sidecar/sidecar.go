// Package sidecar assembles the synchronizer: it opens the store, loads the
// engine, serves the socket, runs the collectors and listeners of the
// configuration and reloads it when it changes.
package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/engine"
	"github.com/openstack-synchronizer/synchronizer/publishers"
	"github.com/openstack-synchronizer/synchronizer/rpc"
	"github.com/openstack-synchronizer/synchronizer/sdnotify"
	"github.com/openstack-synchronizer/synchronizer/store"
)

// Options say how to start.
type Options struct {
	// Config is the loaded configuration; ConfigPath is the file to watch
	// ("" when the embedded default is used).
	Config     *config.Config
	ConfigPath string
	// Schema is schema.sql.
	Schema string
	// Socket and Database override the config when set.
	Socket, Database string
	Logger           *slog.Logger
	// Reload is signalled to force a reload (SIGHUP).
	Reload <-chan struct{}
	// LogLevel is the level of Logger's handler: a reload sets it to the
	// config's log.level, unless LogLevelFixed (--log-level was given).
	// Without it a change of log.level needs a restart.
	LogLevel      *slog.LevelVar
	LogLevelFixed bool
	// Debounce is the quiet time after file events before the files are
	// read (0: DefaultDebounce).
	Debounce time.Duration
}

// Sidecar is a running synchronizer.
type Sidecar struct {
	o       Options
	log     *slog.Logger
	store   *store.Store
	engine  *engine.Engine
	rpc     *rpc.Server
	sup     *supervisor
	metrics *metrics
	systemd *systemd
	pubs    *publishers.Set
	socket  string
	started time.Time
	pid     int
}

// Run starts the synchronizer and blocks until ctx ends, then stops
// collectors and listeners, tells subscribers, removes the socket and closes
// the database.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	sc := &Sidecar{o: o, log: o.Logger, started: time.Now(), pid: os.Getpid()}
	sc.systemd = newSystemd(sc)
	lc := newLifecycle(ctx)
	runCtx, err := sc.start(ctx, lc)
	if err != nil {
		return errors.Join(err, lc.stop())
	}
	watchErr := sc.watch(ctx, runCtx)
	err = errors.Join(watchErr, lc.stop())
	sc.log.Info("synchronizer stopped")
	return err
}

// start starts the components in order, each registering its stop with lc,
// and returns the context of the collectors and listeners (reloads start
// new ones on it). The stops run in reverse: the systemd notifier, the
// pruner, the metrics endpoint, the sources (an open transaction
// finishes), the socket (subscribers are told), the publishers (their
// cursor saved), the database checks and, last, the database.
func (sc *Sidecar) start(ctx context.Context, lc *lifecycle) (context.Context, error) {
	o := sc.o
	cfg := o.Config
	dbPath := cfg.Abs(cfg.Database)
	if o.Database != "" {
		dbPath = o.Database
	}
	sc.socket = cfg.Abs(cfg.Socket)
	if o.Socket != "" {
		sc.socket = o.Socket
	}
	var err error
	mode, _ := cfg.FileMode()
	if sc.store, err = store.Open(dbPath, o.Schema, store.Options{Synchronous: cfg.Sync, MaxMode: mode.Perm()}); err != nil {
		return nil, err
	}
	lc.onStop(func() error { sc.store.Close(); return nil })
	sc.logRecovery()
	lc.run(func(ctx context.Context) error { sc.runQuickChecks(ctx, cfg.QuickCheckInterval.D()); return nil })
	sc.engine, err = engine.New(ctx, sc.store, engine.Options{
		RetainCount: cfg.ChangesRetention.Count,
		RetainAge:   cfg.ChangesRetention.Age.D(),
		Logger:      sc.log,
		DeferLoad:   true,
	})
	if err != nil {
		return nil, err
	}
	var sockGID *int
	if gid, err := cfg.SocketGID(); err != nil {
		return nil, fmt.Errorf("socket_group: %w", err)
	} else if gid >= 0 {
		sockGID = &gid
	}
	sc.rpc = rpc.New(backend{sc}, rpc.Options{
		SocketMode:   mode,
		SocketGID:    sockGID,
		QueueLimit:   cfg.SubscriberQueue,
		NotifyBatch:  cfg.NotifyBatch,
		WriteTimeout: cfg.WriteTimeout.D(),
		Logger:       sc.log.With("component", "rpc"),

		MaxConnections:   cfg.MaxConnections,
		IdleTimeout:      cfg.IdleTimeout.D(),
		MaxSubscriptions: cfg.MaxSubscriptions,
		SubscriberMemory: cfg.SubscriberMemory,
		RequestMemory:    cfg.RequestMemory,
		GetAllTimeout:    cfg.GetAllTimeout.D(),
	})
	sc.engine.SetPublisher(sc.rpc)
	if err := sc.startPublishers(lc); err != nil {
		return nil, err
	}
	if err := sc.rpc.Listen(sc.socket); err != nil {
		return nil, err
	}
	absDB, aerr := filepath.Abs(dbPath)
	if aerr != nil {
		absDB = dbPath // only a name for the listeners' queues
	}
	sc.sup = &supervisor{sc: sc, log: sc.log, units: map[string]*unit{}, db: absDB}
	sc.metrics = newMetrics(sc)
	// Readers (get_all, changes, status) are served while the baseline
	// index loads; registrations and collectors wait for it.
	lc.run(sc.rpc.Serve)
	t0 := time.Now()
	sc.systemd.send(sdnotify.Status("loading the baseline"))
	if err := sc.engine.Load(ctx); err != nil {
		return nil, err
	}
	sc.log.Info("baseline loaded", "entities", sc.engine.Len(), "last_seq", sc.engine.LastSeq(), "duration", time.Since(t0))
	// The load's garbage goes back to the system now, not whenever the
	// scavenger gets to it.
	debug.FreeOSMemory()
	runCtx := lc.scope(sc.sup.stopAll)
	if err := sc.sup.apply(runCtx, cfg); err != nil {
		return nil, err
	}
	// After the units: /readyz must not answer before there are any.
	if addr := cfg.Metrics.Listen; addr != "" {
		log := sc.log.With("component", "metrics")
		ln, err := sc.metrics.listen(addr, log)
		if err != nil {
			return nil, err
		}
		lc.run(func(ctx context.Context) error { return sc.metrics.serve(ctx, ln, log) })
	}
	lc.run(func(ctx context.Context) error { sc.engine.RunPruner(ctx, time.Minute); return nil })
	lc.run(func(ctx context.Context) error { sc.systemd.run(ctx); return nil })
	lc.onStop(func() error { sc.systemd.stopping(); return nil }) // the first stop

	sc.log.Info("synchronizer ready", "socket", sc.socket, "database", dbPath, "config", cfg.Path,
		"collectors", len(cfg.Collectors), "listeners", len(cfg.Listeners))
	return runCtx, nil
}

func (sc *Sidecar) runner(name string) interface {
	Collect(ctx context.Context, force bool) (engine.Result, error)
} {
	r := sc.sup.runner(name)
	if r == nil {
		return nil
	}
	return r
}

func (sc *Sidecar) activeTypes() []string {
	if c := sc.sup.config(); c != nil {
		return c.ActiveEntityTypes
	}
	return nil
}

// watcherRetry is how long the sidecar waits before it tries again to set
// up the config watcher (tests shorten it).
var watcherRetry = 5 * time.Second

// watch follows the config and the files it points at (watch.go), and
// forced reloads, until ctx ends. A watcher that cannot be set up (the
// process is at its file descriptor limit, or at the user's inotify
// instance limit) is not a reason to stop serving: the sidecar logs it,
// reloads on SIGHUP meanwhile and tries again until it has one.
func (sc *Sidecar) watch(ctx, runCtx context.Context) error {
	for failed := false; ; failed = true {
		w, err := newWatcher(sc)
		if err == nil {
			if failed {
				sc.log.Info("watching the config files again")
			}
			sc.log.Debug("config watcher started")
			defer w.close()
			// The config may have been edited between its load and the
			// first watch (no event for that edit will come): the watcher
			// compares with what was loaded and reloads now if it differs.
			w.check(runCtx)
			w.run(ctx, runCtx)
			return nil
		}
		sc.log.Error("cannot watch the config files: retrying; SIGHUP reloads meanwhile",
			"err", fmt.Errorf("config watcher: %w", err), "retry_in", watcherRetry)
		retry := time.NewTimer(watcherRetry)
	wait:
		for {
			select {
			case <-ctx.Done():
				retry.Stop()
				return nil
			case <-sc.o.Reload:
				sc.reload(runCtx)
			case <-retry.C:
				break wait
			}
		}
	}
}

// reload reads the config file again and applies it; a bad file keeps the
// running configuration.
func (sc *Sidecar) reload(runCtx context.Context) {
	if sc.o.ConfigPath == "" {
		sc.log.Info("reload requested, but the embedded default config is in use: nothing to reload")
		return
	}
	sc.systemd.reloading()
	defer sc.systemd.reloaded()
	cfg, err := loadForReload(sc.o.ConfigPath)
	if err == nil {
		err = sc.applyReload(runCtx, cfg)
	}
	sc.metrics.reloaded(err)
	if err != nil {
		sc.sup.reloadFailed(err)
		sc.log.Error("config reload failed: keeping the running configuration", "err", err)
		return
	}
	sc.log.Info("config reloaded", "path", cfg.Path, "hash", cfg.Hash[:12])
}

// loadForReload is config.Load, refusing an empty file: an editor that
// writes in place truncates the file first, and an empty config is valid
// (no collectors) but would stop everything until the write completes.
func loadForReload(path string) (*config.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%s: %w: the file is empty", path, config.ErrInvalid)
	}
	return config.Load(path)
}

func (sc *Sidecar) applyReload(runCtx context.Context, cfg *config.Config) error {
	// Compare with the config the process started with: these settings
	// never change live, so a second reload must still report them.
	old := sc.o.Config
	var restart []string
	if cfg.Abs(cfg.Socket) != old.Abs(old.Socket) {
		restart = append(restart, "socket")
	}
	if cfg.Abs(cfg.Database) != old.Abs(old.Database) {
		restart = append(restart, "database")
	}
	for _, f := range []struct {
		name string
		diff bool
	}{
		{"socket_mode", cfg.SocketMode != old.SocketMode},
		{"socket_group", cfg.SocketGroup != old.SocketGroup},
		{"sync", cfg.Sync != old.Sync},
		{"subscriber_queue", cfg.SubscriberQueue != old.SubscriberQueue},
		{"notify_batch", cfg.NotifyBatch != old.NotifyBatch},
		{"write_timeout", cfg.WriteTimeout != old.WriteTimeout},
		{"quick_check_interval", cfg.QuickCheckInterval != old.QuickCheckInterval},
		{"max_connections", cfg.MaxConnections != old.MaxConnections},
		{"idle_timeout", cfg.IdleTimeout != old.IdleTimeout},
		{"max_subscriptions", cfg.MaxSubscriptions != old.MaxSubscriptions},
		{"subscriber_memory", cfg.SubscriberMemory != old.SubscriberMemory},
		{"request_memory", cfg.RequestMemory != old.RequestMemory},
		{"get_all_timeout", cfg.GetAllTimeout != old.GetAllTimeout},
		{"changes_retention", cfg.ChangesRetention != old.ChangesRetention},
		{"log.format", cfg.Log.Format != old.Log.Format},
		{"log.level", sc.o.LogLevel == nil && cfg.Log.Level != old.Log.Level},
		{"metrics", cfg.Metrics != old.Metrics},
	} {
		if f.diff {
			restart = append(restart, f.name)
		}
	}
	// A bad publisher entry refuses the whole reload, before anything
	// changes, as a bad collector or listener does.
	if err := checkPublishers(cfg); err != nil {
		return err
	}
	if err := sc.sup.apply(runCtx, cfg); err != nil {
		return err
	}
	if err := sc.pubs.Apply(cfg.Publishers); err != nil {
		return fmt.Errorf("publishers: %w", err)
	}
	if lv := sc.o.LogLevel; lv != nil && !sc.o.LogLevelFixed {
		var want slog.Level
		if want.UnmarshalText([]byte(cfg.Log.Level)) == nil && want != lv.Level() {
			sc.log.Info("log level changed", "from", lv.Level().String(), "to", want.String())
			lv.Set(want)
		}
	}
	sc.sup.needsRestart(restart)
	if len(restart) > 0 {
		sc.log.Warn("config changes that need a restart were not applied", "settings", restart)
	}
	return nil
}
