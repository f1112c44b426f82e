package cli

import (
	"fmt"

	"github.com/openstack-synchronizer/synchronizer/config"
	"github.com/openstack-synchronizer/synchronizer/sidecar"
)

// exitError ends the command with code, its message already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// checkConfigCmd validates a config file the way serve would: it builds
// every collector and listener without starting them, asks each collector
// what its first poll would fail on (files, programs), and checks the
// socket and database paths. Errors are printed as status shows them after
// a failed reload. An empty config (no collectors, no listeners) is valid
// — serve starts and serves an empty baseline — so it is a warning on
// stderr with exit 0: a deployment may start empty and be filled by a
// reload, but a file that lost its content by mistake should be noticed.
func checkConfigCmd(args []string, env Env) error {
	fs := newFlagSet("check-config")
	file, err := oneFile(fs, args, env, "FILE")
	if err != nil {
		return err
	}
	cfg, err := config.Load(file)
	if err == nil {
		err = sidecar.Check(cfg)
	}
	if err == nil {
		err = checkPaths(cfg.Abs(cfg.Socket), cfg.Abs(cfg.Database))
		if err != nil {
			err = fmt.Errorf("%s: %w", cfg.Path, err)
		}
	}
	if err != nil {
		fmt.Fprintln(env.Stderr, err)
		return exitError{1}
	}
	if len(cfg.Collectors) == 0 && len(cfg.Listeners) == 0 {
		fmt.Fprintf(env.Stderr, "%s: warning: no collectors and no listeners: serve would start, and hold and change nothing\n", cfg.Path)
	}
	fmt.Fprintf(env.Stdout, "%s: ok (%d collectors, %d listeners)\n", cfg.Path, len(cfg.Collectors), len(cfg.Listeners))
	return nil
}
